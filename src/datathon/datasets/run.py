"""Running the non-SQL sources of a database: known datasets, generic CSV folders and pg_dump archives."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from datathon.config.models import CsvSource, DatasetSource, DumpSource
from datathon.database import roles
from datathon.database.meta import ensure_meta, mark_source_statement
from datathon.database.server import DatabaseServer
from datathon.datasets.catalogue import DATASETS, Column, Dataset, Table
from datathon.datasets.load import load_dataset, print_load_report
from datathon.errors import ProvisionError
from datathon.providers.base import Context

I = sql.Identifier  # noqa: E741
PG_TYPES = {"integer": "int", "smallint": "si", "bigint": "bigint", "double precision": "dp", "real": "real",
            "numeric": "numeric", "date": "date", "boolean": "boolean", "text": "text"}


def bulk_factory(ctx: Context, server: DatabaseServer) -> Callable[[str, object, str, str], Callable[[], None]]:
    owner = roles.data_owner(ctx.config.event)

    def factory(dbname: str, src: object, name: str, digest: str) -> Callable[[], None]:
        def run() -> None:
            if isinstance(src, DatasetSource):
                report = load_dataset(server, dbname, owner, DATASETS[src.dataset], src.path, ctx.console,
                                      workers=src.workers, version=src.version, tables=src.tables or None,
                                      foreign_keys=src.foreign_keys, verify_cache=ctx.state.root / "verified.json")
                print_load_report(ctx.console, report)
            elif isinstance(src, CsvSource):
                report = load_csv_folder(server, dbname, owner, src, ctx)
                print_load_report(ctx.console, report)
            elif isinstance(src, DumpSource):
                readable = next(d.readable_schemas for d in ctx.config.databases if d.name == dbname)
                restore_dump(server, dbname, owner, src, readable)
            with server.connect(dbname, autocommit=True) as conn:
                ensure_meta(conn)
                conn.execute(mark_source_statement(name, digest))

        return run

    return factory


# -- any folder of CSV files + the user's DDL -----------------------------------------------------------------------

def load_csv_folder(server: DatabaseServer, dbname: str, owner: str, src: CsvSource, ctx: Context):
    schema = src.target_schema
    ddl_mark = f"ddl:{src.ddl}"
    with server.connect(dbname, autocommit=True) as conn:
        ensure_meta(conn)
        done = conn.execute(sql.SQL("SELECT 1 FROM datathon_meta.loaded_sources WHERE name = %s"),
                            (ddl_mark,)).fetchone()
        if not done:
            text = src.ddl.read_text(encoding="utf-8")
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(I(schema), I(owner)))
                    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(I(owner)))
                    conn.execute(sql.SQL("SET LOCAL search_path = {}").format(I(schema)))
                    conn.execute(sql.SQL(text))  # type: ignore[arg-type]  # the organizer's own DDL, as is
                    conn.execute("RESET ROLE")
                    conn.execute(mark_source_statement(ddl_mark, "ddl"))
            except psycopg.Error as exc:
                raise ProvisionError(f"{src.ddl}: {str(exc).strip().splitlines()[0]}",
                                     hint="fix the DDL file and run `datathon up` again; nothing of it was kept",
                                     ) from None
        columns: dict[str, list[Column]] = {}
        for table, column, data_type, nullable in conn.execute(
                "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
                " WHERE table_schema = %s ORDER BY table_name, ordinal_position", (schema,)):
            short = PG_TYPES.get(data_type, "ts" if data_type.startswith("timestamp") else "text")
            columns.setdefault(table, []).append(Column(column, short, nullable == "NO"))
    files = sorted(p for p in src.csv.iterdir() if p.name.endswith((".csv", ".csv.gz")))
    if not files:
        raise ProvisionError(f"{src.csv} holds no .csv or .csv.gz files", hint="point `csv:` at the data folder")
    tables, missing = [], []
    for path in files:
        name = path.name.removesuffix(".gz").removesuffix(".csv").lower()
        if name not in columns:
            missing.append(f"{path.name} -> {schema}.{name}")
            continue
        tables.append(Table(name=name, schema=schema, file=path.name, columns=tuple(columns[name])))
    if missing:
        raise ProvisionError(f"no table in {schema} for: {', '.join(missing)}; nothing was loaded",
                             hint=f"create them in {src.ddl.name}, or remove those files")
    dataset = Dataset(kind=f"csv:{src.csv.name}", title=f"CSV folder {src.csv}", tables=tuple(tables))
    return load_dataset(server, dbname, owner, dataset, src.csv, ctx.console, create=False, foreign_keys="skip",
                        verify_cache=ctx.state.root / "verified.json")


# -- pg_dump archives and plain SQL dumps ---------------------------------------------------------------------------

def _is_archive(path: Path) -> bool:
    if path.is_dir():
        return (path / "toc.dat").exists()
    with open(path, "rb") as fh:
        return fh.read(5) == b"PGDMP"


def restore_dump(server: DatabaseServer, dbname: str, owner: str, src: DumpSource, readable: list[str]) -> None:
    env = {**os.environ, **server.cli_env(dbname)}
    bin_dir = getattr(server, "bin_dir", None)
    tool = (lambda name: str(bin_dir / name)) if bin_dir else (lambda name: shutil.which(name) or name)
    archive = _is_archive(src.pg_dump)
    _make_room_for_schemas(server, dbname, [x for x in _dump_schemas(src.pg_dump, archive, env, tool)
                                            if x in readable and x != "public"])
    if archive:
        jobs = src.jobs or os.cpu_count() or 2
        cmd = [tool("pg_restore"), "--no-owner", "--no-privileges", f"--role={owner}", "--exit-on-error",
               "-j", str(jobs), "-d", dbname, str(src.pg_dump)]
    else:
        cmd = [tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
               "-c", f'SET ROLE "{owner}"', "-f", str(src.pg_dump), dbname]
    # The dump creates its schemas as the data owner, which may not create schemas otherwise: allow it for
    # the length of the restore only.
    grant = sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(I(dbname), I(owner))
    with server.connect(dbname, autocommit=True) as conn:
        conn.execute(grant)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    finally:
        with server.connect(dbname, autocommit=True) as conn:
            conn.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(I(dbname), I(owner)))
    if proc.returncode != 0:
        raise ProvisionError(f"restoring {src.pg_dump} failed: {proc.stderr.strip()[-600:]}",
                             hint="make dumps with `pg_dump --no-owner --no-privileges`; a plain dump runs in one "
                                  "transaction and left nothing, an archive may have restored some objects: drop "
                                  "them, then run `datathon up` again")


def _dump_schemas(path: Path, archive: bool, env: dict, tool) -> list[str]:
    """The schemas a dump creates."""
    if archive:
        listing = subprocess.run([tool("pg_restore"), "-l", str(path)], env=env, capture_output=True, text=True)
        return re.findall(r"^\d+; \d+ \d+ SCHEMA - (\S+) ", listing.stdout, re.M)
    found = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if m := re.match(r"CREATE SCHEMA (?:IF NOT EXISTS )?\"?([A-Za-z_][\w$]*)\"?", line):
                found.append(m.group(1))
    return found


def _make_room_for_schemas(server: DatabaseServer, dbname: str, schemas: list[str]) -> None:
    """`up` made the shared schemas empty before the sources ran; a dump creates its own: drop the empty ones
    (their grants come back right after the restore). A schema that already holds tables is a conflict."""
    if not schemas:
        return
    with server.connect(dbname, autocommit=True) as conn:
        for schema, tables in conn.execute(
                "SELECT n.nspname, (SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid)"
                " FROM pg_namespace n WHERE n.nspname = ANY(%s)", (schemas,)).fetchall():
            if tables:
                raise ProvisionError(f"the dump creates schema {schema}, which already holds {tables} objects",
                                     hint="drop that schema or restore the dump into another database")
            conn.execute(sql.SQL("DROP SCHEMA {}").format(I(schema)))
