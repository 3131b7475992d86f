"""Names and small conversions shared by the workspace modules."""

from __future__ import annotations

import re

from datathon.database import roles
from datathon.state import StateStore

# Written into the GECOS field (no colon allowed) of every Unix user datathon makes: a same-named user
# without it is not ours. `owner` is the event and its state folder's tag (see `owner()`).
MARK = "datathon event {owner}"
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600, "d": 86400, "": 1}


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


def duration_seconds(text: str) -> int:
    m = re.match(r"^(\d+)\s*(us|ms|s|min|h|d)?$", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a duration")
    return int(int(m.group(1)) * _UNITS[m.group(2) or ""])
