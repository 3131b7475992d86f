"""Load benchmark: a MIMIC-IV-shaped dataset of a given size, loaded three ways, each into a fresh database:

  (a) the official way (create tables; one `\\copy ... FROM PROGRAM 'gzip -dc'` per table, serially; then
      constraint.sql's primary and foreign keys and index.sql's indexes, serially: the official build's complete
      set, 24 primary keys, 51 foreign keys, 43 indexes) on a stock PostgreSQL 15 cluster with its default
      configuration;
  (b) the same official way on datathon's managed cluster (its settings);
  (c) datathon's loader on its managed cluster.

Prints wall times (and (a)'s per script), rows/s, the ratios, the loader's peak memory (RSS of its process) and
the CPU seconds of each way (server and client processes: on a shared machine, a figure contention inflates far
less than wall time). The page cache is dropped before each timed run (as root).

    .venv/bin/python benchmarks/load.py [--gb 1.0] [--data /var/tmp/datathon-bench] [--workers N] [--skip-b]
                                        [--timings N]

The data is generated once per size and kept in --data (about 110 s per 100 MB compressed on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import free_port

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from datathon.datasets.catalogue import DATASETS  # noqa: E402
from datathon.datasets.load import create_statement  # noqa: E402
from datathon.datasets.synth import synthesize  # noqa: E402

MIMIC = DATASETS["mimic-iv"]
KB_PER_PATIENT = 54  # compressed size of the synthetic data per patient (dimension tables aside)


def dataset(root: Path, gb: float) -> tuple[Path, int, int]:
    patients = max(50, int(gb * 2**20 / KB_PER_PATIENT))
    folder = root / f"mimic-iv-{patients}"
    if not (folder / "SHA256SUMS.txt").exists():
        print(f"generating {patients:,} patients into {folder} ...", file=sys.stderr, flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        w = synthesize("mimic-iv", folder, patients=patients, seed=1)
        (folder / "rows.json").write_text(json.dumps(w.rows))
        print(f"  generated in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    rows = sum(json.loads((folder / "rows.json").read_text()).values())
    size = sum(p.stat().st_size for p in folder.rglob("*.csv.gz"))
    return folder, rows, size


def official_scripts(folder: Path) -> tuple[str, str, str]:
    """The official build, as psql scripts: create tables + serial \\copy (load.sql); constraint.sql (primary and
    foreign keys); index.sql. Its complete set of keys and indexes: the catalogue's default set is exactly that
    (datathon's extras are built by neither (a) nor (c))."""
    load = ["\\set ON_ERROR_STOP 1"]
    for schema in MIMIC.schemas:
        load.append(f"CREATE SCHEMA {schema};")
    for t in MIMIC.tables:
        load.append(create_statement(t).as_string(None) + ";")
    for t in MIMIC.tables:
        cols = ", ".join(c.name for c in t.columns)
        load.append(f"\\copy {t.schema}.{t.name} ({cols}) FROM PROGRAM 'gzip -dc {folder / t.file}' "
                    "DELIMITER ',' CSV HEADER NULL ''")
    constraints = ["\\set ON_ERROR_STOP 1"]
    for t in MIMIC.tables:
        if t.primary_key:
            constraints.append(f"ALTER TABLE {t.schema}.{t.name} ADD CONSTRAINT {t.pk_name} PRIMARY KEY "
                               f"({', '.join(t.primary_key)});")
    for t in MIMIC.tables:
        for fk in t.foreign_keys:
            ref = MIMIC.table(fk.ref_table)
            constraints.append(f"ALTER TABLE {t.schema}.{t.name} ADD CONSTRAINT {t.fk_name(fk)} FOREIGN KEY "
                               f"({', '.join(fk.columns)}) REFERENCES {ref.schema}.{ref.name} "
                               f"({', '.join(fk.ref_columns)});")
    indexes = ["\\set ON_ERROR_STOP 1"]
    for t in MIMIC.tables:
        for index in t.indexes:
            indexes.append(f"CREATE INDEX {index.name} ON {t.schema}.{t.name} ({', '.join(index.columns)});")
    return "\n".join(load) + "\n", "\n".join(constraints) + "\n", "\n".join(indexes) + "\n"


def psql(env: dict, db: str, script: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as fh:
        fh.write(script)
    os.chmod(fh.name, 0o644)
    subprocess.run(["psql", "-X", "-q", "-d", db, "-f", fh.name], env={**os.environ, **env}, check=True,
                   stdout=subprocess.DEVNULL)
    os.unlink(fh.name)


def cluster_cpu(pgdata: Path) -> float:
    """CPU seconds a cluster has used so far: its postmaster, the processes it runs now (checkpointer, walwriter)
    and those it has reaped (backends, parallel workers). With the client's own, a figure that other sessions'
    load on this shared machine does not inflate the way it does wall time."""
    tick = os.sysconf("SC_CLK_TCK")
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])

    def fields(p: int) -> list[str]:
        return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()

    own = fields(pid)
    total = sum(int(x) for x in own[11:15])  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                f = fields(int(entry.name))
            except OSError:
                continue
            if int(f[1]) == pid:
                total += int(f[11]) + int(f[12])
    return total / tick


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cold_cache() -> None:
    """Every timed run starts with the data files out of the page cache (as on a first load): written back,
    then dropped (needs root; otherwise said so, and the runs after the first read from memory)."""
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError as exc:
        print(f"    (page cache not dropped: {exc})", file=sys.stderr)


