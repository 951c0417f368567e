"""A real Prometheus (Debian `prometheus`) scrapes a real `storyloom run` server over loopback, and PromQL
over what it stored returns the Storyloom series."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.prometheus import PrometheusProcess
from tests.support.server import ServerProcess, running_server, seed_author, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path / "storyloom") as srv:
        yield srv


@pytest.fixture
def prometheus(server: ServerProcess, tmp_path: Path) -> Iterator[PrometheusProcess]:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "storyloom",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}],
            }
        ],
    }
    prom = PrometheusProcess(tmp_path / "prometheus", config).start()
    try:
        yield prom
    finally:
        prom.stop()


def test_prometheus_scrapes_storyloom(server: ServerProcess, prometheus: PrometheusProcess) -> None:
    persona_id, agent_id = seed_author(server)
    created = server.post(
        "/api/fiction/plans",
        {
            "name": "Scraped",
            "premise": "Lamplighters keep the dark at bay.",
            "persona_id": persona_id,
            "agent_id": agent_id,
        },
    )
    assert created.status_code == 201, created.text

    series = wait_for(
        lambda: prometheus.query("storyloom_backlog_items"),
        timeout=60,
        interval=0.25,
        message="Prometheus to store storyloom_backlog_items",
    )
    assert {s["metric"]["status"] for s in series} >= {"pending", "complete", "in_progress"}
    assert all(s["metric"]["job"] == "storyloom" for s in series)

    total = wait_for(
        lambda: prometheus.query("sum(storyloom_backlog_items) > 0"),
        timeout=60,
        interval=0.25,
        message="sum(storyloom_backlog_items) > 0",
    )
    assert float(total[0]["value"][1]) >= 3  # the plan's three seeded items

    targets = httpx.get(f"{prometheus.url}/api/v1/targets", timeout=5.0).json()["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets
    # the other families are exposed with their types (a histogram shows up once a phase has run)
    assert prometheus.query("storyloom_backlog_oldest_ready_age_seconds")
    assert wait_for(
        lambda: prometheus.query("sum by (phase) (storyloom_phase_duration_seconds_count)"),
        timeout=60,
        interval=0.25,
        message="a phase duration histogram",
    )
