"""`datathon up`: make the event exist as the file says. Idempotent; an interrupted run is finished by the next."""

from __future__ import annotations

import datetime as dt
import sys
import time
from dataclasses import dataclass, field

import typer

from datathon.apply import apply_changes
from datathon.database.facts import observe
from datathon.database.tenancy import wanted_logins
from datathon.engine import data_plan
from datathon.errors import Aborted, ProvisionError
from datathon.handouts import HandoutFiles, build_handouts
from datathon.plan import Plan
from datathon.providers import get_provider
from datathon.providers.base import Context
from datathon.ui import print_blocked, print_plan


@dataclass
class UpResult:
    applied: int
    plan: Plan
    seconds: float
    handouts: list[HandoutFiles] = field(default_factory=list)
    roster: str = ""


def confirm(ctx: Context, question: str, *, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise Aborted(f"{question} needs a confirmation and there is no terminal to ask; nothing was changed",
                      hint="re-run with --yes to confirm")
    if not typer.confirm(question, default=False):
        raise Aborted("declined; nothing was changed")


def run_up(ctx: Context, *, yes: bool = False, drop_team_data: bool = False) -> UpResult:
    started = time.monotonic()
    provider = get_provider(ctx)
    server = provider.database_server()
    with ctx.state.lock():
        ctx.state.ensure_dirs()
        infra = Plan(server.plan())
        if infra.blocked:
            first = infra.blocked[0]
            raise ProvisionError(f"{first.component} {first.target}: {first.reason}",
                                 hint="nothing was changed; fix this and run `datathon up` again")
        applied = apply_changes(infra.changes, server, ctx.console, label="database server")
        facts = observe(server, ctx.config)
        data = Plan(data_plan(ctx, facts, drop_team_data=drop_team_data))
        if data.destructive:
            print_plan(ctx.console, Plan([c for c in data.changes if c.destructive or c.action == "blocked"]))
            confirm(ctx, f"Drop {len(data.destructive)} resource(s) listed above?", yes=yes)
        applied += apply_changes(data.changes, server, ctx.console, label="roles, schemas, data")
        plan = Plan(infra.changes + data.changes)
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
        handouts, roster = build_handouts(ctx, server.endpoint())
    print_blocked(ctx.console, plan)
    return UpResult(applied=applied, plan=plan, seconds=time.monotonic() - started, handouts=handouts,
                    roster=str(roster))
