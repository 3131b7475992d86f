"""Running the non-SQL sources of a database: known datasets, generic CSV folders and pg_dump archives."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable

import psycopg
from psycopg import sql

from datathon.config.models import CsvSource, DatasetSource, DumpSource, ServerSource
from datathon.core import roster as roles
from datathon.core.context import Context
from datathon.database.facts import META_SCHEMA
from datathon.database.meta import ensure_meta, mark_source_statement
from datathon.database.server import DatabaseServer
from datathon.datasets.catalogue import DATASETS, Column, Dataset, Table
from datathon.datasets.keys import count_violations
from datathon.datasets.load import load_dataset, print_load_report
from datathon.dumps.from_server import dump_folder, dump_server, forget_dump
from datathon.dumps.restore import describe_dump, restore_dump, tools
from datathon.errors import ProvisionError

I = sql.Identifier  # noqa: E741
PG_TYPES = {"integer": "int", "smallint": "si", "bigint": "bigint", "double precision": "dp", "real": "real",
            "numeric": "numeric", "date": "date", "boolean": "boolean", "text": "text"}


def bulk_factory(ctx: Context, server: DatabaseServer) -> Callable[[str, object, str, str], Callable[[], None]]:
    owner = roles.data_owner(ctx.config.event)

    def factory(dbname: str, src: object, name: str, digest: str) -> Callable[[], None]:
        def run() -> None:
            with server.loading():
                load(dbname, src, name, digest)
            if isinstance(src, ServerSource):
                forget_dump(dump_folder(ctx.state.root, name))  # recorded as loaded: the copy has done its work

        return run

    def load(dbname: str, src: object, name: str, digest: str) -> None:
        if isinstance(src, DatasetSource):
            report = load_dataset(server, dbname, owner, DATASETS[src.dataset], src.path, ctx.console,
                                  workers=src.workers, version=src.version, tables=src.tables or None,
                                  foreign_keys=src.foreign_keys, extra_keys=src.extra_keys,
                                  verify_cache=ctx.state.root / "verified.json")
            print_load_report(ctx.console, report)
        elif isinstance(src, CsvSource):
            report = load_csv_folder(server, dbname, owner, src, ctx)
            print_load_report(ctx.console, report)
        elif isinstance(src, DumpSource):
            readable = next(d.readable_schemas for d in ctx.config.databases if d.name == dbname)
            restore_dump(server, dbname, owner, src.pg_dump, name=name, mark=mark_source_statement(name, digest),
                         readable=readable, jobs=src.jobs, console=ctx.console)
        elif isinstance(src, ServerSource):
            readable = next(d.readable_schemas for d in ctx.config.databases if d.name == dbname)
            jobs = src.jobs or min(8, os.cpu_count() or 2)
            password = src.password_file.read_text().strip() if src.password_file else None
            folder = dump_server(src.pg_server, src.schemas, dump_folder(ctx.state.root, name),
                                 password=password, jobs=jobs, tool=tools(server), console=ctx.console)
            restore_dump(server, dbname, owner, folder, name=name, mark=mark_source_statement(name, digest),
                         readable=readable, jobs=jobs, console=ctx.console)
        with server.connect(dbname, autocommit=True) as conn:
            ensure_meta(conn)
            conn.execute(mark_source_statement(name, digest))

    return factory


def describe_source(server: DatabaseServer) -> Callable[[object], str]:
    """What `plan` says about a source before loading it: for a dump, its kind, size and table count."""
    def describe(src: object) -> str:
        if isinstance(src, DumpSource):
            return describe_dump(server, src.pg_dump)
        if isinstance(src, ServerSource):
            return (f"pg_dump -Fd of {', '.join(src.schemas)} from {src.location}, restored with "
                    f"{src.jobs or min(8, os.cpu_count() or 2)} jobs")
        return ""

    return describe


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
    with server.connect(dbname, autocommit=True) as conn:
        set_aside_foreign_keys(conn, owner, schema, [t.name for t in tables])
    try:
        report = load_dataset(server, dbname, owner, dataset, src.csv, ctx.console, create=False,
                              foreign_keys="skip", verify_cache=ctx.state.root / "verified.json")
    except BaseException:
        with contextlib.suppress(Exception), server.connect(dbname, autocommit=True) as conn:
            restore_foreign_keys(conn, owner, schema, validate=False)  # keys back at once, checked next time
        raise
    with server.connect(dbname, autocommit=True) as conn:
        report.fk_problems = restore_foreign_keys(conn, owner, schema)
    return report


_SAVED = ("SELECT schema_name, table_name, name, definition FROM {}.deferred_foreign_keys"
          " WHERE schema_name = %s ORDER BY 1, 2, 3")


def set_aside_foreign_keys(conn: psycopg.Connection, owner: str, schema: str, tables: list[str]) -> None:
    """Save, then drop, the foreign keys the organizer's DDL declares on the tables to load, or into them from its
    own schema. With them in place a referenced table cannot be truncated (TRUNCATE before COPY is how a table is
    redone), every COPY row fires a check, and the loads (biggest first) would have to follow the keys' order.
    They come back after the data (restore_foreign_keys), as keys do for the known datasets. Keys a partition
    inherits from its parent are the parent's: only those are saved."""
    meta = I(META_SCHEMA)
    with conn.transaction():
        conn.execute("SET LOCAL search_path = pg_catalog")  # constraint definitions then name their schemas
        found = conn.execute(
            "SELECT n.nspname, r.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
            " JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace"
            " JOIN pg_class f ON f.oid = c.confrelid JOIN pg_namespace fn ON fn.oid = f.relnamespace"
            " WHERE c.contype = 'f' AND c.conparentid = 0 AND n.nspname = %(s)s"
            " AND (r.relname = ANY(%(t)s) OR (fn.nspname = %(s)s AND f.relname = ANY(%(t)s)))",
            {"s": schema, "t": tables}).fetchall()
        for nsp, rel, name, definition in found:
            conn.execute(sql.SQL("INSERT INTO {}.deferred_foreign_keys VALUES (%s, %s, %s, %s)"
                                 " ON CONFLICT DO NOTHING").format(meta), (nsp, rel, name, definition))
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(I(owner)))  # the DDL ran as the owner: it owns them
        for nsp, rel, name, _ in found:
            conn.execute(sql.SQL("ALTER TABLE {}.{} DROP CONSTRAINT {}").format(I(nsp), I(rel), I(name)))


