"""The workspaces part of an event: the team environment, a Unix user and home per member, the hub."""

from __future__ import annotations

from collections.abc import Callable

from datathon.core.context import Context
from datathon.core.endpoint import Endpoint
from datathon.core.handout import Section
from datathon.core.part import Part, PartStatus, Purpose
from datathon.core.plan import Change
from datathon.core.roster import Member
from datathon.workspaces import actions, lifecycle, observe, plan
from datathon.workspaces.facts import WorkspaceFacts
from datathon.workspaces.teardown import TeardownReport, teardown_plan


class WorkspacesPart(Part):
    name = "workspaces"
    # homes hold the database's certificate and logins; ~/datasets links to the store
    after = ("database server", "data", "storage")

    def __init__(self, ctx: Context, endpoint: Callable[[], Endpoint], *, drop_team_data: bool = False) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.drop_team_data = drop_team_data  # a removed member's home goes only with it (asked, as a deletion)
        self.report = TeardownReport()

    def observe(self, purpose: Purpose = "plan") -> WorkspaceFacts:
        return observe.observe(self.ctx, self.endpoint(), purpose)

    def plan(self, facts: WorkspaceFacts) -> list[Change]:
        return plan.plan(self.ctx, facts, drop_team_data=self.drop_team_data)

    def restart(self, names: list[str] | None) -> list[lifecycle.Restarted]:
        """Move team servers onto the current environment (stop and start through the hub)."""
        return lifecycle.restart_servers(self.ctx, self.observe("status"), names)

    def preflight(self) -> list[str]:
        """The hub's ports (public, hub, proxy API): free, or held by this event's own hub and proxy."""
        ws = self.ctx.config.workspaces
        if ws is None or not ws.hub:
            return []
        from datathon.core import procs
        from datathon.workspaces.hub import LOOPBACK, hub_for, hub_processes

        ours = set(hub_processes(self.ctx.state))
        public, hub_port, api_port = hub_for(self.ctx).ports
        out = []
        for port, host, what in ((public, ws.listen, "workspaces.port"), (hub_port, LOOPBACK, "the hub's own port"),
                                 (api_port, LOOPBACK, "the hub proxy's API port")):
            who = procs.others_on_port(port, host, ours)
            if who:
                fix = "set workspaces.port to a free port" if what == "workspaces.port" else \
                    "stop it (a privileged loopback port only root can bind)"
                out.append(f"{what} {port} on {host} is held by {', '.join(who)}: stop that program, or {fix}")
        return out

    def status(self, facts: WorkspaceFacts) -> PartStatus:
        components, servers = lifecycle.workspace_status(self.ctx, facts)
        return PartStatus(components, {"workspaces": servers} if servers else {})

    def teardown(self, facts: WorkspaceFacts) -> list[Change]:
        from datathon.config.workspaces import Workspaces
        from datathon.workspaces.environment import TeamEnvironment

        out = teardown_plan(self.ctx, facts.leftovers, self.report)
        # the environments themselves are kept (a cache other events may share); this event's record of using one
        # goes, also one an earlier file's package list (or section) made
        root = (self.ctx.config.workspaces or Workspaces()).env_root
        for used in TeamEnvironment.recorded_uses(root, self.ctx.state.tag):
            out.append(Change("environment", f"{used.parent.name.removesuffix('.events').lstrip('.')} users",
                              "update", "this event no longer uses it", run=lambda p=used: _forget_use(p)))
        return out

    def leftovers(self) -> list[str]:
        return lifecycle.leftovers(self.ctx, self.report)

    def gone(self) -> list[tuple[str, str]]:
        ws = self.ctx.config.workspaces
        if ws is None:
            return list(self.report.lines)
        out = [*self.report.lines, ("hub process and ports, event Unix users and groups", "verified gone")]
        if self.report.uids:
            out.append((f"processes, SysV IPC objects and files of uids {', '.join(map(str, sorted(self.report.uids)))}"
                        " on every local filesystem", "verified gone"))
        from datathon.workspaces.environment import TeamEnvironment

        env = TeamEnvironment(ws)
        if env.prefix.exists():
            others = env.other_users(self.ctx.state.tag)
            used = f"used by {len(others)} other event(s): {', '.join(others)}" if others else \
                "no other event records using it now"
            out.append((f"team environment {env.prefix}", f"kept: a build cache shared by every event on this "
                                                          f"machine with the same packages, no secret; {used}"))
        return out

    # -- password rotation -------------------------------------------------------------------------
    def _hub(self):
        ws = self.ctx.config.workspaces
        if ws is None or not ws.hub:
            return None
        from datathon.workspaces.hub import hub_for

        hub = hub_for(self.ctx)
        return hub if hub.is_running() else None

    def running_for(self, member: Member) -> bool:
        hub = self._hub() if member.person else None
        server = hub.server(member.login) if hub is not None else None
        return bool(server and server.get("ready"))

    def set_password(self, member: Member, login: str, password: str, *, locked: bool) -> None:
        from datathon.workspaces import accounts

        if self.ctx.config.workspaces is None or login != member.login or accounts.lookup(login) is None:
            return  # a mentor's login for one team has no Unix user; a user not made yet is made by `up`
        actions.set_password(self.ctx, login, locked=locked, password=password)

    def refresh(self, member: Member, *, restart: bool, locked: bool = False) -> None:
        from datathon.workspaces import accounts

        if self.ctx.config.workspaces is None or not member.person or accounts.lookup(member.login) is None:
            return
        actions.refresh_logins(self.ctx, member.login, self.endpoint(), restart=restart, locked=locked)

    def handout(self, member: Member, secret: Callable[[str], str]) -> list[Section]:
        from datathon.workspaces.handout import workspace_section

        section = workspace_section(self.ctx.config, member, secret(member.login))
        return [section] if section else []

    def roster(self, member: Member, secret: Callable[[str], str]) -> dict[str, str]:
        ws = self.ctx.config.workspaces
        if ws is None or not ws.hub:
            return {}
        from datathon.workspaces.hub import public_url

        return {"workspace": public_url(ws)}


def _forget_use(record) -> None:
    import contextlib

    record.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        record.parent.rmdir()  # only when no other event uses it
