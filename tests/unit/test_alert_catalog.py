"""Alert ids come from the catalog: firing one it does not know is an error, not a mislabelled alert."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from storyloom.alerting.publish import AlertSignal, fire
from storyloom.domain import catalog
from storyloom.domain.catalog import CATALOG, PLANNER_PHASE_FAILED


def test_firing_an_alert_id_the_catalog_does_not_know_raises_before_touching_the_database() -> None:
    untouched = cast(Any, None)  # a connection the refused fire must never use
    with pytest.raises(ValueError, match=r"unknown alert id 'planner:phase-faild'"):
        fire(untouched, AlertSignal("planner:phase-faild", {"plan_id": "p1"}, "typo"), datetime.now(UTC))


def test_the_catalog_module_has_one_constant_per_alert_id_and_no_other() -> None:
    constants = {v for k, v in vars(catalog).items() if k.isupper() and isinstance(v, str) and ":" in v}
    assert constants == set(CATALOG)
    assert CATALOG[PLANNER_PHASE_FAILED].alert_id == PLANNER_PHASE_FAILED
