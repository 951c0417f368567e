"""The CLI against a real server, on a terminal and in a pipe: tables for people, whole ids in tab-separated
lines for scripts, human `show` commands, `backlog resume` defaults; and the server's log line for each
operator action (who, as which agent, on what, never a secret).

One server and one stalled plan for the module: scroll-1 and scroll-2 fail for good (the injected fault);
the tests read them first and resume them last, in file order.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.server import ADMIN_TOKEN, ServerProcess, backlog_status, seed_author, wait_for

pytestmark = pytest.mark.slow

CONFIG = {
    "llm": {"faults": [{"phase": "scroll_refiner", "mode": "fail", "times": 3}]},
    "pipeline": {"chapters": 2, "scenes_per_chapter": 1, "retry_backoff": "10ms"},
}


@dataclass(frozen=True)
class Stalled:
    server: ServerProcess
    operator: str
    plan_id: str
    agent_id: str


@pytest.fixture(scope="module")
def stalled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stalled]:
    server = ServerProcess(tmp_path_factory.mktemp("cli-output") / "data", config=CONFIG).start()
    try:
        operator = server.create_token("operator", "cli-op")
        persona_id, agent_id = seed_author(server)
        plan_id = server.post(
            "/api/fiction/plans",
            {"name": "Tide", "premise": "A harbour that keeps promises.", "persona_id": persona_id},
        ).json()["plan_id"]
        wait_for(
            lambda: (
                {s for b, s in backlog_status(server, plan_id).items() if b.startswith("scroll-")}
                == {"failed"}
                and len([b for b in backlog_status(server, plan_id) if b.startswith("scroll-")]) == 2
            ),
            timeout=120,
            message="scroll-1 and scroll-2 failed",
        )
        yield Stalled(server, operator, plan_id, agent_id)
    finally:
        server.stop()


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def lines(output: str) -> list[list[str]]:
    return [line.split("\t") for line in output.splitlines()]


def items(s: Stalled) -> dict[str, dict[str, Any]]:
    return {i["backlog_id"]: i for i in s.server.get(f"/api/fiction/plans/{s.plan_id}/backlog")}


def test_a_pipe_gets_whole_ids_in_tab_separated_lines_and_a_terminal_a_table(stalled: Stalled) -> None:
    s = stalled
    failed = {b: i for b, i in items(s).items() if i["status"] == "failed"}

    piped = lines(ok(s.server.cli("backlog", "list", s.plan_id, "--status", "failed", token=s.operator)))
    assert sorted(row[0] for row in piped) == ["scroll-1", "scroll-2"], "no header, one line per item"
    for row in piped:
        item = failed[row[0]]
        assert row[:9] == [
            item["backlog_id"],
            "failed",
            "3",
            item["task_id"],
            "scroll_refiner",
            item["agent_id"],
            "offline",
            item["model"],
            item["persona_id"],
        ]
        assert row[9] == item["last_error"]

    shown = s.server.cli_in_terminal("backlog", "list", s.plan_id, token=s.operator, columns=80)
    assert "\t" not in shown
    assert all(len(line) <= 80 for line in shown.splitlines()), shown
    assert "backlog items" in shown and "backlog_id" in shown and "─" in shown
    for item in failed.values():
        row = next(line for line in shown.splitlines() if line.lstrip().startswith(item["backlog_id"]))
        assert item["task_id"] in row, f"the task id whole on its row:\n{shown}"
    assert "left out to fit the terminal" in shown  # 80 columns do not hold all ten


def test_show_commands_are_human_on_a_terminal_and_line_based_in_a_pipe(stalled: Stalled) -> None:
    s = stalled
    piped = lines(ok(s.server.cli("plan", "show", s.plan_id, token=s.operator)))
    assert piped[0] == ["plan_id", s.plan_id]
    fields = {row[0]: row[1] for row in piped if len(row) == 2}
    assert fields["status"] == "in_progress" and fields["agent_id"] == s.agent_id
    assert sorted(row[1:3] for row in piped if row[0] == "backlog" and row[1].startswith("scroll-")) == [
        ["scroll-1", "failed"],
        ["scroll-2", "failed"],
    ]
    as_json = json.loads(ok(s.server.cli("plan", "show", s.plan_id, "--output", "json", token=s.operator)))
    assert as_json["plan_id"] == s.plan_id and len(as_json["backlog"]) == len(items(s))

    on_terminal = s.server.cli_in_terminal("plan", "show", s.plan_id, token=s.operator)
    assert s.plan_id in on_terminal and "checkpoints" in on_terminal and "scroll-1" in on_terminal
    assert "{" not in on_terminal, "not JSON"

    [alert] = s.server.get(
        "/api/alerts", alert_id="planner:phase-failed", plan_id=s.plan_id, status="firing"
    )[:1]
    fingerprint = alert["fingerprint"]
    shown = lines(ok(s.server.cli("alerts", "show", fingerprint, token=s.operator)))
    assert ["alert_id", "planner:phase-failed"] in shown and ["severity", "error"] in shown
    assert ["labels", "plan_id", s.plan_id] in shown
    assert next(row[2] for row in shown if row[0] == "history") == "firing"
    on_terminal = s.server.cli_in_terminal("alerts", "show", fingerprint, token=s.operator)
    assert "planner:phase-failed" in on_terminal and "history" in on_terminal and "{" not in on_terminal


def test_resume_defaults_like_the_console_and_each_action_is_one_server_log_line(stalled: Stalled) -> None:
    s = stalled
    first = s.server.cli(
        "backlog", "resume", s.plan_id, "scroll-1", "--model", "offline-two", token=s.operator
    )
    assert ok(first).startswith("resumed scroll-1 as task task_")
    assert "defaults from the item" in first.stderr and f"as agent {s.agent_id} on offline/offline-two" in (
        " ".join(first.stderr.split())
    )

    second = s.server.cli("backlog", "resume", s.plan_id, "scroll-2", token=s.operator)
    assert ok(second).startswith("resumed scroll-2 as task task_")
    assert "defaults from the last resume on this plan (scroll-1 by cli-op)" in " ".join(
        second.stderr.split()
    )
    assert items(s)["scroll-2"]["model"] == "offline-two"
    wait_for(
        lambda: s.server.get(f"/api/fiction/plans/{s.plan_id}")["status"] == "complete",
        timeout=120,
        message="the plan completes after both resumes",
    )

    silence_id = ok(
        s.server.cli(
            "silences", "add", "--matcher", f'plan_id="{s.plan_id}"', "--comment", "drill", token=s.operator
        )
    ).strip()
    ok(s.server.cli("silences", "expire", silence_id, token=s.operator))

    logged = [
        entry
        for entry in (json.loads(line) for line in s.server.logs().splitlines() if line.startswith("{"))
        if entry.get("event") == "operator action"
    ]
    resumes = [e for e in logged if e["action"] == "resume"]
    assert [(e["backlog_id"], e["plan_id"], e["agent_id"], e["actor"], e["source"]) for e in resumes] == [
        ("scroll-1", s.plan_id, s.agent_id, "cli-op", "cli"),
        ("scroll-2", s.plan_id, s.agent_id, "cli-op", "cli"),
    ]
    assert all(e["task_id"].startswith("task_") and e["previous_status"] == "failed" for e in resumes)
    silences = [(e["action"], e["silence_id"], e["actor"], e["plan_id"]) for e in logged if "silence_id" in e]
    assert silences == [
        ("silence-create", silence_id, "cli-op", s.plan_id),
        ("silence-expire", silence_id, "cli-op", s.plan_id),
    ]
    assert s.operator not in s.server.logs() and ADMIN_TOKEN not in s.server.logs()
