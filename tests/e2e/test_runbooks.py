"""Runbooks are executable: every ```console block runs, verbatim, against a live server in the state the
demo produces (a failed scroll, its alerts), and must exit 0. A runbook whose commands rot fails the build."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from storyloom.domain.catalog import CATALOG, runbook_slug
from tests.support.server import ADMIN_TOKEN, ServerProcess, wait_for

pytestmark = pytest.mark.slow
RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks"
SECTIONS = (
    "## What it means",
    "## Impact",
    "## Labels",
    "## Confirm",
    "## Fix",
    "## Verify recovery",
    "## Escalate",
)
CONSOLE_BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)


def test_every_alert_in_the_catalog_has_a_complete_runbook() -> None:
    for alert_id in CATALOG:
        text = (RUNBOOKS / f"{runbook_slug(alert_id)}.md").read_text()
        assert text.startswith(f"# {alert_id}\n"), alert_id
        missing = [s for s in SECTIONS if s not in text]
        assert not missing, f"{alert_id} lacks {missing}"
        assert CONSOLE_BLOCK.search(text), f"{alert_id} has no ```console block"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("runbooks"), demo=True).start()
    try:
        wait_for(
            lambda: server.get("/api/alerts", alert_id="planner:phase-failed", status="firing"),
            timeout=60,
            message="the demo's phase-failed alert",
        )
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("alert_id", sorted(CATALOG))
def test_runbook_console_blocks_run_against_a_live_server(live: ServerProcess, alert_id: str) -> None:
    text = (RUNBOOKS / f"{runbook_slug(alert_id)}.md").read_text()
    env = {
        **os.environ,
        "STORYLOOM_URL": live.url,
        "STORYLOOM_TOKEN": ADMIN_TOKEN,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for block in CONSOLE_BLOCK.findall(text):
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, (
            f"{alert_id} block failed:\n{block}\nstdout:{result.stdout}\nstderr:{result.stderr}"
        )


def test_runbooks_are_served_by_the_console(live: ServerProcess) -> None:
    page = live.client.get("/runbooks/planner:phase-failed")
    assert page.status_code == 200 and "What it means" in page.text
    assert live.client.get("/runbooks/planner:no-such-alert").status_code == 404
