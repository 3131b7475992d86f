"""The event's journal: who did what, when, on event day. The dashboard's actions (an organizer cancels a team's
query, a team restarts its server) and the watcher's corrections (a setting put back, a statement cancelled) are
appended here, one JSON line each, in the state folder (0600); `audit export` and the dashboard read it back.

Lines are appended with O_APPEND in one write each, so the watcher and the web app may write at the same time."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from datathon.core.audit import AuditEvent
from datathon.core.state import StateStore

FILE = "journal.jsonl"


@dataclass(frozen=True)
class Entry:
    time: str  # ISO 8601, UTC
    who: str  # "organizer", "team <name>", "watcher", "datathon"
    action: str  # e.g. "cancel query", "rotate password", "statement cancelled", "setting restored"
    member: str = ""  # the team (or mentor) it concerned
    detail: str = ""
    ok: bool = True  # False: it was tried and failed (detail says why)

    def as_dict(self) -> dict:
        return asdict(self)

    def as_audit(self) -> AuditEvent:
        return AuditEvent(time=self.time, source="watcher" if self.who == "watcher" else "dashboard",
                          event=self.action, login=self.member, detail=f"by {self.who}"
                          + (f": {self.detail}" if self.detail else "") + ("" if self.ok else " (failed)"))


def path(state: StateStore) -> Path:
    return state.root / FILE


def record(state: StateStore, who: str, action: str, member: str = "", detail: str = "", *, ok: bool = True) -> Entry:
    entry = Entry(datetime.now(UTC).isoformat(timespec="seconds"), who, action, member, detail[:500], ok)
    state.ensure_dirs()
    fd = os.open(path(state), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (json.dumps(entry.as_dict()) + "\n").encode())
    finally:
        os.close(fd)
    return entry


def read(state: StateStore, *, since: datetime | None = None, member: str | None = None,
         last: int | None = None) -> list[Entry]:
    """Entries oldest first; `member`: only those about that member; `last`: only the newest N."""
    try:
        lines = path(state).read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    cut = since.astimezone(UTC).isoformat(timespec="seconds") if since else ""
    for line in lines:
        try:
            entry = Entry(**json.loads(line))
        except (ValueError, TypeError):
            continue  # a line cut short by a crash
        if entry.time >= cut and (member is None or entry.member == member):
            out.append(entry)
    return out[-last:] if last else out
