"""The console defends itself: security headers, server-side sessions, failed-auth limits, admin token length."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from storyloom.api.app import create_app
from storyloom.clock import FrozenClock
from storyloom.runtime import Runtime
from storyloom.services.sessions import open_session
from storyloom.services.tokens import MIN_ADMIN_TOKEN_CHARS, authenticate, create_token, token_hash
from storyloom.store.db import Database
from storyloom.store.tables import api_tokens, console_sessions
from tests.conftest import make_config
from tests.support.server import free_port, running_server

CONSOLE_PAGES = ["/", "/plans", "/alerts", "/silences", "/routes", "/deliveries", "/inbox"]
LIMITED = {"failed_auth": {"burst": 3, "refill_every": "1m"}}


def _token(rt: Runtime, role: str = "admin") -> str:
    with rt.db.begin() as conn:
        token, _ = create_token(conn, name=f"{role}-user", role=role, agent_ids=[], now=rt.clock.now())
    return token


def _runtime(db: Database, clock: FrozenClock, **security: Any) -> Runtime:
    return Runtime(config=make_config(security=security), db=db, clock=clock)


def _client(rt: Runtime, **kwargs: Any) -> TestClient:
    return TestClient(create_app(rt), follow_redirects=False, **kwargs)


def _sign_in(client: TestClient, token: str) -> str:
    """Sign in through the `?token=` URL; returns the session cookie's value."""
    response = client.get(f"/login?token={token}")
    assert response.status_code == 303, response.text
    return str(client.cookies["storyloom_session"])


# --- headers ------------------------------------------------------------------------------------------


def _policy(response: Any) -> dict[str, str]:
    """The Content-Security-Policy as {directive: sources}."""
    directives = (d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";"))
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives}


def _assert_hardened(response: Any, where: str) -> None:
    policy = _policy(response)
    assert policy["script-src"] == "'self'", where
    assert policy["style-src"] == "'self'", where
    assert policy["frame-ancestors"] == "'none'", where
    assert "unsafe-inline" not in response.headers["content-security-policy"], where
    assert response.headers["x-frame-options"] == "DENY", where
    assert response.headers["x-content-type-options"] == "nosniff", where
    assert response.headers["referrer-policy"] in ("same-origin", "no-referrer"), where


def test_every_kind_of_response_carries_the_security_headers(rt: Runtime) -> None:
    client = _client(rt)
    token = _token(rt)
    responses = {
        "login form": client.get("/login"),
        "bad sign-in": client.get("/login?token=sl_nope"),
        "redirect to login": client.get("/plans"),
        "static script": client.get("/static/console.js"),
        "API 401 problem": client.get("/api/alerts"),
        "API 404": client.get("/api/nothing-here"),
        "OpenAPI document": client.get("/openapi.json"),
        "healthz": client.get("/healthz"),
    }
    _sign_in(client, token)
    responses |= {f"page {path}": client.get(path) for path in CONSOLE_PAGES}
    responses["API JSON"] = client.get("/api/alerts")
    for where, response in responses.items():
        _assert_hardened(response, where)
    assert responses["API JSON"].status_code == 200 and responses["page /"].status_code == 200


def test_swagger_ui_is_under_the_same_strict_policy(rt: Runtime) -> None:
    """/docs loads every script and stylesheet from Storyloom itself and runs none inline."""
    response = _client(rt).get("/docs")
    assert response.status_code == 200
    policy = _policy(response)
    assert policy["script-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", response.text)
    sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert sources and all(src.startswith("/") for src in sources), sources


def test_console_pages_have_no_inline_script_style_or_event_handlers(rt: Runtime) -> None:
    """What the console's CSP would block: `<script>` without src, `on*=` handlers, `style=` attributes."""
    client = _client(rt)
    html = {"/login": client.get("/login").text}
    _sign_in(client, _token(rt))
    html |= {path: client.get(path).text for path in [*CONSOLE_PAGES, "/runbooks/planner:phase-failed"]}
    for path, text in html.items():
        assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", text), path
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", text), path
        assert not re.search(r"<[^>]+\sstyle\s*=", text), path
        assert "<style" not in text and "javascript:" not in text, path


# --- sessions -----------------------------------------------------------------------------------------


def test_the_cookie_holds_a_random_session_id_stored_only_hashed(rt: Runtime) -> None:
    client = _client(rt)
    token = _token(rt)
    response = client.get(f"/login?token={token}")
    assert all(token not in header for header in response.headers.get_list("set-cookie"))
    session_id = str(client.cookies["storyloom_session"])
    assert session_id != token and len(session_id) >= 40
    with rt.db.read() as conn:
        rows = conn.execute(select(console_sessions)).mappings().all()
    assert len(rows) == 1
    row = rows[0]
    assert row["id_hash"] == token_hash(session_id) and row["token_hash"] == token_hash(token)
    assert session_id not in row.values() and token not in row.values()
    assert row["role"] == "admin" and row["revoked_at"] is None
    assert row["expires_at"] - row["created_at"] == timedelta(hours=12)  # the default lifetime
    assert client.get("/").status_code == 200


