"""Keys, indexes and foreign keys of loaded tables: the second half of the loader.

A table's primary key, indexes and ANALYZE run as soon as that table is loaded (KeyBuilder); foreign keys come
after every table is in, `NOT VALID` and then validated, so a violation in official data is reported with the
violating rows instead of losing the build (ForeignKeyBuilder). On the managed cluster, work off the critical
path runs at a lower CPU priority (deprioritize)."""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time

import psycopg
from psycopg import sql
from rich.progress import Progress

from datathon.database.server import DatabaseServer
from datathon.datasets import fkscan
from datathon.datasets.catalogue import Dataset, Table
from datathon.errors import ProvisionError

I = sql.Identifier  # noqa: E741

SORT_BYTES_PER_ROW = 128  # memory an index build needs per row to sort in memory (tuple, its header, SortTuple)
DEADLOCK_ATTEMPTS = 5  # adding a table's foreign keys, when another table's being added deadlocks with it
BACKGROUND_NICE = 10  # CPU priority of work off the critical path (managed cluster), see deprioritize()


def deprioritize(server: DatabaseServer, conn: psycopg.Connection, nice: int = BACKGROUND_NICE) -> None:
    """Lower the CPU priority of this connection's server process, for work off the critical path: with more
    loads than cores, equal shares let the biggest table's index and key checks finish last (measured on 2 cores:
    1 GB of MIMIC-IV-shaped data 85-89 s with equal shares, 75-81 s with this). Only on the managed cluster,
    whose backends are processes of its OS user on this machine; elsewhere (RDS) it does nothing. A priority is
    only ever lowered."""
    os_user = server.traits.os_user
    if os_user is None:
        return
    pid = conn.info.backend_pid
    with contextlib.suppress(OSError):
        if os.stat(f"/proc/{pid}").st_uid == os_user.pw_uid and os.getpriority(os.PRIO_PROCESS, pid) < nice:
            os.setpriority(os.PRIO_PROCESS, pid, nice)


def _qualified(t: Table) -> sql.Composable:
    return sql.SQL("{}.{}").format(I(t.schema), I(t.name))



