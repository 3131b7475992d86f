"""Login storm: N teams open the hub at the same moment, log in with their own password (PAM) and wait for
their JupyterLab, as a browser does (login form, /hub/spawn, the OAuth round trip into /user/<name>/lab).
Prints p50/p95/max seconds from the common start to a ready server.

    .venv/bin/python benchmarks/login_storm.py [--teams 20] [--keep]

Aim (issue 4): every server ready within 60 s on a 2-core machine. The event (a managed cluster, N Unix users,
the hub) is brought up first, through the real CLI, and torn down after unless --keep.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from _common import free_port
from rich.console import Console
from rich.table import Table

from datathon.workspaces.client import BrowserSession

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "datathon.cli"]
READY_TIMEOUT = 300.0


def storm(url: str, users: list[tuple[str, str]]) -> list[tuple[str, float | None, str]]:
    barrier = threading.Barrier(len(users) + 1)
    results: list[tuple[str, float | None, str]] = []
    lock = threading.Lock()
    start = [0.0]

    def one(user: str, password: str) -> None:
        b = BrowserSession(url)
        barrier.wait()
        outcome: tuple[str, float | None, str]
        try:
            if not b.login(user, password):
                outcome = (user, None, "login refused")
            else:
                b.request(f"/hub/spawn/{user}", timeout=READY_TIMEOUT)
                while True:
                    status, final, _ = b.request(f"/user/{user}/api/status", timeout=30)
                    if status == 200 and final.endswith("/api/status"):
                        outcome = (user, time.monotonic() - start[0], "ready")
                        break
                    if status == 403 and "/user/" in final:
                        b.request(f"/user/{user}/lab", timeout=30)  # the OAuth round trip sets the cookie
                        continue
                    if time.monotonic() - start[0] > READY_TIMEOUT:
                        outcome = (user, None, f"not ready after {READY_TIMEOUT:.0f}s (last HTTP {status})")
                        break
                    time.sleep(0.25)
        except Exception as exc:  # noqa: BLE001 - a failed team is a result, not a crash
            outcome = (user, None, f"{type(exc).__name__}: {exc}")
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one, args=u) for u in users]
    for t in threads:
        t.start()
    barrier.wait()
    start[0] = time.monotonic()
    for t in threads:
        t.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teams", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="leave the event up afterwards")
    args = parser.parse_args()
    console = Console()

    folder = Path(tempfile.mkdtemp(prefix="storm-"))
    port = random.randrange(20000, 30000, 3)
    config = {"event": "storm", "teams": {"count": args.teams}, "database": {"port": free_port()},
              "databases": [{"name": "storm"}], "workspaces": {"port": port, "idle_timeout": "0"}}
    path = folder / "datathon.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        t0 = time.perf_counter()
        up = subprocess.run(CLI + ["up", "--yes", "-c", str(path)], capture_output=True, text=True)
        if up.returncode != 0:
            sys.exit(f"datathon up failed:\n{up.stderr}")
        console.print(f"event up ({args.teams} teams, Unix users, hub) in {time.perf_counter() - t0:.1f}s")
        secrets = folder / ".datathon" / "storm" / "secrets"
        width = max(2, len(str(args.teams)))
        users = [(f"storm_team{i:0{width}d}", (secrets / f"storm_team{i:0{width}d}").read_text().strip())
                 for i in range(1, args.teams + 1)]
        results = storm(f"http://127.0.0.1:{port}", users)
    finally:
        if not args.keep:
            subprocess.run(CLI + ["down", "--yes", "--no-archive", "-c", str(path)], capture_output=True)
            shutil.rmtree(folder, ignore_errors=True)

    times = sorted(t for _, t, _ in results if t is not None)
    failed = [(u, why) for u, t, why in results if t is None]
    table = Table(title=f"Login storm: {args.teams} teams at once (this machine: {_cores()} cores)",
                  title_justify="left")
    for col in ("teams ready", "p50 (s)", "p95 (s)", "max (s)", "aim"):
        table.add_column(col, justify="right")
    if times:
        p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
        table.add_row(f"{len(times)}/{args.teams}", f"{statistics.median(times):.1f}", f"{p95:.1f}",
                      f"{times[-1]:.1f}", "every server < 60 s: " + ("met" if times[-1] < 60 and not failed
                                                                   else "MISSED"))
    console.print(table)
    for user, why in failed:
        console.print(f"[red]{user}[/]: {why}")
    if failed:
        sys.exit(1)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
