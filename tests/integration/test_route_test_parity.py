"""One route test: `POST /api/alert-routes/test`, `storyloom routes test` (asking the server) and
`storyloom routes test --config FILE` (evaluating the file) give the same receivers, in the same order,
for the same labels and config, the demo inbox included."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from storyloom.api.app import create_app
from storyloom.cli import app, base
from storyloom.clock import FrozenClock
from storyloom.config import load_config
from storyloom.demo_receiver import DEMO_RECEIVER, DEMO_SECRET_ENV
from storyloom.runtime import Runtime, as_served
from storyloom.store.db import Database
from tests.support.plan_seed import token

runner = CliRunner()

CONFIG: dict[str, Any] = {
    "demo_receiver": True,
    "alerting": {
        "receivers": [
            {"name": "ops", "url": "http://127.0.0.1:9000/ops", "secret_env": "PARITY_OPS_SECRET"},
            {"name": "pager", "url": "http://10.0.0.7:9000/pager"},
            {"name": "authors", "url": "http://127.0.0.1:9000/authors"},
        ],
        "route": {
            "receiver": "ops",
            "group_by": ["alert_id"],
            "routes": [
                {"matchers": ['severity=~"error|critical"'], "receiver": "pager", "continue": True},
                {"matchers": ['alert_id=~"obligation:.*"'], "receiver": "authors"},
            ],
        },
    },
}
CASES = [
    ({"alert_id": "backlog:stale", "severity": "warning"}, ["ops", DEMO_RECEIVER]),
    ({"alert_id": "planner:phase-failed", "severity": "error"}, ["pager", DEMO_RECEIVER]),
    ({"alert_id": "obligation:open", "severity": "critical"}, ["pager", "authors", DEMO_RECEIVER]),
    ({"alert_id": "obligation:open", "severity": "info"}, ["authors", DEMO_RECEIVER]),
]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "storyloom.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


@pytest.fixture
def server(
    config_file: Path, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The app serving `config_file` as `storyloom run --config` does; the CLI's client talks to it."""
    secret = "whsec_" + base64.b64encode(b"route-test-parity-secret-0123456").decode()
    monkeypatch.setenv("PARITY_OPS_SECRET", secret)
    monkeypatch.setenv(DEMO_SECRET_ENV, secret)
    config = as_served(load_config(config_file), demo=False, self_url="http://127.0.0.1:8701")
    rt = Runtime(config=config, db=db, clock=clock, config_path=config_file)
    web = create_app(rt)
    monkeypatch.setattr(
        base.httpx,
        "Client",
        lambda base_url, timeout, headers: TestClient(web, base_url=base_url, headers=headers),
    )
    viewer = token(rt, "viewer")
    monkeypatch.setenv("STORYLOOM_TOKEN", viewer["Authorization"].removeprefix("Bearer "))
    with TestClient(web, headers=viewer) as client:
        yield client


def _cli(*args: str) -> list[str]:
    result = runner.invoke(app, ["routes", "test", *args])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


@pytest.mark.parametrize(("labels", "expected"), CASES)
def test_the_api_the_cli_and_the_config_file_answer_alike(
    server: TestClient,
    config_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    labels: dict[str, str],
    expected: list[str],
) -> None:
    pairs = [f"{name}={value}" for name, value in labels.items()]
    response = server.post("/api/alert-routes/test", json={"labels": labels})
    assert response.status_code == 200, response.text
    assert response.json()["receivers"] == expected
    assert _cli(*pairs) == expected
    monkeypatch.delenv("PARITY_OPS_SECRET")  # a file is evaluated without its secrets exported
    monkeypatch.delenv(DEMO_SECRET_ENV)
    assert _cli("--config", str(config_file), *pairs) == expected


def test_without_config_the_cli_asks_the_server_and_says_so_when_it_cannot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STORYLOOM_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("STORYLOOM_TOKEN", "sl_not_checked")
    result = runner.invoke(app, ["routes", "test", "alert_id=tool:failed"])
    assert result.exit_code == 1
    assert "cannot reach Storyloom at http://127.0.0.1:9" in result.output


def test_a_pair_without_equals_is_refused(config_file: Path) -> None:
    result = runner.invoke(app, ["routes", "test", "--config", str(config_file), "severity"])
    assert result.exit_code == 1 and "invalid label 'severity': write label=value" in result.output