def official(env: dict, db: str, folder: Path, pgdata: Path) -> tuple[float, dict[str, float]]:
    """The official build's wall time, and each script's (load, constraints, indexes), and the CPU seconds of
    the server and of psql (with its gzip)."""
    scripts = dict(zip(("load", "constraints", "indexes"), official_scripts(folder), strict=True))
    subprocess.run(["psql", "-X", "-q", "-d", "postgres", "-c", f"CREATE DATABASE {db}"],
                   env={**os.environ, **env}, check=True)
    cold_cache()
    cpu = cluster_cpu(pgdata) + children_cpu()
    started = time.perf_counter()
    phases = {}
    for name, script in scripts.items():
        mark = time.perf_counter()
        psql(env, db, script)
        phases[name] = round(time.perf_counter() - mark, 1)
    seconds = time.perf_counter() - started
    phases["cpu"] = round(cluster_cpu(pgdata) + children_cpu() - cpu, 1)
    return seconds, phases


class StockCluster:
    """A stock PostgreSQL 15 cluster: initdb defaults, nothing tuned, run as `postgres` in a temp folder."""

    def __init__(self) -> None:
        self.user = pwd.getpwnam("postgres")
        self.home = Path(tempfile.mkdtemp(prefix="stockpg-", dir="/var/tmp"))
        os.chown(self.home, self.user.pw_uid, self.user.pw_gid)
        self.port = free_port()
        self.bin = Path("/usr/lib/postgresql/15/bin")

    def run(self, *args: str) -> None:
        subprocess.run([str(self.bin / args[0]), *args[1:]], check=True, user=self.user.pw_uid,
                       group=self.user.pw_gid, cwd=self.home, stdout=subprocess.DEVNULL, start_new_session=True)

    def __enter__(self) -> dict:
        self.run("initdb", "-D", str(self.home / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.run("pg_ctl", "start", "-D", str(self.home / "data"), "-l", str(self.home / "log"), "-w",
                 "-o", f"-p {self.port} -k {self.home} -c listen_addresses=''")
        return {"PGHOST": str(self.home), "PGPORT": str(self.port), "PGUSER": "postgres"}

    def __exit__(self, *exc) -> None:
        self.run("pg_ctl", "stop", "-D", str(self.home / "data"), "-m", "immediate", "-w")
        shutil.rmtree(self.home, ignore_errors=True)


LOADER = """
import json, sys, time
from pathlib import Path
from rich.console import Console
sys.path.insert(0, {src!r})
from datathon.cli import _context
from datathon.providers import get_provider
from datathon.datasets.catalogue import DATASETS
from datathon.datasets.load import load_dataset
ctx = _context(Path({config!r}))
server = get_provider(ctx).database_server()
with server.connect(autocommit=True) as c:
    c.execute("CREATE DATABASE bench_c")
started = time.perf_counter()
r = load_dataset(server, "bench_c", "datathon", DATASETS["mimic-iv"], Path({folder!r}), Console(stderr=True),
                 workers={workers})
print(json.dumps({{"seconds": time.perf_counter() - started, "rows": r.rows, "peak_mb": r.peak_rss_mb,
                  "fk": len(r.fk_problems), "phases": {{k: round(v, 1) for k, v in r.phases.items()}},
                  "timings": {{k: round(v, 2) for k, v in r.timings.items()}}}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="compressed size of the dataset")
    parser.add_argument("--data", type=Path, default=Path("/var/tmp/datathon-bench"))
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the loader's own)")
    parser.add_argument("--skip-stock", action="store_true", help="skip (a)")
    parser.add_argument("--skip-b", action="store_true", help="skip (b): (a) and (c) back to back")
    parser.add_argument("--only-loader", action="store_true", help="run (c) only (while tuning the loader)")
    parser.add_argument("--timings", type=int, default=0, metavar="N", help="print (c)'s N slowest steps")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    os.chmod(args.data, 0o755)
    folder, rows, size = dataset(args.data, args.gb)
    for p in [folder, *folder.rglob("*")]:  # the server-side `gzip -dc` of (a)/(b) runs as psql's user: root
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    print(f"dataset: {rows:,} rows, {size / 2**20:,.0f} MiB compressed, {len(MIMIC.tables)} tables", file=sys.stderr)

    results: dict[str, float] = {}
    cpu: dict[str, float] = {}
    subprocess.run(["sync"], check=False)
    if not (args.skip_stock or args.only_loader):
        stock = StockCluster()
        with stock as env:
            print("(a) official way, stock cluster ...", file=sys.stderr, flush=True)
            results["a"], phases = official(env, "bench_a", folder, stock.home / "data")
            cpu["a"] = phases["cpu"]
            print(f"    {results['a']:.1f} s; phases {phases}", file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="benchload-"))
    config = work / "datathon.yaml"
    config.write_text(yaml.safe_dump({"event": "benchload", "teams": {"count": 1}, "database": {"port": free_port()},
                                      "databases": [{"name": "benchload"}]}))
    cli = [sys.executable, "-m", "datathon.cli"]
    subprocess.run(cli + ["up", "--yes", "-c", str(config)], check=True, capture_output=True)
    try:
        sys.path.insert(0, str(REPO / "src"))
        from datathon.cli import _context
        from datathon.providers import get_provider

        server = get_provider(_context(config)).database_server()
        env = server.cli_env("postgres")
        if not (args.only_loader or args.skip_b):
            print("(b) official way, datathon's managed cluster ...", file=sys.stderr, flush=True)
            results["b"], phases = official(env, "bench_b", folder, server.home / "pgdata")
            print(f"    {results['b']:.1f} s; phases {phases}", file=sys.stderr, flush=True)
            # (c) must not pay for flushing (b)'s dirty buffers: drop (b)'s database and checkpoint first
            subprocess.run(["psql", "-X", "-q", "-d", "postgres", "-c", "DROP DATABASE bench_b", "-c", "CHECKPOINT"],
                           env={**os.environ, **env}, check=True)
        print("(c) datathon loader, managed cluster ...", file=sys.stderr, flush=True)
        cold_cache()
        code = LOADER.format(src=str(REPO / "src"), config=str(config), folder=str(folder), workers=args.workers)
        before = cluster_cpu(server.home / "pgdata") + children_cpu()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        c = json.loads(proc.stdout.strip().splitlines()[-1])
        results["c"] = c["seconds"]
        cpu["c"] = c["phases"]["cpu"] = round(cluster_cpu(server.home / "pgdata") + children_cpu() - before, 1)
        print(f"    {results['c']:.1f} s; phases {c.get('phases')}", file=sys.stderr, flush=True)
        kinds: dict[str, float] = {}
        for k, v in c["timings"].items():  # wall seconds summed by kind of step (overlapping: not CPU)
            kind = next((w for w in ("load", "analyze", "primary key", "index", "foreign keys") if w in k), "other")
            kinds[kind] = round(kinds.get(kind, 0) + v, 1)
        print(f"    step seconds by kind: {kinds}", file=sys.stderr, flush=True)
        if args.timings:  # the slowest steps: where (c)'s time goes
            for k, v in sorted(c["timings"].items(), key=lambda kv: -kv[1])[:args.timings]:
                print(f"      {v:7.2f} s  {k}", file=sys.stderr)
    finally:
        subprocess.run(cli + ["down", "--yes", "--no-archive", "-c", str(config)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nload benchmark: MIMIC-IV-shaped synthetic data, {rows:,} rows, {size / 2**20:,.0f} MiB compressed, "
          f"{len(MIMIC.tables)} tables, end to end with keys and indexes; {os.cpu_count()} cores, "
          f"loader workers {args.workers or 'default (2 x cores)'}\n")
    names = {"a": "(a) official, stock PG15", "b": "(b) official, managed cluster", "c": "(c) datathon loader"}
    for k, name in names.items():
        if k in results:
            print(f"  {name:<32} {results[k]:8.1f} s  {rows / results[k]:>12,.0f} rows/s")
    if "a" in results:
        print(f"\n  (c) vs (a): {results['a'] / results['c']:.2f}x faster (aim >= 2x)")
    if "b" in results:
        print(f"  (c) vs (b): {results['b'] / results['c']:.2f}x faster (aim >= 1.4x)")
    print(f"  loader peak memory: {c['peak_mb']:.0f} MB (aim < 300 MB); foreign keys left NOT VALID: {c['fk']}")
    if "a" in cpu:
        print(f"  CPU seconds (server + client): (a) {cpu['a']:.0f}, (c) {cpu['c']:.0f}: (c)'s work spread over "
              f"{os.cpu_count()} idle cores takes at least {cpu['c'] / (os.cpu_count() or 1):.0f} s")


if __name__ == "__main__":
    main()
