"""The watcher's own cost (issue 18): one cycle of `datathon watch` on an event of N teams (default 100), with a
table in every team's schema and some team sessions open, measured over N cycles run back to back.

    .venv/bin/python benchmarks/watcher.py [--teams 100] [--cycles 60] [--sessions 20]

Figures, each as a ratio against the baseline, the cycle period (the default cadence, dashboard.watch_every 5 s):
wall time per cycle / period; CPU seconds per minute at that cadence (this process, and the server's backends
that the watcher's connections ran on) / 60 s; queries and connections per cycle. The schema sizes are measured
every 30 s (one cycle in 6 at 5 s), as the watcher does: so are they here.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import yaml
from psycopg import sql
from _common import free_port
from rich.console import Console

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "datathon.cli"]
TICK = os.sysconf("SC_CLK_TCK")


class Counter:
    """Counts every statement and connection of this process (psycopg's own entry points, wrapped)."""

    def __init__(self) -> None:
        self.queries = 0
        self.connections = 0
        execute, connect = psycopg.Cursor.execute, psycopg.connect

        def counted_execute(cur, *a, **kw):
            self.queries += 1
            return execute(cur, *a, **kw)

        def counted_connect(*a, **kw):
            self.connections += 1
            return connect(*a, **kw)

        psycopg.Cursor.execute = counted_execute
        psycopg.connect = counted_connect


def backends_cpu(postmaster: int) -> float:
    """CPU seconds of the server's backends that ended (the postmaster's reaped children) and of the postmaster."""
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / TICK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teams", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--sessions", type=int, default=20, help="team sessions held open while it watches")
    parser.add_argument("--every", type=float, default=5.0, help="the cadence the figures are scaled to")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="benchwatch-"))
    shutil.copy(REPO / "examples" / "demo-data.sql", folder / "demo-data.sql")
    config = {"event": "w6bench", "teams": {"count": args.teams}, "mentors": [{"name": "mentor1"}],
              "database": {"port": free_port()},
              "databases": [{"name": "w6benchdb", "shared_schemas": ["mimiciv_demo"],
                             "sources": [{"sql": "demo-data.sql"}]}, {"name": "w6benchx", "shared_schemas": []}],
              "policy": {"connection_limit": 5, "disk_quota": "1GB"}}
    path = folder / "datathon.yaml"
    path.write_text(yaml.safe_dump(config))
    held: list[psycopg.Connection] = []
    try:
        started = time.perf_counter()
        print(f"bringing up an event of {args.teams} teams ...", flush=True)
        subprocess.run(CLI + ["up", "--yes", "-q", "-c", str(path)], check=True)
        print(f"  up in {time.perf_counter() - started:.0f} s", flush=True)
        from datathon.commands.watch import run_watch_cycle
        from datathon.config import load_config
        from datathon.core.context import Context
        from datathon.core.state import StateStore
        from datathon.database.parts import DataPart
        from datathon.database.tenancy import wanted_logins
        from datathon.providers import get_provider

        loaded = load_config(path)
        ctx = Context(loaded=loaded, state=StateStore(loaded.base_dir, loaded.config.event),
                      console=Console(file=io.StringIO()))
        server = get_provider(ctx).database_server()
        teams = [x for x in wanted_logins(ctx.config) if x.kind == "team"]
        with server.connect("w6benchdb", autocommit=True) as conn:  # a table in every team's schema
            for t in teams:
                table = sql.Identifier(t.name, "work")
                conn.execute(sql.SQL("CREATE TABLE {} AS SELECT g, md5(g::text) AS h FROM generate_series(1, 2000) g")
                             .format(table))
                conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(table, sql.Identifier(t.role)))
        ep = server.endpoint()
        for t in teams[:args.sessions]:  # sessions the watcher lists (idle, as most are)
            held.append(psycopg.connect(host=ep.host, port=ep.port, dbname="w6benchdb", user=t.role,
                                        password=ctx.state.secret(t.role, create=False), sslmode="require",
                                        autocommit=True))
        parts = get_provider(ctx).parts()
        data = next(p for p in parts if isinstance(p, DataPart))
        run_watch_cycle(ctx, parts)  # warm: imports, first sizes
        counter = Counter()
        postmaster = server.pid()
        walls, sized = [], 0
        cpu0, server0, wall0 = time.process_time(), backends_cpu(postmaster), time.perf_counter()
        sizes_every = max(1, round(30 / args.every))
        for i in range(args.cycles):
            if i % sizes_every == 0:
                data._guard_memory.sizes_at = float("-inf")  # as 30 s would have passed
                sized += 1
            t0 = time.perf_counter()
            report = run_watch_cycle(ctx, parts)
            walls.append(time.perf_counter() - t0)
            assert not report.problems, report.problems
        time.sleep(0.5)  # let the postmaster reap the last backends
        cpu = time.process_time() - cpu0
        server_cpu = backends_cpu(postmaster) - server0
        total = time.perf_counter() - wall0 - 0.5
    finally:
        for c in held:
            c.close()
        subprocess.run(CLI + ["down", "--yes", "--no-archive", "-c", str(path)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    n = args.cycles
    per_minute = 60 / args.every
    wall = statistics.median(walls)
    p95 = sorted(walls)[int(0.95 * (n - 1))]
    print(f"\nwatcher benchmark: {args.teams} teams (+1 mentor, {args.teams} mentor logins), 2 databases, a 2000-row "
          f"table per team, {len(held)} team sessions open; {n} cycles back to back ({total:.1f} s), schema sizes "
          f"in {sized} of them (every 30 s at the cadence). Baseline: the cycle period, {args.every:g} s. "
          "Machine: 2 cores, shared with other sessions.")
    print(f"  wall per cycle: median {wall * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {max(walls) * 1000:.0f} ms"
          f" = {wall / args.every:.2%} / {p95 / args.every:.2%} / {max(walls) / args.every:.2%} of the period")
    print(f"  CPU per minute at the cadence: watcher process {cpu / n * per_minute:.2f} s, server backends "
          f"{server_cpu / n * per_minute:.2f} s = {cpu / n * per_minute / 60:.2%} and "
          f"{server_cpu / n * per_minute / 60:.2%} of one core")
    print(f"  queries per cycle: {counter.queries / n:.1f}; connections per cycle: {counter.connections / n:.2f}"
          f" (whatever the number of teams: one statement per kind of fact, one connection per database for sizes)")


if __name__ == "__main__":
    main()
