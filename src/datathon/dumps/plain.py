"""Restoring a plain SQL dump: read through once to decide every statement (nothing runs if one is refused), then
run it in one transaction as the data owner, recorded as loaded in that same transaction: an interrupted or failed
restore leaves the database as it was, and the next `up` starts it again."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from datathon.database.meta import ensure_meta
from datathon.dumps.policy import Policy, ServerFacts, dumped_by
from datathon.dumps.reader import Copy, Item, Meta, Statement, iter_dump, open_plain
from datathon.errors import ProvisionError

I = sql.Identifier  # noqa: E741


@dataclass
class RestoreSummary:
    path: Path
    tables: int = 0
    rows: int = 0
    seconds: float = 0.0
    left_out: dict[str, int] = field(default_factory=dict)
    unshared: list[str] = field(default_factory=list)  # schemas the dump made that teams are not given

    def lines(self) -> list[str]:
        out = [f"{self.path.name}: {self.tables} tables, {self.rows:,} rows restored in {self.seconds:.1f} s"]
        if self.left_out:
            out.append("  left out: " + ", ".join(f"{n} x {what}" for what, n in sorted(self.left_out.items())))
        if self.unshared:
            out.append(f"  schema(s) {', '.join(self.unshared)} are not in shared_schemas: teams cannot read them")
        return out


def peek(path: Path, size: int = 8192) -> bytes:
    raw, proc = open_plain(path)
    try:
        return raw.read(size)
    finally:
        raw.close()
        if proc is not None:
            proc.kill()
            proc.communicate()


def scan(path: Path, facts: ServerFacts) -> Policy:
    """Every statement decided, without running any: what is refused, left out, and made."""
    policy = Policy(facts, made_by=dumped_by(peek(path)))
    for item in iter_dump(path):
        policy.decide(item)
    return policy


def make_progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                    TextColumn("tables"), TimeElapsedColumn(), TextColumn("{task.fields[table]}", style="dim"),
                    console=console, disable=not console.is_terminal)


def make_room_for_schemas(conn: psycopg.Connection, schemas: Iterable[str]) -> None:
    """`up` made the shared schemas empty before the sources ran; a dump creates its own: drop the empty ones
    (their grants come back right after the restore). A schema that already holds objects is a conflict."""
    for schema, objects in conn.execute(
            "SELECT n.nspname, (SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid)"
            " FROM pg_namespace n WHERE n.nspname = ANY(%s)", (list(schemas),)).fetchall():
        if objects:
            raise ProvisionError(f"the dump creates schema {schema}, which already holds {objects} objects",
                                 hint="drop that schema or restore the dump into another database; nothing was "
                                      "restored")
        conn.execute(sql.SQL("DROP SCHEMA {}").format(I(schema)))


def _where(path: Path, stmt: Statement, exc: psycopg.Error) -> str:
    line = stmt.line
    if m := re.search(r"\bCOPY \S+, line (\d+)", exc.diag.context or ""):
        line += int(m.group(1))
    elif exc.diag.statement_position:
        line += stmt.text[: int(exc.diag.statement_position)].count(b"\n")
    return f"{path}:{line}"


def restore_plain(conn: psycopg.Connection, path: Path, owner: str, dbname: str, *, readable: list[str],
                  mark: sql.Composable, console: Console) -> RestoreSummary:
    """The whole dump in one transaction on `conn` (not in autocommit), with `mark` (the source recorded as
    loaded) as its last statement."""
    started = time.perf_counter()
    facts = ServerFacts.read(conn)
    conn.rollback()
    planned = scan(path, facts)
    if planned.problems:
        raise ProvisionError(planned.report(path), hint=planned.fix(path))
    run = Policy(facts, made_by=planned.made_by)
    summary = RestoreSummary(path, unshared=[s for s in dict.fromkeys(planned.schemas) if s not in readable])
    with make_progress(console) as progress, conn.transaction():
        task = progress.add_task(f"restore {path.name}", total=planned.copies, table="")
        ensure_meta(conn)
        make_room_for_schemas(conn, [s for s in planned.schemas if s in readable and s != "public"])
        # The dump creates its schemas as the data owner, which may not create schemas otherwise: allowed for
        # the length of this transaction only.
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(I(dbname), I(owner)))
        conn.execute(sql.SQL("SET ROLE {}").format(I(owner)))

        def copied(table: str, rows: int | None) -> None:
            if rows is None:
                progress.update(task, table=table)
                return
            summary.rows += rows
            summary.tables += 1
            progress.advance(task)

        run_items(conn, iter_dump(path), run, owner, where=path, on_copy=copied)
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(I(dbname), I(owner)))
        conn.execute(mark)
    summary.left_out = dict(run.left_out)
    summary.seconds = time.perf_counter() - started
    return summary


def run_items(conn: psycopg.Connection, items: Iterable[Item], policy: Policy, owner: str, *, where: Path,
              on_copy=None) -> None:
    """Each item as the policy decides, inside the caller's transaction, with the session role at the data
    owner (the administrator for what must be its own, such as extensions). A statement the server refuses
    is named by the dump's file and line."""
    as_owner = sql.SQL("SET ROLE {}").format(I(owner))
    for item in items:
        decision = policy.decide(item)
        if decision.action == "skip" or isinstance(item, Meta):
            continue
        stmt = item.statement if isinstance(item, Copy) else item
        try:
            if decision.action == "admin":
                conn.execute("RESET ROLE")
                conn.execute(stmt.text)
                conn.execute(as_owner)
            elif isinstance(item, Copy):
                if on_copy:
                    on_copy(stmt.target, None)
                rows = _copy(conn, item)
                if on_copy:
                    on_copy(stmt.target, rows)
            else:
                conn.execute(stmt.text)
        except psycopg.Error as exc:
            raise ProvisionError(
                f"restoring {_where(where, stmt, exc)} failed: {str(exc).strip().splitlines()[0]} "
                f"(in: {stmt.head[:80]})",
                hint="nothing of the dump was kept; fix the cause and run `datathon up` again") from None


def _copy(conn: psycopg.Connection, item: Copy) -> int:
    with conn.cursor() as cur:
        with cur.copy(item.statement.text) as copy:
            for chunk in item.chunks:
                copy.write(chunk)
        return cur.rowcount
