"""The console's server side over HTTP (no browser): sign-in cookies, CSRF, redirects, every page, SSE reads."""

from __future__ import annotations

import re
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from storyloom.alerting.publish import AlertSignal, fire, resolve
from storyloom.api.app import create_app
from storyloom.api.routers.events import events_after, health_status, latest_event_id
from storyloom.clock import FrozenClock
from storyloom.console.charts import queue_series, window
from storyloom.console.render import STATIC_DIR
from storyloom.console.runbooks import render_runbook, runbook_path
from storyloom.domain.catalog import CATALOG
from storyloom.pipeline.templates_store import seed_templates
from storyloom.runtime import Runtime
from storyloom.services.actors import Actor
from storyloom.services.catalog import create_agent, create_persona
from storyloom.services.plans import PlanRequest, create_plan
from storyloom.services.silences import create_silence
from storyloom.services.tokens import create_token
from storyloom.store.db import Database
from storyloom.store.tables import demo_inbox
from tests.conftest import make_config

PAGES = ["/", "/plans", "/alerts", "/alerts?state=all", "/silences", "/routes", "/deliveries", "/inbox"]


def _token(rt: Runtime, role: str) -> str:
    with rt.db.begin() as conn:
        token, _ = create_token(conn, name=f"{role}-user", role=role, agent_ids=[], now=rt.clock.now())
    return token


@pytest.fixture
def world(rt: Runtime) -> dict[str, Any]:
    """Planner templates, an author persona, its agent, a plan, and one firing phase-failed alert on it."""
    now = rt.clock.now()
    with rt.db.begin() as conn:
        seed_templates(conn, now)
        persona = create_persona(conn, name="June Arden", kind="author", summary=None, now=now)
        agent = create_agent(
            conn, name="June's agent", persona_id=persona["id"], provider="offline", model="m1", now=now
        )
        plan = create_plan(
            conn,
            PlanRequest(
                name="Ash Lantern", premise="Lamplighters.", persona_id=persona["id"], agent_id=agent["id"]
            ),
            default_provider="offline",
            default_model="m1",
            max_premise_chars=10_000,
            now=now,
        )
        labels = {
            "plan_id": plan["id"],
            "backlog_id": "vision-plan",
            "task_id": "task_x",
            "phase": "vision",
            "agent_id": agent["id"],
            "persona_id": persona["id"],
            "provider": "offline",
            "model": "m1",
        }
        fingerprint = fire(conn, AlertSignal("planner:phase-failed", labels, "vision-plan failed"), now)
    return {"plan_id": plan["id"], "agent": agent, "persona": persona, "fingerprint": fingerprint}


@pytest.fixture
def client(client: TestClient) -> TestClient:
    """The shared client, not following redirects: these tests look at where the console sends the browser."""
    client.follow_redirects = False
    return client


def _set_cookies(response: Any) -> dict[str, str]:
    """Each Set-Cookie header by cookie name (the raw header, to check its attributes)."""
    out = {}
    for header in response.headers.get_list("set-cookie"):
        name = header.split("=", 1)[0]
        out[name] = header
    return out


def _signed_in(client: TestClient, token: str) -> TestClient:
    response = client.get(f"/login?token={token}")
    assert response.status_code == 303, response.text
    return client


def test_login_url_sets_httponly_samesite_session_and_csrf_cookies(client: TestClient, rt: Runtime) -> None:
    response = client.get(f"/login?token={_token(rt, 'admin')}")
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookies = _set_cookies(response)
    session = cookies["storyloom_session"].lower()
    assert "httponly" in session and "samesite=strict" in session and "path=/" in session
    assert "secure" not in session  # plain http
    csrf = cookies["storyloom_csrf"].lower()
    assert "samesite=strict" in csrf and "httponly" not in csrf


def test_login_over_https_marks_the_cookies_secure(rt: Runtime) -> None:
    client = TestClient(create_app(rt), base_url="https://console.test", follow_redirects=False)
    response = client.get(f"/login?token={_token(rt, 'viewer')}")
    assert response.status_code == 303
    assert all("secure" in header.lower() for header in _set_cookies(response).values())


def test_login_with_a_bad_token_stays_on_the_form(client: TestClient) -> None:
    response = client.get("/login?token=sl_not_a_token")
    assert response.status_code == 401
    assert "invalid or revoked" in response.text
    assert "storyloom_session" not in _set_cookies(response)


