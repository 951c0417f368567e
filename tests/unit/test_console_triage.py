"""The Overview's incident list: grouped by (plan, alert id), most severe first then oldest, held alerts apart."""

from __future__ import annotations

from typing import Any

from storyloom.console.alert_views import triage
from storyloom.console.data import Who

WHO = Who(agents={}, personas={}, plans={"plan_a": "Ash Lantern"})


def view(
    alert_id: str, severity: str, since: str, state: str = "firing", plan_id: str = "plan_a"
) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "fingerprint": f"{alert_id}-{since}",
        "severity": severity,
        "title": alert_id.title(),
        "starts_at": since,
        "state": state,
        "labels": {"plan_id": plan_id} if plan_id else {},
    }


def test_incidents_group_by_plan_and_id_and_order_by_severity_then_age() -> None:
    lists = triage(
        [
            view("tool:failed", "warning", "2026-12-02T10:00:00Z"),
            view("obligation:open", "info", "2026-12-02T09:00:00Z"),
            view("delivery:failing", "error", "2026-12-02T10:05:00Z", plan_id=""),
            view("planner:phase-failed", "error", "2026-12-02T10:01:00Z"),
            view("planner:phase-failed", "error", "2026-12-02T10:02:00Z"),
            view("tool:timeout", "warning", "2026-12-02T09:30:00Z", state="inhibited"),
            view("tool:failed", "warning", "2026-12-02T09:45:00Z", state="silenced"),
        ],
        WHO,
    )
    firing = [(i.alert_id, i.count, i.plan_name) for i in lists["firing"]]
    assert firing == [
        ("planner:phase-failed", 2, "Ash Lantern"),
        ("delivery:failing", 1, ""),
        ("tool:failed", 1, "Ash Lantern"),
        ("obligation:open", 1, "Ash Lantern"),
    ]
    grouped = lists["firing"][0]
    assert grouped.since == "2026-12-02T10:01:00Z"  # the oldest of the group
    assert grouped.href == "/alerts?state=firing&alert_id=planner:phase-failed&plan_id=plan_a"
    assert lists["firing"][1].href == "/alerts/delivery:failing-2026-12-02T10:05:00Z"
    assert [i.alert_id for i in lists["silenced"]] == ["tool:failed"]
    assert [i.alert_id for i in lists["inhibited"]] == ["tool:timeout"]


def test_names_replace_ids_in_text_but_not_inside_longer_ids() -> None:
    who = Who(agents={}, personas={"persona_1": {"name": "June Arden"}}, plans={"plan_a": "Ash Lantern"})
    assert who.named("open for persona persona_1 in plan_a") == "open for persona June Arden in Ash Lantern"
    assert who.named("persona_12 stays") == "persona_12 stays"
    assert who.plan("plan_unknown") == "plan_unknown"
