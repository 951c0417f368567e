"""The triage-first console at 1280 px and 390 px: the Overview leads with a compact incident list (silenced
and inhibited apart), charts with axes and values, a Cancel dialog, names instead of ids, headers and times
on one line, readable inbox headers, and no console error or failed request on any page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.browser.conftest import DESKTOP, PAGES, PHONE, playwright_sync_api, screenshot, signed_in_page
from tests.support.server import ServerProcess, seed_author, wait_for

expect = playwright_sync_api().expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

MUTED_ALERT_ID = "console:triage-muted"
MUTE_COMMENT = "Known upstream outage: the vendor is on it."
SEVERITY_RANK = {"critical": 0, "error": 1, "warning": 2, "info": 3}

INCIDENT_ROWS = """() => [...document.querySelectorAll("#firing-alerts > .table-wrap tr.incident")].map((tr) => ({
  severity: tr.dataset.severity, since: tr.dataset.since, plan: tr.dataset.planId,
  planText: (tr.querySelector("td a[href^='/plans/']") || {}).textContent || "",
  href: tr.querySelector("th a").getAttribute("href"), count: Number(tr.dataset.count),
}))"""

# Every column header, row label of a key/value table and <time> on screen: its height against its line
# height (one line; a <time> is inline, so its line boxes are counted), and whether the page scrolls sideways.
ONE_LINE = """() => {
  const lines = (el) => {
    const style = getComputedStyle(el);
    const line = parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.45;
    const box = el.getBoundingClientRect();
    const height = box.height - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom)
      - parseFloat(style.borderTopWidth) - parseFloat(style.borderBottomWidth);
    return el.tagName === "TIME" ? el.getClientRects().length : Math.round(height / line);
  };
  // Narrow layouts hide a table's header row for screen readers only (a 1 px clipped thead): skip those.
  const onScreen = (el) => el.getClientRects().length && !(el.closest("thead")
    && el.closest("thead").getBoundingClientRect().width <= 1);
  const shown = [...document.querySelectorAll("thead th, table.kv th, time")].filter(onScreen);
  return {
    checked: shown.length,
    wrapped: shown.filter((el) => lines(el) > 1).map((el) => `${el.tagName} "${el.textContent.trim()}"`),
    overflow: document.scrollingElement.scrollWidth - window.innerWidth,
    empty_owners: [...document.querySelectorAll(".owner")].filter((el) => /—/.test(el.textContent)).length,
  };
}"""


@pytest.fixture(scope="module", params=[DESKTOP, PHONE], ids=lambda viewport: f"{viewport[0]}px")
def page(
    request: pytest.FixtureRequest, browser: Any, server: ServerProcess, login_url: str
) -> Iterator[Any]:
    with signed_in_page(browser, server, login_url, request.param) as signed_in:
        yield signed_in


def _width(page: Any) -> int:
    return int(page.viewport_size["width"])


@pytest.fixture(scope="module")
def muted(server: ServerProcess) -> str:
    """An alert that a silence holds from its first moment: its fingerprint."""
    ends = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    silence = server.post(
        "/api/silences",
        {"matchers": [f'alert_id="{MUTED_ALERT_ID}"'], "ends_at": ends, "comment": MUTE_COMMENT},
    )
    assert silence.status_code in (200, 201), silence.text
    fired = server.post(
        "/api/v2/alerts",
        [
            {
                "labels": {"alertname": MUTED_ALERT_ID, "severity": "warning"},
                "annotations": {"summary": "muted"},
            }
        ],
    )
    assert fired.status_code < 300, fired.text

    def silenced() -> str | None:
        found = server.get("/api/alerts", status="firing", alert_id=MUTED_ALERT_ID)
        return found[0]["fingerprint"] if found and found[0].get("silenced_by") else None

    return str(wait_for(silenced, timeout=30, message="the muted alert, silenced"))


def test_the_overview_leads_with_incidents_by_severity_then_age(
    page: Any, server: ServerProcess, plan_id: str
) -> None:
    page.goto(server.url)
    expect(page.locator("main h2").first).to_have_text(re.compile(r"^Firing"))
    expect(page.locator(".alert-card")).to_have_count(0)
    rows = page.evaluate(INCIDENT_ROWS)
    keys = [(SEVERITY_RANK[r["severity"]], r["since"]) for r in rows]
    assert keys == sorted(keys), f"incidents not ordered by severity then age: {rows}"
    names = {p["plan_id"]: p["name"] for p in server.get("/api/fiction/plans")}
    for row in rows:
        assert row["href"].startswith("/alerts"), row
        assert not row["plan"] or row["planText"] == names[row["plan"]], row  # the name, not the id
    screenshot(page, f"overview-incidents-{_width(page)}")


def test_the_overview_firing_count_is_the_alerts_page_count(page: Any, server: ServerProcess) -> None:
    def counts() -> tuple[int, int] | None:
        page.goto(server.url)
        overview = int(page.locator("#firing-count").inner_text())
        page.goto(f"{server.url}/alerts")
        listed = page.locator('#alerts-list tr[data-state="firing"]').count()
        return (overview, listed) if overview == listed else None

    overview, listed = wait_for(
        counts, timeout=30, interval=0.5, message="the same firing count on both pages"
    )
    assert overview == listed


def test_silenced_alerts_are_counted_apart_and_show_their_silence(
    page: Any, server: ServerProcess, muted: str
) -> None:
    page.goto(server.url)
    expect(page.locator(f'#firing-alerts > .table-wrap tr[data-alert-id="{MUTED_ALERT_ID}"]')).to_have_count(
        0
    )
    held = page.locator("#silenced-alerts")
    expect(held.locator("summary")).to_contain_text("Silenced")
    held.locator("summary").click()
    row = held.locator(f'tr[data-alert-id="{MUTED_ALERT_ID}"]')
    expect(row).to_contain_text(MUTE_COMMENT)
    expect(row).to_contain_text("silenced until")
    screenshot(page, f"overview-silenced-{_width(page)}")

    page.goto(f"{server.url}/alerts/{muted}")
    expect(page.locator("#alert-detail")).to_contain_text(MUTE_COMMENT)
    expect(page.locator("#alert-detail time").first).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("^Silence"))).to_have_count(0)


def test_charts_have_axes_values_and_visible_points(page: Any, server: ServerProcess) -> None:
    page.goto(server.url)
    charts = page.locator("#slo-tiles svg.chart")
    expect(charts.first).to_be_visible()
    for i in range(charts.count()):
        svg = charts.nth(i)
        expect(svg.locator(".chart-axis")).to_have_count(2)
        assert svg.locator(".chart-tick").count() >= 4
        expect(svg.locator(".chart-now")).to_contain_text("now:")
        dot = svg.locator("circle.chart-dot").first
        box = dot.bounding_box()
        assert box and box["width"] >= 3, f"a data point too small to see: {box}"
    queue = page.locator("#t-queue").locator("xpath=..")
    last = float(queue.locator("svg.chart").get_attribute("data-last") or "nan")
    assert int(page.locator("#queue-depth").inner_text()) == round(last)
    expect(queue.locator(".chart-now")).to_contain_text(f"now: {round(last)}")
    screenshot(page, f"overview-charts-{_width(page)}")


def test_cancel_an_item_from_its_plan_page_with_a_confirmation(page: Any, server: ServerProcess) -> None:
    # A plan on an unreachable provider never completes: its items stay cancellable while the test runs.
    persona_id, agent_id = seed_author(server, f"Cancel author {_width(page)}")
    created = server.post(
        "/api/fiction/plans",
        {
            "name": f"Cancel me {_width(page)}",
            "premise": "A lighthouse keeper's last winter.",
            "persona_id": persona_id,
            "agent_id": agent_id,
            "provider": "openai",
            "model": "unreachable",
        },
    )
    assert created.status_code == 201, created.text
    plan_id = created.json()["plan_id"]
    page.goto(f"{server.url}/plans/{plan_id}")
    button = page.locator('#backlog button[data-action="cancel"]').first
    expect(button).to_be_enabled()
    backlog_id = button.get_attribute("data-backlog-id")
    button.click()
    dialog = page.locator("#cancel-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(str(backlog_id))
    expect(dialog).to_contain_text(f"Plan Cancel me {_width(page)}.")  # the plan's name, not its id
    expect(dialog.get_by_label("Acting agent")).to_have_value(agent_id)
    screenshot(page, f"cancel-dialog-{_width(page)}")
    dialog.get_by_label(re.compile("^Notes")).fill("Premise withdrawn by the editor.")
    dialog.get_by_role("button", name="Cancel item").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#toast")).to_contain_text(f"Cancelled {backlog_id}")
    expect(page.locator(f'tr[data-backlog-id="{backlog_id}"]')).to_have_attribute(
        "data-status", "cancelled", timeout=20_000
    )
    expect(page.locator("#actions")).to_contain_text("Premise withdrawn by the editor.")
    wait_for(
        lambda: re.search(
            rf"cancel.*{re.escape(str(backlog_id))}|{re.escape(str(backlog_id))}.*cancel", server.logs()
        ),
        timeout=10,
        message="the cancel in the server log",
    )


def test_the_ops_inbox_shows_headers_as_text(page: Any, server: ServerProcess) -> None:
    def received() -> Any:
        payload = server.get("/api/demo/inbox")
        return payload if isinstance(payload, list) else payload.get("items")

    wait_for(received, timeout=30, message="a notification in the demo inbox")
    page.goto(f"{server.url}/inbox")
    first = page.locator(".inbox-item").first
    first.locator("summary").click()
    expect(first.locator("table.headers")).to_contain_text("webhook-id")
    assert "\\u003c" not in page.locator("main").inner_text()


def test_every_header_and_time_is_on_one_line_and_no_page_scrolls_sideways(
    page: Any, server: ServerProcess, paths: dict[str, str]
) -> None:
    found = {}
    for name in PAGES:
        if name == "login":
            continue
        page.goto(server.url + paths[name])
        expect(page.locator("main h1").first).to_be_visible()
        found[name] = page.evaluate(ONE_LINE)
    assert sum(f["checked"] for f in found.values()) > 20, found
    problems = {n: f for n, f in found.items() if f["wrapped"] or f["overflow"] > 0 or f["empty_owners"]}
    assert not problems, f"at {_width(page)} px: {problems}"


def test_no_page_logs_a_console_error_or_fails_a_request(
    page: Any, server: ServerProcess, paths: dict[str, str]
) -> None:
    problems: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    def on_failed(request: Any) -> None:
        # Leaving a page closes its live stream: that abort is the browser's, not a failure.
        if not ("/api/events/stream" in request.url and "ERR_ABORTED" in (request.failure or "")):
            problems.append(f"failed: {request.url} {request.failure}")

    def on_response(response: Any) -> None:
        if response.status >= 400 and not response.url.endswith(paths["not-found"]):
            problems.append(f"{response.status}: {response.url}")

    page.on("console", on_console)
    page.on("requestfailed", on_failed)
    page.on("response", on_response)
    try:
        found = {}
        for name in PAGES:
            if name == "login":
                continue
            problems.clear()
            page.goto(server.url + paths[name])
            expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
            icon = page.request.get(f"{server.url}/favicon.ico")
            assert icon.ok and "svg" in icon.headers["content-type"], icon.status
            unexpected = [p for p in problems if not (name == "not-found" and "status of 404" in p)]
            if unexpected:
                found[name] = unexpected
    finally:
        page.remove_listener("console", on_console)
        page.remove_listener("requestfailed", on_failed)
        page.remove_listener("response", on_response)
    assert not found, f"at {_width(page)} px: {found}"
