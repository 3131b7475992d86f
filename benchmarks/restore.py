"""Restore time of a directory dump with datathon (`datathon up` with a `pg_dump:` source) against `pg_restore -j 1`
of the same archive and `psql -f` of the plain dump of the same database, each into a fresh database.

The source data is made once on a throw-away stock cluster (SIZE_MB, default 1000: a few wide event tables with
an index each and a dimension table), dumped in directory and plain format into /var/tmp/datathon-bench-dumps.
Prints the times and the ratios. Usage: python benchmarks/restore.py [SIZE_MB]
"""

from __future__ import annotations

import io
import os
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

from datathon.commands.down import run_down  # noqa: E402
from datathon.commands.up import run_up  # noqa: E402
from datathon.config import load_config  # noqa: E402
from datathon.core.context import Context
from datathon.core.state import StateStore  # noqa: E402

BIN = Path("/usr/lib/postgresql/15/bin")
WORK = Path("/var/tmp/datathon-bench-dumps")


class Stock:
    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="bench-stock-", dir="/var/tmp"))
        shutil.chown(self.home, "postgres")
        self.port = free_port()
        self.env = {**os.environ, "PGHOST": str(self.home), "PGPORT": str(self.port), "PGUSER": "postgres"}
        self.pg("initdb", "-D", self.home / "data", "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        self.pg("pg_ctl", "-D", self.home / "data", "-l", self.home / "log", "-w", "-o",
                f"-p {self.port} -k {self.home} -c listen_addresses='' -c max_wal_size=4GB", "start")

    def pg(self, prog: str, *args) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(BIN / prog), *map(str, args)], check=True,
                       capture_output=True)

    def psql(self, db: str, *args) -> None:
        subprocess.run([str(BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, *args], env=self.env,
                       check=True, capture_output=True)

    def close(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(BIN / "pg_ctl"), "-D", str(self.home / "data"),
                        "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)


def make_dumps(size_mb: int) -> tuple[Path, Path]:
    directory, plain = WORK / f"bench-{size_mb}.dir", WORK / f"bench-{size_mb}.sql"
    if directory.exists() and plain.exists():
        return directory, plain
    WORK.mkdir(parents=True, exist_ok=True)
    stock = Stock()
    try:
        stock.psql("postgres", "-c", "CREATE DATABASE bench")
        rows = size_mb * 1_000_000 // 110 // 3  # about 110 bytes a row on disk, three event tables
        stock.psql("bench", "-c", "CREATE SCHEMA icu; CREATE ROLE analyst; ALTER SCHEMA icu OWNER TO analyst")
        stock.psql("bench", "-c", "CREATE TABLE icu.patients AS SELECT g AS stay_id, (g % 90) + 18 AS age,"
                   " md5(g::text) AS name FROM generate_series(1, 200000) g; ALTER TABLE icu.patients ADD PRIMARY KEY"
                   " (stay_id)")
        for t in ("chartevents", "labevents", "vitals"):
            stock.psql("bench", "-c", f"CREATE TABLE icu.{t} AS SELECT (g % 200000) + 1 AS stay_id, g AS event_id,"
                       " timestamp '2150-01-01' + g * interval '1 second' AS charttime, (g % 997) * 1.5 AS valuenum,"
                       f" 'unit ' || (g % 13) AS valueuom, md5(g::text) AS note FROM generate_series(1, {rows}) g;"
                       f" CREATE INDEX ON icu.{t} (stay_id); ALTER TABLE icu.{t} OWNER TO analyst")
        subprocess.run([str(BIN / "pg_dump"), "-Fd", "-j", "2", "-f", str(directory), "bench"], env=stock.env,
                       check=True)
        subprocess.run([str(BIN / "pg_dump"), "-f", str(plain), "bench"], env=stock.env, check=True)
    finally:
        stock.close()
    return directory, plain


def timed_stock(restore) -> float:
    stock = Stock()
    try:
        stock.psql("postgres", "-c", "CREATE DATABASE target")
        stock.psql("postgres", "-c", "CREATE ROLE analyst")  # what `psql -f` of a plain dump needs, by hand
        started = time.perf_counter()
        restore(stock)
        return time.perf_counter() - started
    finally:
        stock.close()


def timed_datathon(dump: Path) -> float:
    folder = Path(tempfile.mkdtemp(prefix="bench-restore-", dir="/var/tmp"))
    (folder / "datathon.yaml").write_text(yaml.safe_dump({
        "event": "benchrst", "title": "restore benchmark", "provider": "local", "teams": {"count": 2},
        "database": {"server": "managed", "port": free_port()},
        "databases": [{"name": "bench", "shared_schemas": ["icu"], "sources": [{"pg_dump": str(dump)}]}]}))
    loaded = load_config(folder / "datathon.yaml")
    ctx = Context(loaded=loaded, state=StateStore(loaded.base_dir, loaded.config.event),
                  console=Console(file=io.StringIO()))
    try:
        run_up(ctx, yes=True)  # the cluster and roles, then the restore: its own time is what the source took
        text = ctx.console.file.getvalue()
        line = next(x for x in text.splitlines() if "restored in" in x)
        return float(line.rsplit("restored in ", 1)[1].split(" s")[0])
    finally:
        run_down(ctx, yes=True, no_archive=True)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    directory, plain = make_dumps(size_mb)
    size = sum(p.stat().st_size for p in directory.iterdir())
    print(f"directory dump {size / 1e6:.0f} MB (plain {plain.stat().st_size / 1e6:.0f} MB), {os.cpu_count()} cores")
    common = ["--no-owner", "--no-privileges", "--exit-on-error", "-d", "target"]
    one = timed_stock(lambda s: subprocess.run([str(BIN / "pg_restore"), "-j", "1", *common, str(directory)],
                                               env=s.env, check=True))
    print(f"pg_restore -j 1 (stock cluster): {one:.1f} s")
    psql = timed_stock(lambda s: s.psql("target", "-f", str(plain)))
    print(f"psql -f plain dump (stock cluster): {psql:.1f} s")
    ours = timed_datathon(directory)
    print(f"datathon up, pg_dump: directory (managed cluster): {ours:.1f} s")
    print(f"ratio: {one / ours:.2f}x faster than pg_restore -j 1, {psql / ours:.2f}x faster than psql -f")
    ours_plain = timed_datathon(plain)
    print(f"datathon up, pg_dump: plain (managed cluster, one transaction): {ours_plain:.1f} s "
          f"({psql / ours_plain:.2f}x psql -f)")


if __name__ == "__main__":
    main()
