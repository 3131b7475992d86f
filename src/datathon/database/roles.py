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
