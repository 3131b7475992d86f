"""`datathon down`: remove what datathon created, then prove that nothing of it is left.

It refuses while a team has work that no verified archive holds (`--no-archive` to delete it anyway), shows
what it will delete (the plan, and per team whether its work is archived) before asking, and exports the audit
trail and copies of the raw logs into the archive folder before the cluster and the hub go."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from datathon.archive.audit import export_into
from datathon.archive.run import TeamWork, default_out, work_at_risk
from datathon.commands.up import confirm
from datathon.core.context import Context
from datathon.engine import apply_down, plan_down
from datathon.errors import ProvisionError
from datathon.providers import get_provider
from datathon.ui import print_plan


@dataclass
class DownResult:
    removed: int
    checked: list[tuple[str, str]] = field(default_factory=list)  # (what, "gone") proof lines


def _work_table(work: list[TeamWork]) -> Table:
    table = Table(title="Team work deleted with the event", title_justify="left")
    for col in ("team", "archive", "changed since"):
        table.add_column(col)
    for w in work:
        changed = "; ".join(w.unarchived[:3]) + (f" (+{len(w.unarchived) - 3})" if len(w.unarchived) > 3 else "")
        table.add_row(w.team, w.archived, f"[red]{changed}[/]" if changed else "[green]nothing[/]")
    return table


def _refuse(work: list[TeamWork]) -> ProvisionError:
    teams = [w for w in work if w.unarchived]
    what = "; ".join(f"{w.team}: {w.unarchived[0]} ({w.archived})" for w in teams[:5])
    return ProvisionError(
        f"{len(teams)} team(s) have work that no verified archive holds: {what}",
        hint="run `datathon archive` then `datathon archive verify` (a re-run archives only what changed), or "
             "`datathon down --no-archive` to delete it anyway; nothing was changed")


def audit_folder(ctx: Context) -> Path:
    recorded = ctx.state.load().get("archive", {}).get("dir")
    return Path(recorded) if recorded else default_out(ctx.loaded.base_dir, ctx.config.event)


def run_down(ctx: Context, *, yes: bool = False, no_archive: bool = False, delete_images: bool = False,
             final_snapshot: bool = True) -> DownResult:
    parts = get_provider(ctx).parts(delete_images=delete_images, final_snapshot=final_snapshot)
    exported: list[tuple[str, str]] = []
    with ctx.state.lock():
        # In the reverse order of making: team servers hold database connections, and nothing of a team may
        # outlive it, so the workspaces go first.
        plan = plan_down(parts)
        if plan.pending:
            work = work_at_risk(ctx.config, ctx.state, parts) if ctx.state.exists() else []
            if not no_archive and any(w.unarchived for w in work):
                print_plan(ctx.console, plan)
                ctx.console.print(_work_table(work))
                raise _refuse(work)
            print_plan(ctx.console, plan)
            if work:
                ctx.console.print(_work_table(work))
            confirm(ctx, f"Remove everything of event {ctx.config.event!r} listed above, team data included?",
                    yes=yes)
            logs = [log for part in parts for log in part.logs() if log.exists()]
            if logs:  # before the cluster and the hub go: their logs are the event's audit trail
                exported = export_into(audit_folder(ctx) / "audit", ctx.config, parts, logs, ctx.state)
        removed, left, proof = apply_down(ctx, plan)
    if left:
        raise ProvisionError(f"teardown left things behind: {'; '.join(left)}",
                             hint="run `datathon down` again; see the log file for details")
    shutil.rmtree(ctx.state.root, ignore_errors=True)
    checked = [*exported]
    checked += [(f"{c.component} {c.target}", "removed") for c in plan.pending if c.component != "unix user"]
    checked += proof
    checked.append((f"state folder {ctx.state.root} (secrets, handouts)", "removed"))
    return DownResult(removed=removed, checked=checked)