class KeyBuilder:
    """Primary key, indexes and ANALYZE of one table, run as soon as that table is loaded (on the same workers as
    the loads, so the cores that finish early build indexes while the biggest table is still loading); after the
    primary key, each index is a job of its own."""

    def __init__(self, server: DatabaseServer, dbname: str, owner: str, *, workers: int, progress: Progress,
                 tables: int) -> None:
        self.server, self.dbname, self.owner = server, dbname, owner
        self.progress = progress
        self.task = progress.add_task("keys, indexes, analyze", total=tables, rows=0)
        self.timings: dict[str, float] = {}  # seconds per statement, for the report
        self.memory: dict[str, int] = {}  # MB of maintenance_work_mem per table, from its row count
        self.pending: dict[str, int] = {}  # index builds still to finish, per table
        self.lock = threading.Lock()
        server_memory = server.traits.memory_bytes
        # A sort that does not fit spills to temp files and merges them (MIMIC-IV's chartevents index needs about
        # 2.5 GB): each build gets what its row count needs, up to a cap. On the managed cluster the server's
        # memory is this machine's: the critical path may take a quarter, and all builds at once stay under half.
        # Elsewhere (RDS) this machine's memory says nothing of the server's: the old, modest ceiling.
        if server_memory is not None:
            total_mb = server_memory >> 20
            self.memory_cap = max(64, total_mb // (4 * workers))
            self.critical_memory_cap = max(64, total_mb // 4)
        else:
            total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20
            self.memory_cap = self.critical_memory_cap = max(64, min(2048, total_mb // (4 * workers)))
        with server.connect(dbname, autocommit=True) as conn:
            self.have_pk = {r[0] for r in conn.execute(
                "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'p'")}
            self.have_idx = set(conn.execute("SELECT schemaname, indexname FROM pg_indexes").fetchall())
            # an index on the same columns under another name (a database loaded before the official names)
            # is not built twice
            self.have_idx |= {(nsp, rel, tuple(cols)) for nsp, rel, cols in conn.execute(
                "SELECT n.nspname, c.relname, (SELECT array_agg(a.attname ORDER BY k.n) FROM unnest(i.indkey::int2[])"
                " WITH ORDINALITY k(num, n) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num)"
                " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE NOT i.indisprimary AND i.indpred IS NULL AND i.indexprs IS NULL")}

    def jobs(self, t: Table) -> list[tuple[str, sql.Composable]]:
        q = _qualified(t)
        out = []
        if t.primary_key and f"{t.schema}.{t.name}" not in self.have_pk:
            out.append((f"{t.name} primary key", sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
                q, I(t.pk_name), sql.SQL(", ").join(I(c) for c in t.primary_key))))
        for index in t.indexes:
            if not {(t.schema, index.name), (t.schema, t.name, index.columns)} & self.have_idx:
                out.append((f"{t.name} index ({', '.join(index.columns)})",
                            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                                I(index.name), q, sql.SQL(", ").join(I(c) for c in index.columns))))
        return out

    def prepare(self, t: Table, background: bool = False) -> list[tuple[str, sql.Composable]]:
        """ANALYZE (first: a sample, and its row count sizes the sorts), then the primary key (it locks the whole
        table). Returns the indexes still to build: each is a job of its own (build_index), so that one table's
        several indexes use several cores (MIMIC-IV's emar_detail has four, built last)."""
        with self._session(background) as conn:
            with self._step(f"{t.name} analyze"):
                conn.execute(sql.SQL("ANALYZE {}").format(_qualified(t)))
                self.memory[t.name] = self._sort_memory(
                    conn, t, self.memory_cap if background else self.critical_memory_cap)
            conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(f"{self.memory[t.name]}MB")))
            jobs = self.jobs(t)
            if jobs and jobs[0][0].endswith("primary key"):
                label, stmt = jobs.pop(0)
                with self._step(label):
                    conn.execute(stmt)
        with self.lock:
            self.pending[t.name] = len(jobs)
        if not jobs:
            self.progress.advance(self.task)
        return jobs

    def build_index(self, t: Table, job: tuple[str, sql.Composable], background: bool = False) -> None:
        label, stmt = job
        with self._session(background) as conn:
            conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(f"{self.memory[t.name]}MB")))
            with self._step(label):
                conn.execute(stmt)
        with self.lock:
            self.pending[t.name] -= 1
            last = self.pending[t.name] == 0
        if last:
            self.progress.advance(self.task)

    @contextlib.contextmanager
    def _session(self, background: bool):
        with self.server.connect(self.dbname, autocommit=True) as conn:
            if background:  # parallel workers would compete with the loads: only the critical path gets them
                deprioritize(self.server, conn)
                conn.execute("SET max_parallel_maintenance_workers = 0")
            conn.execute(sql.SQL("SET ROLE {}").format(I(self.owner)))
            yield conn

    @contextlib.contextmanager
    def _step(self, label: str):
        """One statement of a build: timed for the report, its failure a message that names it."""
        started = time.perf_counter()
        try:
            yield
        except psycopg.Error as exc:
            raise ProvisionError(f"{label} failed: {str(exc).strip().splitlines()[0]}",
                                 hint="the data is loaded; fix the cause and run the load again to finish",
                                 ) from None
        self.timings[label] = time.perf_counter() - started

    @staticmethod
    def _sort_memory(conn: psycopg.Connection, t: Table, cap: int) -> int:
        rows = conn.execute(
            "SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s", (t.schema, t.name)).fetchone()[0]
        return max(64, min(cap, int(max(rows, 0) * SORT_BYTES_PER_ROW) >> 20))


def _fk_name(t: Table, fk) -> str:
    return t.fk_name(fk)


