"""Packages the runbooks into the wheel: `docs/runbooks/` at the repository root is their single source.

The console serves `/runbooks/<alert id>` from `storyloom/docs/runbooks/` inside an installed package and
falls back to the repository's `docs/runbooks/` for editable installs (`storyloom.console.runbooks`).
Everything else about the package is configured in `pyproject.toml`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

RUNBOOKS = Path(__file__).resolve().parent / "docs" / "runbooks"


class BuildPyWithRunbooks(build_py):
    """`build_py`, then a copy of `docs/runbooks/*.md` into the built `storyloom/docs/runbooks/`."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the repository's docs/ directly
            return
        target = Path(self.build_lib) / "storyloom" / "docs" / "runbooks"
        target.mkdir(parents=True, exist_ok=True)
        for runbook in sorted(RUNBOOKS.glob("*.md")):
            shutil.copy2(runbook, target / runbook.name)


setup(cmdclass={"build_py": BuildPyWithRunbooks})
