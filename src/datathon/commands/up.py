"""`datathon up`: make the event exist as the file says. Idempotent; an interrupted run is finished by the next."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import typer

from datathon.commands.plan import check_preflight, ready_provider
from datathon.core import faults
from datathon.core.context import Context
from datathon.core.plan import Change, Plan
from datathon.engine import apply_up, plan_up
from datathon.errors import Aborted
from datathon.handouts import HandoutFiles, build_handouts
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
    """Plan, show, confirm, apply. Only approved changes run; a part planned again once the parts it is built on
    changed is asked about again if it would delete what the approved plan did not show."""
    started = time.monotonic()
    provider = ready_provider(ctx)
    parts = provider.parts(drop_team_data=drop_team_data)
    check_preflight(parts)  # before the lock: a refused `up` leaves not even a state folder
    with ctx.state.lock():
        preview = plan_up(parts)
        if preview.pending and not preview.stopping:
            print_plan(ctx.console, preview)  # also with --yes: a log of `up` starts with what it will do
            what = f"Apply these {len(preview.pending)} changes"
            if preview.destructive:
                what += f", {len(preview.destructive)} of them deleting or interrupting (a restart)"
            confirm(ctx, what + "?", yes=yes)

        def approve(changes: list[Change], question: str) -> bool:
            print_plan(ctx.console, Plan(changes))
            confirm(ctx, question, yes=yes)
            return True

        applied, ran = apply_up(ctx, preview, approve=approve)
        # a `rotate` killed half-way: finished now that every part is up (its pending passwords win over what the
        # plan may just have set back from the old secrets)
        from datathon.commands.rotate import finish_pending

        applied += len(finish_pending(ctx, parts))
        faults.point("up.handouts")
        ctx.state.record("event", ctx.config.event, created=True, provider=provider.name,
                         config=str(ctx.loaded.path), last_up=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        handouts, roster = build_handouts(ctx, parts)
    print_blocked(ctx.console, ran)
    return UpResult(applied=applied, plan=ran, seconds=time.monotonic() - started, handouts=handouts,
                    roster=str(roster))
