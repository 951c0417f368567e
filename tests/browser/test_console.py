"""The Ops console in a real browser, used as an operator would, against a real `storyloom run --demo`.

The tests share one server and run in file order, like one operator's session: look, get refused as a
viewer, resume the failed work, settle obligations, silence and replay. Assertions wait (Playwright's
`expect`); nothing sleeps.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import DEAD_RECEIVER, playwright_sync_api, screenshot
from tests.support.server import ADMIN_TOKEN, ServerProcess, wait_for

expect = playwright_sync_api().expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

AGENT_NAME = "Mara's planning agent"
PERSONA_NAME = "Mara Quill"


def items(payload: Any) -> list[dict[str, Any]]:
    return payload if isinstance(payload, list) else payload.get("items", [])


def backlog_item(server: ServerProcess, plan_id: str, backlog_id: str) -> dict[str, Any]:
    return next(
        i for i in server.get(f"/api/fiction/plans/{plan_id}/backlog") if i["backlog_id"] == backlog_id
    )


def test_sign_in_shows_the_failure_alert_with_ids_and_owner(
    admin_page: Any, server: ServerProcess, plan_id: str
) -> None:
    page = admin_page
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["storyloom_session"]["httpOnly"] is True
    assert cookies["storyloom_session"]["sameSite"] == "Strict"
    assert cookies["storyloom_csrf"]["httpOnly"] is False

    expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
    expect(page.locator("#status-chip")).to_contain_text(re.compile("degraded|critical"))
    plan = server.get(f"/api/fiction/plans/{plan_id}")
    incident = page.locator(f'tr.incident[data-alert-id="planner:phase-failed"][data-plan-id="{plan_id}"]')
    expect(incident).to_have_attribute("data-count", "3")  # the three failed items, one row
    expect(incident).to_contain_text(plan["name"])
    expect(page.locator("#slo-tiles .chart")).to_have_count(4)
    incident.locator("th a").click()

    item = backlog_item(server, plan_id, "scroll-1")
    row = page.locator('tr[data-alert-id="planner:phase-failed"]').filter(has_text="scroll-1")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(plan["name"])
    expect(row).to_contain_text(item["task_id"])
    expect(row).to_contain_text(AGENT_NAME)
    expect(row).to_contain_text(PERSONA_NAME)
    expect(row).to_contain_text(DEAD_RECEIVER)
    expect(row.get_by_role("link", name="runbook")).to_have_attribute(
        "href", "/runbooks/planner:phase-failed"
    )
    expect(row.get_by_role("button", name="Resume scroll-1")).to_be_enabled()
    expect(row.get_by_role("button", name="Cancel scroll-1")).to_be_enabled()
    expect(row.get_by_role("button", name=re.compile("^Silence"))).to_be_enabled()
    page.goto(server.url)
    expect(page.locator("#recent-failures")).to_contain_text("injected fault")
    screenshot(page, "overview")


def test_a_viewer_sees_everything_and_cannot_resume(
    viewer_page: Any, server: ServerProcess, plan_id: str
) -> None:
    page = viewer_page
    page.goto(f"{server.url}/plans/{plan_id}")
    expect(page.locator("#read-only-banner")).to_contain_text("viewer role: read-only")
    row = page.locator('tr[data-backlog-id="scroll-1"]')
    button = row.get_by_role("button", name="Resume scroll-1")
    expect(button).to_be_disabled()
    expect(row).to_contain_text("viewer role: read-only")
    expect(row).to_contain_text(AGENT_NAME)

    # Force the button on: the API still refuses, and the refusal is shown in the dialog.
    button.evaluate("b => { b.disabled = false; b.removeAttribute('aria-disabled'); }")
    button.click()
    dialog = page.locator("#resume-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Resume item").click()
    expect(dialog.locator(".form-error")).to_contain_text("403")
    expect(dialog.locator(".form-error")).to_contain_text("operator role")
    screenshot(page, "viewer-refused")
    assert backlog_item(server, plan_id, "scroll-1")["status"] == "failed"


def test_resume_dialog_requires_fields_and_shows_contract_errors(
    admin_page: Any, server: ServerProcess, plan_id: str
) -> None:
    page = admin_page
    page.goto(f"{server.url}/plans/{plan_id}")
    item = backlog_item(server, plan_id, "scroll-2")
    opener = page.locator('tr[data-backlog-id="scroll-2"]').get_by_role("button", name="Resume scroll-2")
    opener.focus()
    page.keyboard.press("Enter")  # keyboard only
    dialog = page.locator("#resume-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Agent")).to_be_focused()
    expect(dialog.get_by_label("Agent")).to_have_value(item["agent_id"])
    expect(dialog.get_by_label("Provider")).to_have_value(item["provider"])
    expect(dialog.get_by_label("Model")).to_have_value(item["model"])

    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url) if request.url.endswith("/resume") else None)
    dialog.get_by_label("Model").fill("")
    dialog.get_by_role("button", name="Resume item").click()
    expect(dialog.locator("#resume-model-error")).to_contain_text("Required")
    expect(dialog.get_by_label("Model")).to_have_attribute("aria-invalid", "true")
    assert sent == [], "the dialog must not send a resume without a model"

    dialog.get_by_label("Model").fill(item["model"])
    dialog.get_by_label(re.compile("Expected task id")).fill("task_not_the_latest")
    dialog.get_by_role("button", name="Resume item").click()
    expect(dialog.locator(".form-error")).to_contain_text("409")
    expect(dialog.locator(".form-error")).to_contain_text("task")
    screenshot(page, "resume-contract-error")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()  # focus goes back where it was
    assert backlog_item(server, plan_id, "scroll-2")["status"] == "failed"


def test_the_next_resume_dialog_prefills_the_last_successful_resume(
    admin_page: Any, server: ServerProcess, plan_id: str
) -> None:
    page = admin_page
    plan = server.get(f"/api/fiction/plans/{plan_id}")
    created = server.post("/api/agents", {"name": "Mara's standby agent", "persona_id": plan["persona_id"]})
    assert created.status_code == 201, created.text
    standby = created.json()
    switched_model = "storyloom-offline-2"
    page.goto(f"{server.url}/plans/{plan_id}")
    dialog = page.locator("#resume-dialog")
    page.locator('tr[data-backlog-id="scroll-3"]').get_by_role("button", name="Resume scroll-3").click()
    dialog.get_by_label("Agent").select_option(standby["id"])
    dialog.get_by_label("Model").fill(switched_model)
    dialog.get_by_role("button", name="Resume item").click()
    expect(page.locator("#toast")).to_contain_text("Resumed scroll-3")

    page.goto(f"{server.url}/plans/{plan_id}")  # the next failure, on a later visit
    item = backlog_item(server, plan_id, "scroll-2")
    assert (item["agent_id"], item["model"]) != (standby["id"], switched_model)
    page.locator('tr[data-backlog-id="scroll-2"]').get_by_role("button", name="Resume scroll-2").click()
    expect(dialog.get_by_label("Agent")).to_have_value(standby["id"])
    expect(dialog.get_by_label("Provider")).to_have_value(item["provider"])
    expect(dialog.get_by_label("Model")).to_have_value(switched_model)
    expect(dialog).to_contain_text("last successful resume")
    screenshot(page, "resume-prefilled")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()


def test_resume_resolves_the_alert_and_the_plan_completes_without_reload(
    admin_page: Any, server: ServerProcess, plan_id: str
) -> None:
    page = admin_page
    page.goto(f"{server.url}/alerts?alert_id=planner:phase-failed")
    page.evaluate("window.__noReload = 'alerts'")
    row = page.locator('tr[data-alert-id="planner:phase-failed"]').filter(has_text="scroll-1")
    row.get_by_role("button", name="Resume scroll-1").click()
    dialog = page.locator("#resume-dialog")
    expect(dialog.get_by_label("Agent")).not_to_have_value("")
    dialog.get_by_role("button", name="Resume item").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#toast")).to_contain_text("Resumed scroll-1")
    expect(row).to_have_count(0, timeout=20_000)  # resolved, pushed over SSE
    assert page.evaluate("window.__noReload") == "alerts"

    page.goto(f"{server.url}/plans/{plan_id}")
    page.evaluate("window.__noReload = 'plan'")
    # scroll-3 was resumed by the previous test; the last failed item is resumed from its row.
    page.locator('tr[data-backlog-id="scroll-2"]').get_by_role("button", name="Resume scroll-2").click()
    dialog.get_by_role("button", name="Resume item").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#plan-status")).to_contain_text("plan complete", timeout=60_000)
    expect(page.locator('tr[data-backlog-id="scroll-3"]')).to_have_attribute("data-status", "complete")
    expect(page.locator('tr[data-backlog-id^="scene-"]').first).to_be_visible()
    expect(page.locator('#plan-alerts [data-alert-id="planner:phase-failed"]')).to_have_count(0)
    expect(page.locator("#actions")).to_contain_text("resume")
    expect(page.locator("#actions")).to_contain_text("console")  # the source the console's header marks
    assert page.evaluate("window.__noReload") == "plan"
    screenshot(page, "plan-complete")


def test_resolve_and_dismiss_obligations_with_notes(
    admin_page: Any, server: ServerProcess, plan_id: str
) -> None:
    page = admin_page
    page.goto(f"{server.url}/plans/{plan_id}")
    section = page.locator("#obligations")
    dialog = page.locator("#resolve-dialog")
    first = section.locator('tr[data-status="open"]').first
    resolved_id = first.get_attribute("data-obligation-id")
    first.get_by_role("button", name=re.compile("^Resolve")).click()
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Acting agent")).not_to_have_value("")
    dialog.get_by_role("button", name="Resolve", exact=True).click()  # no notes
    expect(dialog.locator("#resolve-notes-error")).to_contain_text("Required")
    expect(dialog.get_by_label("Notes")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "resolve-needs-notes")
    note = "Paid off in chapter 2: the oath breaks on the quay."
    dialog.get_by_label("Notes").fill(note)
    dialog.get_by_label(re.compile("Flag voice drift")).check()
    dialog.get_by_role("button", name="Resolve", exact=True).click()
    expect(dialog).to_be_hidden()
    expect(section.locator(f'tr[data-obligation-id="{resolved_id}"]')).to_have_count(0)

    second = section.locator('tr[data-status="open"]').first
    dismissed_id = second.get_attribute("data-obligation-id")
    second.get_by_role("button", name=re.compile("^Dismiss")).click()
    expect(dialog.get_by_role("radio", name=re.compile("^Dismiss"))).to_be_checked()
    dismissal = "No longer applies: the map subplot was cut."
    dialog.get_by_label("Notes").fill(dismissal)
    dialog.get_by_role("button", name="Dismiss", exact=True).click()
    expect(dialog).to_be_hidden()
    expect(section.locator(f'tr[data-obligation-id="{dismissed_id}"]')).to_have_count(0)

    page.goto(f"{server.url}/plans/{plan_id}?obligations=all#obligations")
    resolved = section.locator(f'tr[data-obligation-id="{resolved_id}"]')
    expect(resolved).to_have_attribute("data-status", "resolved")
    expect(resolved).to_contain_text("drift flagged")
    resolved.locator("summary").click()
    expect(resolved).to_contain_text(note)
    dismissed = section.locator(f'tr[data-obligation-id="{dismissed_id}"]')
    expect(dismissed).to_have_attribute("data-status", "dismissed")
    dismissed.locator("summary").click()
    expect(dismissed).to_contain_text(dismissal)
    screenshot(page, "obligations-history")
    listed = items(server.get(f"/api/fiction/plans/{plan_id}/persona-obligations", status="resolved"))
    notes = [n["note"] for o in listed if o["obligation_id"] == resolved_id for n in o["resolution_notes"]]
    assert note in notes


def test_create_and_expire_a_silence_from_an_alert(admin_page: Any, server: ServerProcess) -> None:
    page = admin_page
    page.goto(f"{server.url}/alerts")
    row = page.locator('tr[data-alert-id="obligation:open"]').first
    fingerprint = row.get_attribute("data-fingerprint")
    row.get_by_role("button", name=re.compile("^Silence")).click()
    dialog = page.locator("#silence-dialog")
    expect(dialog.get_by_label(re.compile("Matchers"))).to_have_value(
        re.compile(r'alert_id="obligation:open"')
    )
    dialog.get_by_label("Duration").fill("1h")
    dialog.get_by_label("Comment").fill("Known: the next pass settles these obligations.")
    dialog.get_by_role("button", name="Create silence").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(f'#alerts-list tr[data-fingerprint="{fingerprint}"]')).to_have_count(
        0
    )  # no longer firing-unmuted

    page.goto(f"{server.url}/alerts?state=silenced")
    silenced = page.locator(f'tr[data-fingerprint="{fingerprint}"]')
    expect(silenced).to_contain_text("silenced by")
    screenshot(page, "alerts-silenced")

    page.goto(f"{server.url}/silences")
    active = page.locator('tr[data-state="active"]').filter(has_text="obligation:open")
    expect(active).to_have_count(1)
    silence_id = active.get_attribute("data-silence-id")
    active.get_by_role("button", name=re.compile("^Expire")).click()
    expect(page.locator(f'tr[data-silence-id="{silence_id}"]')).to_have_attribute("data-state", "expired")
    screenshot(page, "silences")
    page.goto(f"{server.url}/alerts")
    expect(page.locator(f'tr[data-fingerprint="{fingerprint}"]')).to_have_attribute("data-state", "firing")


def require_api(server: ServerProcess, path: str) -> None:
    """Fail with the contract's words when an endpoint the console reads is not there."""
    status = server.client.get(path).status_code
    if status == 404:
        pytest.fail(f"GET {path} answers 404: the console needs this endpoint (docs/reference/http-api.md)")