class ForeignKeyBuilder:
    """Add each key NOT VALID, then validate it; a violation (official data has some) leaves that key NOT VALID
    and is reported with the number of violating rows, instead of losing the build. A table's keys are checked
    one after the other (validation locks the table), different tables at the same time."""

    def __init__(self, server: DatabaseServer, dbname: str, owner: str, dataset: Dataset, tables: list[Table]) -> None:
        self.server, self.dbname, self.owner, self.dataset = server, dbname, owner, dataset
        self.loaded = {t.name for t in tables}
        self.timings: dict[str, float] = {}  # seconds per table's foreign keys, for the report
        with server.connect(dbname, autocommit=True) as conn:
            self.existing = dict(conn.execute(
                "SELECT conname, convalidated FROM pg_constraint WHERE contype = 'f'").fetchall())
            # a validated key on the same columns into the same table under another name (a database loaded
            # before the official names) counts as that key: it is not added twice
            same = {(nsp, rel, tuple(cols), ref) for nsp, rel, cols, ref in conn.execute(
                "SELECT n.nspname, r.relname, (SELECT array_agg(a.attname ORDER BY k.n) FROM unnest(c.conkey)"
                " WITH ORDINALITY k(num, n) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num),"
                " f.relname FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid"
                " JOIN pg_namespace n ON n.oid = r.relnamespace JOIN pg_class f ON f.oid = c.confrelid"
                " WHERE c.contype = 'f' AND c.convalidated")}
        for t in tables:
            for fk in t.foreign_keys:
                if _fk_name(t, fk) not in self.existing and (t.schema, t.name, fk.columns, fk.ref_table) in same:
                    self.existing[_fk_name(t, fk)] = True  # validated already, under its old name

    def needs(self, t: Table) -> set[str]:
        """The tables whose keys must exist before this table's foreign keys can be checked."""
        return {t.name} | {fk.ref_table for fk in t.foreign_keys if fk.ref_table in self.loaded}

    def _todo(self, t: Table) -> list:
        return [fk for fk in t.foreign_keys if fk.ref_table in self.loaded and self.existing.get(_fk_name(t, fk))
                is not True]

    def add(self, t: Table, *, wait: bool = True) -> bool:
        """Add t's keys NOT VALID: from then on the server checks every new row. Adding a key waits for index
        builds on t and on the referenced tables; with wait=False it gives up at once instead (False)."""
        new = [fk for fk in self._todo(t) if _fk_name(t, fk) not in self.existing]
        if not new:
            return True
        with self.server.connect(self.dbname, autocommit=True) as conn:
            for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
                try:
                    with conn.transaction():
                        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(I(self.owner)))
                        if not wait:
                            conn.execute("SET LOCAL lock_timeout = '100ms'")
                        conn.execute(sql.SQL("ALTER TABLE {} {}").format(_qualified(t), sql.SQL(", ").join(
                            _add_not_valid(self.dataset, t, fk) for fk in new)))
                    break
                except psycopg.errors.LockNotAvailable:
                    if wait:
                        raise
                    return False
                except psycopg.errors.DeadlockDetected as exc:
                    # Two tables' keys added at once lock each other's tables in opposite orders; the server
                    # rolled this one back whole, so it is simply tried again (a bounded number of times).
                    if attempt == DEADLOCK_ATTEMPTS:
                        raise ProvisionError(f"foreign keys of {t.schema}.{t.name} could not be added: "
                                             f"{str(exc).strip().splitlines()[0]}", hint=_HINT) from None
                    time.sleep(random.uniform(0.05, 0.2) * attempt)
                except psycopg.Error as exc:
                    raise ProvisionError(f"foreign keys of {t.schema}.{t.name} could not be added: "
                                         f"{str(exc).strip().splitlines()[0]}", hint=_HINT) from None
        for fk in new:
            self.existing[_fk_name(t, fk)] = False
        return True

    def check(self, t: Table, background: bool = False) -> list[str]:
        """Check the keys added NOT VALID: all in one scan of t on the managed cluster (fkscan), beside t's index
        builds; elsewhere one VALIDATE each, after them (VALIDATE's lock waits for index builds)."""
        todo = self._todo(t)
        if not todo:
            return []
        problems = []
        started = time.perf_counter()
        with self.server.connect(self.dbname, autocommit=True) as conn:
            if background:
                deprioritize(self.server, conn)
            try:
                how = "one scan" if fkscan.usable(conn, self.dataset, todo) else "validate"
                if how == "one scan":
                    counts = fkscan.check_and_mark(conn, self.dataset, t, todo, parallel=not background)
                    violated = [fk for fk in todo if counts[_fk_name(t, fk)]]
                    problems += [_violation(conn, self.dataset, t, fk) for fk in violated]
                else:
                    conn.execute(sql.SQL("SET ROLE {}").format(I(self.owner)))
                    violated = []
                    for fk in todo:
                        found = _validate(conn, self.dataset, t, fk)
                        violated += [fk] if found else []
                        problems += found
            except psycopg.Error as exc:
                raise ProvisionError(f"foreign keys of {t.schema}.{t.name} failed: "
                                     f"{str(exc).strip().splitlines()[0]}", hint=_HINT) from None
        for fk in todo:
            self.existing[_fk_name(t, fk)] = fk not in violated
        self.timings[f"{t.name} foreign keys ({len(todo)}, {how})"] = time.perf_counter() - started
        return problems

    def build(self, t: Table, background: bool = False) -> list[str]:
        self.add(t)
        return self.check(t, background)


