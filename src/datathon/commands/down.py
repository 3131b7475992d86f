"""`datathon down`: remove what datathon created, then prove that nothing of it is left."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

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


def run_down(ctx: Context, *, yes: bool = False, delete_images: bool = False) -> DownResult:
    parts = get_provider(ctx).parts(delete_images=delete_images)
    with ctx.state.lock():
        # In the reverse order of making: team servers hold database connections, and nothing of a team may
        # outlive it, so the workspaces go first.
        plan = plan_down(parts)
        if plan.pending:
            print_plan(ctx.console, plan)
            confirm(ctx, f"Remove everything of event {ctx.config.event!r} listed above, team data included?",
                    yes=yes)
        removed, left, proof = apply_down(ctx, plan)
    if left:
        raise ProvisionError(f"teardown left things behind: {'; '.join(left)}",
                             hint="run `datathon down` again; see the log file for details")
    shutil.rmtree(ctx.state.root, ignore_errors=True)
    checked = [(f"{c.component} {c.target}", "removed") for c in plan.pending if c.component != "unix user"]
    checked += proof
    checked.append((f"state folder {ctx.state.root} (secrets, handouts)", "removed"))
    return DownResult(removed=removed, checked=checked)
