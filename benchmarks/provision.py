"""Time `datathon up` (from nothing: initdb, TLS, start, roles, schemas, grants, demo data, handouts) and a
second, no-change `up`, for 10 and for 100 teams, through the real CLI. Prints a table and the ratios.

    .venv/bin/python benchmarks/provision.py [--teams 10 100] [--databases 2] [--repeat 1]

Aims (issue 2): 100 teams under 30 s, the no-change run under 3 s, 100 teams at most 12x 10 teams.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import free_port

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "datathon.cli"]


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(CLI + args, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"datathon {' '.join(args)} failed:\n{proc.stderr}")
    return elapsed


def run_once(teams: int, databases: int) -> tuple[float, float]:
    folder = Path(tempfile.mkdtemp(prefix=f"bench{teams}-"))
    shutil.copy(REPO / "examples" / "demo-data.sql", folder / "demo-data.sql")
    dbs = [{"name": "bench", "shared_schemas": ["mimiciv_demo"], "sources": [{"sql": "demo-data.sql"}]}]
    dbs += [{"name": f"bench{i}", "shared_schemas": []} for i in range(2, databases + 1)]
    config = {"event": f"bench{teams}", "teams": {"count": teams}, "mentors": [{"name": "mentor1"}],
              "database": {"port": free_port()}, "databases": dbs}
    path = folder / "datathon.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        first = timed(["up", "--yes", "-c", str(path)])
        second = timed(["up", "--yes", "-c", str(path)])
    finally:
        subprocess.run(CLI + ["down", "--yes", "--no-archive", "-c", str(path)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    return first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teams", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--databases", type=int, default=2, help="event databases (a team schema in each)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the median is reported")
    args = parser.parse_args()

    rows = []
    for n in args.teams:
        runs = [run_once(n, args.databases) for _ in range(args.repeat)]
        first = statistics.median(r[0] for r in runs)
        second = statistics.median(r[1] for r in runs)
        rows.append((n, first, second))
        print(f"  measured {n} teams: up {first:.2f}s, no-change up {second:.2f}s", file=sys.stderr)

    print(f"\nprovision benchmark: {args.databases} event database(s), 1 mentor, demo data; "
          f"median of {args.repeat} run(s); wall time of the CLI\n")
    print(f"{'teams':>6} {'up (s)':>8} {'no-change up (s)':>17} {'s/team':>8}")
    for n, first, second in rows:
        print(f"{n:>6} {first:>8.2f} {second:>17.2f} {first / n:>8.3f}")
    if len(rows) >= 2:
        (n0, f0, s0), (n1, f1, s1) = rows[0], rows[-1]
        print(f"\n{n1} teams cost {f1 / f0:.1f}x {n0} teams for up (aim <= 12x), "
              f"no-change {s1 / s0:.1f}x; {n1}-team up {'within' if f1 < 30 else 'OVER'} 30 s; "
              f"no-change {'within' if s1 < 3 else 'OVER'} 3 s")


if __name__ == "__main__":
    main()
