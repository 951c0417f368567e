"""`storyloom db upgrade` (a real subprocess on a temp SQLite), `plan list/show` and `backlog list` against
the API in-process, and the server roles' `--help`."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from storyloom.api.app import create_app
from storyloom.cli import app, base
from storyloom.runtime import Runtime
from storyloom.store.migrate import MIGRATIONS
from storyloom.store.tables import metadata
from tests.support.plan_seed import World, seed_world, set_item, token

runner = CliRunner(env={"COLUMNS": "200"})  # wide enough that table cells do not fold


def _upgrade(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORYLOOM_")}
    env["STORYLOOM_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "storyloom", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_db_upgrade_creates_the_schema_in_wal_mode_and_is_idempotent(tmp_path: Path) -> None:
    first = _upgrade(tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "database is up to date"
    database = tmp_path / "storyloom.db"  # the default: a SQLite file under STORYLOOM_DATA_DIR
    with sqlite3.connect(database) as conn:
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert version == head
    assert set(metadata.tables) <= tables
    assert journal == "wal"

    again = _upgrade(tmp_path)
    assert again.returncode == 0 and again.stdout.strip() == "database is up to date", again.stderr


# --- API client commands, against the app in-process -------------------------------------------------


@pytest.fixture
def world(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A seeded plan, and the CLI's HTTP client talking to the app in-process with a viewer token (the
    server's log lines are captured, so the CLI's stdout holds only what the CLI printed)."""
    web = create_app(rt)
    monkeypatch.setattr(
        base.httpx,
        "Client",
        lambda base_url, timeout, headers: TestClient(web, base_url=base_url, headers=headers),
    )
    monkeypatch.setenv("STORYLOOM_TOKEN", token(rt, "viewer")["Authorization"].removeprefix("Bearer "))
    with structlog.testing.capture_logs():
        yield seed_world(rt)


def _cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _lines(result: Result) -> list[list[str]]:
    """Piped output: one tab-separated line per row."""
    assert result.exit_code == 0, result.output
    return [line.split("\t") for line in result.stdout.splitlines()]


def test_plan_list_shows_each_plan_with_its_counts(world: World) -> None:
    [plan] = _json(_cli("plan", "list", "--output", "json"))
    assert plan["plan_id"] == world.plan_id and plan["name"] == "Ash Lantern"
    assert plan["status"] == "in_progress" and plan["counts"] == {"pending": 3}

    # stdout is not a terminal here: whole values, tab-separated, no header
    assert _lines(_cli("plan", "list")) == [
        [
            world.plan_id,
            "Ash Lantern",
            "in_progress",
            world.author_persona,
            world.author_agent,
            "offline",
            "m1",
            "pending=3",
        ]
    ]
    table = _cli("plan", "list", "--output", "table")
    assert table.exit_code == 0, table.output
    assert "plans" in table.stdout and "Ash Lantern" in table.stdout and "pending=3" in table.stdout
    assert "\t" not in table.stdout


def test_plan_show_prints_the_plan_with_its_checkpoints_and_backlog(rt: Runtime, world: World) -> None:
    set_item(rt, world.plan_id, "vision-plan", "complete", checkpoint="complete")
    shown = _json(_cli("plan", "show", world.plan_id, "--output", "json"))
    assert shown["plan_id"] == world.plan_id and shown["agent_id"] == world.author_agent
    assert [c["phase"] for c in shown["checkpoints"]] == ["vision"]
    assert [(i["backlog_id"], i["status"]) for i in shown["backlog"]] == [
        ("vision-plan", "complete"),
        ("world-bible", "pending"),
        ("iteration-plan", "pending"),
    ]

    lines = _lines(_cli("plan", "show", world.plan_id))
    fields = {line[0]: line[1] for line in lines if len(line) == 2}
    assert fields["plan_id"] == world.plan_id and fields["status"] == "in_progress"
    assert fields["agent_id"] == world.author_agent and fields["counts"] == "complete=1 pending=2"
    assert [(line[1], line[2], line[5]) for line in lines if line[0] == "backlog"] == [
        ("vision-plan", "complete", "vision"),
        ("world-bible", "pending", "world_bible"),
        ("iteration-plan", "pending", "iterative"),
    ]
    assert [line[1:4] for line in lines if line[0] == "checkpoints"] == [
        [shown["checkpoints"][0]["phase_key"], "vision", "complete"]
    ]

    human = _cli("plan", "show", world.plan_id, "--output", "table")
    assert human.exit_code == 0, human.output
    assert "checkpoints" in human.stdout and "backlog" in human.stdout and "{" not in human.stdout


