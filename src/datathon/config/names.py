"""How the event file's names become the names of what the event makes: database roles (global to a server, so
all start with the event), which are also the Unix users. Pure functions: the roster (core/roster.py) and the
file's own validation (two names must never become one) share them."""

from __future__ import annotations

import hashlib
from pathlib import Path

SYSTEM_ROOT = Path("/var/lib/datathon")  # where root keeps what other users (postgres, teams) must reach


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


def state_root(config_dir: Path, event: str) -> Path:
    """The event's state folder, next to the event file."""
    return config_dir / ".datathon" / event


def state_tag(config_dir: Path, event: str) -> str:
    """Names this event file's state folder: two checkouts of one event never share what carries it."""
    return hashlib.sha256(str(state_root(config_dir, event).resolve()).encode()).hexdigest()[:8]


def system_dir(config_dir: Path, event: str, suffix: str = "") -> Path:
    """A folder of this event file under /var/lib/datathon (the cluster, the local store, team temp folders)."""
    return SYSTEM_ROOT / f"{event}-{state_tag(config_dir, event)}{suffix}"
