"""Every catalog alert has a runbook with the required sections. Its ```console blocks run in the alert's
scenario test (`tests/e2e/scenarios/`, `tests/support/runbooks.py`)."""

from __future__ import annotations

import re
from pathlib import Path

from storyloom.domain.catalog import CATALOG, runbook_slug

RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks"
SECTIONS = (
    "## What it means",
    "## Impact",
    "## Labels",
    "## Confirm",
    "## Fix",
    "## Verify recovery",
    "## Escalate",
)
CONSOLE_BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)


def test_every_alert_in_the_catalog_has_a_complete_runbook() -> None:
    for alert_id in CATALOG:
        text = (RUNBOOKS / f"{runbook_slug(alert_id)}.md").read_text()
        assert text.startswith(f"# {alert_id}\n"), alert_id
        missing = [s for s in SECTIONS if s not in text]
        assert not missing, f"{alert_id} lacks {missing}"
        assert CONSOLE_BLOCK.search(text), f"{alert_id} has no ```console block"