def test_a_session_expires_after_its_configured_lifetime(db: Database, clock: FrozenClock) -> None:
    rt = _runtime(db, clock, session_ttl="30m")
    client = _client(rt)
    response = client.get(f"/login?token={_token(rt)}")
    assert "max-age=1800" in response.headers["set-cookie"].lower()
    clock.advance(timedelta(minutes=29))
    assert client.get("/plans").status_code == 200
    assert client.get("/api/alerts").status_code == 200
    clock.advance(timedelta(minutes=1))
    assert client.get("/plans").headers["location"] == "/login?next=%2Fplans"
    expired = client.get("/api/alerts")
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


def test_logout_revokes_the_session_so_a_copied_cookie_stops_working(rt: Runtime) -> None:
    client = _client(rt)
    session_id = _sign_in(client, _token(rt))
    copy = _client(rt, cookies={"storyloom_session": session_id})
    assert copy.get("/").status_code == 200
    response = client.post("/logout", data={"csrf_token": client.cookies["storyloom_csrf"]})
    assert response.status_code == 303
    assert copy.get("/").status_code == 303
    assert copy.get("/api/alerts").status_code == 401
    with rt.db.read() as conn:
        assert conn.execute(select(console_sessions.c.revoked_at)).scalar_one() == rt.clock.now()


def test_revoking_the_token_ends_its_sessions(rt: Runtime) -> None:
    client = _client(rt)
    token = _token(rt, "operator")
    _sign_in(client, token)
    assert client.get("/").status_code == 200
    with rt.db.begin() as conn:
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.token_hash == token_hash(token))
            .values(revoked_at=rt.clock.now())
        )
    assert client.get("/").status_code == 303


def test_expired_sessions_are_purged_when_a_new_one_opens(rt: Runtime) -> None:
    token = _token(rt)
    actor = authenticate(rt.db, token, source="console")
    assert actor is not None
    open_session(rt.db, token, actor, ttl=timedelta(minutes=5), now=rt.clock.now())
    later = rt.clock.now() + timedelta(minutes=10)
    open_session(rt.db, token, actor, ttl=timedelta(minutes=5), now=later)
    with rt.db.read() as conn:
        remaining = conn.execute(select(console_sessions.c.expires_at)).scalars().all()
    assert remaining == [later + timedelta(minutes=5)]


def test_cookies_are_secure_when_the_public_url_is_https(db: Database, clock: FrozenClock) -> None:
    config = make_config(public_url="https://ops.example.com")
    client = _client(Runtime(config=config, db=db, clock=clock))
    with db.begin() as conn:
        token, _ = create_token(conn, name="a", role="admin", agent_ids=[], now=clock.now())
    response = client.get(f"/login?token={token}")  # reached over plain http behind a TLS proxy
    cookies = {c.split("=", 1)[0]: c.lower() for c in response.headers.get_list("set-cookie")}
    assert set(cookies) == {"storyloom_session", "storyloom_csrf"}
    assert all("; secure" in c and "samesite=strict" in c for c in cookies.values())
    assert "httponly" in cookies["storyloom_session"] and "httponly" not in cookies["storyloom_csrf"]


def test_a_session_without_the_csrf_header_cannot_write(rt: Runtime) -> None:
    client = _client(rt)
    _sign_in(client, _token(rt))
    body = {"name": "Kit", "kind": "character"}
    assert client.post("/api/personas", json=body).status_code == 403
    csrf = {"X-CSRF-Token": client.cookies["storyloom_csrf"]}
    assert client.post("/api/personas", json=body, headers=csrf).status_code == 201


# --- failed authentication limits ---------------------------------------------------------------------


def _bad(client: TestClient) -> Any:
    return client.get("/api/alerts", headers={"Authorization": "Bearer sl_guess"})


def test_bad_bearer_tokens_get_429_with_retry_after_after_a_burst(db: Database, clock: FrozenClock) -> None:
    rt = _runtime(db, clock, **LIMITED)
    client = _client(rt)
    for _ in range(20):
        assert client.get("/api/alerts").status_code == 401  # no token at all: not counted
    assert [_bad(client).status_code for _ in range(3)] == [401, 401, 401]
    limited = _bad(client)
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.headers["retry-after"] == "60"
    body = limited.json()
    assert body["status"] == 429 and body["title"] and "retry in 60 s" in body["detail"]
    assert "sl_guess" not in limited.text
    clock.advance(timedelta(seconds=45))
    assert _bad(client).headers["retry-after"] == "15"
    clock.advance(timedelta(seconds=15))
    assert _bad(client).status_code == 401  # one failure back per refill_every
    assert _bad(client).status_code == 429