def test_login_form_post_needs_the_csrf_field(client: TestClient, rt: Runtime) -> None:
    form = client.get("/login")
    assert form.status_code == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf and client.cookies.get("storyloom_csrf") == csrf.group(1)
    token = _token(rt, "operator")
    refused = client.post("/login", data={"token": token, "csrf_token": "forged"})
    assert refused.status_code == 403
    assert "storyloom_session" not in _set_cookies(refused)
    accepted = client.post("/login", data={"token": token, "csrf_token": csrf.group(1), "next": "/plans"})
    assert accepted.status_code == 303 and accepted.headers["location"] == "/plans"
    assert "storyloom_session" in _set_cookies(accepted)


def test_login_never_redirects_off_site(client: TestClient, rt: Runtime) -> None:
    response = client.get(f"/login?token={_token(rt, 'admin')}&next=//evil.example/x")
    assert response.headers["location"] == "/"


def test_unauthenticated_pages_redirect_to_login(client: TestClient, world: dict[str, Any]) -> None:
    for path in [*PAGES, f"/plans/{world['plan_id']}", "/runbooks/planner:phase-failed"]:
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login"), path
    assert client.get("/plans").headers["location"] == "/login?next=%2Fplans"


def test_logout_clears_the_cookies_and_needs_csrf(client: TestClient, rt: Runtime) -> None:
    _signed_in(client, _token(rt, "admin"))
    assert client.post("/logout", data={"csrf_token": "wrong"}).status_code == 403
    response = client.post("/logout", data={"csrf_token": client.cookies["storyloom_csrf"]})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    cleared = _set_cookies(response)
    for name in ("storyloom_session", "storyloom_csrf"):
        morsel = SimpleCookie(cleared[name])[name]
        assert morsel.value in ("", '""') and morsel["max-age"] == "0"
    client.cookies.clear()
    assert client.get("/").status_code == 303


def test_cookie_authenticated_api_writes_need_the_csrf_header(
    client: TestClient, rt: Runtime, world: dict[str, Any]
) -> None:
    _signed_in(client, _token(rt, "admin"))
    body = {"name": "Kit", "kind": "character"}
    refused = client.post("/api/personas", json=body)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    wrong = client.post("/api/personas", json=body, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    accepted = client.post(
        "/api/personas",
        json=body,
        headers={"X-CSRF-Token": client.cookies["storyloom_csrf"], "X-Console-Client": "storyloom-console"},
    )
    assert accepted.status_code == 201, accepted.text
    assert client.get("/api/personas").status_code == 200  # reads need no CSRF


def test_every_page_renders_for_an_admin(client: TestClient, rt: Runtime, world: dict[str, Any]) -> None:
    _signed_in(client, _token(rt, "admin"))
    paths = [
        *PAGES,
        f"/plans/{world['plan_id']}",
        f"/plans/{world['plan_id']}?obligations=all",
        f"/alerts/{world['fingerprint']}",
        "/runbooks/planner:phase-failed",
        "/runbooks/planner-phase-failed",
    ]
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:500]}"
        assert 'id="live-indicator"' in response.text and 'id="status-chip"' in response.text, path
        assert '<script type="module" src="/static/console.js">' in response.text
    overview = client.get("/").text
    row = re.search(r'<tr class="incident[^>]*data-alert-id="planner:phase-failed".*?</tr>', overview, re.S)
    assert row and "Ash Lantern" in row.group(0)  # the plan's name, not its id
    assert f'href="/alerts/{world["fingerprint"]}"' in row.group(0)
    alert = client.get(f"/alerts/{world['fingerprint']}").text
    assert "June&#39;s agent" in alert and "June Arden" in alert  # agent and persona, not just ids
    assert 'data-action="resume"' in alert and 'data-backlog-id="vision-plan"' in alert
    assert 'data-action="cancel"' in alert
    plan = client.get(f"/plans/{world['plan_id']}").text
    assert "June&#39;s agent" in plan and "Ash Lantern" in plan
    for asset in ("console.js", "api.js", "live.js", "dialogs.js", "console.css"):
        assert client.get(f"/static/{asset}").status_code == 200, asset


def test_unknown_things_are_404_pages(client: TestClient, rt: Runtime) -> None:
    _signed_in(client, _token(rt, "admin"))
    assert client.get("/plans/plan_missing").status_code == 404
    assert client.get("/alerts/0000000000000000").status_code == 404
    assert client.get("/runbooks/not:an-alert").status_code == 404
    assert client.get("/runbooks/..%2F..%2Fpyproject").status_code == 404


