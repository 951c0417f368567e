"""The console's acting forms without scripts: acknowledge an alert (CSRF from the hidden field, operator
role) and show who is on it; a drill from the Routes page shows each receiver's answer."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from storyloom.alerting import publish
from storyloom.alerting.publish import AlertSignal
from storyloom.runtime import Runtime
from tests.support.plan_seed import token


@pytest.fixture
def client(client: TestClient) -> TestClient:
    client.follow_redirects = False
    return client


def signed_in(client: TestClient, rt: Runtime, role: str, name: str = "ops-ana") -> str:
    """Sign in as a new token of `role`; returns the CSRF value the pages put in their forms."""
    plain = token(rt, role, name=name)["Authorization"].removeprefix("Bearer ")
    assert client.get(f"/login?token={plain}").status_code == 303
    return client.cookies["storyloom_csrf"]


def fire(rt: Runtime) -> str:
    with rt.db.begin() as conn:
        signal = AlertSignal("tool:failed", {"plan_id": "plan_1", "tool": "search"}, "search timed out")
        return publish.fire(conn, signal, rt.clock.now())


def test_the_acknowledge_form_is_prefilled_and_shows_who_is_on_it_after_posting(
    client: TestClient, rt: Runtime
) -> None:
    csrf = signed_in(client, rt, "operator")
    fp = fire(rt)
    page = client.get(f"/alerts/{fp}").text
    assert re.search(r'id="ack-owner" name="owner" maxlength="200" value="ops-ana"', page)
    assert f'value="{csrf}"' in page

    posted = client.post(
        f"/alerts/{fp}/acknowledge", data={"csrf_token": csrf, "owner": "Bo", "note": "rolling back"}
    )

    assert posted.status_code == 303 and posted.headers["location"] == f"/alerts/{fp}"
    shown = client.get(f"/alerts/{fp}").text
    assert "Acknowledged by <strong>Bo</strong> at" in shown and ": rolling back" in shown
    for page in ("/", "/alerts"):  # the Overview's incident list, the Alerts table
        assert '<span class="small acked">Acknowledged by Bo</span>' in client.get(page).text, page
    taken = client.post(f"/alerts/{fp}/unacknowledge", data={"csrf_token": csrf})
    assert taken.status_code == 303
    assert "Nobody has acknowledged this alert yet." in client.get(f"/alerts/{fp}").text


def test_the_form_needs_the_csrf_field_and_the_operator_role(client: TestClient, rt: Runtime) -> None:
    fp = fire(rt)
    csrf = signed_in(client, rt, "operator")
    forged = client.post(f"/alerts/{fp}/acknowledge", data={"csrf_token": "forged", "note": "x"})
    assert forged.status_code == 403 and "CSRF" in forged.text

    viewer_csrf = signed_in(client, rt, "viewer", name="watcher")
    refused = client.post(f"/alerts/{fp}/acknowledge", data={"csrf_token": viewer_csrf, "note": "x"})
    assert refused.status_code == 403 and "operator role" in refused.text
    assert csrf != "" and "Acknowledged by" not in client.get(f"/alerts/{fp}").text


def test_an_invalid_note_is_refused_with_what_to_fix(client: TestClient, rt: Runtime) -> None:
    csrf = signed_in(client, rt, "operator")
    refused = client.post(f"/alerts/{fire(rt)}/acknowledge", data={"csrf_token": csrf, "note": "x" * 2001})
    assert refused.status_code == 422 and "body.note" in refused.text and "2000" in refused.text


def test_a_drill_without_a_routing_tree_is_refused_with_why(client: TestClient, rt: Runtime) -> None:
    csrf = signed_in(client, rt, "operator")
    assert 'action="/routes/drill"' in client.get("/routes").text

    shown = client.post("/routes/drill", data={"csrf_token": csrf})

    assert shown.status_code == 409 and "no routing tree" in shown.text


def test_a_form_posted_without_a_session_goes_to_sign_in_and_back(client: TestClient, rt: Runtime) -> None:
    fp = fire(rt)
    response = client.post(f"/alerts/{fp}/acknowledge", data={"csrf_token": "x", "note": "on it"})
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next=%2Falerts%2F{fp}"
