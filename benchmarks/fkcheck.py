"""Foreign key checks, two ways, on the load benchmark's chartevents (its four keys): one VALIDATE CONSTRAINT per
key (what PostgreSQL and the official build do) against datathon's one scan (datasets/fkscan.py), serial and with
parallel workers. Prints wall and server CPU seconds of each.

    .venv/bin/python benchmarks/fkcheck.py [--data /var/tmp/datathon-bench/mimic-iv-19418]

Run benchmarks/load.py once first: it generates the data.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import free_port
from load import cluster_cpu

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from rich.console import Console  # noqa: E402

from datathon.cli import _context  # noqa: E402
from datathon.datasets import fkscan  # noqa: E402
from datathon.datasets.catalogue import DATASETS  # noqa: E402
from datathon.datasets.keys import _add_not_valid, _qualified  # noqa: E402
from datathon.datasets.load import load_dataset  # noqa: E402
from datathon.providers import get_provider  # noqa: E402

MIMIC = DATASETS["mimic-iv"]
TABLES = ["patients", "admissions", "icustays", "d_items", "chartevents"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/var/tmp/datathon-bench/mimic-iv-19418"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="benchfk-"))
    config = work / "datathon.yaml"
    config.write_text(yaml.safe_dump({"event": "benchfk", "teams": {"count": 1}, "database": {"port": free_port()},
                                      "databases": [{"name": "benchfk"}]}))
    cli = [sys.executable, "-m", "datathon.cli"]
    subprocess.run(cli + ["up", "--yes", "-c", str(config)], check=True, capture_output=True)
    try:
        server = get_provider(_context(config)).database_server()
        load_dataset(server, "benchfk", "benchfk_data", MIMIC, args.data, Console(stderr=True), tables=TABLES,
                     foreign_keys="skip")
        t = MIMIC.table("chartevents")
        fks = list(t.foreign_keys)
        with server.connect("benchfk", autocommit=True) as conn:
            conn.execute("VACUUM (FREEZE) mimiciv_icu.chartevents")  # hint bits set: no run pays for them
            for way in ("validate", "one scan", "one scan, parallel", "validate", "one scan", "one scan, parallel"):
                conn.execute("ALTER TABLE mimiciv_icu.chartevents "
                             + ", ".join(f"DROP CONSTRAINT IF EXISTS {t.fk_name(fk)}" for fk in fks))
                conn.execute(_add_sql(conn, t, fks))
                cpu, started = cluster_cpu(server.home / "pgdata"), time.perf_counter()
                if way == "validate":
                    for fk in fks:
                        conn.execute(f"ALTER TABLE mimiciv_icu.chartevents VALIDATE CONSTRAINT {t.fk_name(fk)}")
                else:
                    counts = fkscan.check_and_mark(conn, MIMIC, t, fks, parallel=way.endswith("parallel"))
                    assert not any(counts.values())
                wall, cpu = time.perf_counter() - started, cluster_cpu(server.home / "pgdata") - cpu
                valid = conn.execute("SELECT bool_and(convalidated) FROM pg_constraint"
                                     " WHERE conrelid = 'mimiciv_icu.chartevents'::regclass").fetchone()[0]
                print(f"  {way:<20} {wall:6.1f} s wall  {cpu:6.1f} CPU-s  all validated: {valid}")
    finally:
        subprocess.run(cli + ["down", "--yes", "--no-archive", "-c", str(config)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def _add_sql(conn, t, fks) -> str:
    from psycopg import sql
    return sql.SQL("ALTER TABLE {} {}").format(_qualified(t), sql.SQL(", ").join(
        _add_not_valid(MIMIC, t, fk) for fk in fks)).as_string(conn)


if __name__ == "__main__":
    main()
