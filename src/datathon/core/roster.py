"""The event's members (teams, mentors, a mentor's login per team) and the names they get everywhere: database
roles (global to a server, so all start with the event), Unix users, and later cloud users."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from datathon.config.names import (  # noqa: F401  (the roster's names, for every part)
    MAX_ROLE_NAME,
    data_owner,
    login_role,
    mentor_team_role,
    mentors_group,
    teams_group,
)

if TYPE_CHECKING:
    from datathon.config import EventConfig


# -- the members of an event ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Member:
    """A team, a mentor, or a mentor's login for one team. `login` is the one name a person has everywhere: the
    database login, the Unix (and hub) user, later the cloud user; its password is the state secret of that name."""

    kind: str  # "team", "mentor" or "mentor_team"
    name: str  # the team's or mentor's name in the event file
    login: str
    group: str  # the database group (and, for a person, the Unix group)
    team: str | None = None  # for "mentor_team": the one team it reads

    @property
    def person(self) -> bool:
        """A team or a mentor (who gets a handout, a home, a Unix user), not a mentor's per-team login."""
        return self.kind != "mentor_team"


def members(config: EventConfig) -> list[Member]:
    e = config.event
    out = [Member("team", t.name, login_role(e, t.name), teams_group(e)) for t in config.team_list]
    out += [Member("mentor", m.name, login_role(e, m.name), mentors_group(e)) for m in config.mentors]
    out += [Member("mentor_team", m.name, mentor_team_role(e, m.name, t.name), mentors_group(e), team=t.name)
            for m in config.mentors for t in config.team_list]
    return out


def people(config: EventConfig) -> list[Member]:
    return [m for m in members(config) if m.person]
