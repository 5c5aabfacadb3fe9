"""Instructions per lifecycle action, counted by valgrind (callgrind): a cost that does not drift.

This VM's speed swings by ±20 % within minutes, and the CPU time of a run swings with it, so a
change of a few per cent cannot be seen in ``lifecycle.py``'s actions/s.  The number of machine
instructions a run executes barely moves (±2 % here: task ids and dict orders are random).  This
script runs ``lifecycle.one_ticket`` in-process on SQLite under ``valgrind --tool=callgrind``,
twice: with ``--low`` and with ``--high`` tickets after the same set-up and warm-up, and divides
the difference by the extra actions, so start-up, imports and the database set-up cancel out.

    python bench/instructions.py                 # 1 and 4 tickets: about 3 minutes
    python bench/instructions.py --low 1 --high 6
    python bench/instructions.py --root ../other-checkout   # the same for another checkout (A/B)

Prints millions of instructions per action (fewer is faster).  It needs ``valgrind`` (Debian's
package); it is not part of ``make bench``.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the measured program: fresh SQLite database, 2 warm-up tickets, then N tickets
PROGRAM = """
import sys, tempfile
root = sys.argv[1]
sys.path[:0] = [root, root + "/bench"]
import lifecycle as L
from engine.clock import VirtualClock
from engine.db import make_engine, make_session_factory
url = L.fresh_database("sqlite", tempfile.mkdtemp(), "instructions")
engine = make_engine(url)
session_factory = make_session_factory(engine)
clock, rec = VirtualClock(), L.Recorder(engine)
for _ in range(2):
    L.one_ticket(session_factory, clock, rec)
for _ in range(int(sys.argv[2])):
    L.one_ticket(session_factory, clock, rec)
"""


def instructions(root: Path, tickets: int) -> int:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(PROGRAM)
    try:
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                              f.name, str(root), str(tickets)], env=env, capture_output=True, text=True, check=True)
    finally:
        os.unlink(f.name)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--low", type=int, default=1, help="tickets in the first run (1)")
    ap.add_argument("--high", type=int, default=4, help="tickets in the second run (4)")
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure (this one)")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    if args.high <= args.low:
        raise SystemExit("--high must be more than --low")
    low, high = instructions(args.root.resolve(), args.low), instructions(args.root.resolve(), args.high)
    per_action = (high - low) / ((args.high - args.low) * 10)  # 10 actions per ticket
    print(f"{args.root}: {per_action / 1e6:.3f} M instructions per action "
          f"({args.low} and {args.high} tickets after 2 warm-up, SQLite)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
