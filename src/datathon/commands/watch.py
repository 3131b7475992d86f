"""`datathon watch` (and the watcher thread of `datathon serve`): every few seconds, one cycle of every part's
guard (engine.guard_cycle), each action written to the event's journal, and the usage figures sampled at most
once a minute for the dashboard's plots.

It never takes the state folder's lock: an organizer's `up` runs while it watches (the watcher only puts back
what `up` itself would, and ends statements and sessions)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from datathon.core import journal
from datathon.core.activity import WatchReport
from datathon.core.context import Context
from datathon.core.part import Part
from datathon.core.state import StateStore
from datathon.engine import guard_cycle
from datathon.errors import DatathonError
from datathon.providers import get_provider

log = logging.getLogger("datathon")

USAGE_FILE = "watch-usage.jsonl"
SAMPLE_EVERY = 60.0  # seconds between two usage samples kept for the plots
READ_BLOCK = 1 << 16


def run_watch_cycle(ctx: Context, parts: list[Part] | None = None) -> WatchReport:
    """One cycle over `parts` (the provider's when None: a fresh watcher, which flags again what is over quota).
    A long-running watcher passes the same parts every cycle, so that a flag is written once per crossing."""
    parts = get_provider(ctx).parts() if parts is None else parts
    report = guard_cycle(parts, datetime.now(UTC))
    for a in report.actions:
        journal.record(ctx.state, "watcher", a.action, a.member,
                       a.detail if a.enforced else f"{a.detail} (flagged only)")
    for p in report.problems:
        log.warning("watch: %s", p)
    if report.usage:
        sample_usage(ctx.state, report.usage)
    return report


def usage_path(state: StateStore) -> Path:
    return state.root / USAGE_FILE


def sample_usage(state: StateStore, usage: dict, *, now: datetime | None = None, every: float = SAMPLE_EVERY) -> bool:
    """Append {"time", "usage"} to watch-usage.jsonl (0600) unless a sample was written less than `every`
    seconds ago (the file's modification time: right across processes too). Returns whether one was written."""
    path = usage_path(state)
    now = now or datetime.now(UTC)
    try:
        if now.timestamp() - path.stat().st_mtime < every:
            return False
    except FileNotFoundError:
        state.ensure_dirs()
    line = json.dumps({"time": now.isoformat(timespec="seconds"), "usage": usage}, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return True


def usage_history(state: StateStore, hours: float) -> list[dict]:
    """The samples of the last `hours`, oldest first: [{"time": iso, "usage": {member: {figure: value}}}].
    Reads the file from its end, only as far back as needed."""
    cut = (datetime.now(UTC) - timedelta(hours=hours)).isoformat(timespec="seconds")
    out: list[dict] = []
    try:
        f = open(usage_path(state), "rb")
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        rest = b""
        done = False
        while end > 0 and not done:
            start = max(0, end - READ_BLOCK)
            f.seek(start)
            chunk = f.read(end - start) + rest
            end = start
            lines = chunk.split(b"\n")
            rest = lines.pop(0) if start > 0 else b""  # maybe cut short: read again with the block before
            for raw in reversed(lines):
                try:
                    sample = json.loads(raw)
                except ValueError:
                    continue  # empty, or a line cut short by a crash
                if sample.get("time", "") < cut:
                    done = True
                    break
                out.append(sample)
    out.reverse()
    return out


def watch_loop(ctx: Context, every: float, stop_event: threading.Event,
               on_report: Callable[[WatchReport], None] | None = None) -> None:
    """Run a cycle every `every` seconds until `stop_event` is set (for `datathon watch`, and `serve`'s thread).
    A cycle that fails is reported through `on_report` as a problem; the loop goes on."""
    provider = get_provider(ctx)
    parts = provider.parts()
    try:
        while not stop_event.is_set():
            started = time.monotonic()
            try:
                report = run_watch_cycle(ctx, parts)
            except DatathonError as exc:
                report = WatchReport(problems=[str(exc)])
            except Exception as exc:  # a bug: the watcher keeps watching, the traceback goes to the log
                log.exception("watch cycle failed")
                report = WatchReport(problems=[f"internal error: {type(exc).__name__}: {exc}"])
            if on_report is not None:
                on_report(report)
            stop_event.wait(max(0.0, every - (time.monotonic() - started)))
    finally:
        server = provider.database_server()
        if server is not None:
            server.close()
