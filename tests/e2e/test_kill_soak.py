"""kill -9 at a few seeded random points while plans run and alerts fire: nothing is lost or done twice.

The long run (20 kill points) is `make soak` (bench/soak.py); see tests/support/soak.py for the scenario.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.soak import run_soak

pytestmark = pytest.mark.slow


def test_kill_9_at_seeded_points_loses_no_plan_phase_or_notification(tmp_path: Path) -> None:
    result = run_soak(tmp_path, seed=13, kills=3)
    assert result.problems() == [], result.summary()
    assert len(result.plans) == 3 and result.items == 27
    assert result.caused_alerts  # tool:timeout per chapter item and the probes: they fired and resolved
