"""`datathon up`: make the event exist as the file says. Idempotent; an interrupted run is finished by the next."""

from __future__ import annotations

import datetime as dt
import sys
import time
from dataclasses import dataclass, field

import typer

from datathon.apply import apply_changes
from datathon.database.facts import observe
from datathon.database.server import Endpoint
from datathon.database.tenancy import wanted_logins
from datathon.engine import data_plan, full_plan
from datathon.errors import Aborted, ProvisionError
from datathon.handouts import HandoutFiles, build_handouts
from datathon.plan import Plan
from datathon.providers import get_provider
from datathon.providers.base import Context
from datathon.storage.sync import apply_storage
from datathon.ui import print_blocked, print_plan


@dataclass
class UpResult:
    applied: int
    plan: Plan
    seconds: float
    handouts: list[HandoutFiles] = field(default_factory=list)
    roster: str = ""
    endpoint: Endpoint | None = None


def confirm(ctx: Context, question: str, *, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise Aborted(f"{question} needs a confirmation and there is no terminal to ask; nothing was changed",
                      hint="re-run with --yes to confirm")
    if not typer.confirm(question, default=False):
        raise Aborted("declined; nothing was changed")


def _workspaces(ctx: Context, server, preview, *, yes: bool) -> list:
    """Planned again now that the database exists (its certificate goes into the teams' homes); anything
    deleting that the preview did not show is asked about again."""
    from datathon.workspaces.plan import plan_workspaces

    changes = plan_workspaces(ctx, server.endpoint())
    blocked = [c for c in changes if c.action == "blocked"]
    if blocked:
        raise ProvisionError(f"{blocked[0].component} {blocked[0].target}: {blocked[0].reason}",
                             hint="fix this and run `datathon up` again (the database part is done)")
    shown = {(c.component, c.target) for c in preview.workspaces if c.destructive}
    new = [c for c in changes if c.destructive and (c.component, c.target) not in shown]
    if new:
        print_plan(ctx.console, Plan(new))
        confirm(ctx, f"Remove the {len(new)} workspace resource(s) listed above?", yes=yes)
    return changes


def run_up(ctx: Context, *, yes: bool = False, drop_team_data: bool = False) -> UpResult:
    """Plan, show, confirm, apply. Only approved changes run; the data part of a server that was not running
    when planned is planned after it starts, and asked about again if it would drop anything."""
    started = time.monotonic()
    provider = get_provider(ctx)
    server = provider.database_server()
    with ctx.state.lock():
        preview = full_plan(ctx, server, drop_team_data=drop_team_data)
        if preview.blocked_infra:
            first = preview.blocked_infra[0]
            raise ProvisionError(f"{first.component} {first.target}: {first.reason}",
                                 hint="nothing was changed; fix this and run `datathon up` again")
        if preview.pending and not yes:
            print_plan(ctx.console, preview)
            what = f"Apply these {len(preview.pending)} changes"
            if preview.destructive:
                what += f", {len(preview.destructive)} of them deleting"
            confirm(ctx, what + "?", yes=yes)
        elif preview.destructive:
            print_plan(ctx.console, Plan([c for c in preview.changes if c.destructive]))
        applied = apply_changes(preview.infra, server, ctx.console, label="database server")
        if preview.observed:
            data = Plan(preview.data or [])
        else:
            data = Plan(data_plan(ctx, observe(server, ctx.config), drop_team_data=drop_team_data, server=server))
            if data.destructive:
                print_plan(ctx.console, Plan([c for c in data.changes if c.destructive or c.action == "blocked"]))
                confirm(ctx, f"Drop the {len(data.destructive)} resource(s) listed above?", yes=yes)
        applied += apply_changes(data.changes, server, ctx.console, label="roles, schemas, data")
        if any(c.component == "source" and c.mutating for c in data.changes):
            # What the sources made (a dump's own schemas, tables of other owners) gets the teams' grants now,
            # through the same tenancy plan, not at the next `up`.
            regrant = [c for c in data_plan(ctx, observe(server, ctx.config), server=server)
                       if c.component in ("grant", "schema") and c.mutating and not c.destructive]
            applied += apply_changes(regrant, server, ctx.console, label="grants on loaded data")
        applied += apply_storage(ctx, preview.storage)  # before the workspaces: ~/datasets links to it
        workspaces = _workspaces(ctx, server, preview, yes=yes)
        applied += apply_changes(workspaces, server, ctx.console, label="workspaces")
        plan = Plan(preview.infra + data.changes + preview.storage + workspaces)
        state = ctx.state.load()
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        state.update({
            "event": ctx.config.event,
            "provider": provider.name,
            "config": str(ctx.loaded.path),
            "database": {"server": server.kind, **({"home": str(server.home)} if hasattr(server, "home") else {})},
            "created_at": state.get("created_at", now),
            "last_up": now,
            "logins": [login.role for login in wanted_logins(ctx.config)],
        })
        ctx.state.save(state)
        endpoint = server.endpoint()
        handouts, roster = build_handouts(ctx, endpoint)
    print_blocked(ctx.console, plan)
    return UpResult(applied=applied, plan=plan, seconds=time.monotonic() - started, handouts=handouts,
                    roster=str(roster), endpoint=endpoint)
