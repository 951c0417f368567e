"""POST /api/config/reload: a good file swaps config and routing; a bad one is refused and the last good stays."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from storyloom.api.app import create_app
from storyloom.clock import FrozenClock
from storyloom.config import load_config
from storyloom.demo_receiver import DEMO_RECEIVER, DEMO_SECRET_ENV
from storyloom.runtime import Runtime
from storyloom.services.tokens import create_token
from storyloom.store.db import Database
from tests.support.server import free_port

SECRET = Path(__file__).resolve().parents[2] / "docs" / "examples" / "secrets" / "ops-webhook.whsec"


def _config(receiver: str) -> dict[str, object]:
    return {
        "alerting": {
            "receivers": [{"name": receiver, "url": "http://127.0.0.1:9/h", "secret_file": str(SECRET)}],
            "route": {"receiver": receiver},
        }
    }


def test_reload_swaps_routing_and_refuses_a_bad_file(
    tmp_path: Path, db: Database, clock: FrozenClock
) -> None:
    path = tmp_path / "storyloom.yaml"
    path.write_text(yaml.safe_dump(_config("first")))
    rt = Runtime(config=load_config(path), db=db, clock=clock, config_path=path)
    client = TestClient(create_app(rt))
    with db.begin() as conn:
        admin, _ = create_token(conn, name="a", role="admin", agent_ids=[], now=clock.now())
        operator, _ = create_token(conn, name="o", role="operator", agent_ids=[], now=clock.now())

    path.write_text(yaml.safe_dump(_config("second")))
    assert (
        client.post("/api/config/reload", headers={"Authorization": f"Bearer {operator}"}).status_code == 403
    )
    response = client.post("/api/config/reload", headers={"Authorization": f"Bearer {admin}"})
    assert response.status_code == 200 and response.json()["receivers"] == ["second"]
    assert client.post(
        "/api/alert-routes/test",
        json={"labels": {"alert_id": "tool:failed"}},
        headers={"Authorization": f"Bearer {admin}"},
    ).json()["receivers"] == ["second"]

    path.write_text(yaml.safe_dump({"alerting": {"route": {"receiver": "ghost"}}}))
    refused = client.post("/api/config/reload", headers={"Authorization": f"Bearer {admin}"})
    assert refused.status_code == 422
    assert "alerting.route.receiver: unknown receiver 'ghost'" in refused.json()["detail"]
    assert sorted(rt.alerting.receivers) == ["second"]  # the last good config stays in force


def test_reload_keeps_what_the_process_adds_to_the_file(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process's own URL as `public_url` (unless the file sets one) and the demo receiver on it."""
    monkeypatch.setenv("STORYLOOM_DATABASE_URL", database_url)
    monkeypatch.setenv(DEMO_SECRET_ENV, SECRET.read_text().strip())
    served = "http://127.0.0.1:9123"
    path = tmp_path / "storyloom.yaml"
    path.write_text(yaml.safe_dump(_config("first")))
    rt = Runtime.open(load_config(path), config_path=path, demo=True, self_url=served)

    path.write_text(yaml.safe_dump(_config("second")))
    assert rt.reload() == []
    assert sorted(rt.alerting.receivers) == [DEMO_RECEIVER, "second"]
    assert rt.config.public_url == rt.alerting.public_url == served
    assert rt.alerting.receivers[DEMO_RECEIVER].url == f"{served}/api/demo/receiver"

    path.write_text(yaml.safe_dump({**_config("third"), "public_url": "https://storyloom.example.org"}))
    assert rt.reload() == []
    assert rt.alerting.public_url == "https://storyloom.example.org"
    assert rt.alerting.receivers[DEMO_RECEIVER].url == f"{served}/api/demo/receiver"  # self-delivery
    rt.db.dispose()


def test_a_demo_whose_inbox_egress_refuses_is_refused_at_start_and_on_reload(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo inbox is this server, on loopback: `allow_loopback: false` cannot serve it. Config lines,
    never a traceback, at start; on reload the last good config stays."""
    monkeypatch.setenv("STORYLOOM_DATABASE_URL", database_url)
    monkeypatch.setenv(DEMO_SECRET_ENV, SECRET.read_text().strip())
    receiver = {"name": "hosted", "url": "https://hooks.example.com/h", "secret_file": str(SECRET)}
    hosted = {
        "alerting": {
            "egress": {"allow_loopback": False},
            "receivers": [receiver],
            "route": {"receiver": "hosted"},
        }
    }
    path = tmp_path / "storyloom.yaml"
    path.write_text(yaml.safe_dump(hosted))
    env = {**os.environ, "STORYLOOM_DATA_DIR": str(tmp_path), "STORYLOOM_DATABASE_URL": database_url}
    started = subprocess.run(
        [
            sys.executable,
            "-m",
            "storyloom",
            "run",
            "--demo",
            "--config",
            str(path),
            "--port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    refusal = "alerting.receivers[1].url: url http://127.0.0.1:"
    assert started.returncode == 1, started.stdout + started.stderr
    assert refusal in started.stdout and "set alerting.egress.allow_loopback: true" in started.stdout
    assert "Traceback" not in started.stdout + started.stderr

    path.write_text(yaml.safe_dump(_config("first")))
    rt = Runtime.open(load_config(path), config_path=path, demo=True, self_url="http://127.0.0.1:9123")
    path.write_text(yaml.safe_dump(hosted))
    problems = rt.reload()
    assert any(line.startswith(refusal) for line in problems), problems
    assert sorted(rt.alerting.receivers) == [DEMO_RECEIVER, "first"]  # the last good config stays
    rt.db.dispose()
