"""Time-based and server-wide health alerts, end to end, on a fresh server: no executions yet, a stale
item, a queue waiting past its objective, and phase latency burning its budget.

The module's server runs one phase at a time and evaluates health every second against one-second
thresholds, and each plan's vision call takes 3 s (a `slow` fault on its first attempt): the worker is
held. While it is, a fresh server has no execution yet (`planner:no-executions`), the vision is in
progress without an update (`backlog:stale`), and a second plan's vision waits in the queue
(`backlog:queue-age`); each test works its alert by its runbook during the hold, and the cause goes when
the call returns. `planner:latency-slo` fires when slow phases breach an objective stricter than the
module's; its runbook's fix (the agreed objective back in the config file, reloaded) resolves it. The
tests run in this order: the first needs a server that never ran a phase.
"""

from __future__ import annotations

import pytest

from tests.support.scenario import ABSENT, MODEL, PRESENT, Scenario
from tests.support.server import wait_for

pytestmark = pytest.mark.slow

HELD = {"llm": {"faults": [{"phase": "vision", "mode": "slow", "delay": "3s", "times": 1}]}}
SCENARIO_CONFIG = {
    **HELD,
    "pipeline": {"concurrency": 1},
    "health": {
        "stale_in_progress": "1s",
        "slo": {"phase_latency": {"threshold": "1s"}, "queue_age": {"threshold": "1s"}},
    },
}
NO_PLAN = {"plan_id": ABSENT, "backlog_id": ABSENT}
LATENCY_SLO = "planner:latency-slo"


def test_no_executions_fires_while_plans_wait_for_a_first_execution_and_resolves_after_it(
    scenario: Scenario,
) -> None:
    plan_id = scenario.create_plan("No executions")

    firing = scenario.wait_firing("planner:no-executions", NO_PLAN)
    assert "no planner execution" in firing.alert["description"]

    scenario.follow_runbook(firing)  # the held call returns: the first execution
    scenario.wait_plan(plan_id)


def test_stale_fires_for_an_item_in_progress_without_updates_and_resolves_when_it_completes(
    scenario: Scenario,
) -> None:
    plan_id = scenario.create_plan("Stale")
    persona_id, agent_id = scenario.author

    firing = scenario.wait_firing(
        "backlog:stale",
        {
            "plan_id": plan_id,
            "backlog_id": "vision-plan",
            "task_id": PRESENT,
            "phase": "vision",
            "agent_id": agent_id,
            "persona_id": persona_id,
            "provider": "offline",
            "model": MODEL,
        },
    )

    scenario.follow_runbook(firing)  # the held call returns and the item moves on
    scenario.wait_plan(plan_id)


def test_queue_age_fires_while_a_ready_item_waits_past_the_objective_and_resolves_when_the_queue_drains(
    scenario: Scenario,
) -> None:
    since = scenario.mark()
    plans = [scenario.create_plan(f"Queue {n}") for n in (1, 2)]

    firing = scenario.wait_firing("backlog:queue-age", NO_PLAN, since=since)
    assert "oldest ready item" in firing.alert["description"]
    # The queue has waited a second behind the held call: the waiting vision may run fast.
    scenario.configure({"llm": {"faults": []}})

    scenario.follow_runbook(firing)  # the held call returns and the queue drains
    for plan_id in plans:
        scenario.wait_plan(plan_id)


def test_latency_slo_fires_when_slow_phases_breach_a_strict_objective_and_resolves_with_the_agreed_one(
    scenario: Scenario,
) -> None:
    wait_for(
        lambda: not scenario.server.get("/api/alerts", alert_id=LATENCY_SLO, status="firing"),
        timeout=60,
        message="the earlier tests' slow phases to be outweighed by fast ones",
    )
    since = scenario.mark()
    scenario.configure({"health": {"slo": {"phase_latency": {"objective": 0.999}}}})
    plan_id = scenario.create_plan("Latency")

    firing = scenario.wait_firing(LATENCY_SLO, NO_PLAN, since=since)
    assert "burn rate" in firing.alert["description"]

    scenario.follow_runbook(firing, manual_fix=scenario.configure)  # the agreed objective, 0.95
    scenario.wait_plan(plan_id)
