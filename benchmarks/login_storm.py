"""Login storm: N teams open the hub at the same moment, log in with their own password (PAM) and wait for
their JupyterLab, as a browser does (login form, /hub/spawn, the OAuth round trip into /user/<name>/lab).
Prints p50/p95/max seconds from the common start to a ready server, per mode:

    heavy     no pre-start, JupyterLab's default start (workspaces.light_start: false): the issue's baseline
    light     no pre-start, the lighter start (workspaces.light_start: true, the default)
    prestart  every server started first with `datathon workspaces start` (light start), then the storm

    .venv/bin/python benchmarks/login_storm.py [--teams 20] [--modes heavy,light,prestart] [--keep]

Aim (issue 18): with servers pre-started, every team reaches its JupyterLab within 60 s of the common start.
Ratios are against the heavy mode of the same run (the issue's baseline: 20 teams, p50 61.6 s, max 62.2 s on
this machine). One event (a managed cluster, N Unix users, the hub) is brought up through the real CLI, switched
between modes with `up` (the hub restarts; servers are stopped between modes), and torn down after unless --keep.
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


MODES = ("heavy", "light", "prestart")
ISSUE_BASELINE = {"teams": 20, "p50": 61.6, "max": 62.2}  # issue 18: no pre-start, the old start, 2 cores


def _cli(args: list[str], path: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(CLI + args + ["-c", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"datathon {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done


def _figures(times: list[float]) -> tuple[float, float, float]:
    p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
    return statistics.median(times), p95, times[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teams", type=int, default=20)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, run in this order")
    parser.add_argument("--parallel", type=int, default=4, help="`workspaces start --parallel` (prestart mode)")
    parser.add_argument("--keep", action="store_true", help="leave the event up afterwards")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if bad := [m for m in modes if m not in MODES]:
        sys.exit(f"unknown mode(s) {', '.join(bad)}; the modes are {', '.join(MODES)}")
    console = Console(width=120, highlight=False)

    folder = Path(tempfile.mkdtemp(prefix="storm-"))
    port = random.randrange(20000, 30000, 3)
    config = {"event": "storm", "teams": {"count": args.teams}, "database": {"port": free_port()},
              "databases": [{"name": "storm"}], "workspaces": {"port": port, "idle_timeout": "0"}}
    path = folder / "datathon.yaml"
    results: dict[str, list[tuple[str, float | None, str]]] = {}
    prestart_s: float | None = None
    try:
        for mode in modes:
            config["workspaces"]["light_start"] = mode != "heavy"
            path.write_text(yaml.safe_dump(config))
            t0 = time.perf_counter()
            _cli(["up", "--yes"], path)
            console.print(f"{mode}: event up ({args.teams} teams, Unix users, hub) in "
                          f"{time.perf_counter() - t0:.1f}s")
            _cli(["workspaces", "stop", "--json"], path)  # every mode starts from no server running
            if mode == "prestart":
                t0 = time.perf_counter()
                _cli(["workspaces", "start", "--json", "--parallel", str(args.parallel)], path)
                prestart_s = time.perf_counter() - t0
                console.print(f"{mode}: `datathon workspaces start` ({args.teams} servers, {args.parallel} at a "
                              f"time) took {prestart_s:.1f}s")
            secrets = folder / ".datathon" / "storm" / "secrets"
            width = max(2, len(str(args.teams)))
            users = [(f"storm_team{i:0{width}d}", (secrets / f"storm_team{i:0{width}d}").read_text().strip())
                     for i in range(1, args.teams + 1)]
            results[mode] = storm(f"http://127.0.0.1:{port}", users)
            _cli(["workspaces", "stop", "--json"], path)
    finally:
        if not args.keep:
            subprocess.run(CLI + ["down", "--yes", "--no-archive", "-c", str(path)], capture_output=True)
            shutil.rmtree(folder, ignore_errors=True)

    table = Table(title=f"Login storm: {args.teams} teams at once (this machine: {_cores()} cores, shared)",
                  title_justify="left")
    for col in ("mode", "teams ready", "p50 (s)", "p95 (s)", "max (s)", "max vs heavy", "aim"):
        table.add_column(col, justify="right")
    heavy = results.get("heavy")
    heavy_max = _figures(sorted(t for _, t, _ in heavy if t is not None))[2] if heavy and all(
        t is not None for _, t, _ in heavy) else None
    failed = []
    for mode, rows in results.items():
        times = sorted(t for _, t, _ in rows if t is not None)
        failed += [(mode, u, why) for u, t, why in rows if t is None]
        if not times:
            table.add_row(mode, f"0/{args.teams}", "-", "-", "-", "-", "MISSED")
            continue
        p50, p95, top = _figures(times)
        ok = top < 60 and len(times) == args.teams
        table.add_row(mode, f"{len(times)}/{args.teams}", f"{p50:.1f}", f"{p95:.1f}", f"{top:.1f}",
                      f"{top / heavy_max:.2f}x" if heavy_max else "-",
                      ("every team < 60 s: " + ("met" if ok else "MISSED")) if mode == "prestart" else "")
    console.print(table)
    if prestart_s is not None:
        console.print(f"pre-start (`datathon workspaces start`, before the doors open): {prestart_s:.1f}s")
    console.print(f"issue 18 baseline (no pre-start, old start): {ISSUE_BASELINE['teams']} teams, "
                  f"p50 {ISSUE_BASELINE['p50']} s, max {ISSUE_BASELINE['max']} s")
    for mode, user, why in failed:
        console.print(f"[red]{mode} {user}[/]: {why}")
    if failed:
        sys.exit(1)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