def test_backlog_list_filters_by_status(rt: Runtime, world: World) -> None:
    set_item(rt, world.plan_id, "vision-plan", "complete")
    everything = _json(_cli("backlog", "list", world.plan_id, "--output", "json"))
    assert [i["backlog_id"] for i in everything] == ["vision-plan", "world-bible", "iteration-plan"]
    pending = _json(_cli("backlog", "list", world.plan_id, "--status", "pending", "-o", "json"))
    assert [i["backlog_id"] for i in pending] == ["world-bible", "iteration-plan"]

    [line] = _lines(_cli("backlog", "list", world.plan_id, "--status", "complete"))
    assert line[:2] == ["vision-plan", "complete"] and line[4] == "vision"
    assert line[5:8] == [world.author_agent, "offline", "m1"]
    assert _cli("backlog", "list", world.plan_id, "--status", "failed").stdout == "", "nothing: no line"


def test_backlog_resume_defaults_agent_provider_and_model_like_the_console(
    rt: Runtime, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first resume on a plan takes the item's agent, provider and model; a later one the last resume's
    (the operator's latest choice that worked); explicit options win over both."""
    monkeypatch.setenv("STORYLOOM_TOKEN", token(rt, "operator", name="ops")["Authorization"].split()[1])
    set_item(rt, world.plan_id, "vision-plan", "complete")
    set_item(rt, world.plan_id, "world-bible", "failed")

    first = _cli("backlog", "resume", world.plan_id, "world-bible", "--model", "m9")
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("resumed world-bible as task task_")
    assert f"as agent {world.author_agent} on offline/m9 (defaults from the item)" in first.stderr

    set_item(rt, world.plan_id, "world-bible", "complete")
    set_item(rt, world.plan_id, "iteration-plan", "failed")
    second = _cli("backlog", "resume", world.plan_id, "iteration-plan", "--output", "json")
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["backlog_item"]["model"] == "m9"
    assert "defaults from the last resume on this plan (world-bible by ops)" in second.stderr

    actions = _json(_cli("backlog", "actions", world.plan_id, "--output", "json"))
    assert [(a["backlog_id"], a["agent_id"], a["provider"], a["model"]) for a in actions[:2]] == [
        ("iteration-plan", world.author_agent, "offline", "m9"),
        ("world-bible", world.author_agent, "offline", "m9"),
    ]


def test_an_unknown_plan_exits_1_with_the_apis_message(world: World) -> None:
    for command in (["plan", "show", "plan_nope"], ["backlog", "list", "plan_nope"]):
        result = _cli(*command)
        assert result.exit_code == 1
        assert "404 plan plan_nope does not exist" in result.stderr


# --- the server roles' help ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "options"),
    [
        ("api", ["--config", "--host", "--port"]),
        ("worker", ["--config"]),
    ],
)
def test_server_roles_describe_their_options(role: str, options: list[str]) -> None:
    result = runner.invoke(app, [role, "--help"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for option in options:
        [line] = [line for line in lines if f" {option} " in line]
        described = re.sub(r"<[^>]*>|\[[^\]]*\]", "", line.split(option, 1)[1]).strip(" │")
        assert len(described.split()) >= 2, f"{role} {option} has no description: {line!r}"
    assert "STORYLOOM_CONFIG" in result.stdout
