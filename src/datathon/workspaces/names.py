"""Names and small conversions shared by the workspace modules."""

from __future__ import annotations

from datathon.core import roster as roles
from datathon.core.state import StateStore

# Written into the GECOS field (no colon allowed) of every Unix user datathon makes: a same-named user
# without it is not ours. `owner` is the event and its state folder's tag (see `owner()`).
MARK = "datathon event {owner}"


def owner(state: StateStore) -> str:
    """Who a Unix user belongs to: this event of this event file (another checkout of the same event is not us)."""
    return state.owner


def unix_user(event: str, name: str) -> str:
    """A team's or mentor's Unix user: the same name as its database login, so one name works everywhere."""
    return roles.login_role(event, name)


def teams_group(event: str) -> str:
    return roles.teams_group(event)


def mentors_group(event: str) -> str:
    return roles.mentors_group(event)
