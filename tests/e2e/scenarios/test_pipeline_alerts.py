"""Alerts raised by the planner runner, the tool dispatcher and the backlog API, end to end.

One server for the module; each test reloads the config it needs (faults, quotas, budgets, thresholds)
through `POST /api/config/reload`, starts its own plan and waits for the signed notification. Then it
works the alert by its runbook (`Scenario.follow_runbook`): the runbook's Confirm commands, the config
edit its Fix asks for (done by the test), its Fix commands (the resume, the reload), the resolved
notification of the same alert, its Verify commands. Every test leaves its plan complete, so the next
test's faults do not reach it.
"""

from __future__ import annotations

import pytest

from tests.support.scenario import (
    ABSENT,
    MODEL,
    PAGER,
    PRESENT,
    Scenario,
    require_labels,
)

pytestmark = pytest.mark.slow

FAIL_3 = {"mode": "fail", "times": 3}  # the item's first three attempts: one whole task with 3 attempts


def item_labels(scenario: Scenario, plan_id: str, backlog_id: str, phase: str) -> dict[str, object]:
    persona_id, agent_id = scenario.author
    return {
        "plan_id": plan_id,
        "backlog_id": backlog_id,
        "task_id": PRESENT,
        "phase": phase,
        "agent_id": agent_id,
        "persona_id": persona_id,
        "provider": "offline",
        "model": MODEL,
    }


def test_phase_failed_fires_on_exhausted_attempts_and_resolves_after_resume(scenario: Scenario) -> None:
    scenario.configure({"llm": {"faults": [{"phase": "scroll_refiner", **FAIL_3}]}})
    plan_id = scenario.create_plan("Phase failed")

    firing = scenario.wait_firing(
        "planner:phase-failed", item_labels(scenario, plan_id, "scroll-1", "scroll_refiner")
    )
    failed = scenario.wait_item(plan_id, "scroll-1", "failed")
    assert firing.labels["task_id"] == failed["task_id"]
    # error alerts page as well (the §2 routing sample), with the same identity
    paged = scenario.wait_firing(
        "planner:phase-failed", {"plan_id": plan_id, "backlog_id": "scroll-1"}, receiver=PAGER
    )
    assert paged.fingerprint == firing.fingerprint

    scenario.follow_runbook(firing)  # its Fix resumes the item
    scenario.wait_resolved(paged)
    scenario.wait_plan(plan_id)


def test_tool_failed_fires_on_a_failing_llm_call_and_resolves_when_the_item_completes(
    scenario: Scenario,
) -> None:
    scenario.configure({"llm": {"faults": [{"phase": "chapter_architect", **FAIL_3}]}})
    plan_id = scenario.create_plan("Tool failed")

    labels = {"tool": "planner.generate", **item_labels(scenario, plan_id, "chapter-1", "chapter_architect")}
    firing = scenario.wait_firing("tool:failed", labels)
    assert "injected fault" in firing.alert["description"]
    scenario.wait_item(plan_id, "chapter-1", "failed")

    scenario.follow_runbook(firing)  # its Fix resumes the item
    scenario.wait_plan(plan_id)


def test_tool_timeout_fires_on_a_timed_out_llm_call_and_resolves_when_the_item_completes(
    scenario: Scenario,
) -> None:
    scenario.configure(
        {"llm": {"faults": [{"phase": "iterative", "mode": "timeout", "times": 3, "delay": "50ms"}]}}
    )
    plan_id = scenario.create_plan("Tool timeout")

    labels = {"tool": "planner.generate", **item_labels(scenario, plan_id, "iteration-plan", "iterative")}
    firing = scenario.wait_firing("tool:timeout", labels)
    assert "timed out" in firing.alert["description"]
    scenario.wait_item(plan_id, "iteration-plan", "failed")

    scenario.follow_runbook(firing, manual_fix=scenario.configure)  # the provider is fast again
    scenario.wait_plan(plan_id)


def test_quota_exceeded_fires_when_a_planner_quota_refuses_and_resolves_after_reload_and_resume(
    scenario: Scenario,
) -> None:
    # One Chapter Architect run per plan, and its first attempt fails: the retry is refused by the quota.
    # (A retry within one task, not two chapters: items running at once both pass a max_iterations check
    # that counts only finished executions.)
    fault = {"llm": {"faults": [{"phase": "chapter_architect", "mode": "fail", "times": 1}]}}
    quota = {"quotas": {"per_planner": {"Chapter Architect": {"max_iterations": 1}}}}
    scenario.configure({**fault, "pipeline": quota})
    plan_id = scenario.create_plan("Quota")

    labels = {"tool": "planner.generate", **item_labels(scenario, plan_id, "chapter-1", "chapter_architect")}
    firing = scenario.wait_firing("tool:quota-exceeded", {**labels, "quota": "rejected"})
    assert "max_iterations" in firing.alert["description"]
    scenario.wait_item(plan_id, "chapter-1", "failed")

    scenario.follow_runbook(firing, manual_fix=scenario.configure)  # the quota is lifted
    scenario.wait_plan(plan_id)
    require_labels(firing, provider="offline", model=MODEL)


