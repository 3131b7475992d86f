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
    """One cycle over `parts` (the provider's when None). What a part keeps between cycles (the teams flagged over
    quota, the last schema sizes) lives as long as the process, whether or not the same parts are passed."""
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


def _stamp(ctx: Context) -> int | None:
    try:
        return ctx.loaded.path.stat().st_mtime_ns
    except OSError:
        return None


def _reload(ctx: Context) -> Context:
    from datathon.config import load_config

    loaded = load_config(ctx.loaded.path, check_paths=False)
    return Context(loaded=loaded, state=StateStore(loaded.base_dir, loaded.config.event), console=ctx.console)


def watch_loop(ctx: Context, every: float, stop_event: threading.Event,
               on_report: Callable[[WatchReport], None] | None = None) -> None:
    """Run a cycle every `every` seconds until `stop_event` is set (for `datathon watch`, and `serve`'s thread).
    A cycle that fails is reported through `on_report` as a problem; the loop goes on.

    The event file is read again when it changes: the watcher keeps the limits the file says now (an organizer
    who raises statement_timeout and runs `up` must not see the watcher put the old value back). A file that
    does not load (half edited) is reported, and the file as it was is kept until it loads."""
    provider = get_provider(ctx)
    parts = provider.parts()
    stamp = _stamp(ctx)
    try:
        while not stop_event.is_set():
            started = time.monotonic()
            notes = []
            if (now := _stamp(ctx)) != stamp:
                stamp = now
                try:
                    fresh = _reload(ctx)
                except DatathonError as exc:
                    notes.append(f"the event file changed and does not load, so the watcher keeps it as it was: "
                                 f"{exc.message}")
                else:
                    _close(provider)
                    ctx, provider = fresh, get_provider(fresh)
                    parts = provider.parts()
                    log.info("watch: the event file changed: read again")
            try:
                report = run_watch_cycle(ctx, parts)
            except DatathonError as exc:
                report = WatchReport(problems=[str(exc)])
            except Exception as exc:  # a bug: the watcher keeps watching, the traceback goes to the log
                log.exception("watch cycle failed")
                report = WatchReport(problems=[f"internal error: {type(exc).__name__}: {exc}"])
            report.problems[:0] = notes
            if on_report is not None:
                on_report(report)
            stop_event.wait(max(0.0, every - (time.monotonic() - started)))
    finally:
        _close(provider)


def _close(provider) -> None:
    server = provider.database_server()
    if server is not None:
        server.close()