def restore_foreign_keys(conn: psycopg.Connection, owner: str, schema: str, *, validate: bool = True) -> list[str]:
    """Put back the keys set aside: each added NOT VALID, then validated; a key the data violates stays NOT VALID
    (it still guards every later write) and is reported with a count and examples, instead of losing the load.
    (A key on a partitioned table cannot be NOT VALID in PostgreSQL 15: it is added validated, or reported.)"""
    problems = []
    meta = I(META_SCHEMA)
    for nsp, rel, name, definition in conn.execute(sql.SQL(_SAVED).format(meta), (schema,)).fetchall():
        # The definition is the server's own rendering (pg_get_constraintdef) of the organizer's DDL, kept where
        # only datathon writes; it is still checked to be a foreign key clause before it becomes SQL.
        definition = definition.removesuffix(" NOT VALID")
        if not re.fullmatch(r"FOREIGN KEY \(.*\) REFERENCES [^;]*", definition, re.DOTALL):
            raise ProvisionError(f"datathon_meta.deferred_foreign_keys holds an unexpected key {name!r} on "
                                 f"{nsp}.{rel}", hint="remove that row, then run `datathon up` again")
        try:
            back = _put_back(conn, owner, nsp, rel, name, definition, validate=validate)
        except psycopg.Error as exc:
            raise ProvisionError(f"{nsp}.{rel}: foreign key {name} ({definition}) could not be put back: "
                                 f"{str(exc).strip().splitlines()[0]}",
                                 hint="fix the cause and run `datathon up` again; the key is kept in "
                                      "datathon_meta.deferred_foreign_keys until then") from None
        if back is None:  # left for the next run
            continue
        problems += back
        conn.execute(sql.SQL("DELETE FROM {}.deferred_foreign_keys WHERE schema_name = %s AND table_name = %s"
                             " AND name = %s").format(meta), (nsp, rel, name))
    return problems


def _put_back(conn: psycopg.Connection, owner: str, nsp: str, rel: str, name: str, definition: str, *,
              validate: bool) -> list[str] | None:
    """The key added back (and validated unless told not to): the problems to report, or None when it must wait
    for the next run (a partitioned table's key can only be added validated)."""
    table = sql.SQL("{}.{}").format(I(nsp), I(rel))
    add = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(table, I(name), sql.SQL(definition))  # type: ignore[arg-type]
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(I(owner)))
        found = conn.execute(
            "SELECT c.relkind, EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.conname = %s)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (name, nsp, rel)).fetchone()
        if found is None:
            raise ProvisionError(f"{nsp}.{rel} no longer exists, so its foreign key {name} cannot be put back",
                                 hint="remove the row from datathon_meta.deferred_foreign_keys, or recreate the table")
        relkind, exists = found
        if not exists and relkind == "p":  # PostgreSQL 15: no NOT VALID key on a partitioned table
            if not validate:
                return None
            try:
                with conn.transaction():
                    conn.execute(add)
            except psycopg.errors.ForeignKeyViolation as exc:
                return [f"{nsp}.{rel}: foreign key {name} ({definition}) is violated "
                        f"({(exc.diag.message_detail or '').strip()}); a partitioned table cannot keep it NOT VALID,"
                        " so it was left out"]
            return []
        if not exists:
            conn.execute(sql.SQL("{} NOT VALID").format(add))
    if not validate:
        return []
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(I(owner)))
            conn.execute(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(table, I(name)))
        return []
    except psycopg.errors.ForeignKeyViolation:
        cols, ref_cols, ref_nsp, ref_rel = conn.execute(
            "SELECT (SELECT array_agg(a.attname ORDER BY k.n) FROM unnest(c.conkey) WITH ORDINALITY k(num, n)"
            "        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num),"
            "       (SELECT array_agg(a.attname ORDER BY k.n) FROM unnest(c.confkey) WITH ORDINALITY k(num, n)"
            "        JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num), fn.nspname, f.relname"
            " FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace"
            " JOIN pg_class f ON f.oid = c.confrelid JOIN pg_namespace fn ON fn.oid = f.relnamespace"
            " WHERE c.conname = %s AND n.nspname = %s AND r.relname = %s", (name, nsp, rel)).fetchone()
        count, sample = count_violations(conn, table, cols, sql.SQL("{}.{}").format(I(ref_nsp), I(ref_rel)), ref_cols)
        return [f"{nsp}.{rel}({', '.join(cols)}) -> {ref_rel}: {count} row(s) refer to missing keys, e.g. "
                f"{', '.join(sample)}; key {name} kept NOT VALID (ALTER TABLE ... VALIDATE CONSTRAINT once fixed)"]