def test_a_valid_token_is_never_locked_out_even_from_a_limited_address(
    db: Database, clock: FrozenClock
) -> None:
    rt = _runtime(db, clock, **LIMITED)
    client = _client(rt)
    token = _token(rt, "viewer")
    for _ in range(10):
        _bad(client)
    assert _bad(client).status_code == 429
    good = {"Authorization": f"Bearer {token}"}
    assert all(client.get("/api/alerts", headers=good).status_code == 200 for _ in range(5))
    assert client.get("/plans", headers=good).status_code == 200  # console pages with a bearer token
    assert client.get(f"/login?token={token}").status_code == 303  # and signing in
    assert _bad(client).status_code == 429  # success does not refill a guesser's allowance


def test_limits_are_per_client_address(db: Database, clock: FrozenClock) -> None:
    rt = _runtime(db, clock, **LIMITED)
    app = create_app(rt)
    guesser = TestClient(app, client=("192.0.2.10", 40000))
    neighbour = TestClient(app, client=("192.0.2.11", 40000))
    for _ in range(3):
        _bad(guesser)
    assert _bad(guesser).status_code == 429
    assert _bad(neighbour).status_code == 401


def test_failed_sign_ins_are_limited_too(db: Database, clock: FrozenClock) -> None:
    rt = _runtime(db, clock, **LIMITED)
    client = _client(rt)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert csrf
    form = {"token": "sl_guess", "csrf_token": csrf.group(1)}
    html = {"Accept": "text/html"}
    assert [client.post("/login", data=form, headers=html).status_code for _ in range(3)] == [401] * 3
    page = client.post("/login", data=form, headers=html)
    assert page.status_code == 429 and page.headers["retry-after"] == "60"
    assert "Too many failed sign-ins" in page.text and page.headers["content-type"].startswith("text/html")
    scripted = client.post("/login", data=form)  # a client that does not ask for HTML gets problem+json
    assert scripted.status_code == 429 and scripted.headers["content-type"] == "application/problem+json"
    assert client.post("/login", data={**form, "token": ""}, headers=html).status_code == 422  # not counted
    assert client.get("/login?token=sl_guess").status_code == 429
    signed_in = client.post("/login", data={**form, "token": _token(rt)}, headers=html)
    assert signed_in.status_code == 303 and "storyloom_session" in client.cookies


# --- the admin token's minimum length -----------------------------------------------------------------


@pytest.mark.parametrize("role", ["run", "api", "worker"])
def test_a_short_admin_token_refuses_to_start(role: str, tmp_path: Path) -> None:
    env = {**os.environ, "STORYLOOM_DATA_DIR": str(tmp_path), "STORYLOOM_ADMIN_TOKEN": "x" * 23}
    for name in ("STORYLOOM_CONFIG", "STORYLOOM_DATABASE_URL"):
        env.pop(name, None)
    args = [sys.executable, "-m", "storyloom", role]
    if role != "worker":
        args += ["--port", str(free_port())]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    message = " ".join(result.stderr.split())
    assert f"STORYLOOM_ADMIN_TOKEN is 23 characters; it must be at least {MIN_ADMIN_TOKEN_CHARS}" in message
    assert "secrets.token_urlsafe(32)" in message and "x" * 23 not in result.stderr + result.stdout
    assert not (tmp_path / "storyloom.db").exists()


def test_a_short_admin_token_is_never_honoured(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORYLOOM_ADMIN_TOKEN", "y" * 23)
    assert _client(rt).get("/api/alerts", headers={"Authorization": f"Bearer {'y' * 23}"}).status_code == 401
    monkeypatch.setenv("STORYLOOM_ADMIN_TOKEN", "y" * 24)
    assert _client(rt).get("/api/alerts", headers={"Authorization": f"Bearer {'y' * 24}"}).status_code == 200


# --- a real `storyloom run` -----------------------------------------------------------------------------


def test_a_real_server_limits_a_token_guesser_but_not_its_admin(tmp_path: Path) -> None:
    """The issue's probe (a run of wrong bearer tokens, then of wrong sign-ins) over loopback meets 429."""
    config = {"security": {"failed_auth": {"burst": 10, "refill_every": "1h"}}}
    with running_server(tmp_path, config=config) as server, httpx.Client(base_url=server.url) as guesser:
        guesses = [
            guesser.get("/api/alerts", headers={"Authorization": f"Bearer sl_guess_{i}"}) for i in range(40)
        ]
        assert [r.status_code for r in guesses] == [401] * 10 + [429] * 30
        assert int(guesses[-1].headers["retry-after"]) > 3000
        _assert_hardened(guesses[-1], "429 over HTTP")
        sign_ins = [guesser.get("/login", params={"token": f"sl_{i}"}) for i in range(20)]
        assert {r.status_code for r in sign_ins} == {429}
        assert server.client.get("/api/alerts").status_code == 200  # the admin token, same address
        assert guesser.get("/api/alerts").status_code == 401  # no token: plain 401