def test_a_viewer_sees_disabled_actions_with_the_reason(
    client: TestClient, rt: Runtime, world: dict[str, Any]
) -> None:
    _signed_in(client, _token(rt, "viewer"))
    page = client.get(f"/alerts/{world['fingerprint']}").text
    assert "viewer role: read-only" in page
    for action in ("resume", "cancel", "silence"):
        button = re.search(rf'<button[^>]*data-action="{action}"[^>]*>', page)
        assert button and "disabled" in button.group(0), action


def test_every_catalog_alert_has_a_runbook_that_renders() -> None:
    for alert_id in CATALOG:
        assert runbook_path(alert_id) is not None, alert_id
        found = render_runbook(alert_id)
        assert found is not None and alert_id in found[0]
    assert runbook_path("../../etc/passwd") is None


def test_the_stream_reads_events_after_a_cursor_and_a_health_status(
    rt: Runtime, world: dict[str, Any]
) -> None:
    with rt.db.read() as conn:
        latest = latest_event_id(conn)
        rows = events_after(conn, 0)
        health = health_status(conn)
    assert latest >= rows[-1]["id"] > 0
    assert {r["event"] for r in rows} >= {"backlog", "alert"}
    assert all(r["data"]["event_id"] == r["id"] for r in rows)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    with rt.db.read() as conn:
        assert events_after(conn, latest) == []
    assert health["status"] == "degraded" and health["firing"] == {"error": 1}


def test_the_stream_needs_a_viewer_and_starts_with_hello_and_health(
    client: TestClient, rt: Runtime, world: dict[str, Any]
) -> None:
    assert client.get("/api/events/stream").status_code == 401
    token = _token(rt, "viewer")
    lines: list[str] = []
    with client.stream(
        "GET", "/api/events/stream?after=0", headers={"Authorization": f"Bearer {token}"}
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            lines.append(line)
            if line.startswith("event: alert"):
                break
    assert lines[:2] == ["id: 0", "event: hello"]
    assert "event: health" in lines and "event: backlog" in lines


def test_pages_accept_a_bearer_token_too(client: TestClient, rt: Runtime) -> None:
    headers = {"Authorization": f"Bearer {_token(rt, 'viewer')}"}
    assert client.get("/runbooks/planner:phase-failed", headers=headers).status_code == 200
    assert client.get("/plans", headers={"Authorization": "Bearer sl_wrong"}).status_code == 303


# --- the alerts page's filters and states -------------------------------------------------------------

ROUTED_ALERTING = {
    "receivers": [
        {"name": "ops", "url": "http://127.0.0.1:9/ops"},
        {"name": "pager", "url": "http://127.0.0.1:9/pager"},
    ],
    "route": {
        "receiver": "ops",
        "routes": [{"receiver": "pager", "matchers": ['severity=~"error|critical"']}],
    },
    "inhibit_rules": [
        {
            "source_matchers": ['alert_id="planner:provider-unavailable"'],
            "target_matchers": ['alert_id="planner:phase-failed"'],
            "equal": ["provider"],
        }
    ],
}


@pytest.fixture
def alerts_client(db: Database, clock: FrozenClock) -> tuple[TestClient, dict[str, str]]:
    """A signed-in console over five alerts, by name: errors page `pager`, the rest go to `ops`;
    `unavailable` inhibits `phase_failed` (same provider); `tool_failed` is resolved."""
    rt = Runtime(config=make_config(alerting=ROUTED_ALERTING), db=db, clock=clock)
    now = clock.now()
    signals = {
        "unavailable": AlertSignal("planner:provider-unavailable", {"provider": "openai"}, "provider down"),
        "phase_failed": AlertSignal(
            "planner:phase-failed", {"plan_id": "p1", "backlog_id": "b1", "provider": "openai"}, "failed"
        ),
        "stale": AlertSignal("backlog:stale", {"plan_id": "p2", "backlog_id": "b2"}, "stuck"),
        "open": AlertSignal("obligation:open", {"plan_id": "p1", "obligation_id": "o1"}, "open"),
        "tool_failed": AlertSignal("tool:failed", {"plan_id": "p1", "tool": "search"}, "tool broke"),
    }
    with rt.db.begin() as conn:
        fingerprints = {name: fire(conn, signal, now) for name, signal in signals.items()}
        resolve(conn, [fingerprints["tool_failed"]], now)
    return _signed_in(TestClient(create_app(rt), follow_redirects=False), _token(rt, "viewer")), fingerprints


def _listed(client: TestClient, query: str) -> dict[str, str]:
    """The alerts page's rows: fingerprint → the state it shows."""
    response = client.get(f"/alerts{query}")
    assert response.status_code == 200, response.text
    rows = re.findall(
        r'<tr data-fingerprint="([0-9a-f]+)" data-alert-id="[^"]*" data-state="([^"]*)"', response.text
    )
    return dict(rows)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"unavailable", "stale", "open"}),  # firing and neither silenced nor inhibited
        ("?severity=error", {"unavailable"}),
        ("?severity=warning", {"stale"}),
        ("?alert_id=obligation:open", {"open"}),
        ("?plan_id=p1", {"open"}),
        ("?plan_id=p2", {"stale"}),
        ("?receiver=pager", {"unavailable"}),
        ("?receiver=ops", {"stale", "open"}),
        ("?state=inhibited", {"phase_failed"}),
        ("?state=resolved", {"tool_failed"}),
        ("?state=all&plan_id=p1", {"phase_failed", "open", "tool_failed"}),
        ("?state=all&plan_id=p1&receiver=ops", {"open", "tool_failed"}),
    ],
)
def test_the_alerts_page_filters_narrow_the_list(
    alerts_client: tuple[TestClient, dict[str, str]], query: str, expected: set[str]
) -> None:
    client, fingerprints = alerts_client
    names = {fingerprint: name for name, fingerprint in fingerprints.items()}
    assert {names[fp] for fp in _listed(client, query)} == expected


