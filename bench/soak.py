"""kill -9 soak: SIGKILL a real `storyloom run` at seeded random points while plans run and alerts fire.

Every plan must complete, no item may succeed twice, `attempts` must equal the executions recorded, and a
loopback receiver process must get every alert firing and its resolved notice (tests/support/soak.py).
Exits 1 with the broken promises when one fails.

    .venv/bin/python bench/soak.py --kills 20 --seed 20261202
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.soak import run_soak  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kill -9 points (one plan started before each)")
    parser.add_argument("--seed", type=int, default=20261202, help="seeds the kill delays")
    parser.add_argument("--max-delay", type=float, default=2.5, help="longest delay before a kill, seconds")
    args = parser.parse_args()
    os.chdir(ROOT)  # the receiver process runs as `python -m tests.support.receiver_process`
    load = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="storyloom-soak-"))
    result = run_soak(workdir, seed=args.seed, kills=args.kills, max_delay=args.max_delay)
    end = os.getloadavg()
    print(f"load average: {load[0]:.2f} at start, {end[0]:.2f} at end ({os.cpu_count()} cores)")
    print(result.summary())
    problems = result.problems()
    for problem in problems:
        print(f"BROKEN: {problem}")
    if problems:
        print(f"kept for inspection: {workdir} (server logs, received.jsonl, databases)")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print("soak held" if not problems else f"soak broke {len(problems)} promise(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