def test_the_ops_inbox_shows_verified_notifications(admin_page: Any, server: ServerProcess) -> None:
    require_api(server, "/api/demo/inbox")
    wait_for(
        lambda: items(server.get("/api/demo/inbox")), timeout=30, message="a notification in the demo inbox"
    )
    page = admin_page
    page.goto(f"{server.url}/inbox")
    first = page.locator(".inbox-item").first
    expect(first).to_contain_text("signature verified")
    expect(first).to_contain_text(re.compile(r"planner:|obligation:|tool:"))
    screenshot(page, "inbox")


def test_replay_a_dead_delivery(admin_page: Any, server: ServerProcess) -> None:
    require_api(server, "/api/deliveries")

    def dead() -> list[dict[str, Any]]:
        return items(server.get("/api/deliveries", receiver=DEAD_RECEIVER, status="dead"))

    delivery = wait_for(dead, timeout=90, interval=0.3, message=f"a dead delivery to {DEAD_RECEIVER}")[0]
    delivery_id = delivery.get("delivery_id") or delivery["id"]
    page = admin_page
    page.goto(f"{server.url}/deliveries?receiver={DEAD_RECEIVER}&status=dead")
    row = page.locator(f'tr[data-delivery-id="{delivery_id}"]')
    expect(row).to_contain_text("dead")
    expect(row).to_contain_text("400")
    screenshot(page, "deliveries-dead")
    row.get_by_role("button", name=re.compile("^Replay")).click()
    expect(page.locator("#toast")).to_contain_text("replayed")
    page.goto(f"{server.url}/deliveries?receiver={DEAD_RECEIVER}")
    expect(page.locator("#deliveries-list")).to_contain_text(f"replay of {delivery_id}")
    screenshot(page, "deliveries")


