"""Progress of long archive work: a bar on a terminal, a line per step otherwise (logs, CI, `| tee`)."""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class Steps:
    def __init__(self, console: Console, label: str, total: int) -> None:
        self.console = console
        self.label = label
        self.total = total
        self.done = 0
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.bar: Progress | None = None
        if console.is_terminal:
            self.bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                                transient=True)
            self.task = self.bar.add_task("", total=total)

    def __enter__(self) -> Steps:
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.stop()

    def step(self, what: str) -> None:
        """A step within a team (not counted)."""
        if self.bar:
            self.bar.update(self.task, description=what)
        else:
            self.console.print(f"{self.label}: {what}", highlight=False, soft_wrap=True)

    def advance(self, what: str) -> None:
        """A team finished."""
        with self.lock:
            self.done += 1
            if self.bar:
                self.bar.update(self.task, advance=1, description=what)
            else:
                self.console.print(f"{self.label}: [{self.done}/{self.total}] {what} "
                                   f"({time.monotonic() - self.started:.0f}s)", highlight=False, soft_wrap=True)
