"""The console's server-drawn charts: axes, units, a marker per point, and the newest value printed."""

from __future__ import annotations

from storyloom.console.charts import chart


def test_a_chart_has_axes_units_markers_and_the_newest_value() -> None:
    svg = str(chart([("depth", [None, None, 3.0])], label="Queue depth", unit="items"))
    assert svg.count('class="chart-axis"') == 2 and ">3<" in svg and "depth now: 3" in svg
    assert '<circle class="chart-dot chart-0"' in svg  # a lone point is a visible marker
    assert 'data-last="3.0"' in svg
    latency = str(chart([("p50", [1200.0, 2500.0])], label="Latency", unit="ms"))
    assert "p50 now: 2.5 s" in latency and "<polyline" in latency
    assert "no data yet" in str(chart([("x", [None])], label="Empty", unit="%"))
