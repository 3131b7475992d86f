"""The workspaces part of an event: the team environment, a Unix user and home per member, the hub."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

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
        self._env_lock = threading.Lock()  # archive: teams in parallel share one report of the environment
        self._env_reports: dict[Path, dict[str, str]] = {}

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

    # -- a team's work ---------------------------------------------------------------------------
    def _account(self, member: Member):
        from datathon.errors import ProvisionError
        from datathon.workspaces.accounts import wanted_accounts

        acct = next((a for a in wanted_accounts(self.ctx.config) if a.name == member.name and a.kind == member.kind),
                    None)
        if acct is None:
            raise ProvisionError(f"{member.kind} {member.name} has no workspace in this event",
                                 hint="add it to the event file and run `datathon up`")
        return acct

    def _skip_link(self, acct) -> bool:
        from datathon.workspaces.home import datasets_link
        from datathon.workspaces.hub import datasets_folder

        folder = datasets_folder(self.ctx)
        return folder is not None and acct.home.exists() and datasets_link(acct, folder) == "ok"

    def archive(self, member: Member, dest: Path) -> dict | None:
        from datathon.core import faults
        from datathon.workspaces import archive
        from datathon.workspaces.environment import TeamEnvironment

        if self.ctx.config.workspaces is None or member.kind != "team":
            return None
        acct = self._account(member)
        home = archive.archive_home(acct, dest / "home", skip_datasets_link=self._skip_link(acct))
        faults.point("archive.home_packed")
        entries = archive.list_archive(home)
        env = TeamEnvironment(self.ctx.config.workspaces)
        for name, text in self._environment_report(acct, env.bin / "python").items():
            (dest / name).write_text(text)
        notebooks = sorted(p for p, e in entries.items() if p.endswith(".ipynb") and e["type"] == "file"
                           and "/.ipynb_checkpoints/" not in f"/{p}")
        (dest / "notebooks.txt").write_text("".join(f"{p}\n" for p in notebooks))
        return {"home": home.name, "entries": entries, "notebooks": notebooks,
                "environment": {"id": env.digest, "prefix": str(env.prefix), "packages": env.pip}}

    def _environment_report(self, acct, python: Path) -> dict[str, str]:
        """Per team when it installed packages of its own; otherwise the environment's, worked out once."""
        from datathon.workspaces import archive

        if archive.has_personal_packages(acct.home):
            return archive.environment_report(acct, python)
        with self._env_lock:
            if python not in self._env_reports:
                self._env_reports[python] = archive.environment_report(acct, python)
            return self._env_reports[python]

    def verify_archive(self, member: Member, src: Path, record: dict) -> list[str]:
        from datathon.errors import ProvisionError
        from datathon.workspaces.archive import list_archive

        path = src / record["home"]
        try:
            got = list_archive(path)
        except ProvisionError as exc:
            return [exc.message]
        wanted = record["entries"]
        problems = [f"{path}: {p} missing" for p in sorted(wanted.keys() - got.keys())][:5]
        problems += [f"{path}: {p} differs from the manifest" for p in sorted(wanted.keys() & got.keys())
                     if wanted[p] != got[p]][:5]
        problems += [f"{path}: {p} not in the manifest" for p in sorted(got.keys() - wanted.keys())][:5]
        return problems

    def restore(self, member: Member, src: Path, record: dict) -> None:
        from datathon.workspaces.archive import restore_home

        if self.ctx.config.workspaces is None:
            return
        restore_home(self._account(member), src / record["home"])

    def work_since(self, member: Member, record: dict, since: float) -> list[str]:
        from datathon.workspaces.archive import newer_files

        if self.ctx.config.workspaces is None or member.kind != "team":
            return []
        acct = self._account(member)
        if not acct.home.exists():
            return []
        changed = newer_files(acct.home, since, record.get("entries"), skip_datasets_link=self._skip_link(acct))
        return [f"~{acct.user}/{p} changed" for p in changed]

    def audit(self, since):
        from datathon.workspaces.audit import hub_events

        if self.ctx.config.workspaces is None or not self.ctx.config.workspaces.hub:
            return []
        return hub_events(self.logs(), since)

    # -- event day: doors open (see prestart.py) -------------------------------------------------------------
    def start_servers(self, teams: list[str], *, workers: int, done=None) -> list:
        from datathon.workspaces import prestart

        return prestart.start_servers(self.ctx, teams, workers=workers, done=done)

    def stop_servers(self, teams: list[str], *, workers: int, done=None) -> list:
        from datathon.workspaces import prestart

        return prestart.stop_servers(self.ctx, teams, workers=workers, done=done)

    def activity(self):
        from datathon.workspaces import prestart

        return prestart.activity(self.ctx)

    def guard(self, now):
        from datathon.workspaces import prestart

        return prestart.guard(self.ctx, now)

    def cancel(self, member: Member, ident: str, *, terminate: bool = False) -> str:
        """A server activity (`ident`: its Unix user) is cancelled by stopping the server; only the member's own."""
        from datathon.errors import ProvisionError
        from datathon.workspaces import prestart

        if not member.person or ident != member.login:
            raise ProvisionError(f"{ident} is not the server of {member.kind} {member.name}")
        prestart.running_hub(self.ctx).stop_server(ident)
        return f"the server of {member.name} was stopped"

    def logs(self) -> list[Path]:
        from datathon.workspaces.hub import hub_for

        if self.ctx.config.workspaces is None:
            return []
        log = hub_for(self.ctx).log_file
        return sorted(log.parent.glob(log.name + "*"), reverse=True) if log.parent.exists() else []

def _forget_use(record) -> None:
    import contextlib

    record.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        record.parent.rmdir()  # only when no other event uses it
