"""datathon's own record of the Unix users it made: name, uid and when, in state.json (the state folder is root's,
0700). A team can change its own GECOS field (`chfn` is setuid on Debian), shell or home, never this record, so
whether a user is ours is decided here, not by anything the user can edit.

An event brought up before the record existed has none: its users are then recognised once more by the mark in
their GECOS field, and the first write of the record takes them in (one migration, never repeated).
"""

from __future__ import annotations

import datetime as dt
import pwd
from dataclasses import dataclass

from datathon.core.state import StateStore
from datathon.workspaces import names


@dataclass(frozen=True)
class Made:
    user: str
    uid: int | None  # None while useradd runs (recorded first, so an interrupted `up` still knows the name)
    created: str


def _legacy(state: StateStore) -> dict[str, dict]:
    mark = names.MARK.format(owner=names.owner(state))
    return {e.pw_name: {"uid": e.pw_uid, "created": "before the record (GECOS mark)"}
            for e in pwd.getpwall() if e.pw_gecos == mark}


def _records(state: StateStore) -> dict[str, dict]:
    ws = state.load().get("workspaces", {})
    return dict(ws["users"]) if "users" in ws else _legacy(state)


def _save(state: StateStore, records: dict[str, dict]) -> None:
    data = state.load()
    data.setdefault("workspaces", {})["users"] = records
    state.save(data)


def made(state: StateStore) -> list[Made]:
    return [Made(u, r.get("uid"), r.get("created", "")) for u, r in sorted(_records(state).items())]


def lookup(user: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        return None


def is_ours(state: StateStore, entry: pwd.struct_passwd) -> bool:
    """Recorded with this uid; or recorded while useradd ran (no uid yet) and carrying our mark."""
    rec = _records(state).get(entry.pw_name)
    if rec is None:
        return False
    if rec.get("uid") is None:
        return entry.pw_gecos == names.MARK.format(owner=names.owner(state))
    return rec["uid"] == entry.pw_uid


def users(state: StateStore) -> list[pwd.struct_passwd]:
    """The recorded users that still exist as made (same name, same uid)."""
    out = []
    for m in made(state):
        entry = lookup(m.user)
        if entry is not None and is_ours(state, entry):
            out.append(entry)
    return out


def gone(state: StateStore) -> list[Made]:
    """Recorded users whose Unix user is no longer there as made (removed midway, or by hand): their uid's
    leftovers may still need removing before the record forgets them."""
    out = []
    for m in made(state):
        entry = lookup(m.user)
        if entry is None or not is_ours(state, entry):
            out.append(m)
    return out


def about_to_create(state: StateStore, user: str) -> None:
    records = _records(state)
    records[user] = {"uid": None, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    _save(state, records)


def created(state: StateStore, user: str, uid: int) -> None:
    records = _records(state)
    records.setdefault(user, {"created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})["uid"] = uid
    _save(state, records)


def forget(state: StateStore, user: str) -> None:
    records = _records(state)
    records.pop(user, None)
    _save(state, records)
