"""Archive + verify of N teams with about M MB of work each (half in a table of the team's schema, half in its
home: a compressible CSV and random bytes), against archiving the same teams one after another with plain
`pg_dump -Fc -n <team>` and `tar --zstd` of the home (no manifest, no checksums, no verification).

Needs root (Unix users and homes). Usage: python benchmarks/archive.py [--teams 50] [--mb 100] [--jobs N]
The issue's size is 50 teams x 100 MB; on a small shared machine scale it down (e.g. --teams 10 --mb 50).
"""

from __future__ import annotations

import argparse
import io
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port  # noqa: E402

from datathon.commands.archive import run_archive, run_verify  # noqa: E402
from datathon.commands.down import run_down  # noqa: E402
from datathon.commands.up import run_up  # noqa: E402
from datathon.config import load_config  # noqa: E402
from datathon.core.context import Context  # noqa: E402
from datathon.core.state import StateStore  # noqa: E402
from datathon.providers import get_provider  # noqa: E402

EVENT = "benchar"


def context(folder: Path, teams: int) -> Context:
    data = {"event": EVENT, "provider": "local", "teams": [{"name": f"t{i:02d}"} for i in range(teams)],
            "database": {"server": "managed", "port": free_port()},
            "databases": [{"name": f"{EVENT}db", "shared_schemas": []}],
            "policy": {"connection_limit": 4}, "workspaces": {"hub": False}}
    path = folder / "datathon.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    loaded = load_config(path)
    return Context(loaded=loaded, state=StateStore(loaded.base_dir, EVENT), console=Console(file=io.StringIO()))


def fill(ctx: Context, teams: int, mb: int) -> None:
    server = get_provider(ctx).database_server()
    rows = mb * 1_000_000 // 2 // 75  # about 75 bytes a row on disk
    with server.connect(f"{EVENT}db", autocommit=True) as conn:
        for i in range(teams):
            conn.execute(f"SET ROLE {EVENT}_t{i:02d}")
            conn.execute(f"CREATE TABLE t{i:02d}.measurements AS SELECT g AS id, (g % 5000) AS stay_id, "
                         f"random() * 100 AS value, md5(g::text) AS note FROM generate_series(1, {rows}) g")
            conn.execute("RESET ROLE")
    half = mb * 2**20 // 2
    for i in range(teams):
        entry = pwd.getpwnam(f"{EVENT}_t{i:02d}")
        home = Path(entry.pw_dir)
        (home / "results").mkdir(exist_ok=True)
        csv = home / "results" / "cohort.csv"
        with open(csv, "w") as fh:
            line = 0
            while fh.tell() < half // 2:
                fh.write(f"{line},{line % 97},{line * 0.37:.3f},subject {line % 1000}\n")
                line += 1
        (home / "results" / "model.bin").write_bytes(os.urandom(half // 2))
        for p in (home / "results", csv, home / "results" / "model.bin"):
            os.chown(p, entry.pw_uid, entry.pw_gid)


def plain_baseline(ctx: Context, teams: int, out: Path) -> float:
    server = get_provider(ctx).database_server()
    env = {**os.environ, **server.cli_env(f"{EVENT}db")}
    out.mkdir(parents=True)
    started = time.monotonic()
    for i in range(teams):
        team = f"t{i:02d}"
        subprocess.run([str(server.bin_dir / "pg_dump"), "-Fc", "-n", team, "-f", str(out / f"{team}.dump"),
                        f"{EVENT}db"], env=env, check=True)
        home = pwd.getpwnam(f"{EVENT}_{team}").pw_dir
        subprocess.run(["tar", "--zstd", "-cf", str(out / f"{team}.tar.zst"), "-C", home, "."], check=True)
    return time.monotonic() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teams", type=int, default=50)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=None)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-archive-", dir="/var/tmp"))
    ctx = context(folder, args.teams)
    try:
        t0 = time.monotonic()
        run_up(ctx, yes=True)
        fill(ctx, args.teams, args.mb)
        print(f"{args.teams} teams x ~{args.mb} MB made in {time.monotonic() - t0:.0f}s", flush=True)
        baseline = plain_baseline(ctx, args.teams, folder / "plain")
        print(f"plain pg_dump + tar, one team after another: {baseline:.1f}s", flush=True)
        a = run_archive(ctx, out=folder / "archive", jobs=args.jobs)
        print(f"datathon archive: {a.seconds:.1f}s", flush=True)
        # again, now that the data is as warm in the page cache as it was for the archive: the ratio uses the
        # faster of the two (the first run read the freshly written data first)
        shutil.rmtree(folder / "plain")
        second = plain_baseline(ctx, args.teams, folder / "plain")
        print(f"plain pg_dump + tar again: {second:.1f}s", flush=True)
        baseline = min(baseline, second)
        v = run_verify(ctx, out=folder / "archive", jobs=args.jobs)
        assert v.ok, [t.problems for t in v.teams if t.problems]
        print(f"datathon archive verify: {v.seconds:.1f}s", flush=True)
        again = run_archive(ctx, out=folder / "archive", jobs=args.jobs)
        print(f"datathon archive again (nothing changed): {again.seconds:.1f}s", flush=True)
        size = sum(t.bytes for t in a.teams)
        plain_size = sum(p.stat().st_size for p in (folder / "plain").iterdir())
        print(f"\n| teams x MB | plain pg_dump + tar (sequential, faster of 2) | archive | verify | archive + verify | "
              f"re-run | ratio archive / plain | ratio archive+verify / plain | size archive / plain |")
        print(f"| {args.teams} x {args.mb} | {baseline:.1f}s | {a.seconds:.1f}s | {v.seconds:.1f}s | "
              f"{a.seconds + v.seconds:.1f}s | {again.seconds:.1f}s | {a.seconds / baseline:.2f} | "
              f"{(a.seconds + v.seconds) / baseline:.2f} | {size / 2**20:.0f} / {plain_size / 2**20:.0f} MiB |")
    finally:
        try:
            run_down(ctx, yes=True, no_archive=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
