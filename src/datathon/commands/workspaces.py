"""`datathon workspaces start [TEAM...]` / `stop [TEAM...]`: the teams' servers, started before the doors open
(or stopped), through the hub, a few at a time. The dashboard's buttons call these same functions.

A started server is marked as pre-started: the idle culler leaves it alone until its team's first visit. A locked
team's server is never started (its row says so); an unknown team name stops the command before anything is done.
"""

from __future__ import annotations

from datathon.archive.progress import Steps
from datathon.commands.plan import ready_provider
from datathon.core.context import Context
from datathon.errors import ConfigError

WORKERS = 4  # servers starting at once (a start is CPU-bound: more only share the same CPUs)


def _part(ctx: Context):
    if ctx.config.workspaces is None or not ctx.config.workspaces.hub:
        raise ConfigError("this event has no hub (no `workspaces:` section, or hub: false): there are no team servers")
    part = next((p for p in ready_provider(ctx).parts() if p.name == "workspaces"), None)
    if part is None:  # e.g. AWS: each team's machine runs its own JupyterLab (`datathon start` starts machines)
        raise ConfigError(f"the {ctx.config.provider} provider runs no shared hub: there are no team servers to "
                          "start here", hint="`datathon start [TEAM]` starts the team machines")
    return part


def chosen_teams(ctx: Context, names: list[str]) -> list[str]:
    """The named teams (every team when none is named); an unknown name stops here, before anything is done."""
    teams = [t.name for t in ctx.config.team_list]
    unknown = [n for n in names if n not in teams]
    if unknown:
        mentors = {m.name for m in ctx.config.mentors}
        why = " (mentors' servers start when they log in)" if set(unknown) <= mentors else ""
        raise ConfigError(f"no team named {', '.join(unknown)} in {ctx.loaded.path}{why}",
                          hint=f"teams: {', '.join(teams)}")
    return list(dict.fromkeys(names)) or teams


def _run(ctx: Context, names: list[str], verb: str, workers: int | None, quiet: bool) -> list:
    teams = chosen_teams(ctx, names)
    part = _part(ctx)
    if quiet:
        act = part.start_servers if verb == "start" else part.stop_servers
        return act(teams, workers=workers or WORKERS)
    with Steps(ctx.console, f"{verb} servers", len(teams)) as steps:
        def done(row) -> None:
            steps.advance(f"{row.team}: {row.result}")

        act = part.start_servers if verb == "start" else part.stop_servers
        return act(teams, workers=workers or WORKERS, done=done)


def run_workspaces_start(ctx: Context, names: list[str], *, workers: int | None = None,
                         quiet: bool = False) -> list:
    """Start the named teams' servers (every team when none is named); rows of prestart.ServerAction."""
    return _run(ctx, names, "start", workers, quiet)


def run_workspaces_stop(ctx: Context, names: list[str], *, workers: int | None = None, quiet: bool = False) -> list:
    """Stop the named teams' servers (every team when none is named)."""
    return _run(ctx, names, "stop", workers, quiet)