_HINT = "the data and indexes are loaded; fix the cause and run the load again to finish"


def _add_not_valid(dataset: Dataset, t: Table, fk) -> sql.Composable:
    ref = dataset.table(fk.ref_table)
    return sql.SQL("ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) NOT VALID").format(
        I(_fk_name(t, fk)), sql.SQL(", ").join(I(c) for c in fk.columns), _qualified(ref),
        sql.SQL(", ").join(I(c) for c in fk.ref_columns))


def _validate(conn: psycopg.Connection, dataset: Dataset, t: Table, fk) -> list[str]:
    try:
        conn.execute(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(_qualified(t), I(_fk_name(t, fk))))
        return []
    except psycopg.errors.ForeignKeyViolation:
        return [_violation(conn, dataset, t, fk)]


def _violation(conn: psycopg.Connection, dataset: Dataset, t: Table, fk) -> str:
    ref = dataset.table(fk.ref_table)
    count, sample = count_violations(conn, _qualified(t), fk.columns, _qualified(ref), fk.ref_columns)
    return (f"{t.schema}.{t.name}({', '.join(fk.columns)}) -> {ref.name}: {count} row(s) refer to missing keys, "
            f"e.g. {', '.join(sample)}; key {_fk_name(t, fk)} kept NOT VALID")


def count_violations(conn: psycopg.Connection, table: sql.Composable, columns, ref: sql.Composable,
                     ref_columns) -> tuple[int, list[str]]:
    """How many rows of `table` refer to keys missing from `ref`, and up to three of those keys."""
    cols = sql.SQL(", ").join(I(c) for c in columns)
    cond = sql.SQL(" AND ").join(sql.SQL("r.{} = x.{}").format(I(rc), I(c))
                                 for c, rc in zip(columns, ref_columns, strict=True))
    notnull = sql.SQL(" AND ").join(sql.SQL("x.{} IS NOT NULL").format(I(c)) for c in columns)
    count, sample = conn.execute(sql.SQL(
        "SELECT count(*), (array_agg(DISTINCT ({})::text))[1:3] FROM {} x WHERE {} AND NOT EXISTS"
        " (SELECT 1 FROM {} r WHERE {})").format(cols, table, notnull, ref, cond)).fetchone()
    return count, list(sample or [])


# -- the whole dataset --------------------------------------------------------------------------------------------
