"""The browser suite's world: one real `storyloom run --demo` server (plus a receiver that always answers
400, so deliveries to it go dead, and one that answers 503 until a test releases it), Debian chromium
driven by Playwright, and screenshots per page."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.receivers import ReceivedRequest, ReceiverServer, Reply
from tests.support.server import ServerProcess, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
DEAD_RECEIVER = "ops-dead"
HELD_RECEIVER = "ops-held"
HELD_ALERT_ID = "console:held-delivery"  # routed to HELD_RECEIVER only; tests post it through the ingest
DESKTOP = (1280, 900)
PHONE = (390, 844)

# Every console page, by name; `{plan_id}` and `{fingerprint}` are filled in by the `paths` fixture.
PAGES = {
    "login": "/login",
    "overview": "/",
    "plans": "/plans",
    "plan": "/plans/{plan_id}?obligations=all",
    "alerts": "/alerts?state=all",
    "alert": "/alerts/{fingerprint}",
    "silences": "/silences",
    "routes": "/routes",
    "deliveries": "/deliveries",
    "inbox": "/inbox",
    "runbook": "/runbooks/planner:phase-failed",
    "not-found": "/runbooks/not-an-alert",
}
SKIP_REASON = (
    "Debian chromium is not installed at /usr/bin/chromium: `sudo apt-get install chromium` "
    "(or `make test` as root) to run the console's browser suite"
)


def playwright_sync_api() -> Any:
    """Playwright's sync API; skips the calling test module when chromium or playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip(SKIP_REASON, allow_module_level=True)
    return pytest.importorskip(
        "playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'"
    )


@pytest.fixture(scope="package")
def dead_receiver() -> Iterator[ReceiverServer]:
    """A webhook endpoint that refuses everything with 400: a 4xx goes `dead` after one retry."""
    with ReceiverServer(
        lambda _request: Reply(400, {"error": "this test receiver refuses everything"})
    ) as server:
        yield server


@dataclass(frozen=True)
class HeldReceiver:
    """A webhook endpoint that answers 503 until `release()`: its deliveries wait as `failed`, then deliver."""

    server: ReceiverServer
    released: threading.Event

    def release(self) -> None:
        self.released.set()


@pytest.fixture(scope="package")
def held_receiver() -> Iterator[HeldReceiver]:
    released = threading.Event()

    def answer(_request: ReceivedRequest) -> Reply:
        return Reply(204) if released.is_set() else Reply(503, {"error": "held until the test releases it"})

    with ReceiverServer(answer) as server:
        yield HeldReceiver(server, released)


@pytest.fixture(scope="package")
def server(
    tmp_path_factory: pytest.TempPathFactory, dead_receiver: ReceiverServer, held_receiver: HeldReceiver
) -> Iterator[ServerProcess]:
    config = {
        "alerting": {
            "receivers": [
                {
                    "name": DEAD_RECEIVER,
                    "type": "webhook",
                    "url": dead_receiver.url_for("/hooks/ops"),
                    "retry": {"schedule": ["0s", "500ms"], "max_age": "1m"},
                },
                {
                    "name": HELD_RECEIVER,
                    "type": "webhook",
                    "url": held_receiver.server.url_for("/hooks/held"),
                    # Retried every second for half a minute: still `failed` (not dead) when a test releases it.
                    "retry": {"schedule": ["0s", *["1s"] * 30], "max_age": "1m"},
                },
            ],
            "route": {
                "receiver": DEAD_RECEIVER,
                "group_by": ["alert_id", "plan_id"],
                "group_wait": "0s",
                "group_interval": "10s",
                "repeat_interval": "4h",
                # The demo adds its inbox beside this tree: every alert also reaches `demo-inbox`.
                "routes": [
                    {"receiver": HELD_RECEIVER, "matchers": [f'alert_id="{HELD_ALERT_ID}"']},
                    {"receiver": DEAD_RECEIVER, "matchers": ['alert_id=~".+"']},
                ],
            },
        }
    }
    proc = ServerProcess(tmp_path_factory.mktemp("console-server"), config=config, demo=True).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="package")
