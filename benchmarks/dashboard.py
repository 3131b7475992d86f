"""The dashboard under load: an event of 100 teams (a real cluster, `up` starts `datathon serve`), 20 organizer
viewers refreshing the teams table at once for a while, and the serve process's own CPU (its watcher and board
loop included) over the same minutes.

    .venv/bin/python benchmarks/dashboard.py [--teams 100] [--viewers 20] [--seconds 60] [--every 5s]

Figures: p50/p95/max of the teams table (the partial every open page fetches every `every`) and of the full page,
as ratios against the baseline a page replaces: one `datathon status` observation of the same event (what an
organizer ran by hand); and the serve process's CPU seconds per minute, with and without viewers.
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
import threading
import time
from pathlib import Path

import httpx
import yaml
from _common import free_port

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "datathon"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_pid(folder: Path, event: str) -> int:
    pid_file = next((folder / ".datathon").glob(f"{event}*/dashboard/serve.pid"))
    return int(pid_file.read_text())


def status_seconds(path: Path, repeat: int = 3) -> float:
    from rich.console import Console

    from datathon.commands.status import run_status
    from datathon.config import load_config
    from datathon.core.context import Context
    from datathon.core.state import StateStore

    loaded = load_config(path)
    ctx = Context(loaded=loaded, state=StateStore(loaded.base_dir, loaded.config.event),
                  console=Console(file=io.StringIO()))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run_status(ctx)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def viewers(url: str, cookies, count: int, seconds: float, path: str, pace: float = 0.0) -> list[float]:
    """`count` viewers fetching `path` for `seconds`: every `pace` seconds each (an open page), or back to back
    (pace 0: the most the process serves)."""
    times: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def viewer() -> None:
        with httpx.Client(base_url=url, cookies=cookies, timeout=60) as c:
            while time.monotonic() < stop:
                start = time.perf_counter()
                r = c.get(path)
                took = time.perf_counter() - start
                if r.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {r.status_code}")
                with lock:
                    times.append(took)
                time.sleep(max(0.0, pace - took))

    threads = [threading.Thread(target=viewer) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teams", type=int, default=100)
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--every", default="5s", help="dashboard.watch_every")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="benchdash-"))
    shutil.copy(REPO / "examples" / "demo-data.sql", folder / "demo-data.sql")
    port = free_port()
    config = {"event": "benchdash", "teams": {"count": args.teams}, "database": {"port": free_port()},
              "databases": [{"name": "bench", "shared_schemas": ["mimiciv_demo"],
                             "sources": [{"sql": "demo-data.sql"}]}],
              "dashboard": {"port": port, "watch_every": args.every}}
    path = folder / "datathon.yaml"
    path.write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    try:
        print(f"up: {args.teams} teams and the dashboard ...", flush=True)
        subprocess.run(CLI + ["up", "--yes", "--quiet", "-c", str(path)], check=True)
        pid = serve_pid(folder, "benchdash")
        token = next((folder / ".datathon").glob("benchdash*/secrets/dashboard-organizer")).read_text().strip()
        login = httpx.post(f"{url}/login", data={"who": "organizer", "password": token})
        if login.status_code != 303:
            sys.exit(f"organizer login failed: HTTP {login.status_code}")
        cookies = login.cookies
        baseline = status_seconds(path)
        print(f"baseline: one `datathon status` of {args.teams} teams: {baseline:.3f} s", flush=True)

        idle_cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(min(args.seconds, 30))
        idle_cpu = (cpu_seconds(pid) - idle_cpu0) / (time.monotonic() - t0) * 60
        print(f"serve alone (watcher + board every {args.every}): {idle_cpu:.1f} CPU s per minute", flush=True)

        every = float(args.every.rstrip("s"))
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        paced = viewers(url, cookies, args.viewers, args.seconds, "/organizer/teams", pace=every)
        busy_cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) * 60
        table = viewers(url, cookies, args.viewers, min(args.seconds, 20), "/organizer/teams")
        full = viewers(url, cookies, args.viewers, min(args.seconds, 20), "/organizer")
    finally:
        subprocess.run(CLI + ["down", "--yes", "--no-archive", "--quiet", "-c", str(path)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)

    print(f"\n{args.teams} teams, {args.viewers} concurrent viewers, 2 shared cores")
    print(f"{'what':<40}{'requests':>9}{'p50':>9}{'p95':>9}{'max':>9}{'p95/status':>12}")
    for name, times in ((f"teams table, each viewer every {args.every}", paced),
                        ("teams table, back to back", table), ("full organizer page, back to back", full)):
        p50, p95 = statistics.median(times), pct(times, 0.95)
        print(f"{name:<40}{len(times):>9}{p50 * 1000:>7.0f}ms{p95 * 1000:>7.0f}ms{max(times) * 1000:>7.0f}ms"
              f"{p95 / baseline:>12.2f}")
    print(f"serve's CPU per minute: {idle_cpu:.1f} s alone, {busy_cpu:.1f} s with {args.viewers} viewers "
          f"(2 cores = 120 s per minute)")


if __name__ == "__main__":
    main()