def test_live_indicator_reconnects_after_the_stream_drops(admin_page: Any) -> None:
    page = admin_page
    live = page.locator("#live-indicator")
    expect(live).to_have_attribute("data-state", "live")
    connects = page.evaluate("window.__storyloomLive.connects")
    page.route("**/api/events/stream**", lambda route: route.abort())
    page.evaluate("window.__storyloomLive.drop()")
    expect(live).to_have_attribute("data-state", "reconnecting")
    expect(live).to_contain_text("reconnecting")
    screenshot(page, "live-reconnecting")
    page.unroute("**/api/events/stream**")
    expect(live).to_have_attribute("data-state", "live", timeout=15_000)
    assert page.evaluate("window.__storyloomLive.connects") > connects


def test_every_page_renders(admin_page: Any, server: ServerProcess, plan_id: str) -> None:
    page = admin_page
    page.goto(f"{server.url}/plans")
    expect(page.locator(f'tr[data-plan-id="{plan_id}"]')).to_contain_text(PERSONA_NAME)
    screenshot(page, "plans")

    page.goto(f"{server.url}/alerts?state=all")
    first = page.locator('tr[data-alert-id="planner:phase-failed"]').first
    expect(first).to_have_attribute("data-state", "resolved")
    screenshot(page, "alerts")
    first.get_by_role("link", name="planner:phase-failed").click()
    expect(page.locator("#alert-detail")).to_contain_text("State history")
    expect(page.locator("#alert-detail")).to_contain_text("resolved")
    screenshot(page, "alert-detail")

    page.goto(f"{server.url}/routes")
    secret = (server.data_dir / "demo-receiver.secret").read_text().strip()
    assert secret not in page.content()
    expect(page.locator(f'tr[data-receiver="{DEAD_RECEIVER}"]')).to_be_visible()
    page.get_by_label(re.compile("Labels, one")).fill("alert_id=planner:phase-failed\nseverity=error")
    page.get_by_role("button", name="Test routing").click()
    expect(page.locator("#route-test-result")).to_contain_text(DEAD_RECEIVER)
    screenshot(page, "routes")

    page.goto(f"{server.url}/runbooks/planner:phase-failed")
    expect(page.get_by_role("heading", name="planner:phase-failed", level=1)).to_be_visible()
    screenshot(page, "runbook")

    response = page.goto(f"{server.url}/runbooks/not-an-alert")
    assert response is not None and response.status == 404

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/login$"))
    page.goto(f"{server.url}/plans")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fplans$"))
    screenshot(page, "login")
    page.get_by_label("API token").fill("sl_not_a_real_token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("invalid or revoked")
    page.get_by_label("API token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.url}/plans")
