"""The console's Acknowledge form (alert page) and "Send a test alert" (Routes page) in a real browser, at
desktop and phone widths: the forms post with CSRF, and the page shows who is on the alert and each
receiver's answer to the drill."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import DESKTOP, PHONE, playwright_sync_api, screenshot, signed_in_page
from tests.support.server import ServerProcess

expect = playwright_sync_api().expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}


def no_sideways_scroll(page: Any) -> None:
    overflow = page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"


def probe_alert(server: ServerProcess, name: str) -> str:
    """A firing alert of its own (through the ingest), so acknowledging it touches no other test's alert."""
    posted = server.post("/api/v2/alerts", [{"labels": {"alertname": "console:ack-probe", "probe": name}}])
    assert posted.status_code == 200, posted.text
    [fingerprint] = posted.json()["fired"]
    return str(fingerprint)


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=list(VIEWPORTS))
def test_acknowledge_an_alert_with_owner_and_note(
    browser: Any, server: ServerProcess, login_url: str, viewport: str
) -> None:
    fingerprint = probe_alert(server, viewport)
    with signed_in_page(browser, server, login_url, VIEWPORTS[viewport]) as page:
        page.goto(f"{server.url}/alerts/{fingerprint}")
        signed_in_as = re.sub(r"^signed in with token ", "", page.locator(".who-am-i").get_attribute("title"))
        section = page.locator("#acknowledgement")
        expect(section).to_contain_text("Nobody has acknowledged this alert yet.")
        expect(section.get_by_label("Owner")).to_have_value(signed_in_as)
        section.get_by_label(re.compile("^Note")).fill("Rolling back the search tool")
        no_sideways_scroll(page)
        section.get_by_role("button", name="Acknowledge").click()

        page.wait_for_url(f"{server.url}/alerts/{fingerprint}")
        expect(page.locator("#ack-shown")).to_contain_text(f"Acknowledged by {signed_in_as} at")
        expect(page.locator("#ack-shown")).to_contain_text("Rolling back the search tool")
        screenshot(page, f"alert-acknowledged-{viewport}")
    acknowledgement = server.get(f"/api/alerts/{fingerprint}")["acknowledgement"]
    assert (acknowledgement["by"], acknowledgement["note"]) == (signed_in_as, "Rolling back the search tool")


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=list(VIEWPORTS))
def test_send_a_test_alert_from_the_routes_page(
    browser: Any, server: ServerProcess, login_url: str, viewport: str
) -> None:
    with signed_in_page(browser, server, login_url, VIEWPORTS[viewport]) as page:
        page.goto(f"{server.url}/routes")
        page.get_by_label("Receiver", exact=True).select_option("demo-inbox")
        no_sideways_scroll(page)
        page.get_by_role("button", name="Send a test alert").click()

        expect(page.get_by_role("heading", name="Drill result")).to_be_visible()
        row = page.locator('#drill-receivers tr[data-receiver="demo-inbox"]')
        expect(row).to_contain_text("delivered")
        expect(row).to_contain_text(re.compile(r"\d+ ms"))
        expect(page.locator("#drill-receivers tbody tr")).to_have_count(1)
        expect(page.locator("#drill-summary")).to_contain_text("storyloom:drill")
        no_sideways_scroll(page)
        screenshot(page, f"drill-result-{viewport}")
