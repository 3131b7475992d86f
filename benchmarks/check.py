"""Time `datathon check` (database probes) on an event of N teams (default 50) brought up for the purpose.

    .venv/bin/python benchmarks/check.py [--teams 50]

Aim (issue 6): 50 teams' database probes in under 60 s on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import free_port

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "datathon.cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teams", type=int, default=50)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="benchcheck-"))
    shutil.copy(REPO / "examples" / "demo-data.sql", folder / "demo-data.sql")
    config = {"event": "benchchk", "teams": {"count": args.teams}, "mentors": [{"name": "mentor1"}],
              "database": {"port": free_port()},
              "databases": [{"name": "bench", "shared_schemas": ["mimiciv_demo"],
                             "sources": [{"sql": "demo-data.sql"}]}],
              "policy": {"connection_limit": 5}}
    path = folder / "datathon.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        subprocess.run(CLI + ["up", "--yes", "-c", str(path)], check=True, capture_output=True)
        start = time.perf_counter()
        proc = subprocess.run(CLI + ["check", "-c", str(path), "--json", str(folder / "check.json")],
                              capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        data = json.loads((folder / "check.json").read_text())
    finally:
        subprocess.run(CLI + ["down", "--yes", "--no-archive", "-c", str(path)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    runs = len(data["results"])
    print(f"\ncheck benchmark: {args.teams} teams x {len(data['probes'])} probes = {runs} probe runs, "
          f"1 database with demo data, connection limit 5")
    print(f"  wall time of `datathon check`: {elapsed:.1f} s ({runs / elapsed:.0f} probe runs/s); "
          f"verdict {data['verdict']} (exit {proc.returncode}); aim < 60 s: {'met' if elapsed < 60 else 'MISSED'}")


if __name__ == "__main__":
    main()
