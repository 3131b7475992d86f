"""The loader: checksums first, then tables in parallel (the small referenced ones, then biggest first) with
streaming COPY; as each table is loaded, its ANALYZE, primary key, indexes (one job each) and foreign keys that
cannot lose the build (keys.py, fkscan.py), all in parallel; then a row-count check.

Resumable by table: a table is created, loaded and recorded in datathon_meta.loaded_tables in one transaction
(which is also what lets the managed cluster, at wal_level=minimal, skip writing WAL for it). A table split over
several COPY streams is recorded once all of them commit, and dropped and redone after an interruption.
It is a plain client: nothing here reads files on the server, so it works the same against RDS."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table as RichTable

from datathon.database.facts import META_SCHEMA
from datathon.database.meta import ensure_meta
from datathon.database.server import DatabaseServer
from datathon.datasets.catalogue import Dataset, Table
from datathon.datasets.checksums import verify
from datathon.datasets.csvstream import blocks, chunks, physical_line, read_header
from datathon.datasets.keys import (
    ForeignKeyBuilder,
    KeyBuilder,
    _qualified,
    deprioritize,
)
from datathon.errors import ProvisionError

I = sql.Identifier  # noqa: E741
ForeignKeyMode = Literal["validate", "strict", "skip"]
SPLIT_MIN_BYTES = 64 << 20  # only files at least this big are worth several COPY streams


@dataclass
class TableTask:
    table: Table
    path: Path
    file: str  # relative to the dataset root, for messages
    columns: list[str]  # from the file's header, in file order
    size: int
    create: bool = True  # False: the table exists already (generic kind: made by the user's DDL)


@dataclass
class TableResult:
    schema: str
    table: str
    rows: int
    file_records: int
    expected: int | None
    expected_from: str  # "official v3.1" or "file"
    seconds: float = 0.0
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.rows == (self.expected if self.expected is not None else self.file_records)


@dataclass
class LoadReport:
    dataset: str
    tables: list[TableResult] = field(default_factory=list)
    fk_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    bytes: int = 0
    peak_rss_mb: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase: verify, copy, keys, foreign keys
    timings: dict[str, float] = field(default_factory=dict)  # seconds per table load and per key/index build

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables if not t.skipped)

    @property
    def mismatches(self) -> list[TableResult]:
        return [t for t in self.tables if not t.ok]


def default_workers() -> int:
    """Twice the cores: a load waits on the disk at commit (the new table is synced, not WAL-logged) and on
    the client's decompression, so one extra load per core keeps the cores busy. Measured on 2 cores with
    200 MB of MIMIC-IV-shaped data: 2 workers 23.0 s, 3 workers 23.0 s, 4 workers 20.7 s, 6 workers 22.9 s."""
    return min(16, 2 * (os.cpu_count() or 1))



def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- what to load ------------------------------------------------------------------------------------------------

def find_tasks(dataset: Dataset, root: Path, *, tables: list[str] | None = None,
               create: bool = True) -> list[TableTask]:
    """The files of the dataset under root, their headers checked against the catalogue (all problems at once)."""
    wanted = [t for t in dataset.tables if not tables or t.name in tables]
    problems, tasks = [], []
    for t in wanted:
        path = root / t.file
        if not path.exists() and path.suffix == ".gz" and (root / t.file[:-3]).exists():
            path = root / t.file[:-3]  # an uncompressed copy is fine too
        if not path.exists():
            problems.append(f"{t.file}: missing")
            continue
        header = read_header(path)
        known = {c.name for c in t.columns}
        extra = [c for c in header if c not in known]
        missing = [c.name for c in t.columns if c.not_null and c.name not in header]
        if extra:
            problems.append(f"{t.file}: column(s) {', '.join(extra)} are not in the {dataset.title} definition of "
                            f"{t.name} (a newer or different release?)")
        if missing:
            problems.append(f"{t.file}: required column(s) {', '.join(missing)} missing from the header")
        if not extra and not missing:
            tasks.append(TableTask(t, path, str(path.relative_to(root)), header, path.stat().st_size, create))
    if problems:
        raise ProvisionError(f"{dataset.title} in {root} cannot be loaded as it is; nothing was loaded:\n  "
                             + "\n  ".join(problems),
                             hint="download the missing files, or list the tables to load in the source's `tables:`")
    return tasks


def split_streams(task: TableTask, todo: list[TableTask], workers: int, min_bytes: int) -> int:
    """How many COPY streams a table gets. One, unless it is so large a share of the work that loading it on
    one core would outlast everything else (MIMIC-IV's chartevents is about 40% of the rows): then up to one
    per core. Several streams cannot skip WAL (the table must exist before they start), which costs less than
    an idle core: chartevents of 200 MB of data loads in 9.7 s in one stream, 6.7 s in two."""
    if task.size < min_bytes or not task.create:  # a table from the user's DDL is never dropped and remade
        return 1
    parallel = max(1, min(workers, os.cpu_count() or 1))
    share = load_cost(task) / max(1e-9, sum(load_cost(t) for t in todo))
    return parallel if share * 2 * parallel >= 1.5 else 1


def load_cost(task: TableTask) -> float:
    """What loading and indexing a table costs, to start the dearest first. Rows drive COPY and index builds more
    than compressed bytes do (chartevents: short rows that compress well), so the official row counts rank
    the tables when the catalogue has them; the file size otherwise."""
    counts = task.table.counts
    return float(max(counts.values())) if counts else task.size / 100.0


def official_version(dataset: Dataset, root: Path, configured: str | None) -> str | None:
    if configured:
        return configured
    parts = set(root.resolve().parts)
    return next((v for v in dataset.versions if v in parts), None)


# -- meta ----------------------------------------------------------------------------------------------------------

def loaded_tables(conn: psycopg.Connection) -> dict[tuple[str, str], tuple[int, int]]:
    rows = conn.execute(sql.SQL("SELECT schema_name, table_name, rows, file_records FROM {}.loaded_tables")
                        .format(I(META_SCHEMA))).fetchall()
    return {(s, t): (r, f) for s, t, r, f in rows}


def _record(conn: psycopg.Connection, task: TableTask, dataset: str, rows: int, records: int) -> None:
    conn.execute(sql.SQL(
        "INSERT INTO {}.loaded_tables (schema_name, table_name, dataset, rows, file_records)"
        " VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (schema_name, table_name) DO UPDATE SET rows = EXCLUDED.rows,"
        " file_records = EXCLUDED.file_records, loaded_at = now()").format(I(META_SCHEMA)),
        (task.table.schema, task.table.name, dataset, rows, records))


# -- one table -----------------------------------------------------------------------------------------------------


def create_statement(t: Table) -> sql.Composable:
    cols = sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(I(c.name), sql.SQL(c.sql_type), sql.SQL(" NOT NULL" if c.not_null else ""))
        for c in t.columns)
    return sql.SQL("CREATE TABLE {} ({})").format(_qualified(t), cols)


def _copy_statement(task: TableTask, *, freeze: bool) -> sql.Composable:
    opts = "FORMAT csv, FREEZE true" if freeze else "FORMAT csv"
    return sql.SQL("COPY {} ({}) FROM STDIN WITH (" + opts + ")").format(
        _qualified(task.table), sql.SQL(", ").join(I(c) for c in task.columns))


def copy_error(task: TableTask, exc: psycopg.Error, record_of_line) -> ProvisionError:
    """Name the file, line, column, value and expected type of a row the server refused."""
    message = str(exc).strip().splitlines()[0]
    context = exc.diag.context or ""
    m = re.search(r'line (\d+)(?:, column (\w+))?(?:: "(.*)")?', context, re.S)
    if not m:
        return ProvisionError(f"{task.file}: {message}", hint="the table was left as it was; fix the file and retry")
    record = record_of_line(int(m.group(1)))
    line = physical_line(task.path, record)
    column, value = m.group(2), m.group(3)
    where = f"{task.file}, line {line}"
    if column and (col := task.table.column(column)) is not None and value is not None:
        what = f"column {column}: {value!r} is not a valid {col.sql_type.lower()} ({message})"
    elif "extra data after last expected column" in message:
        what = f"more fields than the {len(task.columns)} columns of the header ({message})"
    elif "missing data for column" in message:
        what = f"fewer fields than the {len(task.columns)} columns of the header ({message})"
    else:
        what = f"{'column ' + column + ': ' if column else ''}{message}"
    return ProvisionError(f"{where}, {what}",
                          hint=f"nothing of {task.table.schema}.{task.table.name} was kept; fix the file and retry")


class Loader:
    def __init__(self, server: DatabaseServer, dbname: str, owner: str, dataset: str, *, progress: Progress,
                 overall: TaskID) -> None:
        self.server, self.dbname, self.owner, self.dataset = server, dbname, owner, dataset
        self.progress, self.overall = progress, overall

    def _connect(self, background: bool = False) -> psycopg.Connection:
        conn = self.server.connect(self.dbname, autocommit=True)
        if background:
            deprioritize(self.server, conn)
        conn.execute("SET synchronous_commit = off")  # a table is redone after a crash anyway
        conn.execute("SET client_encoding = 'UTF8'")
        return conn

    def load(self, task: TableTask, *, streams: int = 1, background: bool = False) -> TableResult:
        started = time.perf_counter()
        bar = self.progress.add_task(f"{task.table.schema}.{task.table.name}", total=task.size, rows=0)
        try:
            if streams <= 1:
                rows, records = self._load_one(task, bar, background)
            else:
                rows, records = self._load_split(task, bar, streams)
        finally:
            self.progress.update(bar, completed=task.size)
        return TableResult(task.table.schema, task.table.name, rows, records, None, "file",
                           time.perf_counter() - started)

    def _advance(self, bar: TaskID, block, last: list[int], rows: int) -> None:
        step = block.raw_bytes - last[0]
        last[0] = block.raw_bytes
        self.progress.update(bar, advance=step, rows=rows)
        self.progress.advance(self.overall, step)

    def _load_one(self, task: TableTask, bar: TaskID, background: bool = False) -> tuple[int, int]:
        records, last = 0, [0]
        with self._connect(background) as conn, conn.cursor() as cur:
            try:
                with conn.transaction():
                    cur.execute(sql.SQL("SET LOCAL ROLE {}").format(I(self.owner)))
                    if task.create:
                        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_qualified(task.table)))
                        cur.execute(create_statement(task.table))
                        freeze = True
                    else:
                        cur.execute(sql.SQL("TRUNCATE {}").format(_qualified(task.table)))
                        # the organizer's DDL may partition a table: COPY routes its rows, but cannot FREEZE them
                        freeze = cur.execute(
                            "SELECT c.relkind <> 'p' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                            " WHERE n.nspname = %s AND c.relname = %s", (task.table.schema, task.table.name)
                        ).fetchone()[0]
                    with cur.copy(_copy_statement(task, freeze=freeze)) as copy:
                        for block in chunks(task.path):
                            copy.write(block.data)
                            records += block.records
                            self._advance(bar, block, last, records)
                    rows = cur.rowcount
                    cur.execute("RESET ROLE")
                    _record(conn, task, self.dataset, rows, records)
            except psycopg.Error as exc:
                raise copy_error(task, exc, lambda line: line) from None
        return rows, records

    def _load_split(self, task: TableTask, bar: TaskID, streams: int) -> tuple[int, int]:
        """One reader, several COPY streams (each its own connection and transaction) for one big file."""
        with self._connect() as conn:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(I(self.owner)))
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_qualified(task.table)))
                conn.execute(create_statement(task.table))
        work: queue.Queue = queue.Queue(maxsize=2 * streams)  # bounded: memory stays at a few blocks
        errors: list[BaseException] = []
        totals = [0] * streams
        conns: list[psycopg.Connection] = []
        try:
            for _ in range(streams):
                conns.append(self._connect())
        except BaseException:
            for c in conns:
                c.close()
            raise
        lock = threading.Lock()
        sent = [0, 0]  # records, raw bytes

        def consume(i: int) -> None:
            conn = conns[i]
            spans: list[tuple[int, int]] = []  # (records sent before, first record of block)
            try:
                conn.execute("BEGIN")
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(I(self.owner)))
                with conn.cursor() as cur:
                    with cur.copy(_copy_statement(task, freeze=False)) as copy:
                        done = 0
                        while (block := work.get()) is not None:
                            spans.append((done, block.first_record))
                            copy.write(block.data)
                            done += block.records
                            with lock:
                                sent[0] += block.records
                                step = block.raw_bytes - sent[1] if block.raw_bytes > sent[1] else 0
                                sent[1] = max(sent[1], block.raw_bytes)
                            self.progress.update(bar, advance=step, rows=sent[0])
                            self.progress.advance(self.overall, step)
                    totals[i] = cur.rowcount
            except BaseException as exc:  # noqa: BLE001  (re-raised below, in the caller's thread)
                if isinstance(exc, psycopg.Error):
                    def record_of(line: int) -> int:
                        before, first = max((s for s in spans if s[0] < line), default=(0, 1))
                        return first + (line - before) - 1
                    errors.append(copy_error(task, exc, record_of))
                else:
                    errors.append(exc)
                while work.get() is not None:  # drain so the reader never blocks
                    pass

        threads = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(streams)]
        for t in threads:
            t.start()
        records = 0
        try:
            for block in blocks(task.path):
                if errors:
                    break
                work.put(block)
                records += block.records
        except BaseException as exc:
            errors.append(exc)
        finally:
            for _ in threads:
                work.put(None)
            for t in threads:
                t.join()
        try:
            if errors:
                for c in conns:
                    with contextlib.suppress(psycopg.Error):  # a broken connection has rolled back already
                        c.execute("ROLLBACK")
                with self._connect() as conn:  # leave nothing half-loaded behind
                    conn.execute(sql.SQL("SET ROLE {}").format(I(self.owner)))
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_qualified(task.table)))
                raise errors[0]
            rows = sum(totals)
            for c in conns[1:]:
                c.execute("COMMIT")
            conns[0].execute("RESET ROLE")
            _record(conns[0], task, self.dataset, rows, records)
            conns[0].execute("COMMIT")
        finally:
            for c in conns:
                c.close()
        return rows, records


# -- keys, indexes, foreign keys -------------------------------------------------------------------------------------

def make_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<34}"), BarColumn(bar_width=24), DownloadColumn(), TransferSpeedColumn(),
        TextColumn("{task.fields[rows]:>12,} rows"), TimeRemainingColumn(), console=console,
        disable=not console.is_terminal,
    )


def load_dataset(server: DatabaseServer, dbname: str, owner: str, dataset: Dataset, root: Path, console: Console, *,
                 workers: int | None = None, version: str | None = None, tables: list[str] | None = None,
                 foreign_keys: ForeignKeyMode = "validate", extra_keys: bool = False,
                 verify_cache: Path | None = None, split_min_bytes: int = SPLIT_MIN_BYTES,
                 create: bool = True) -> LoadReport:
    started = time.perf_counter()
    if extra_keys:  # the official build's keys and indexes, and datathon's own beyond them
        dataset = dataset.with_extras()
    workers = workers or default_workers()
    tasks = sorted(find_tasks(dataset, root, tables=tables, create=create), key=lambda t: -load_cost(t))
    report = LoadReport(dataset=dataset.kind)
    mark = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        report.phases[name] = now - mark
        mark = now

    with make_progress(console) as progress:
        verify(root, [t.file for t in tasks], progress=progress, cache=verify_cache)
        phase("verify")
        with server.connect(dbname, autocommit=True) as conn:
            ensure_meta(conn)
            for schema in dataset.schemas if create else []:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(I(schema), I(owner)))
            done = loaded_tables(conn)
        todo = [t for t in tasks if (t.table.schema, t.table.name) not in done]
        overall = progress.add_task(f"{dataset.kind} ({len(todo)} of {len(tasks)} tables to load)",
                                    total=sum(t.size for t in todo), rows=0)
        loader = Loader(server, dbname, owner, dataset.kind, progress=progress, overall=overall)
        streams = {id(t): split_streams(t, todo, workers, split_min_bytes) for t in todo}
        results: dict[tuple[str, str], TableResult] = {}
        keys = KeyBuilder(server, dbname, owner, workers=workers, progress=progress, tables=len(tasks))
        fks = ForeignKeyBuilder(server, dbname, owner, dataset, [t.table for t in tasks]) \
            if foreign_keys != "skip" else None
        lock = threading.Lock()
        jobs: list = []  # key and foreign-key jobs, submitted as their inputs become ready
        have_pk: set[str] = set()  # tables analyzed and given their primary key (if any)
        fk_waiting = {t.table.name: t.table for t in tasks} if fks else {}
        # The critical path: the table split over every core, then its index and foreign keys. Everything else
        # runs at a lower CPU priority on the managed cluster, so it fills the cores without slowing that path.
        # With no such table (small data, a resumed load, one core) nothing is lowered: as before, all equal.
        critical = {t.table.name for t in todo if streams[id(t)] > 1}
        # The small tables other tables' foreign keys point at (patients, admissions, the item dictionaries) load
        # first, so that a big table's keys can go in the moment it is loaded, before its index builds start.
        # (Big ones, MIMIC-IV's poe and emar, keep their place: beside the split table they would slow it.)
        total_cost = sum(load_cost(t) for t in todo) or 1.0
        referenced = {fk.ref_table for t in tasks for fk in t.table.foreign_keys}
        first = {t.table.name for t in todo if t.table.name in referenced and load_cost(t) < total_cost / 100}

        def background(name: str) -> bool:
            return bool(critical) and name not in critical
        with ThreadPoolExecutor(max_workers=workers) as pool:
            def submit(fn, *args) -> None:
                with lock:
                    jobs.append(pool.submit(fn, *args))

            def keys_of(table: Table) -> None:
                """ANALYZE and primary key; then the indexes, each a job, and the foreign keys of every table
                whose referenced tables now all have their keys."""
                index_jobs = keys.prepare(table, background(table.name))
                with lock:
                    have_pk.add(table.name)
                    ready = [u for u in fk_waiting.values() if fks.needs(u) <= have_pk] if fks else []
                    for u in ready:
                        del fk_waiting[u.name]
                checks = []
                for u in ready:  # this table's own keys go in now, before its index builds take their locks
                    if u is table and fks.add(u, wait=False):
                        checks.append(u)
                    else:  # a referenced table is being indexed (or an earlier table waited for this one): later
                        submit(fks.build, u, background(u.name))
                for job in index_jobs:
                    submit(keys.build_index, table, job, background(table.name))
                for u in checks:  # beside the index builds (fkscan), or after them (VALIDATE waits for them)
                    submit(fks.check, u, background(u.name))

            def load_then_keys(t: TableTask, streams: int) -> TableResult:
                result = loader.load(t, streams=streams, background=background(t.table.name))
                submit(keys_of, t.table)  # queued before this load counts as done: never missed
                return result

            loads = {}
            for t in tasks:
                if t not in todo:
                    submit(keys_of, t.table)
            for t in todo:
                if t.table.name in first and t.table.name not in critical:
                    loads[pool.submit(load_then_keys, t, 1)] = t
            # A table split over every core goes next, alone but for those small ones: it is the critical path
            # (its load, then its index and foreign keys), and the other loads fill the cores while it is indexed.
            lead = [t for t in todo if t.table.name in critical]
            for t in lead:
                f = pool.submit(load_then_keys, t, streams[id(t)])
                loads[f] = t
                f.result()  # its error stops everything before the other loads start
            for t in todo:
                if t not in lead and t not in loads.values():
                    loads[pool.submit(load_then_keys, t, 1)] = t
            try:
                for f, t in loads.items():
                    r = f.result()
                    results[(r.schema, r.table)] = r
                    report.bytes += t.size
                phase("copy")
                while True:  # jobs submit further jobs: wait until none is left
                    with lock:
                        pending = [j for j in jobs if not j.done()]
                    if not pending:
                        break
                    for j in pending:
                        j.result()
                problems = [p for j in jobs for p in (j.result() or [])]
            except BaseException:
                for f in [*loads, *jobs]:
                    f.cancel()
                raise
        for t in tasks:
            key = (t.table.schema, t.table.name)
            if key not in results:
                rows, records = done[key]
                results[key] = TableResult(*key, rows, records, None, "file", skipped=True)
        phase("keys, indexes, analyze, foreign keys (after the last load)")
        report.timings = {**{f"{r.table} load": r.seconds for r in results.values() if not r.skipped},
                          **keys.timings, **(fks.timings if fks else {})}
    report.fk_problems = problems
    if problems and foreign_keys == "strict":
        raise ProvisionError("foreign keys are violated:\n  " + "\n  ".join(problems),
                             hint="the data and indexes are loaded; set foreign_keys: validate to accept this")
    known = official_version(dataset, root, version)
    for t in tasks:
        r = results[(t.table.schema, t.table.name)]
        if known and known in t.table.counts:
            r.expected, r.expected_from = t.table.counts[known], f"official v{known}"
        report.tables.append(r)
    report.seconds = time.perf_counter() - started
    report.peak_rss_mb = peak_rss_mb()
    return report


def print_load_report(console: Console, report: LoadReport) -> None:
    rate = report.rows / report.seconds if report.seconds else 0
    console.print(f"[green]{report.dataset}[/]: {len(report.tables)} tables, {report.rows:,} rows, "
                  f"{report.bytes / 2**20:,.0f} MiB compressed in {report.seconds:.1f}s ({rate:,.0f} rows/s); "
                  f"peak memory {report.peak_rss_mb:.0f} MB", highlight=False)
    if report.mismatches:
        table = RichTable(title="Row counts that do not match", title_justify="left")
        for col in ("table", "loaded", "expected", "expected from"):
            table.add_column(col)
        for r in report.mismatches:
            expected = r.expected if r.expected is not None else r.file_records
            table.add_row(f"{r.schema}.{r.table}", f"{r.rows:,}", f"{expected:,}", r.expected_from)
        console.print(table)
    for p in report.fk_problems:
        console.print(f"[yellow]foreign key[/] {p}", highlight=False)
