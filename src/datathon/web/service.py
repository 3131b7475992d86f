"""The serve process's engine room: the event file (read again when it changes), one loop that runs the watcher
and rebuilds the board every `dashboard.watch_every`, and the actions people take from a page, each written to
the journal (who, what, when). Actions call the same library functions as the verbs (`lock`, `rotate`, `check`,
`restart`, `workspaces start|stop`, `stop|start` on AWS)."""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from datathon.check import verdicts
from datathon.config import load_config
from datathon.core import journal
from datathon.core.activity import WatchReport
from datathon.core.context import Context
from datathon.core.roster import members
from datathon.core.state import StateStore
from datathon.errors import DatathonError
from datathon.providers import get_provider
from datathon.web.auth import Viewer
from datathon.web.board import Board, build_board

log = logging.getLogger("datathon.serve")
HISTORY_HOURS = 6
ORGANIZER_ACTIONS = ("start", "stop", "restart", "cancel", "terminate", "lock", "unlock", "rotate", "check")
TEAM_ACTIONS = ("restart", "cancel")


@dataclass
class Outcome:
    ok: bool
    message: str


def _results(rows) -> str:
    """One line for the rows of `workspaces start|stop`; a failed row makes the whole action fail (with it)."""
    failed = [f"{r.team}: {r.result}" for r in rows if not r.ok]
    if failed:
        raise DatathonError("; ".join(failed))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.result] = counts.get(r.result, 0) + 1
    if len(rows) == 1:
        return f"{rows[0].team}: {rows[0].result}"
    return ", ".join(f"{n} {what}" for what, n in counts.items()) or "nothing to do"


