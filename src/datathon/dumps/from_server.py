"""A `pg_server:` source: the schemas of a database on another PostgreSQL server (the organizer's own machine that
already holds MIMIC-IV and eICU), dumped with `pg_dump -Fd -j N` into the state folder and then restored like a
`pg_dump:` directory archive (pg_restore -j N, undone when it fails).

The dump is kept until its restore has been recorded, so a restore that failed or was interrupted starts again
from the finished dump; a dump interrupted halfway is made again from scratch (a marker file says it finished)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict
from rich.console import Console

from datathon.errors import ProvisionError

DONE = ".datathon-dump-complete"


def dump_folder(state_root: Path, name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return state_root / "dumps" / safe


def dump_server(dsn: str, schemas: list[str], dest: Path, *, password: str | None, jobs: int,
                tool: Callable[[str], str], console: Console) -> Path:
    """Dump `schemas` of the database `dsn` names into the directory archive `dest` (reused when finished)."""
    if (dest / DONE).exists():
        console.print(f"{dest.name}: the finished dump of an earlier run is restored again")
        return dest
    shutil.rmtree(dest, ignore_errors=True)  # half a dump from a killed run is worth nothing
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    params = conninfo_to_dict(dsn)
    where = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{params['dbname']}"
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "datathon dump"}
    if password is not None:
        env["PGPASSWORD"] = password  # in the child's environment only: never on its command line
    cmd = [tool("pg_dump"), "-d", dsn, "-Fd", "-j", str(jobs), "--no-owner", "--no-privileges", "-f", str(dest)]
    for schema in schemas:
        cmd += ["-n", schema]
    console.print(f"dumping {', '.join(schemas)} from {where} ({jobs} jobs)")
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        raise ProvisionError(f"pg_dump of {where} failed: {_reason(done.stderr)}", hint=_hint(done.stderr))
    if not any(dest.glob("*.dat*")) and not _has_tables(dest, tool, env):
        shutil.rmtree(dest, ignore_errors=True)
        raise ProvisionError(f"pg_dump of {where} found nothing in schema(s) {', '.join(schemas)}",
                             hint="check the schema names and that the login may read them")
    (dest / DONE).write_text(f"{time.time()}\n")
    console.print(f"dumped {where} in {time.perf_counter() - started:.1f} s")
    return dest


def forget_dump(dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)


def _has_tables(dest: Path, tool: Callable[[str], str], env: dict) -> bool:
    listing = subprocess.run([tool("pg_restore"), "-l", str(dest)], env=env, capture_output=True, text=True)
    return " TABLE " in listing.stdout


def _reason(stderr: str) -> str:
    lines = [x.strip().removeprefix("pg_dump: error: ").removeprefix("pg_dump: detail: ")
             for x in stderr.strip().splitlines() if x.strip()]
    if len(lines) > 1 and lines[-1].startswith(("DETAIL:", "HINT:")):
        return f"{lines[-2]} ({lines[-1]})"
    return lines[-1] if lines else "no message"


def _hint(stderr: str) -> str:
    if "server version mismatch" in stderr or "aborting because of server version mismatch" in stderr:
        return "the source server is newer than this pg_dump: install the matching postgresql-client"
    if "password authentication failed" in stderr or "no password supplied" in stderr:
        return "give the source's password in password_file (mode 0600) or ~/.pgpass"
    if "CONNECT privilege" in stderr or "permission denied" in stderr:
        return "the login may not read that database or schema: on the source, GRANT CONNECT and pg_read_all_data"
    if "no matching schemas" in stderr:
        return "check the schema names under `schemas:`"
    return "check pg_server's connection string and that this machine may reach that server"
