"""`datathon rotate TEAM|MENTOR...|--all`: new passwords everywhere a member uses one, the old ones refused at once.

Per member (a team: its login; a mentor: its own login and its login for each team), in an order that a crash at
any point leaves finishable by running `rotate` (or `up`) again (core.access holds where it stopped):
  1. pending: the new passwords written to the state folder (0600) and the rotation recorded;
  2. applied: each part sets them (database role, Unix/hub account) and ends what logged in with the old ones;
  3. committed: the new passwords become the member's secrets, the old ones kept as retired (`check` proves
     they are refused);
  4. refreshed: the home files that carry them rewritten, the hub's sessions ended, a running server started
     again; then the handouts and roster are written, and the rotation is forgotten.
Nothing prints a password: the result says which sheets to hand out again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datathon.commands.plan import ready_provider
from datathon.core import access, faults
from datathon.core.context import Context
from datathon.core.part import Part
from datathon.core.roster import Member, members, people
from datathon.errors import ConfigError
from datathon.handouts import build_handouts


@dataclass
class Rotated:
    kind: str
    name: str
    logins: list[str]
    handout: str  # the sheet to hand out again
    restarted: bool  # its server ran and was started again with the new password
    resumed: bool  # a rotation a crash had left half-done, finished now

    def as_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class RotateResult:
    rotated: list[Rotated] = field(default_factory=list)
    handouts_dir: str = ""
    roster: str = ""

    def as_dict(self) -> dict:
        return {"rotated": [r.as_dict() for r in self.rotated], "handouts_dir": self.handouts_dir,
                "roster": self.roster}


def chosen_members(ctx: Context, names: list[str], *, all_teams: bool) -> list[Member]:
    everyone = people(ctx.config)
    if all_teams and names:
        raise ConfigError("name members or give --all, not both", hint="e.g. `datathon rotate alpha` or `--all`")
    if all_teams:
        return [m for m in everyone if m.kind == "team"]
    if not names:
        raise ConfigError("name the teams or mentors whose passwords to rotate, or give --all (every team)",
                          hint="e.g. `datathon rotate alpha mentor_ana`")
    known = {m.name: m for m in everyone}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"no team or mentor named {', '.join(unknown)} in {ctx.loaded.path}",
                          hint=f"teams and mentors: {', '.join(known)}")
    return [known[n] for n in dict.fromkeys(names)]


def logins_of(ctx: Context, member: Member) -> list[str]:
    """A team's login; a mentor's own login and its login for each team (one handout carries them all)."""
    return [member.login] + [m.login for m in members(ctx.config)
                             if m.kind == "mentor_team" and m.name == member.name and member.kind == "mentor"]


def _rotate_one(ctx: Context, parts: list[Part], member: Member) -> Rotated:
    state = ctx.state
    resumed = member.name in access.rotations(state)
    locked = member.kind == "team" and member.name in access.locked(state)
    record = access.begin(state, member.name, logins_of(ctx, member),
                          restart=not locked and any(p.running_for(member) for p in parts))
    faults.point("rotate.pending")
    if record["stage"] == "applying":
        for login in record["logins"]:
            password = access.pending(state, login)
            if password is None:  # committed already for this login (a crash inside commit)
                continue
            for part in parts:
                part.set_password(member, login, password, locked=locked)
                faults.point(f"rotate.applied.{part.name.replace(' ', '_')}")  # rotate.applied.data, ...workspaces
        access.commit(state, member.name)
    faults.point("rotate.committed")
    for part in parts:
        part.refresh(member, restart=bool(record.get("restart")), locked=locked)
    faults.point("rotate.refreshed")
    return Rotated(member.kind, member.name, record["logins"], f"{member.kind}-{member.name}.html",
                   bool(record.get("restart")), resumed)


def finish_pending(ctx: Context, parts: list[Part]) -> list[Rotated]:
    """Finish every rotation a crash left half-done (run under the state lock, e.g. by `up` before it plans:
    the database must not be set back to a password the rotation had already replaced)."""
    by_name = {m.name: m for m in people(ctx.config)}
    done = []
    for name in access.rotations(ctx.state):
        if name in by_name:
            done.append(_rotate_one(ctx, parts, by_name[name]))
        else:  # the member left the file since: nothing to finish
            access.finish(ctx.state, name)
    if done:
        build_handouts(ctx, parts)
        for r in done:
            access.finish(ctx.state, r.name)
    return done


def run_rotate(ctx: Context, names: list[str], *, all_teams: bool = False) -> RotateResult:
    chosen = chosen_members(ctx, names, all_teams=all_teams)
    parts = ready_provider(ctx).parts()
    result = RotateResult(handouts_dir=str(ctx.state.handouts_dir))
    with ctx.state.lock():
        result.rotated += finish_pending(ctx, parts)
        again = {r.name for r in result.rotated}
        for member in chosen:
            if member.name not in again:
                result.rotated.append(_rotate_one(ctx, parts, member))
        _, roster = build_handouts(ctx, parts)
        faults.point("rotate.handouts")
        for r in result.rotated:
            access.finish(ctx.state, r.name)
    result.roster = str(roster)
    return result
