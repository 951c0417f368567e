"""A real `storyloom run`: a plan fails at scroll_refiner → resume via the API → the plan completes →
its obligations are listed, one resolved, one dismissed, and their alerts follow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ServerProcess, backlog_status, seed_author, wait_for

pytestmark = pytest.mark.slow

CONFIG = {
    "llm": {"faults": [{"phase": "scroll_refiner", "mode": "fail", "times": 3}]},
    "pipeline": {"chapters": 1, "scenes_per_chapter": 2},
}


def _alerts(server: ServerProcess, **params: Any) -> list[dict[str, Any]] | None:
    """`GET /api/alerts`, or None while the alerts API is not registered."""
    response = server.client.get("/api/alerts", params=params)
    return response.json() if response.status_code == 200 else None


def test_failed_scroll_resumed_plan_completes_obligations_settled(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", config=CONFIG).start()
    try:
        persona_id, agent_id = seed_author(server)
        plan = server.post(
            "/api/fiction/plans",
            {
                "name": "Lantern",
                "premise": "Lamplighters bargain with the dark.",
                "persona_id": persona_id,
                "agent_id": agent_id,
            },
        ).json()
        plan_id = plan["plan_id"]
        path = f"/api/fiction/plans/{plan_id}"
        wait_for(
            lambda: backlog_status(server, plan_id).get("scroll-1") == "failed",
            timeout=90,
            message="scroll-1 failed after its attempts",
        )
        scroll = next(i for i in server.get(f"{path}/backlog") if i["backlog_id"] == "scroll-1")
        assert scroll["attempts"] == 3 and scroll["last_error"]

        response = server.post(
            f"{path}/backlog/scroll-1/resume",
            {
                "agent_id": agent_id,
                "provider": "offline",
                "model": "offline-resumed",
                "task_id": scroll["task_id"],
                "notes": "fault cleared",
            },
        )
        assert response.status_code == 202, response.text
        resumed = response.json()
        assert resumed["backlog_item"]["status"] == "pending" and resumed["task_id"] != scroll["task_id"]

        wait_for(lambda: server.get(path)["status"] == "complete", timeout=120, message="plan complete")
        statuses = backlog_status(server, plan_id)
        assert set(statuses.values()) == {"complete"} and {"scene-1-1", "scene-1-2"} <= set(statuses)
        scroll = next(i for i in server.get(f"{path}/backlog") if i["backlog_id"] == "scroll-1")
        assert scroll["task_id"] == resumed["task_id"] and scroll["model"] == "offline-resumed"
        actions = server.get(f"{path}/backlog/actions")
        resume_action = next(a for a in actions if a["action"] == "resume")
        assert resume_action["backlog_id"] == "scroll-1" and resume_action["task_id"] == resumed["task_id"]
        assert resume_action["agent_id"] == agent_id and resume_action["persona_id"] == persona_id

        # a second resume of the completed item is refused by the contract and raises the drift alert
        again = server.post(
            f"{path}/backlog/scroll-1/resume", {"agent_id": agent_id, "provider": "offline", "model": "m"}
        )
        assert again.status_code == 409 and again.json()["code"] == "item-complete"

        listed = server.get(f"{path}/persona-obligations", status="open", page_size=200)
        assert listed["total"] >= 2, listed
        first, second = listed["items"][:2]
        resolved = server.post(
            f"{path}/persona-obligations/{first['obligation_id']}/resolve",
            {"action": "resolve", "notes": "paid off in scene 1-2", "agent_id": agent_id},
        )
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["status"] == "resolved"
        dismissed = server.post(
            f"{path}/persona-obligations/{second['obligation_id']}/resolve",
            {"action": "dismiss", "notes": "cut from the book", "agent_id": agent_id},
        )
        assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"
        assert server.get(f"{path}/persona-obligations", status="open")["total"] == listed["total"] - 2

        alerts = _alerts(server, alert_id="obligation:open", plan_id=plan_id, status="all")
        if alerts is None:
            pytest.skip(
                "GET /api/alerts is not registered yet: the alert half of this flow cannot be checked"
            )
        by_obligation = {a["labels"]["obligation_id"]: a["status"] for a in alerts}
        assert by_obligation[first["obligation_id"]] == "resolved"
        assert by_obligation[second["obligation_id"]] == "resolved"
        others = [o["obligation_id"] for o in listed["items"][2:]]
        assert all(by_obligation[o] == "firing" for o in others)
        drift = _alerts(server, alert_id="backlog:contract-drift", plan_id=plan_id, status="firing") or []
        assert [(a["labels"]["code"], a["severity"]) for a in drift] == [("item-complete", "warning")]
    finally:
        server.stop()
