"""`datathon restart [TEAM...]`: stop and start team servers so they run the current team environment."""

from __future__ import annotations

from datathon.commands.plan import ready_provider
from datathon.core.context import Context
from datathon.errors import ConfigError


def run_restart(ctx: Context, names: list[str] | None) -> list:
    if ctx.config.workspaces is None:
        raise ConfigError("this event has no workspaces: there are no team servers to restart")
    part = next(p for p in ready_provider(ctx).parts() if p.name == "workspaces")
    with ctx.state.lock():
        return part.restart(names or None)
