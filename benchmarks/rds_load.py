"""Loading the synthetic ~1 GB MIMIC-IV into a server that plays RDS (a master login that is not a superuser,
TLS checked with verify-full), directly and through an SSH tunnel (a real sshd on this machine as the jump host),
each into a fresh event: what the tunnel costs a load. The order alternates over --runs rounds.

    .venv/bin/python benchmarks/rds_load.py [--data /var/tmp/datathon-bench] [--gb 1.0] [--runs 1]

Prints each load's wall time and the ratio tunnel / direct. Needs root (sshd, the cluster's OS user).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _common import free_port  # noqa: E402
from load import dataset  # noqa: E402
from sshd_server import sshd  # noqa: E402

from datathon.commands.down import run_down  # noqa: E402
from datathon.commands.up import run_up  # noqa: E402
from datathon.config import load_config  # noqa: E402
from datathon.core.context import Context  # noqa: E402
from datathon.core.state import StateStore  # noqa: E402
from datathon.providers import get_provider  # noqa: E402

MASTER_PW = "bench-master-pw"


def context(folder: Path, data: dict) -> Context:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "datathon.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    loaded = load_config(path)
    return Context(loaded=loaded, state=StateStore(loaded.base_dir, loaded.config.event),
                   console=Console(file=io.StringIO()))


def host_server(root: Path) -> Context:
    """The server playing RDS: datathon's own cluster, with a master login like RDS's."""
    ctx = context(root / "host", {"event": "bhost", "teams": {"count": 1}, "databases": [{"name": "bhostdb"}],
                                  "database": {"server": "managed", "port": free_port()}})
    run_up(ctx, yes=True)
    server = get_provider(ctx).database_server()
    with server.connect(autocommit=True) as c:
        c.execute("CREATE ROLE brds_superuser NOLOGIN CREATEROLE CREATEDB")
        c.execute("GRANT pg_monitor, pg_signal_backend TO brds_superuser WITH ADMIN OPTION")
        c.execute("GRANT SET ON PARAMETER temp_file_limit TO brds_superuser")
        c.execute(f"CREATE ROLE bmaster LOGIN CREATEROLE CREATEDB IN ROLE brds_superuser PASSWORD '{MASTER_PW}'")
    hba = server.pgdata / "pg_hba.conf"
    hba.write_text(hba.read_text() + "hostssl all all 127.0.0.1/32 scram-sha-256\n")
    server._as_server_user(["pg_ctl", "reload", "-D", str(server.pgdata), "-s"])
    return ctx


def event(root: Path, name: str, host: Context, source: Path, tunnel: dict | None) -> Context:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(get_provider(host).database_server().ca_cert, folder / "ca.pem")
    (folder / "master.pw").write_text(MASTER_PW + "\n")
    os.chmod(folder / "master.pw", 0o600)
    database = {"server": "external", "sslmode": "verify-full", "ca_file": "ca.pem",
                "admin_dsn": f"host=localhost port={host.config.database.port} user=bmaster dbname=postgres",
                "admin_password_file": "master.pw"}
    if tunnel:
        database["tunnel"] = tunnel
    return context(folder, {"event": name, "teams": {"count": 2}, "database": database, "databases": [
        {"name": f"{name}db", "shared_schemas": ["mimiciv_hosp", "mimiciv_icu"],
         "sources": [{"dataset": "mimic-iv", "path": str(source)}]}]})


def timed_up(ctx: Context) -> float:
    started = time.perf_counter()
    run_up(ctx, yes=True)
    took = time.perf_counter() - started
    run_down(ctx, yes=True, no_archive=True)
    get_provider(ctx).database_server().close()
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("/var/tmp/datathon-bench"))
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    source, rows, size = dataset(args.data, args.gb)
    print(f"data: {source} ({size / 2**20:.0f} MiB compressed, {rows:,} rows)", flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-rds-", dir="/var/tmp"))
    host = host_server(root)
    times: dict[str, list[float]] = {"direct": [], "tunnel": []}
    try:
        with sshd("benchjump") as jump:
            tunnel = {"ssh": jump.target, "identity_file": str(jump.key)}
            for r in range(args.runs):
                order = ["direct", "tunnel"] if r % 2 == 0 else ["tunnel", "direct"]
                for way in order:
                    ctx = event(root, f"b{way[0]}{r}", host, source, tunnel if way == "tunnel" else None)
                    took = timed_up(ctx)
                    times[way].append(took)
                    print(f"run {r + 1}, {way}: {took:.1f} s", flush=True)
            forwards = jump.forwards()
    finally:
        run_down(host, yes=True, no_archive=True)
        shutil.rmtree(root, ignore_errors=True)
    d, t = statistics.median(times["direct"]), statistics.median(times["tunnel"])
    print(f"\n| way | median wall (s) over {args.runs} run(s) |\n|---|---:|")
    print(f"| direct (TLS verify-full, non-superuser master) | {d:.1f} |")
    print(f"| through an SSH tunnel ({forwards} forwarded connections) | {t:.1f} |")
    print(f"tunnel / direct: {t / d:.2f}x")


if __name__ == "__main__":
    main()