def test_the_inhibited_view_names_the_alert_that_inhibits(
    alerts_client: tuple[TestClient, dict[str, str]],
) -> None:
    client, fingerprints = alerts_client
    assert _listed(client, "?state=inhibited") == {fingerprints["phase_failed"]: "inhibited"}
    page = client.get("/alerts?state=inhibited").text
    assert f"inhibited by {fingerprints['unavailable']}" in page


def _fire(rt: Runtime, alert_id: str, labels: dict[str, str], description: str = "x") -> str:
    with rt.db.begin() as conn:
        return fire(conn, AlertSignal(alert_id, labels, description), rt.clock.now())


def test_the_overview_lists_incidents_by_severity_then_age_with_silenced_ones_apart(
    client: TestClient, rt: Runtime, clock: FrozenClock, world: dict[str, Any]
) -> None:
    plan = {"plan_id": world["plan_id"]}
    clock.advance(timedelta(minutes=1))
    _fire(rt, "obligation:open", {**plan, "obligation_id": "ob_1"})  # info
    clock.advance(timedelta(minutes=1))
    _fire(rt, "planner:template-missing", {**plan, "step_id": "s1"})  # critical
    _fire(rt, "planner:template-missing", {**plan, "step_id": "s2"})  # same plan and id: one row
    _fire(rt, "tool:failed", {**plan, "tool": "search"})  # warning, to be silenced
    with rt.db.begin() as conn:
        create_silence(
            conn,
            Actor(name="ops", actor_id="t1", role="admin"),
            matchers=['alert_id="tool:failed"'],
            ends_at=clock.now() + timedelta(hours=2),
            comment="search is down upstream",
            now=clock.now(),
        )
    _signed_in(client, _token(rt, "admin"))
    overview = client.get("/").text
    firing = overview[overview.index('id="firing-alerts"') : overview.index('id="silenced-alerts"')]
    rows = re.findall(r'<tr class="incident[^"]*" data-alert-id="([^"]+)"[^>]*data-count="(\d+)"', firing)
    assert rows == [
        ("planner:template-missing", "2"),
        ("planner:phase-failed", "1"),
        ("obligation:open", "1"),
    ]
    assert '<span class="count" id="firing-count">4</span>' in overview
    alerts_page = client.get("/alerts").text
    assert "4 alerts firing." in alerts_page  # the same figure as the Overview's
    silenced = overview[overview.index('id="silenced-alerts"') :]
    assert 'data-alert-id="tool:failed"' in silenced and "search is down upstream" in silenced
    fingerprint = re.search(
        r'data-fingerprint="([^"]+)" data-alert-id="tool:failed"', client.get("/alerts?state=silenced").text
    )
    assert fingerprint
    detail = client.get(f"/alerts/{fingerprint.group(1)}").text
    assert 'data-action="silence"' not in detail
    assert "silenced until" in detail and "search is down upstream" in detail


