"""Names of the roles an event creates. Role names are global to a server, so all start with the event."""

from __future__ import annotations


def teams_group(event: str) -> str:
    return f"{event}_teams"


def mentors_group(event: str) -> str:
    return f"{event}_mentors"


def data_owner(event: str) -> str:
    """Owns the shared dataset schemas; loaders SET ROLE to it so default privileges cover their tables."""
    return f"{event}_data"


def login_role(event: str, name: str) -> str:
    """The LOGIN role of a team or mentor."""
    return f"{event}_{name}"


def mentor_team_role(event: str, mentor: str, team: str) -> str:
    """The LOGIN a mentor uses to read one team's schema. A mentor reads each team through its own login that
    can see only that team and the shared data, so a team's code (a view, policy, trigger or overloaded function
    that runs when the mentor looks) acts with no more than that team's own rights."""
    return f"{event}_{mentor}__{team}"


MAX_ROLE_NAME = 63  # PostgreSQL's NAMEDATALEN - 1: a longer name is silently cut, and two could then collide
