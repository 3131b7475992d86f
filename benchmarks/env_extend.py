"""Time adding one pip package to the team environment: the full rebuild (what `up` did before: a new venv, every
package) against the incremental one (a copy of the current environment, then pip installs only the new package).
Both run in a scratch env_root, so the machine's shared environments are not touched.

    .venv/bin/python benchmarks/env_extend.py [--package tabulate] [--keep]

Baseline (issue 17): asking for one pip package rebuilt the whole 906 MB environment in 1 min 44 s.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console

from datathon.config.workspaces import Workspaces
from datathon.workspaces.environment import TeamEnvironment


def du(path: Path) -> str:
    return subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True).stdout.split()[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--package", default="tabulate")
    ap.add_argument("--keep", action="store_true", help="keep the scratch env_root")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="env-bench-", dir="/opt/datathon"))
    root.chmod(0o755)
    quiet = Console(file=io.StringIO())
    try:
        base = TeamEnvironment(Workspaces(env_root=root))
        t0 = time.perf_counter()
        base.build(quiet)
        full_base = time.perf_counter() - t0
        wanted = Workspaces(env_root=root, packages={"pip": [args.package]})
        # the full rebuild of the new list (no base to copy: the old way)
        rebuilt = TeamEnvironment(wanted)
        t0 = time.perf_counter()
        with rebuilt._locked():
            rebuilt._build(quiet)
        full = time.perf_counter() - t0
        size = du(rebuilt.prefix)
        shutil.rmtree(rebuilt.prefix)
        # the incremental one: the same list, from the base environment
        extended = TeamEnvironment(wanted)
        assert extended.base() == (base.prefix, [args.package])
        t0 = time.perf_counter()
        extended.build(quiet)
        incremental = time.perf_counter() - t0
        assert extended.is_built()
        print(f"| step | seconds |\n|---|---|\n| first build (base) | {full_base:.1f} |\n"
              f"| + {args.package}: full rebuild | {full:.1f} |\n| + {args.package}: copy + pip install "
              f"only it | {incremental:.1f} |")
        print(f"environment size {size}; incremental / full = {incremental / full:.2f} "
              f"({full / incremental:.1f}x faster)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
