"""The API's door: the body cap (413 before parsing and auth), problem+json for every error (500 too),
bounded paging and unknown query parameters refused (FastAPI TestClient and a real loopback server)."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from storyloom.api.app import create_app
from storyloom.api.query import MAX_PAGE
from storyloom.clock import FrozenClock
from storyloom.config import ConfigError
from storyloom.runtime import Runtime
from storyloom.services.tokens import create_token
from storyloom.store.db import Database
from storyloom.store.tables import alerts
from tests.conftest import make_config
from tests.support.server import free_port, wait_for

LIMIT = 4096
CHROMIUM = Path("/usr/bin/chromium")
PROBLEM = "application/problem+json"


@pytest.fixture
def rt(db: Database, clock: FrozenClock) -> Runtime:
    return Runtime(config=make_config(limits={"max_body_bytes": LIMIT}), db=db, clock=clock)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt), raise_server_exceptions=False) as c:
        yield c


def bearer(rt: Runtime, role: str) -> dict[str, str]:
    with rt.db.begin() as conn:
        plain, _ = create_token(conn, name=f"{role}-token", role=role, agent_ids=[], now=rt.clock.now())
    return {"Authorization": f"Bearer {plain}"}


def stored_alerts(rt: Runtime) -> int:
    with rt.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(alerts)).scalar_one())


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


# --- the body cap -------------------------------------------------------------------------------------


def test_an_anonymous_oversized_body_gets_413_naming_the_limit_before_auth_or_parsing(
    client: TestClient,
) -> None:
    garbage = b"{" * (LIMIT + 1)  # not JSON: parsed, it would be a 422; read before auth, a 401
    body = assert_problem(client.post("/api/v2/alerts", content=garbage), 413)
    assert f"{LIMIT} bytes" in body["detail"] and "limits.max_body_bytes" in body["detail"]
    assert body["errors"] == [{"loc": ["body"], "msg": f"larger than {LIMIT} bytes"}]
    bad_token = {"Authorization": "Bearer sl_not_a_real_token_0123456789"}
    assert_problem(client.post("/api/v2/alerts", content=garbage, headers=bad_token), 413)


def test_a_body_within_the_limit_goes_through_and_one_past_it_stores_nothing(
    client: TestClient, rt: Runtime
) -> None:
    operator = bearer(rt, "operator")
    small = [{"labels": {"alertname": "fits", "v": "x" * 100}}]
    assert client.post("/api/v2/alerts", json=small, headers=operator).status_code == 200
    big = [{"labels": {"alertname": "too-big", "v": "x" * LIMIT}}]
    assert_problem(client.post("/api/v2/alerts", json=big, headers=operator), 413)
    assert stored_alerts(rt) == 1


def test_a_chunked_body_without_content_length_is_counted_as_it_is_read(
    client: TestClient, rt: Runtime
) -> None:
    chunks = (b"[" + b" " * 1000 for _ in range(10))  # a generator: sent chunked, no Content-Length
    response = client.post("/api/v2/alerts", content=chunks, headers=bearer(rt, "operator"))
    assert_problem(response, 413)


@pytest.fixture
def server(rt: Runtime) -> Iterator[int]:
    """The app under uvicorn on a loopback port, in this process."""
    port = free_port()
    instance = uvicorn.Server(
        uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    wait_for(lambda: instance.started, message="uvicorn to start")
    yield port
    instance.should_exit = True
    thread.join(timeout=30)


def test_a_real_server_answers_413_mid_stream_without_waiting_for_the_rest(server: int) -> None:
    """Over loopback: chunks past the limit, then no end; the 413 arrives while the body is still open."""
    with socket.create_connection(("127.0.0.1", server), timeout=30) as sock:
        sock.sendall(
            b"POST /api/v2/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"[" * 1024
        for _ in range(LIMIT // len(chunk) + 1):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            assert data, "the server closed without answering"
            answer += data
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413"), answer
    assert b"content-type: application/problem+json" in rest.lower()


def test_the_body_cap_is_a_checked_config_key() -> None:
    assert make_config().limits.max_body_bytes == 2 * 1024 * 1024
    with pytest.raises(ConfigError) as err:
        make_config(limits={"max_body_bytes": 0})
    assert err.value.problems[0].startswith("limits.max_body_bytes: ")


# --- every error is problem+json ----------------------------------------------------------------------


def test_an_unexpected_exception_is_a_500_problem_with_a_request_id_and_the_traceback_only_in_the_log(
    rt: Runtime,
) -> None:
    app = create_app(rt)

    def explode() -> None:
        raise RuntimeError("secret internals: sl_do_not_show_this_token_123456")

    app.add_api_route("/api/explode", explode)
    with structlog.testing.capture_logs() as logs, TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/api/explode")
    body = assert_problem(response, 500)
    request_id = response.headers["x-request-id"]
    assert body["request_id"] == request_id and request_id in body["detail"]
    assert "secret internals" not in response.text and "Traceback" not in response.text
    failed = [e for e in logs if e["event"] == "request failed"]
    assert len(failed) == 1 and failed[0]["request_id"] == request_id
    assert failed[0]["exc_info"] is True and failed[0]["path"] == "/api/explode"


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/deliveries", "page"),
        ("/api/fiction/plans/no-such-plan/persona-obligations", "page"),
        ("/api/fiction/plans/no-such-plan/persona-obligations", "page_size"),
        ("/api/deliveries", "limit"),
        ("/api/alerts", "limit"),
    ],
)
def test_paging_parameters_are_bounded_with_a_422_naming_the_parameter(
    client: TestClient, rt: Runtime, path: str, param: str
) -> None:
    response = client.get(path, params={param: "999999999999999999"}, headers=bearer(rt, "viewer"))
    body = assert_problem(response, 422)
    assert [e["loc"] for e in body["errors"]] == [["query", param]]


def test_the_last_page_allowed_is_answered_without_overflow(client: TestClient, rt: Runtime) -> None:
    viewer = bearer(rt, "viewer")
    response = client.get("/api/deliveries", params={"page": MAX_PAGE, "limit": 1000}, headers=viewer)
    assert response.status_code == 200 and response.json() == []


# --- unknown query parameters -------------------------------------------------------------------------


def test_an_unknown_query_parameter_is_a_422_naming_it(client: TestClient, rt: Runtime) -> None:
    response = client.get("/api/alerts", params={"state": "bogus"}, headers=bearer(rt, "viewer"))
    body = assert_problem(response, 422)
    assert body["errors"] == [{"loc": ["query", "state"], "msg": "unknown query parameter"}]
    assert "state" in body["detail"] and "status" in body["detail"]  # says what the operation takes


def test_every_operation_refuses_an_unknown_query_parameter(client: TestClient, rt: Runtime) -> None:
    admin = bearer(rt, "admin")
    operations = [
        (method, path)
        for path, item in client.get("/openapi.json").json()["paths"].items()
        for method in item
    ]
    assert len(operations) > 30
    for method, path in operations:
        url = path.replace("{", "").replace("}", "")  # any value for a path parameter
        response = client.request(method, url, params={"bogus_param": "1"}, headers=admin)
        body = assert_problem(response, 422)
        assert ["query", "bogus_param"] in [e["loc"] for e in body["errors"]], (method, path)


@pytest.mark.parametrize(
    ("url", "loc"),
    [("/api/alerts/ab%00cd", ["path", "fingerprint"]), ("/api/alerts?plan_id=p%00", ["query", "plan_id"])],
)
def test_nul_in_a_parameter_is_a_422_not_a_database_error(
    client: TestClient, rt: Runtime, url: str, loc: list[str]
) -> None:
    body = assert_problem(client.get(url, headers=bearer(rt, "viewer")), 422)
    assert [e["loc"] for e in body["errors"]] == [loc]


# --- the OpenAPI document -----------------------------------------------------------------------------


def test_every_operation_declares_its_problem_responses(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    problem = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            expected = {"413", "422", "500"}
            if operation.get("security"):
                expected |= {"401", "403", "429"}
                assert "Retry-After" in responses["429"]["headers"], (method, path)
            if "{" in path:
                expected.add("404")
            assert expected <= set(responses), (method, path, sorted(responses))
            for status, response in responses.items():
                if int(status) >= 400 and (path, status) != ("/readyz", "503"):  # readiness keeps its JSON
                    assert response["content"] == problem, (method, path, status)
    resume = document["paths"]["/api/fiction/plans/{plan_id}/backlog/{backlog_id}/resume"]["post"]
    assert "409" in resume["responses"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert set(document["components"]["schemas"]["Problem"]["required"]) == {
        "type",
        "title",
        "status",
        "detail",
    }


# --- Swagger UI, offline --------------------------------------------------------------------------------


def test_docs_reference_only_local_assets_and_storyloom_serves_them(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    scripts = re.findall(r"<script([^>]*)>", page.text)
    assert scripts and all("src=" in attrs for attrs in scripts), "an inline script"
    references = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(references) >= 4
    for reference in references:
        assert reference.startswith("/") and not reference.startswith("//"), reference
        asset = client.get(reference)
        assert asset.status_code == 200 and asset.content, reference
    assert "/openapi.json" in client.get("/docs/swagger-init.js").text
    assert client.get("/redoc").status_code == 404  # it would load from a CDN


@pytest.mark.browser
def test_swagger_ui_renders_every_operation_with_the_network_cut_off(server: int) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    playwright_api = pytest.importorskip("playwright.sync_api")
    outside: list[str] = []

    def loopback_only(route: Any) -> None:
        if route.request.url.startswith(f"http://127.0.0.1:{server}/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless"]
        )
        try:
            page = browser.new_page()
            page.route("**/*", loopback_only)
            page.goto(f"http://127.0.0.1:{server}/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            assert page.locator(".opblock").count() >= 30
        finally:
            browser.close()
    assert outside == []


def test_every_operation_has_a_short_summary_and_a_description(client: TestClient) -> None:
    for path, item in client.get("/openapi.json").json()["paths"].items():
        for method, operation in item.items():
            assert operation.get("description"), (method, path)
            summary = operation.get("summary", "")
            assert summary and len(summary) <= 60 and "\n" not in summary, (method, path, summary)
