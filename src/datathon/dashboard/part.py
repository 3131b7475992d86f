"""The dashboard as a part of the event (observe -> plan -> apply like the others): `up` starts it when the file
has a `dashboard:` section (and `start` is not false), `status` shows whether it runs and where, `down` stops it."""

from __future__ import annotations

from dataclasses import dataclass

from datathon.core.context import Context
from datathon.core.part import Part, PartStatus, Purpose
from datathon.core.plan import Change
from datathon.core.status import ComponentStatus
from datathon.dashboard import process
from datathon.dashboard.process import Place


@dataclass(frozen=True)
class DashboardFacts:
    wanted: Place | None  # None: the file has no dashboard (or asks `up` not to start it)
    pid: int | None  # a running dashboard of this event
    answering: bool


class DashboardPart(Part):
    name = "dashboard"
    # The providers put it last: started once what it shows runs, stopped first.

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def observe(self, purpose: Purpose = "plan") -> DashboardFacts:
        wanted = process.place(self.ctx)
        pid = process.running_pid(process.folder(self.ctx))
        return DashboardFacts(wanted, pid, pid is not None and wanted is not None and process.healthy(wanted))

    def plan(self, facts: DashboardFacts) -> list[Change]:
        d = self.ctx.config.dashboard
        if facts.wanted is None:
            if facts.pid is None:
                return []
            return [Change("server", "dashboard", "drop", "the file has no `dashboard:` any more", run=self._stop)]
        if not d.start:
            return [Change("server", "dashboard", "keep", "dashboard.start is false: run `datathon serve` by hand")]
        if facts.pid is not None and facts.answering:
            return [Change("server", "dashboard", "keep", f"serving {facts.wanted.url}")]
        why = "not answering: restarted" if facts.pid is not None else f"to serve {facts.wanted.url}"
        return [Change("server", "dashboard", "restart" if facts.pid else "start", why, run=self._start)]

    def _start(self) -> None:
        process.stop(process.folder(self.ctx))
        process.start(self.ctx, process.place(self.ctx))

    def _stop(self) -> None:
        process.stop(process.folder(self.ctx))

    def status(self, facts: DashboardFacts) -> PartStatus:
        if facts.wanted is None and facts.pid is None:
            return PartStatus()
        if facts.pid is None:
            return PartStatus([ComponentStatus("dashboard", "datathon serve", "stopped",
                                               "`datathon serve` starts it", healthy=False)])
        where = facts.wanted.url if facts.wanted else "a dashboard the file no longer has (`datathon up` stops it)"
        return PartStatus([ComponentStatus(
            "dashboard", "datathon serve", "running" if facts.answering else "not answering",
            f"{where} (pid {facts.pid}); the organizer's token: {self.ctx.state.secret_path(process.ORGANIZER_SECRET)}",
            healthy=facts.answering)])

    def teardown(self, facts: DashboardFacts) -> list[Change]:
        if facts.pid is None:
            return []
        return [Change("server", "dashboard", "drop", "stop `datathon serve`", run=self._stop)]

    def leftovers(self) -> list[str]:
        pid = process.running_pid(process.folder(self.ctx))
        return [f"the dashboard (pid {pid})"] if pid else []

    def preflight(self) -> list[str]:
        p = process.place(self.ctx)
        if p is None or process.running_pid(p.folder) is not None:
            return []
        from datathon.core import procs

        if who := procs.port_holders(p.port, p.listen):
            return [f"dashboard.port {p.port} on {p.listen} is held by {', '.join(who)}: stop that program or set "
                    "dashboard.port to a free port"]
        return []