class Service:
    def __init__(self, config_path: Path, *, watch: bool = True) -> None:
        self.path = config_path.resolve()
        self.watch = watch
        self._ctx: Context | None = None
        self._mtime: float | None = None
        self._board: Board | None = None
        self._refreshing = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_watch: WatchReport | None = None
        self.ctx  # noqa: B018 (a bad file stops `serve` at once, with the loader's message)

    # -- the event file ------------------------------------------------------------------------------------
    @property
    def ctx(self) -> Context:
        """The event as the file says now: an organizer who edits it and runs `up` sees the dashboard follow."""
        mtime = self.path.stat().st_mtime
        if self._ctx is None or mtime != self._mtime:
            try:
                loaded = load_config(self.path, check_paths=False)
            except DatathonError:
                if self._ctx is None:
                    raise
                log.warning("the event file does not load any more; showing it as it was", exc_info=True)
                return self._ctx
            self._ctx = Context(loaded=loaded, state=StateStore(loaded.base_dir, loaded.config.event),
                                console=Console(file=io.StringIO(), width=160))
            self._mtime = mtime
        return self._ctx

    @property
    def every(self) -> float:
        d = self.ctx.config.dashboard
        return float(d.watch_seconds) if d else 5.0

    # -- the loop --------------------------------------------------------------------------------------------
    def refresh(self, *, watch: bool = False) -> Board:
        """One observation of the event (and, with `watch`, one watcher cycle first); the board viewers see."""
        with self._refreshing:
            ctx = self.ctx
            parts = get_provider(ctx).parts()
            report = None
            history: list[dict] = []
            try:
                from datathon.commands.watch import run_watch_cycle, usage_history

                if watch:
                    report = self.last_watch = run_watch_cycle(ctx, parts)
                history = usage_history(ctx.state, HISTORY_HOURS)
            except DatathonError as exc:
                log.warning("watcher: %s", exc)
            self._board = build_board(ctx, parts, verdicts=verdicts.read(ctx.state), history=history,
                                      watch=report or self.last_watch)
            return self._board

    def board(self) -> Board:
        return self._board or self.refresh()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh(watch=self.watch)
            except Exception:  # noqa: BLE001 (the loop must outlive one bad cycle; the log keeps why)
                log.exception("refresh failed")
            self._wake.wait(self.every)
            self._wake.clear()

    # -- what people do from a page ----------------------------------------------------------------------------
    def act(self, viewer: Viewer, action: str, team: str, ident: str = "") -> Outcome:
        allowed = ORGANIZER_ACTIONS if viewer.kind == "organizer" else TEAM_ACTIONS
        if action not in allowed or not viewer.may_see(team):
            return Outcome(False, f"{action} is not allowed here")
        ctx = self.ctx
        if team not in {t.name for t in ctx.config.team_list}:
            return Outcome(False, f"no team named {team}")
        what = f"{action} {ident}".strip()
        try:
            message = self._run(ctx, action, team, ident)
        except DatathonError as exc:
            journal.record(ctx.state, viewer.who, what, team, str(exc), ok=False)
            return Outcome(False, f"{action} {team}: {exc}")
        journal.record(ctx.state, viewer.who, what, team, message)
        if action != "check":
            self.refresh()  # the page that answers shows the result (a cancelled query gone)
        return Outcome(True, message)

    def _run(self, ctx: Context, action: str, team: str, ident: str) -> str:
        if action in ("cancel", "terminate"):
            return self._cancel(ctx, team, ident, terminate=action == "terminate")
        if action in ("lock", "unlock"):
            from datathon.commands.access import run_access

            r = run_access(ctx, [team], lock=action == "lock")
            return f"{action}ed ({len(r.changes)} change(s))" if r.recorded else f"was {action}ed already"
        if action == "rotate":
            from datathon.commands.rotate import run_rotate

            run_rotate(ctx, [team])
            return "password rotated: the new handout has it (the old one is refused)"
        if action == "check":
            threading.Thread(target=self._check, args=(ctx, team), name=f"check {team}", daemon=True).start()
            return "check started: the verdict shows when it ends"
        if action == "restart":
            return self._servers(ctx, team, "restart")
        return self._servers(ctx, team, action)

    def _cancel(self, ctx: Context, team: str, ident: str, *, terminate: bool) -> str:
        member = next(m for m in members(ctx.config) if m.kind == "team" and m.name == team)
        parts = get_provider(ctx).parts()
        for part in parts:
            if any(a.ident == ident and a.member == team for a in part.activity()):
                return part.cancel(member, ident, terminate=terminate)
        raise DatathonError(f"{team} runs nothing with id {ident} now (it may have ended)")

    def _servers(self, ctx: Context, team: str, action: str) -> str:
        if ctx.config.provider == "aws":
            from datathon.commands.machines import run_start, run_stop

            if action == "restart":
                run_stop(ctx, team, yes=True)
            rows = run_start(ctx, team) if action in ("start", "restart") else run_stop(ctx, team, yes=True)
            return ", ".join(f"{r.team}: {r.state}" for r in rows) or "nothing to do"
        if ctx.config.workspaces is None:
            raise DatathonError(f"this event has no workspaces: no team server to {action}")
        from datathon.commands.restart import run_restart
        from datathon.commands.workspaces import run_workspaces_start, run_workspaces_stop

        if action == "restart":
            done = run_restart(ctx, [team])
            if done and not done[0].result.startswith("not running"):
                return done[0].result
            action = "start"  # a team that asks for a restart of a stopped server wants it running
        rows = (run_workspaces_start if action == "start" else run_workspaces_stop)(ctx, [team], quiet=True)
        return _results(rows)

    def act_all(self, viewer: Viewer, action: str) -> Outcome:
        """Every team's server at once (doors open: `datathon workspaces start`)."""
        if viewer.kind != "organizer" or action not in ("start", "stop"):
            return Outcome(False, f"{action} of every server is not allowed here")
        ctx = self.ctx
        try:
            if ctx.config.workspaces is None:
                raise DatathonError("this event has no workspaces: no team servers")
            from datathon.commands.workspaces import run_workspaces_start, run_workspaces_stop

            rows = (run_workspaces_start if action == "start" else run_workspaces_stop)(ctx, [], quiet=True)
            message = _results(rows)
        except DatathonError as exc:
            journal.record(ctx.state, viewer.who, f"{action} every server", "", str(exc), ok=False)
            return Outcome(False, f"{action} every server: {exc}")
        journal.record(ctx.state, viewer.who, f"{action} every server", "", message)
        self.refresh()
        return Outcome(True, message)

    def _check(self, ctx: Context, team: str) -> None:
        from datathon.check.runner import run_check

        try:
            report = run_check(ctx, only=[team])
            journal.record(ctx.state, "datathon", "check finished", team, "GO" if report.go else
                           "NO-GO: " + ", ".join(sorted({r.probe for r in report.failures})))
        except Exception as exc:  # noqa: BLE001 (a thread: the journal is where the organizer sees it)
            journal.record(ctx.state, "datathon", "check finished", team, str(exc), ok=False)
        self._wake.set()

    def now(self) -> datetime:
        return datetime.now(UTC)
