"""PlannerHealth status determination (CONTRACTS §5) and the evaluated-alert bookkeeping, without a database."""

from __future__ import annotations

import pytest

from storyloom.domain.catalog import CATALOG
from storyloom.health.evaluate import MANAGED, RULES
from storyloom.health.report import CRITICAL, DEGRADED, HEALTHY, status_for


def test_fresh_install_is_healthy() -> None:
    assert status_for([]) == HEALTHY


def test_info_alerts_do_not_degrade() -> None:
    assert status_for([("planner:no-executions", "info"), ("obligation:open", "info")]) == HEALTHY


@pytest.mark.parametrize("severity", ["warning", "error", "critical"])
def test_warning_and_above_degrade(severity: str) -> None:
    assert status_for([("backlog:stale", severity)]) == DEGRADED


def test_template_missing_is_critical() -> None:
    assert status_for([("planner:template-missing", "critical")]) == CRITICAL
    assert status_for([], template_missing=True) == CRITICAL


def test_contract_drift_is_critical_only_at_error() -> None:
    assert status_for([("backlog:contract-drift", "warning")]) == DEGRADED
    assert status_for([("backlog:contract-drift", "error")]) == CRITICAL


def test_critical_wins_whatever_the_order() -> None:
    firing = [("backlog:stale", "warning"), ("planner:template-missing", "critical"), ("x", "info")]
    assert status_for(firing) == CRITICAL
    assert status_for(list(reversed(firing))) == CRITICAL


def test_other_critical_alerts_degrade_but_are_not_critical() -> None:
    """§5 names exactly two critical causes; an ingested critical alert degrades."""
    assert status_for([("ingested:disk-full", "critical")]) == DEGRADED


def test_every_evaluated_catalog_alert_has_an_owner() -> None:
    evaluated = {k for k, kind in CATALOG.items() if kind.evaluated}
    # obligation:aging is reconciled by the obligations service, called from the same evaluation
    assert evaluated - set(MANAGED) == {"obligation:aging"}
    assert set(MANAGED) <= set(CATALOG)
    assert all(CATALOG[alert_id].source.value == "health" for alert_id in MANAGED)
    assert set(RULES) == set(MANAGED)
