"""Run an approved plan: each change in its own transaction, in order, with a progress bar."""

from __future__ import annotations

import time
from collections.abc import Iterable

import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from datathon.core import faults
from datathon.core.plan import Change
from datathon.database.server import DatabaseServer
from datathon.errors import ProvisionError


class _Connections:
    """One admin connection per database, opened when first needed."""

    def __init__(self, server: DatabaseServer | None) -> None:
        self.server = server
        self.open: dict[str | None, psycopg.Connection] = {}

    def get(self, dbname: str | None) -> psycopg.Connection:
        if self.server is None:  # a part without a database server planned SQL: a bug, not the organizer's doing
            raise ProvisionError("a change has SQL statements but its part has no database server",
                                 hint="report this as a bug in datathon")
        if dbname not in self.open:
            self.open[dbname] = self.server.connect(dbname, autocommit=True)
        return self.open[dbname]

    def close(self) -> None:
        for conn in self.open.values():
            conn.close()
        self.open.clear()


def run_change(change: Change, conns: _Connections) -> None:
    if change.run is not None:
        change.run()
        return
    conn = conns.get(change.database)
    try:
        if change.autocommit:
            for stmt in change.statements:
                conn.execute(stmt if not callable(stmt) else stmt(conn))
        else:
            with conn.transaction():
                for stmt in change.statements:
                    conn.execute(stmt if not callable(stmt) else stmt(conn))
    except psycopg.Error as exc:
        raise ProvisionError(
            f"{change.action} {change.component} {change.target} failed: {str(exc).strip().splitlines()[0]}",
            hint="nothing of this step was kept; fix the cause and run the command again (it resumes here)",
        ) from exc


def apply_changes(changes: Iterable[Change], server: DatabaseServer | None, console: Console, *,
                  label: str) -> int:
    """Apply the mutating changes; returns how many ran. Stops at the first failure (already-applied
    changes stay: every change is complete on its own, and the next run plans only what is left)."""
    todo = [c for c in changes if c.mutating]
    if not todo:
        return 0
    conns = _Connections(server)
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[current]}", style="dim"),
        console=console, transient=False, disable=not console.is_terminal,
    )
    lines = not console.is_terminal  # a log, CI or tmux with logging: a line per step instead of a bar
    started = time.monotonic()
    try:
        with progress:
            task = progress.add_task(label, total=len(todo), rate="", current="")
            for i, change in enumerate(todo, 1):
                progress.update(task, current=f"{change.action} {change.target}")
                if lines:
                    console.print(f"{time.strftime('%H:%M:%S')} {label} [{i}/{len(todo)}] {change.action} "
                                  f"{change.component} {change.target}", highlight=False, soft_wrap=True,
                                  markup=False)
                run_change(change, conns)
                faults.point("apply.change")  # after each change of any verb: `apply.change@N` dies after the N-th
                progress.advance(task)
                t = progress.tasks[0]
                if t.elapsed:
                    progress.update(task, rate=f"{t.completed / t.elapsed:.0f}/s")
            progress.update(task, current="done")
        if lines:
            console.print(f"{time.strftime('%H:%M:%S')} {label}: {len(todo)} done in "
                          f"{time.monotonic() - started:.1f}s", highlight=False, markup=False)
    finally:
        conns.close()
    return len(todo)