def plan_id(server: ServerProcess) -> str:
    """The demo plan, once its scroll items have failed (the injected fault) and alerted."""

    def failed_and_alerted() -> str | None:
        plans = server.get("/api/fiction/plans")
        if not plans:
            return None
        pid = plans[0]["plan_id"]
        items = server.get(f"/api/fiction/plans/{pid}/backlog")
        failed = [i for i in items if i["status"] == "failed" and i["backlog_id"].startswith("scroll-")]
        alerts = server.get("/api/alerts", status="firing", alert_id="planner:phase-failed")
        return pid if len(failed) == 3 and len(alerts) == 3 else None

    return str(
        wait_for(failed_and_alerted, timeout=60, interval=0.2, message="the demo's three failed scroll items")
    )


@pytest.fixture(scope="package")
def login_url(server: ServerProcess, plan_id: str) -> str:
    """The admin sign-in URL `storyloom run --demo` printed."""
    found = wait_for(
        lambda: re.search(r"(http://\S+/login\?token=\S+)", server.logs()),
        timeout=30,
        message="the login URL",
    )
    return str(found.group(1))


def cli_token(server: ServerProcess, role: str, name: str) -> str:
    """`storyloom token create` against the server's data dir, as an operator would."""
    env = {k: v for k, v in server.env.items() if k != "STORYLOOM_CONFIG"}
    result = subprocess.run(
        [sys.executable, "-m", "storyloom", "token", "create", "--role", role, "--name", name],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = re.search(r"\bsl_\S+", result.stdout)
    assert token, f"no token in the CLI's output: {result.stdout!r} {result.stderr!r}"
    return token.group(0)


@pytest.fixture(scope="package")
def viewer_token(server: ServerProcess) -> str:
    return cli_token(server, "viewer", "v")


@pytest.fixture(scope="package")
def paths(server: ServerProcess, plan_id: str) -> dict[str, str]:
    """Every page's path, with the demo plan and one of its failure alerts for the detail pages."""
    alert = server.get("/api/alerts", status="all", alert_id="planner:phase-failed", plan_id=plan_id)[0]
    return {
        name: path.format(plan_id=plan_id, fingerprint=alert["fingerprint"]) for name, path in PAGES.items()
    }


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    playwright = playwright_sync_api().sync_playwright().start()
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()
        playwright.stop()


def _context(browser: Any, width: int, height: int) -> Any:
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(15_000)
    context.page_errors = []
    context.on(
        "page", lambda page: page.on("pageerror", lambda error: context.page_errors.append(str(error)))
    )
    return context


def _close(context: Any) -> None:
    """Close the context; any uncaught script error on its pages fails the test."""
    errors = list(context.page_errors)
    context.close()
    assert not errors, f"uncaught errors in the console's scripts: {errors}"


@contextmanager
def signed_in_page(
    browser: Any, server: ServerProcess, sign_in_url: str, viewport: tuple[int, int]
) -> Iterator[Any]:
    """A page in a fresh browser context, signed in through a `/login?token=` URL."""
    context = _context(browser, *viewport)
    try:
        page = context.new_page()
        page.goto(sign_in_url)
        page.wait_for_url(f"{server.url}/")
        yield page
    finally:
        _close(context)


@pytest.fixture
def admin_page(browser: Any, server: ServerProcess, login_url: str) -> Iterator[Any]:
    """A desktop page signed in through the printed `/login?token=` URL."""
    with signed_in_page(browser, server, login_url, DESKTOP) as page:
        yield page


@pytest.fixture
def viewer_page(browser: Any, server: ServerProcess, viewer_token: str) -> Iterator[Any]:
    with signed_in_page(browser, server, f"{server.url}/login?token={viewer_token}", DESKTOP) as page:
        yield page


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
