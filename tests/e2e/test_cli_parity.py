"""CLI parity against a real server: `backlog cancel`, `backlog resume`, `obligations list`, `obligations resolve`;
errors print the API's message and exit non-zero."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.server import ServerProcess, backlog_status, seed_author, wait_for

pytestmark = pytest.mark.slow

CONFIG = {
    "llm": {"faults": [{"phase": "scroll_refiner", "mode": "fail", "times": 3}]},
    "pipeline": {"chapters": 1, "scenes_per_chapter": 2},
}


def test_cli_resume_list_resolve_and_errors(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", config=CONFIG).start()
    try:
        operator = server.create_token("operator", "cli-op")

        persona_id, agent_id = seed_author(server)
        plan_id = server.post(
            "/api/fiction/plans",
            {
                "name": "Tide",
                "premise": "A harbour that keeps promises.",
                "persona_id": persona_id,
                "agent_id": agent_id,
            },
        ).json()["plan_id"]
        wait_for(
            lambda: backlog_status(server, plan_id).get("scroll-1") == "failed",
            timeout=90,
            message="scroll-1 failed",
        )

        # error: the contract's message comes through, exit code non-zero
        refused = server.cli(
            "backlog",
            "resume",
            plan_id,
            "vision-plan",
            "--agent",
            agent_id,
            "--provider",
            "offline",
            "--model",
            "m",
            token=operator,
        )
        assert refused.returncode != 0
        assert "409" in refused.stderr and "vision-plan is complete" in refused.stderr

        # cancel the failed item, then bring it back with a resume
        cancelled = server.cli(
            "backlog", "cancel", plan_id, "scroll-1", "--agent", agent_id, "--notes", "hold", token=operator
        )
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.strip() == "cancelled scroll-1"
        assert backlog_status(server, plan_id)["scroll-1"] == "cancelled"
        not_mine = server.cli("backlog", "cancel", plan_id, "nope", "--agent", agent_id, token=operator)
        assert not_mine.returncode != 0 and "404" in not_mine.stderr

        resumed = server.cli(
            "backlog",
            "resume",
            plan_id,
            "scroll-1",
            "--agent",
            agent_id,
            "--provider",
            "offline",
            "--model",
            "offline-cli",
            "--notes",
            "from the CLI",
            token=operator,
        )
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.startswith("resumed scroll-1 as task task_")
        wait_for(
            lambda: server.get(f"/api/fiction/plans/{plan_id}")["status"] == "complete",
            timeout=120,
            message="plan complete",
        )
        action = next(
            a for a in server.get(f"/api/fiction/plans/{plan_id}/backlog/actions") if a["action"] == "resume"
        )
        assert (action["actor"], action["source"], action["notes"]) == ("cli-op", "cli", "from the CLI")

        listed = server.cli(
            "obligations", "list", plan_id, "--status", "open", "--output", "json", token=operator
        )
        assert listed.returncode == 0, listed.stderr
        data = json.loads(listed.stdout)
        assert data["total"] >= 1 and all(o["status"] == "open" for o in data["items"])
        obligation_id = data["items"][0]["obligation_id"]
        table = server.cli("obligations", "list", plan_id, token=operator)
        assert table.returncode == 0 and obligation_id in table.stdout

        blank = server.cli(
            "obligations",
            "resolve",
            plan_id,
            obligation_id,
            "--notes",
            "  ",
            "--agent",
            agent_id,
            token=operator,
        )
        assert blank.returncode != 0 and "422" in blank.stderr and "notes" in blank.stderr

        done = server.cli(
            "obligations",
            "resolve",
            plan_id,
            obligation_id,
            "--notes",
            "settled in scene 1-1",
            "--agent",
            agent_id,
            token=operator,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{obligation_id} is resolved"
        dismissed = server.cli(
            "obligations",
            "resolve",
            plan_id,
            obligation_id,
            "--notes",
            "on second thought",
            "--dismiss",
            "--agent",
            agent_id,
            token=operator,
        )
        assert dismissed.returncode == 0 and dismissed.stdout.strip() == f"{obligation_id} is dismissed"

        missing = server.cli(
            "obligations",
            "resolve",
            plan_id,
            "obl_missing",
            "--notes",
            "x",
            "--agent",
            agent_id,
            token=operator,
        )
        assert missing.returncode != 0 and "404" in missing.stderr and "obl_missing" in missing.stderr
        bad_page = server.cli("obligations", "list", "plan_missing", token=operator)
        assert bad_page.returncode != 0 and "404" in bad_page.stderr
    finally:
        server.stop()
