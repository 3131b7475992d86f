"""`datathon down`: remove what datathon created, then prove that nothing of it is left."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from datathon.apply import apply_changes
from datathon.commands.up import confirm
from datathon.database.facts import observe
from datathon.database.tenancy import MARK, teardown_tenancy
from datathon.errors import ProvisionError
from datathon.plan import Plan
from datathon.providers import get_provider
from datathon.providers.base import Context
from datathon.storage.sync import storage_leftovers, teardown_storage
from datathon.ui import print_plan


@dataclass
class DownResult:
    removed: int
    checked: list[tuple[str, str]] = field(default_factory=list)  # (what, "gone") proof lines


def run_down(ctx: Context, *, yes: bool = False) -> DownResult:
    from datathon.workspaces import lifecycle

    server = get_provider(ctx).database_server()
    with ctx.state.lock():
        # Workspaces first: team servers hold database connections, and nothing of a team may outlive it.
        report = lifecycle.TeardownReport()
        changes = lifecycle.teardown_changes(ctx, report)
        if server.owns_server:
            changes += server.teardown()
        elif server.is_reachable():
            changes += teardown_tenancy(ctx.config, observe(server, ctx.config))
        else:
            raise ProvisionError("the database server cannot be reached, so the event's roles cannot be removed",
                                 hint="check database.admin_dsn and the server, then run `datathon down` again")
        plan = Plan(changes + teardown_storage(ctx))
        if plan.pending:
            print_plan(ctx.console, plan)
            confirm(ctx, f"Remove everything of event {ctx.config.event!r} listed above, team data included?",
                    yes=yes)
        removed = apply_changes(plan.changes, server, ctx.console, label="tearing down")
        left = lifecycle.leftovers(ctx, report) + server.leftovers() + storage_leftovers(ctx)
        if not server.owns_server and server.is_reachable():
            facts = observe(server, ctx.config)
            mark = MARK.format(event=ctx.config.event)
            left += [f"role {r}" for r, f in facts.roles.items() if f.comment == mark]
            left += [f"database {d}" for d, f in facts.databases.items() if f.comment == mark]
    if left:
        raise ProvisionError(f"teardown left things behind: {'; '.join(left)}",
                             hint="run `datathon down` again; see the log file for details")
    shutil.rmtree(ctx.state.root, ignore_errors=True)
    checked = [(c.component + " " + c.target, "removed") for c in plan.pending
               if c.component not in ("unix user",)] + report.lines
    checked.append((f"state folder {ctx.state.root} (secrets, handouts)", "removed"))
    if ctx.config.workspaces is not None:
        checked.append(("hub process and ports, event Unix users and groups", "verified gone"))
        if report.uids:
            checked.append((f"processes, SysV IPC objects and files of uids {', '.join(map(str, sorted(report.uids)))}"
                            " on every local filesystem", "verified gone"))
        from datathon.workspaces.environment import TeamEnvironment

        env = TeamEnvironment(ctx.config.workspaces)
        if env.prefix.exists():
            checked.append((f"team environment {env.prefix}", "kept: a shared build cache, no process, no secret "
                                                               "(rm -rf it to reclaim the disk)"))
    if server.owns_server:
        checked.append(("server process, port and data folder", "verified gone"))
    else:
        checked.append(("event roles and databases on the server", "verified gone"))
    if ctx.config.storage:
        checked.append((f"imaging store {ctx.config.storage.location(ctx.config.event)}", "verified gone"))
    return DownResult(removed=removed, checked=checked)
