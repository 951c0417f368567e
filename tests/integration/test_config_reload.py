"""POST /api/config/reload: a good file swaps config and routing; a bad one is refused and the last good stays."""

from __future__ import annotations

from pathlib import Path

import yaml
from fastapi.testclient import TestClient

from storyloom.api.app import create_app
from storyloom.clock import FrozenClock
from storyloom.config import load_config
from storyloom.runtime import Runtime
from storyloom.services.tokens import create_token
from storyloom.store.db import Database

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
