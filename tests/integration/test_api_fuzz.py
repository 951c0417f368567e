"""Schemathesis against a real `storyloom api` on loopback, over every operation, with and without a token:
no server error, and every status, content type and body is one the OpenAPI document declares.

The short pass (`make test`) has a fixed seed and a few examples per operation; `make fuzz` sets
STORYLOOM_FUZZ=long for the long pass (boundary coverage, many examples, stateful links, a fresh seed).

Excluded, and only these:
- `GET /api/events/stream`: an endless Server-Sent Events stream; a fuzzer's request never completes.
Nothing is excluded for its side effects: the server runs as `storyloom api` (no engine), so plans it
creates are never run, and the demo receiver is off (its operations answer their documented 404).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ADMIN_TOKEN, ServerProcess, running_server

pytestmark = pytest.mark.slow

LONG = os.environ.get("STORYLOOM_FUZZ") == "long"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
EXCLUDED = ["/api/events/stream"]
# (phases, examples per operation, seed): the short pass stays well under a minute on a loaded machine.
PASSES = {
    "token": ("coverage,fuzzing,stateful", 200, None) if LONG else ("examples,fuzzing", 6, 1),
    "anonymous": ("coverage,fuzzing", 50, None) if LONG else ("fuzzing", 2, 1),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("fuzz"), role="api", config={}) as process:
        yield process


def schemathesis(server: ServerProcess, auth: str) -> list[str]:
    phases, examples, seed = PASSES[auth]
    args = [
        str(Path(sys.executable).parent / "st"),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        CHECKS,
        "--phases",
        phases,
        "--max-examples",
        str(examples),
        "--no-shrink",
        *(f"--exclude-path={path}" for path in EXCLUDED),
    ]
    if seed is not None:
        args += ["--seed", str(seed)]
    if auth == "token":
        args += ["--header", f"Authorization: Bearer {ADMIN_TOKEN}"]
    return args


@pytest.mark.parametrize("auth", ["token", "anonymous"])
def test_every_operation_answers_only_what_it_documents(
    server: ServerProcess, auth: str, tmp_path: Path
) -> None:
    run = subprocess.run(  # in tmp_path: schemathesis keeps its cache in the working directory
        schemathesis(server, auth),
        capture_output=True,
        text=True,
        timeout=3600 if LONG else 300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", run.stdout)
    tested = re.search(r"Tested: (\d+)", run.stdout)
    assert selected and tested, run.stdout[-3000:]
    assert int(tested.group(1)) == int(selected.group(1)) == int(selected.group(2)) - len(EXCLUDED)
