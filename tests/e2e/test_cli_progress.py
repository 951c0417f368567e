"""`storyloom plan create --wait` / `plan watch`: progress until the plan completes; exit 1 naming a failed item."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import ADMIN_TOKEN, ServerProcess, seed_author

pytestmark = pytest.mark.slow


def _cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STORYLOOM_URL": server.url, "STORYLOOM_TOKEN": ADMIN_TOKEN, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "storyloom", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_wait_reports_the_failed_item_then_watch_follows_the_resume_to_completion(tmp_path: Path) -> None:
    config = {
        "llm": {"faults": [{"phase": "scroll_refiner", "mode": "fail", "times": 3}]},
        "pipeline": {"chapters": 1, "scenes_per_chapter": 1, "retry_backoff": "10ms"},
    }
    server = ServerProcess(tmp_path, config=config).start()
    try:
        persona_id, agent_id = seed_author(server)
        created = _cli(
            server,
            "plan",
            "create",
            "--name",
            "Watched",
            "--premise",
            "Tides that keep ledgers.",
            "--persona",
            persona_id,
            "--agent",
            agent_id,
            "--wait",
            "--timeout",
            "90",
        )
        assert created.returncode == 1, created.stdout + created.stderr
        plan_id = created.stdout.splitlines()[0].strip()
        assert plan_id.startswith("plan_")
        assert "scroll-1 is failed" in created.stderr and "injected fault" in created.stderr

        resumed = _cli(
            server,
            "backlog",
            "resume",
            plan_id,
            "scroll-1",
            "--agent",
            agent_id,
            "--provider",
            "offline",
            "--model",
            "offline-test",
        )
        assert resumed.returncode == 0, resumed.stderr
        watched = _cli(server, "plan", "watch", plan_id, "--timeout", "90")
        assert watched.returncode == 0, watched.stderr
        assert "6/6" in watched.stdout
    finally:
        server.stop()