def test_critique_exhausted_fires_on_an_empty_budget_and_resolves_once_the_budget_is_raised(
    scenario: Scenario,
) -> None:
    scenario.configure({"pipeline": {"critique": {"enabled": True, "max_total": 0}}})
    plan_id = scenario.create_plan("Critique exhausted")

    labels = {"budget": "count", **item_labels(scenario, plan_id, "vision-plan", "vision")}
    firing = scenario.wait_firing("planner:critique-exhausted", labels)
    assert "count-exhausted" in firing.alert["description"]

    # the budget is raised: the other items now critique within budget and the plan completes
    scenario.follow_runbook(
        firing,
        manual_fix=lambda: scenario.configure({"pipeline": {"critique": {"enabled": True, "max_total": 50}}}),
    )
    scenario.wait_plan(plan_id)


def test_recent_failures_fires_on_an_item_that_failed_for_good_and_resolves_once_it_completes(
    scenario: Scenario,
) -> None:
    # world-bible fails all three attempts of its task: failed executions of an item still not fixed
    scenario.configure({"llm": {"faults": [{"phase": "world_bible", **FAIL_3}]}})
    plan_id = scenario.create_plan("Recent failures")
    persona_id, agent_id = scenario.author

    firing = scenario.wait_firing(
        "planner:recent-failures",
        {"plan_id": plan_id, "agent_id": agent_id, "persona_id": persona_id, "backlog_id": ABSENT},
    )
    assert "failed planner execution(s) of 1 item(s)" in firing.alert["description"]  # 1 to 3, as it fires
    # its Fix resumes the failed item with the CLI's defaults; the alert resolves when the item completes,
    # long before the failures leave the 24h window
    scenario.follow_runbook(firing)
    scenario.wait_plan(plan_id)


def test_provider_unavailable_fires_when_several_plans_fail_on_one_provider_and_resolves_when_it_answers(
    scenario: Scenario,
) -> None:
    since = scenario.mark()
    scenario.configure({"llm": {"faults": [{"phase": "*", "mode": "fail"}]}})  # the provider is down
    plans = [scenario.create_plan(f"Outage {n}") for n in (1, 2)]

    firing = scenario.wait_firing(
        "planner:provider-unavailable",
        {"provider": "offline", "plan_id": ABSENT, "backlog_id": ABSENT},
        since=since,
    )
    assert "offline" in firing.alert["description"]
    paged = scenario.wait_firing(
        "planner:provider-unavailable", {"provider": "offline"}, since=since, receiver=PAGER
    )
    for plan_id in plans:
        scenario.wait_item(plan_id, "vision-plan", "failed")

    # the provider is back; the runbook's Fix resumes every item its phase-failed alerts name
    scenario.follow_runbook(firing, manual_fix=scenario.configure)
    scenario.wait_resolved(paged)
    for plan_id in plans:
        scenario.wait_plan(plan_id)


def test_flapping_fires_when_an_item_keeps_returning_to_pending_and_resolves_below_the_threshold(
    scenario: Scenario,
) -> None:
    flapping = {
        "llm": {"faults": [{"phase": "scroll_refiner", "mode": "fail"}]},
        "pipeline": {"max_phase_attempts": 1},
        "health": {"flapping_threshold": 2},
    }
    scenario.configure(flapping)
    plan_id = scenario.create_plan("Flapping")
    scenario.wait_item(plan_id, "scroll-1", "failed")
    scenario.resume_ok(plan_id, "scroll-1")  # back to pending: 1
    scenario.wait_item(plan_id, "scroll-1", "failed")
    scenario.resume_ok(plan_id, "scroll-1")  # back to pending: 2 = the threshold

    persona_id, agent_id = scenario.author
    firing = scenario.wait_firing(
        "backlog:flapping",
        {
            "plan_id": plan_id,
            "backlog_id": "scroll-1",
            "phase": "scroll_refiner",
            "agent_id": agent_id,
            "persona_id": persona_id,
            "provider": "offline",
            "model": MODEL,
            "task_id": ABSENT,  # one alert for the item, whatever task it is on
        },
    )
    scenario.wait_item(plan_id, "scroll-1", "failed")

    # The count is over a 24 h window that cannot elapse in a test: the fix is to stop the failures and
    # raise the threshold; the runbook's resume, a return to pending below it, resolves the alert.
    scenario.follow_runbook(
        firing, manual_fix=lambda: scenario.configure({"health": {"flapping_threshold": 10}})
    )
    scenario.wait_plan(plan_id)


def test_contract_drift_fires_on_a_rejected_resume_and_escalates_to_error_at_the_second(
    scenario: Scenario,
) -> None:
    scenario.configure()
    plan_id = scenario.create_plan("Contract drift")
    scenario.wait_plan(plan_id)
    labels = {"plan_id": plan_id, "code": "unknown-agent", "backlog_id": ABSENT}

    first = scenario.resume(plan_id, "vision-plan", agent_id="agent_nobody")
    assert first.status_code == 422, first.text
    warning = scenario.wait_firing("backlog:contract-drift", labels, severity="warning")

    second = scenario.resume(plan_id, "vision-plan", agent_id="agent_nobody")
    assert second.status_code == 422, second.text
    # the escalation keeps the alert's identity and reaches the error route (the pager)
    error = scenario.wait_firing("backlog:contract-drift", labels, severity="error", receiver=PAGER)
    assert error.fingerprint == warning.fingerprint
    current = scenario.server.get("/api/alerts", alert_id="backlog:contract-drift", status="firing")
    assert [a["severity"] for a in current if a["fingerprint"] == warning.fingerprint] == ["error"]

    # Resolution needs 24 h without a rejected resume (CONTRACTS §6, DOMAIN thresholds): the runbook's Fix
    # silences the alert for that time and its Verify finds the silence on it, then expires it.
    with scenario.runbook(error) as runbook:
        runbook.confirm()
        runbook.fix()
        runbook.verify()
