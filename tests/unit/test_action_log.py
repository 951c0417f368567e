"""The subject of action-log entries for silences and replays."""

from __future__ import annotations

from storyloom.services.action_log import common_subject, silence_subject, subjects_by_plan


def test_common_subject_keeps_only_what_every_label_set_agrees_on() -> None:
    subject = common_subject(
        [
            {"plan_id": "p", "agent_id": "a", "task_id": "t1", "alert_id": "x"},
            {"plan_id": "p", "agent_id": "a", "task_id": "t2"},
        ]
    )
    assert subject == {
        "plan_id": "p",
        "backlog_id": None,
        "agent_id": "a",
        "persona_id": None,
        "provider": None,
        "model": None,
        "task_id": None,
    }


def test_subjects_by_plan_gives_one_subject_per_plan_and_one_for_none() -> None:
    subjects = subjects_by_plan([{"plan_id": "p1"}, {"plan_id": "p2", "model": "m"}, {"plan_id": "p1"}])
    assert [(s["plan_id"], s["model"]) for s in subjects] == [("p1", None), ("p2", "m")]
    assert [s["plan_id"] for s in subjects_by_plan([])] == [None]


def test_silence_subject_reads_equality_matchers_only() -> None:
    subject = silence_subject(['plan_id="p"', 'backlog_id=~"scroll-.*"', 'agent_id!="a"'])
    assert subject["plan_id"] == "p" and subject["backlog_id"] is None and subject["agent_id"] is None


def test_what_storyloom_creates_by_itself_is_logged_as_the_system_actor() -> None:
    from storyloom.backlog.cast import SYSTEM_AUDIT
    from storyloom.services.actors import SYSTEM

    assert SYSTEM.audit_fields() == SYSTEM_AUDIT
