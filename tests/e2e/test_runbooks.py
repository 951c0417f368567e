"""Runbooks are executable (issue 7): the scenario suite (`tests/e2e/scenarios/`) runs every ```console
block of an alert's runbook against the live server in the state its scenario produced, with the
placeholders bound from the alert (`tests/support/runbooks.py`). Here, what makes that complete: every
catalog alert has a runbook with the required sections, its console blocks sit in the sections the
scenarios run and use only the documented placeholders, every alert has a scenario test that works its
runbook, and a built package carries the runbooks the console serves.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from storyloom.domain.catalog import CATALOG, runbook_slug
from tests.support.runbooks import (
    CONFIRM,
    FIX,
    PLACEHOLDERS,
    ROOT,
    RUN_SECTIONS,
    RUNBOOKS,
    VERIFY,
    Block,
    blocks,
    runbook_path,
)

SECTIONS = ("What it means", "Impact", "Labels", CONFIRM, FIX, VERIFY, "Escalate")
SCENARIOS = ROOT / "tests" / "e2e" / "scenarios"
README = RUNBOOKS / "README.md"


def runbook_blocks(alert_id: str) -> list[Block]:
    return blocks(runbook_path(alert_id).read_text())


@pytest.mark.parametrize("alert_id", sorted(CATALOG))
def test_every_catalog_alert_has_a_runbook_with_the_required_sections(alert_id: str) -> None:
    text = runbook_path(alert_id).read_text()
    assert text.startswith(f"# {alert_id}\n"), alert_id
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings == list(SECTIONS), f"{alert_id}: sections {headings}, want {list(SECTIONS)}"


@pytest.mark.parametrize("alert_id", sorted(CATALOG))
def test_console_blocks_sit_in_the_sections_the_scenarios_run(alert_id: str) -> None:
    found = runbook_blocks(alert_id)
    console = {b.section for b in found if b.language == "console"}
    assert console <= set(RUN_SECTIONS), f"{alert_id}: console blocks outside {RUN_SECTIONS}: {console}"
    assert {CONFIRM, VERIFY} <= console, f"{alert_id}: Confirm and Verify recovery need console blocks"
    assert any(b.section == FIX for b in found), f"{alert_id}: Fix has no command"
    assert {b.language for b in found} <= {"console", "sh"}, alert_id


@pytest.mark.parametrize("alert_id", sorted(CATALOG))
def test_console_blocks_use_only_documented_placeholders_or_their_own_variables(alert_id: str) -> None:
    assigned: set[str] = set()
    for block in runbook_blocks(alert_id):
        if block.language == "console":
            unknown = block.variables - PLACEHOLDERS - assigned
            assert not unknown, f"{alert_id}: unknown placeholders {sorted(unknown)} in\n{block.code}"
            assigned |= block.assigned


@pytest.mark.parametrize("alert_id", sorted(CATALOG))
def test_every_sh_block_says_why_no_test_runs_it(alert_id: str) -> None:
    text = runbook_path(alert_id).read_text()
    for block in runbook_blocks(alert_id):
        if block.language == "sh":
            before = text[: text.index(f"```sh\n{block.code}")].rstrip().split("\n\n")[-1]
            assert "Not run by the tests:" in " ".join(before.split()), f"{alert_id}:\n{block.code}"


def test_the_readme_documents_exactly_the_placeholders_the_scenarios_bind() -> None:
    text = README.read_text()
    table = text[text.index("## Placeholders") :].split("\n## ", 1)[0]
    assert set(re.findall(r"`\$([A-Z][A-Z0-9_]*)`", table)) == PLACEHOLDERS


def test_the_readme_indexes_every_runbook() -> None:
    text = README.read_text()
    for alert_id in CATALOG:
        assert f"| `{alert_id}` |" in text and f"({runbook_slug(alert_id)}.md)" in text, alert_id


def _alerts_worked_by_runbook(module: Path) -> set[str]:
    """The alert ids whose firing a test function of `module` waits for (`wait_firing("<id>", ...)`, the id
    a literal or a module constant) and that works a runbook (`follow_runbook(...)` or `runbook(...)`)."""
    tree = ast.parse(module.read_text())
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    worked = set()
    for function in (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")):
        calls = [n for n in ast.walk(function) if isinstance(n, ast.Call)]
        names = {getattr(c.func, "attr", getattr(c.func, "id", None)) for c in calls}
        if not names & {"follow_runbook", "runbook"}:
            continue
        for call in calls:
            if getattr(call.func, "attr", None) == "wait_firing" and call.args:
                first = call.args[0]
                if isinstance(first, ast.Constant):
                    worked.add(first.value)
                elif isinstance(first, ast.Name) and first.id in constants:
                    worked.add(constants[first.id])
    return worked


def test_every_catalog_alert_has_a_scenario_test_that_works_its_runbook() -> None:
    worked = set().union(*(_alerts_worked_by_runbook(m) for m in SCENARIOS.glob("test_*.py")))
    missing = sorted(set(CATALOG) - worked)
    assert not missing, f"no scenario test fires and works the runbook of {missing}"


def test_a_built_package_carries_every_runbook_and_serves_it_from_there(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "setup.py", "--quiet", "build_py", "--build-lib", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    packaged = tmp_path / "storyloom" / "docs" / "runbooks"
    assert sorted(p.name for p in packaged.glob("*.md")) == sorted(p.name for p in RUNBOOKS.glob("*.md"))
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from storyloom.console.runbooks import runbook_path; print(runbook_path('delivery:failing'))",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        check=True,
        capture_output=True,
        text=True,
    )
    assert Path(found.stdout.strip()) == packaged / "delivery-failing.md"
