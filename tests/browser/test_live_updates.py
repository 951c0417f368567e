"""Live updates over SSE on pages left open: a change made elsewhere (the API, the dispatcher) shows up
without a reload. Each page marks its window first; a reload or navigation would drop the mark."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import HELD_ALERT_ID, HELD_RECEIVER, HeldReceiver, playwright_sync_api, screenshot
from tests.support.server import ServerProcess

expect = playwright_sync_api().expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def open_live(page: Any, url: str) -> None:
    """Load `url`, wait for the event stream, and mark the window so a reload would show."""
    page.goto(url)
    expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
    page.evaluate("window.__noReload = true")


def assert_not_reloaded(page: Any) -> None:
    assert page.evaluate("window.__noReload") is True, "the page was reloaded"


def test_an_obligation_resolved_through_the_api_appears_on_the_open_plan_page(
    admin_page: Any, server: ServerProcess, plan_id: str
) -> None:
    page = admin_page
    open_live(page, f"{server.url}/plans/{plan_id}?obligations=all")
    page.evaluate(
        """() => {
          window.__obligationEvents = [];
          window.__storyloomLive.on("obligation", (data) => window.__obligationEvents.push(data.obligation_id));
        }"""
    )
    obligation_id = server.get(f"/api/fiction/plans/{plan_id}/persona-obligations", status="open")["items"][
        0
    ]["obligation_id"]
    row = page.locator(f'#obligations tr[data-obligation-id="{obligation_id}"]')
    expect(row).to_have_attribute("data-status", "open")

    note = "Settled by a script while the console was open."
    response = server.post(
        f"/api/fiction/plans/{plan_id}/persona-obligations/{obligation_id}/resolve",
        {
            "action": "resolve",
            "notes": note,
            "agent_id": server.get(f"/api/fiction/plans/{plan_id}")["agent_id"],
        },
    )
    assert response.status_code == 200, response.text

    expect(row).to_have_attribute("data-status", "resolved")
    expect(row).to_contain_text(note)
    page.wait_for_function("id => window.__obligationEvents.includes(id)", arg=obligation_id)
    assert_not_reloaded(page)
    screenshot(page, "live-obligation-resolved")


def test_a_delivery_status_change_appears_on_the_open_deliveries_page(
    admin_page: Any, server: ServerProcess, held_receiver: HeldReceiver
) -> None:
    page = admin_page
    open_live(page, f"{server.url}/deliveries?receiver={HELD_RECEIVER}")
    response = server.post(
        "/api/v2/alerts",
        [{"labels": {"alertname": HELD_ALERT_ID, "severity": "info"}, "annotations": {"summary": "held"}}],
    )
    assert response.status_code == 200, response.text

    retrying = page.locator('#deliveries-list tr[data-status="failed"]')
    expect(retrying).to_have_count(1, timeout=20_000)
    expect(retrying).to_contain_text("503")
    delivery_id = retrying.get_attribute("data-delivery-id")
    held_receiver.release()
    expect(page.locator(f'#deliveries-list tr[data-delivery-id="{delivery_id}"]')).to_have_attribute(
        "data-status", "delivered", timeout=20_000
    )
    assert_not_reloaded(page)
    screenshot(page, "live-delivery-delivered")