def test_alert_descriptions_name_personas_instead_of_ids(
    client: TestClient, rt: Runtime, world: dict[str, Any]
) -> None:
    persona_id = world["persona"]["id"]
    fingerprint = _fire(
        rt,
        "obligation:open",
        {"plan_id": world["plan_id"], "obligation_id": "ob_2", "persona_id": persona_id},
        f"Obligation 'Return the lamp' (lamp) is open for persona {persona_id}",
    )
    _signed_in(client, _token(rt, "admin"))
    detail = client.get(f"/alerts/{fingerprint}").text
    description = re.search(r'<p class="desc">(.*?)</p>', detail)
    assert description and description.group(1).endswith("is open for persona June Arden")
    assert "Plan Ash Lantern" in detail


def test_an_owner_with_no_agent_or_persona_shows_nothing_rather_than_dashes(
    client: TestClient, rt: Runtime, world: dict[str, Any]
) -> None:
    fingerprint = _fire(rt, "backlog:contract-drift", {"plan_id": world["plan_id"], "code": "c1"})
    _signed_in(client, _token(rt, "admin"))
    detail = client.get(f"/alerts/{fingerprint}").text
    assert '<span class="k">agent</span>' not in detail and '<span class="k">persona</span>' not in detail


def _cancel(client: TestClient, world: dict[str, Any], headers: dict[str, str]) -> Any:
    return client.post(
        f"/plans/{world['plan_id']}/backlog/vision-plan/cancel",
        json={"agent_id": world["agent"]["id"], "notes": "wrong premise"},
        headers=headers,
    )


def test_the_console_cancel_needs_csrf_and_an_operator_then_cancels_and_logs(
    client: TestClient, rt: Runtime, world: dict[str, Any]
) -> None:
    _signed_in(client, _token(rt, "viewer"))
    csrf = {"X-CSRF-Token": client.cookies["storyloom_csrf"]}
    assert _cancel(client, world, csrf).status_code == 403
    client.cookies.clear()
    _signed_in(client, _token(rt, "operator"))
    refused = _cancel(client, world, {"X-CSRF-Token": "nope"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    done = _cancel(client, world, {"X-CSRF-Token": client.cookies["storyloom_csrf"]})
    assert done.status_code == 200, done.text
    assert done.json()["backlog_item"]["status"] == "cancelled"
    plan = client.get(f"/plans/{world['plan_id']}").text
    logged = re.search(r"<strong>cancel</strong>.*?</tr>", plan, re.S)
    assert logged and "wrong premise" in logged.group(0) and "console" in logged.group(0)
    bad = client.post(
        f"/plans/{world['plan_id']}/backlog/vision-plan/cancel",
        content=b"not json",
        headers={"X-CSRF-Token": client.cookies["storyloom_csrf"]},
    )
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")


def test_the_ops_inbox_shows_headers_as_text(client: TestClient, rt: Runtime) -> None:
    with rt.db.begin() as conn:
        conn.execute(
            insert(demo_inbox).values(
                webhook_id="msg_1",
                signature_valid=True,
                headers={"authorization": "<redacted>", "webhook-id": "msg_1"},
                body={"status": "firing", "alerts": [], "note": "café <b>"},
                received_at=rt.clock.now(),
            )
        )
    rt.demo = True
    _signed_in(client, _token(rt, "admin"))
    inbox = client.get("/inbox").text
    assert "\\u003c" not in inbox
    assert '<th scope="row">authorization</th><td><code>&lt;redacted&gt;</code></td>' in inbox
    assert "café &lt;b&gt;" in inbox


def test_favicon_ico_leads_to_the_console_icon(client: TestClient) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response.headers["location"] == "/static/favicon.svg"
    assert (STATIC_DIR / "favicon.svg").exists()


def test_the_queue_line_ends_at_the_depth_the_card_prints(rt: Runtime, world: dict[str, Any]) -> None:
    with rt.db.read() as conn:
        series = queue_series(conn, window(conn, rt.clock.now()), rt.clock.now())
    assert series["depth"][-1] == series["depth_now"]
