"""Runbooks as the scenario suite runs them (issue 7: "a runbook whose commands rot fails the build").

`docs/runbooks/<alert id with ':' → '-'>.md` has the sections Confirm, Fix and Verify recovery; their
```console blocks are run, verbatim, by `RunbookSession` in one bash session per alert (as an operator's
terminal: a later block may use what an earlier one set, such as a silence id), with `set -euo pipefail`,
against the scenario's live server and with the placeholders bound from the alert that fired. Every command
must exit 0. ```sh blocks are the steps no test can run (restarting a process, editing a file); they are
shown, never run.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from storyloom.domain.catalog import runbook_slug

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "docs" / "runbooks"

CONFIRM, FIX, VERIFY = "Confirm", "Fix", "Verify recovery"
RUN_SECTIONS = (CONFIRM, FIX, VERIFY)  # the sections whose console blocks run, in this order

# The placeholders a console block may use (README "Placeholders"): the alert labels they are bound from,
# then the server, its token, the alert's fingerprint, and the one id no label carries.
LABEL_PLACEHOLDERS = {
    "PLAN_ID": "plan_id",
    "BACKLOG_ID": "backlog_id",
    "TASK_ID": "task_id",
    "AGENT_ID": "agent_id",
    "OBLIGATION_ID": "obligation_id",
    "PROVIDER": "provider",
    "MODEL": "model",
    "RECEIVER": "receiver",
    "TEMPLATE_ID": "template_id",
}
PLACEHOLDERS = frozenset(
    {*LABEL_PLACEHOLDERS, "STORYLOOM_URL", "STORYLOOM_TOKEN", "FINGERPRINT", "DELIVERY_ID"}
)

HEADING = re.compile(r"^## (.+)$", re.MULTILINE)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
VARIABLE = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)")
ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Z][A-Z0-9_]*)=", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """One fenced block of a runbook: the `## ` section it is in, its language and its code."""

    section: str
    language: str
    code: str

    @property
    def variables(self) -> set[str]:
        return set(VARIABLE.findall(self.code))

    @property
    def assigned(self) -> set[str]:
        return set(ASSIGNMENT.findall(self.code))


def runbook_path(alert_id: str) -> Path:
    return RUNBOOKS / f"{runbook_slug(alert_id)}.md"


def blocks(text: str) -> list[Block]:
    """Every fenced block of a runbook's Markdown, in order, with the section it is in."""
    headings = [(m.start(), m.group(1).strip()) for m in HEADING.finditer(text)]
    found = []
    for fence in FENCE.finditer(text):
        section = next((name for start, name in reversed(headings) if start < fence.start()), "")
        found.append(Block(section, fence.group(1), fence.group(2)))
    return found


def console_blocks(alert_id: str) -> list[Block]:
    return [b for b in blocks(runbook_path(alert_id).read_text()) if b.language == "console"]


def label_bindings(labels: Mapping[str, str]) -> dict[str, str]:
    """The placeholders an alert's labels bind (`$PLAN_ID` from `plan_id`, …)."""
    return {name: labels[label] for name, label in LABEL_PLACEHOLDERS.items() if label in labels}


class RunbookFailed(AssertionError):
    """A console block of a runbook did not exit 0 (or did not finish in time)."""


class RunbookSession:
    """One alert's runbook, run section by section in one bash session with the given environment.

    Use it as a context manager: leaving it without an error asserts that every section with console blocks
    was run, so a scenario cannot skip its runbook's fix or verification.
    """

    def __init__(self, alert_id: str, env: Mapping[str, str], workdir: Path, *, timeout: float = 60) -> None:
        self.alert_id = alert_id
        self.blocks = console_blocks(alert_id)
        self.timeout = timeout
        self.workdir = workdir
        self.sections_run: list[str] = []
        self._output: queue.Queue[str | None] = queue.Queue()
        self._proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(env),
            cwd=workdir,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, name=f"runbook {alert_id}", daemon=True).start()
        self._send("set -euo pipefail")

    # --- the sections ---------------------------------------------------------------------------------

    def confirm(self) -> None:
        self.run(CONFIRM)

    def fix(self) -> None:
        self.run(FIX)

    def verify(self) -> None:
        self.run(VERIFY)

    def run(self, section: str) -> None:
        """Run the section's console blocks in order; raise `RunbookFailed` at the first that fails."""
        for number, block in enumerate(self.blocks):
            if block.section == section:
                self._run_block(number, block)
        self.sections_run.append(section)

    # --- the shell --------------------------------------------------------------------------------------

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._output.put(line)
        self._output.put(None)

    def _send(self, command: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()

    def _run_block(self, number: int, block: Block) -> None:
        script = self.workdir / f"runbook-{runbook_slug(self.alert_id)}-{number}.sh"
        script.write_text(block.code)
        done = f"__runbook_block_{number}_done__"
        self._send(f"source {script} </dev/null\necho {done}")
        deadline = time.monotonic() + self.timeout
        output: list[str] = []
        while True:
            try:
                line = self._output.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.close()
                raise self._failure(block, output, f"did not finish within {self.timeout:g}s") from None
            if line is None:
                code = self._proc.wait(timeout=10)
                raise self._failure(block, output, f"exited {code}")
            if line.rstrip("\n").endswith(done):  # a command's output may lack its final newline
                return
            output.append(line)

    def _failure(self, block: Block, output: list[str], what: str) -> RunbookFailed:
        return RunbookFailed(
            f"{runbook_path(self.alert_id).relative_to(ROOT)}, ## {block.section}: a console block {what}\n"
            f"--- block\n{block.code}--- output\n{''.join(output)}"
        )

    def close(self) -> None:
        """End the session (and anything a block left running in it)."""
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait(timeout=10)

    def __enter__(self) -> RunbookSession:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
        if kind is None:
            skipped = {b.section for b in self.blocks} - set(self.sections_run)
            assert not skipped, f"{self.alert_id}: the runbook's {sorted(skipped)} console blocks never ran"


def operator_environment(bindings: Mapping[str, str]) -> dict[str, str]:
    """The environment a runbook session runs in: this interpreter's `storyloom` first on PATH, and the
    bindings (which must all be known placeholders)."""
    unknown = set(bindings) - PLACEHOLDERS
    assert not unknown, f"not runbook placeholders: {sorted(unknown)}"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, **bindings}
