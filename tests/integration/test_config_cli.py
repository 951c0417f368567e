"""`storyloom config check`, `routes test` and `token create`: exit codes and one line per problem."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from storyloom.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
runner = CliRunner()


def _check(tmp_path: Path, config: object) -> tuple[int, list[str]]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config) if not isinstance(config, str) else config)
    result = runner.invoke(app, ["config", "check", str(path)])
    return result.exit_code, result.output.strip().splitlines()


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_passes_config_check(example: str) -> None:
    result = runner.invoke(app, ["config", "check", str(EXAMPLES / example)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "ok"


def _receiver(**extra: object) -> dict[str, object]:
    return {"name": "ops", "type": "webhook", "url": "http://127.0.0.1:9000/hook", **extra}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"pipeline": {"chapters": 0}}, "pipeline.chapters: Input should be greater than or equal to 1"),
        (
            {"health": {"stale_in_progress": "2 hours"}},
            "health.stale_in_progress: invalid duration '2 hours'",
        ),
        ({"llm": {"provider": "gemini"}}, "llm.provider: Input should be 'offline' or 'openai'"),
        (
            {"health": {"evaluate_every": "99999999999999999999999s"}},
            "health.evaluate_every: duration '99999999999999999999999s' is too long",
        ),
        ({"pipeline": {"phase_timeout": "0s"}}, "pipeline.phase_timeout: must be longer than 0s"),
        ({"unknown key": 1}, "['unknown key']: unknown key"),
        (
            {"pipeline": {"provider_rate_limits": {"openai": "fast"}}},
            "pipeline.provider_rate_limits.openai: Input should be a valid number",
        ),
        (
            {"pipeline": {"provider_rate_limits": {"openai": -1}}},
            "pipeline.provider_rate_limits.openai: Input should be greater than or equal to 0",
        ),
        (
            {"alerting": {"receivers": [_receiver()], "route": {"receiver": "pager"}}},
            "alerting.route.receiver: unknown receiver 'pager' (receivers: ops)",
        ),
        (
            {
                "alerting": {
                    "receivers": [_receiver()],
                    "route": {
                        "receiver": "ops",
                        "routes": [{"matchers": ['severity=="x"'], "receiver": "ops"}],
                    },
                }
            },
            "alerting.route.routes[0].matchers[0]: invalid matcher",
        ),
        (
            {
                "alerting": {
                    "receivers": [_receiver(url="http://169.254.169.254/latest")],
                    "route": {"receiver": "ops"},
                }
            },
            "alerting.receivers[0].url: url http://169.254.169.254/latest is refused",
        ),
        (
            {
                "alerting": {
                    "egress": {"allow_private": False},
                    "receivers": [_receiver(url="http://10.1.2.3/h")],
                    "route": {"receiver": "ops"},
                }
            },
            "alerting.receivers[0].url: url http://10.1.2.3/h is refused",
        ),
        (
            {
                "alerting": {
                    "receivers": [_receiver(secret_env="STORYLOOM_TEST_UNSET_SECRET")],
                    "route": {"receiver": "ops"},
                }
            },
            "alerting.receivers[0].secret_env: environment variable STORYLOOM_TEST_UNSET_SECRET is not set",
        ),
        (
            {"alerting": {"receivers": [_receiver()], "route": {"receiver": "ops", "group_wait": "soon"}}},
            "alerting.route.group_wait: invalid duration 'soon'",
        ),
        (
            {"alerting": {"inhibit_rules": [{"source_matchers": ['a=~"("'], "target_matchers": ["b=c"]}]}},
            "alerting.inhibit_rules[0].source_matchers[0]: invalid regex",
        ),
        (
            {"alerting": {"receivers": [_receiver(recievers=1)], "route": {"receiver": "ops"}}},
            "alerting.receivers[0].recievers: unknown key",
        ),
    ],
)
def test_bad_configs_print_the_yaml_path(tmp_path: Path, config: object, expected: str) -> None:
    code, lines = _check(tmp_path, config)
    assert code == 1
    assert any(line.startswith(expected) for line in lines), lines


def test_bad_yaml_and_missing_file_are_reported(tmp_path: Path) -> None:
    code, lines = _check(tmp_path, "alerting: [unclosed")
    assert code == 1 and "is not valid YAML at line 1" in lines[0]
    result = runner.invoke(app, ["config", "check", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 1 and "cannot read" in result.output


def test_every_problem_is_listed_once_per_line(tmp_path: Path) -> None:
    code, lines = _check(
        tmp_path,
        {"alerting": {"receivers": [_receiver(url="http://0.0.0.0/x")], "route": {"receiver": "ghost"}}},
    )
    assert code == 1
    assert len(lines) == 2
    assert all(re.match(r"^alerting\.[\w\[\]\.]+: ", line) for line in lines)


def _readme_rows() -> list[tuple[str, dict[str, str], list[str]]]:
    rows = []
    for line in (EXAMPLES / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].endswith(".yaml"):
            labels = dict(pair.split("=", 1) for pair in cells[1].split())
            rows.append((cells[0], labels, [r.strip() for r in cells[2].split(",")]))
    return rows


@pytest.mark.parametrize(("example", "labels", "receivers"), _readme_rows())
def test_routes_test_matches_the_documented_table(
    example: str, labels: dict[str, str], receivers: list[str]
) -> None:
    pairs = [f"{k}={v}" for k, v in labels.items()]
    result = runner.invoke(app, ["routes", "test", "--config", str(EXAMPLES / example), *pairs])
    assert result.exit_code == 0, result.output
    assert result.output.split() == receivers


def test_routes_test_prints_the_same_receivers_as_json_with_output_json() -> None:
    example, labels, receivers = _readme_rows()[0]
    pairs = [f"{k}={v}" for k, v in labels.items()]
    result = runner.invoke(app, ["routes", "test", "--config", str(EXAMPLES / example), *pairs, "-o", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["receivers"] == receivers


def test_the_table_covers_every_example() -> None:
    assert {row[0] for row in _readme_rows()} == {p.name for p in EXAMPLES.glob("*.yaml")}


def test_token_create_prints_a_token_once_and_refuses_bad_roles(tmp_path: Path) -> None:
    env = {"STORYLOOM_DATA_DIR": str(tmp_path)}
    result = runner.invoke(app, ["token", "create", "--role", "operator", "--name", "ci"], env=env)
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"sl_[A-Za-z0-9_-]{40,}\n", result.output)
    bad = runner.invoke(app, ["token", "create", "--role", "root", "--name", "x"], env=env)
    assert bad.exit_code == 1 and "unknown role 'root'" in bad.output


def test_the_console_script_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "storyloom", "config", "check", str(EXAMPLES / "minimal.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok"
