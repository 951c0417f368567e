"""What an action-log entry (`fiction.backlog.action`) is about when the action is not on one backlog item.

A silence or a replay concerns alerts; its entry names the plan, item, agent, persona, provider, model and
task those alerts agree on, so it shows in that plan's `GET .../backlog/actions` like a resume does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from storyloom.domain.matchers import MatchType, parse_matcher

SUBJECT = ("plan_id", "backlog_id", "agent_id", "persona_id", "provider", "model", "task_id")


def common_subject(label_sets: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Each subject label the label sets all agree on; None where they differ, lack it, or there are none."""
    sets = list(label_sets)
    subject: dict[str, Any] = {}
    for key in SUBJECT:
        values = {labels.get(key) for labels in sets}
        subject[key] = values.pop() if len(values) == 1 else None
    return subject


def subjects_by_plan(label_sets: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One subject per plan among the label sets (at least one, plan-less when none names a plan)."""
    by_plan: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for labels in label_sets:
        by_plan[labels.get("plan_id")].append(labels)
    return [common_subject(group) for group in by_plan.values()] or [common_subject([])]


def silence_subject(matchers: Sequence[str]) -> dict[str, Any]:
    """The labels a silence pins with equality matchers (`plan_id="plan_x"`)."""
    parsed = [parse_matcher(m) for m in matchers]
    return common_subject([{m.name: m.value for m in parsed if m.op is MatchType.EQUAL}])
