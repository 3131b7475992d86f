"""Who may get in: the teams an organizer locked out, and the password rotations under way.

Both live in the event's state (state.json, secrets/), so that every part plans from them as wanted state: the
next `up` keeps a lock (a team's login stays NOLOGIN, its Unix account locked, its server stopped) instead of
silently undoing it, and a rotation killed half-way is finished by running `rotate` (or `up`) again.

A rotation (per person: a team, or a mentor with its logins for each team):
  1. `begin`: each login's new password is written as a *pending* secret (secrets/<login>.pending, 0600) and the
     rotation is recorded in state.json;
  2. the caller applies the pending password everywhere (database role, Unix account);
  3. `commit`: the current secret is kept as *retired* (secrets/<login>.retired: `check` proves it is refused),
     and the pending one becomes the current one (an atomic rename per login);
  4. the caller rewrites what carries it (home files, handouts), restarts the server, then `finish` forgets it.
Every step is idempotent; `pending` tells a re-run where it stopped.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime

from datathon.core.state import StateStore, generate_password, write_private

LOCKS = "locked"  # state.json: team name -> {"since": ISO time}
ROTATIONS = "rotations"  # state.json: member name -> {"logins": [...], "stage": "applying"|"committed", ...}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- locks -------------------------------------------------------------------------------------------------------

def locked(state: StateStore) -> dict[str, dict]:
    """Locked teams (name -> when), as recorded; empty when no state exists yet."""
    return dict(state.load().get(LOCKS, {}))


def set_locked(state: StateStore, names: list[str], *, on: bool) -> list[str]:
    """Record (or clear) the lock of these teams; returns the names whose record changed."""
    data = state.load()
    locks = data.setdefault(LOCKS, {})
    changed = []
    for name in names:
        if on and name not in locks:
            locks[name] = {"since": _now()}
            changed.append(name)
        elif not on and name in locks:
            del locks[name]
            changed.append(name)
    if changed:
        state.save(data)
    return changed


# -- rotations ---------------------------------------------------------------------------------------------------

def pending_path(state: StateStore, login: str):
    return state.secret_path(f"{login}.pending")


def retired_path(state: StateStore, login: str):
    return state.secret_path(f"{login}.retired")


def rotations(state: StateStore) -> dict[str, dict]:
    return dict(state.load().get(ROTATIONS, {}))


def begin(state: StateStore, member: str, logins: list[str], **attrs) -> dict:
    """Record a rotation and make each login's pending password (kept if one is there: a re-run never makes a
    second one, so what was applied before a crash stays the password)."""
    data = state.load()
    record = data.setdefault(ROTATIONS, {}).get(member)
    if record is None:
        record = {"logins": logins, "stage": "applying", "since": _now(), **attrs}
        data[ROTATIONS][member] = record
        state.save(data)
    if record["stage"] == "applying":
        state.ensure_dirs()
        for login in record["logins"]:
            path = pending_path(state, login)
            if not path.exists():
                write_private(path, generate_password() + "\n")
    return record


def pending(state: StateStore, login: str) -> str | None:
    path = pending_path(state, login)
    return path.read_text().strip() if path.exists() else None


def commit(state: StateStore, member: str) -> None:
    """Make the pending passwords current (the old ones kept as retired). Safe to repeat after a crash: a login
    whose pending file is gone was committed already."""
    data = state.load()
    record = data.get(ROTATIONS, {}).get(member)
    if record is None or record["stage"] == "committed":
        return
    for login in record["logins"]:
        new = pending_path(state, login)
        if not new.exists():
            continue
        current = state.secret_path(login)
        if current.exists():
            os.replace(current, retired_path(state, login))
        os.replace(new, current)
    record["stage"] = "committed"
    state.save(data)


def set_stage(state: StateStore, member: str, **attrs) -> None:
    data = state.load()
    if member in data.get(ROTATIONS, {}):
        data[ROTATIONS][member].update(attrs)
        state.save(data)


def finish(state: StateStore, member: str) -> None:
    data = state.load()
    if data.get(ROTATIONS, {}).pop(member, None) is not None:
        state.save(data)


def retired(state: StateStore, login: str) -> str | None:
    """The password this login had before its last rotation (for `check`: it must be refused)."""
    with contextlib.suppress(OSError):
        return retired_path(state, login).read_text().strip()
    return None
