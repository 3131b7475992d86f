"""`datathon lock [TEAM...]` / `unlock [TEAM...]`: end a team's access without deleting anything, and give it back.

The lock is recorded in the event's state first (core.access), then the parts' own plans carry it out: the team's
database login NOLOGIN and its sessions ended, its Unix (so hub) password locked, its server stopped, its hub
sessions and processes ended. Only those changes run here; the next `up` plans from the same record, so it keeps
the lock instead of undoing it. Its mentors' logins for the team stay open (see database/tenancy.plan_tenancy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datathon.commands.plan import ready_provider
from datathon.core import access, faults
from datathon.core.context import Context
from datathon.core.plan import Change
from datathon.core.roster import login_role
from datathon.engine import apply_only
from datathon.errors import ConfigError


@dataclass
class AccessResult:
    verb: str  # lock or unlock
    teams: list[str]
    recorded: list[str]  # the teams whose record changed now (the others were so already)
    changes: list[Change] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"verb": self.verb, "teams": self.teams, "recorded": self.recorded,
                "changes": [c.as_dict() for c in self.changes]}


def chosen_teams(ctx: Context, names: list[str]) -> list[str]:
    """The named teams (every team when none is named)."""
    teams = [t.name for t in ctx.config.team_list]
    unknown = [n for n in names if n not in teams]
    if unknown:
        mentors = [n for n in unknown if n in {m.name for m in ctx.config.mentors}]
        raise ConfigError(f"no team named {', '.join(unknown)} in {ctx.loaded.path}"
                          + (" (a mentor is not locked: remove it from the file)" if mentors else ""),
                          hint=f"teams: {', '.join(teams)}")
    return list(dict.fromkeys(names)) or teams


def run_access(ctx: Context, names: list[str], *, lock: bool) -> AccessResult:
    teams = chosen_teams(ctx, names)
    parts = ready_provider(ctx).parts()
    event = ctx.config.event
    targets = {login_role(event, t) for t in teams} | {f"{login_role(event, t)} access" for t in teams}
    with ctx.state.lock():
        recorded = access.set_locked(ctx.state, teams, on=lock)
        faults.point("lock.recorded" if lock else "unlock.recorded")

        def chosen(c: Change) -> bool:
            # the access changes of these teams (the role's NOLOGIN or LOGIN, the Unix account's lock) and nothing
            # else `up` would do
            return c.mutating and c.target in targets and str(c.component) in ("role", "unix user")

        ran = apply_only(ctx, parts, chosen, label="lock" if lock else "unlock")
    return AccessResult("lock" if lock else "unlock", teams, recorded, ran.pending)
