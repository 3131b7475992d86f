"""The event's audit trail: every part's events (database connections, hub logins, servers), as CSV or JSON, with
a per-login summary; `down` writes it, with copies of the raw logs, into the archive folder."""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path

from datathon.archive import manifest as mf
from datathon.core import journal
from datathon.core.audit import AuditEvent
from datathon.core.part import Part
from datathon.core.roster import members
from datathon.core.state import StateStore


def collect(parts: list[Part], since: datetime | None, state: StateStore | None = None) -> list[AuditEvent]:
    """Every part's events and, with `state`, the event's journal (the watcher's corrections, the dashboard's
    actions: who did what to which team), oldest first."""
    events = [e for part in parts for e in part.audit(since)]
    if state is not None:
        events += [e.as_audit() for e in journal.read(state, since=since)]
    return sorted(events, key=lambda e: e.time)


def render(events: list[AuditEvent], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([e.as_dict() for e in events], indent=1) + "\n"
    buf = io.StringIO()
    writer = csv.writer(buf)
    names = [f.name for f in fields(AuditEvent)]
    writer.writerow(names)
    for e in events:
        writer.writerow(["" if getattr(e, n) is None else getattr(e, n) for n in names])
    return buf.getvalue()


@dataclass
class LoginSummary:
    login: str
    team: str  # the team (or mentor) it belongs to, "" for others (the administrator)
    connections: int = 0
    refused: int = 0
    seconds: float = 0.0
    hub_logins: int = 0
    servers_started: int = 0
    first: str = ""
    last: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def summary(config, events: list[AuditEvent]) -> list[LoginSummary]:
    owner = {m.login: m.name for m in members(config)}
    rows: dict[str, LoginSummary] = {m.login: LoginSummary(m.login, m.name) for m in members(config)
                                     if m.kind == "team"}
    for e in events:
        if not e.login:
            continue
        row = rows.setdefault(e.login, LoginSummary(e.login, owner.get(e.login, "")))
        row.first = row.first or e.time
        row.last = e.time
        if e.event == "connect":
            row.connections += 1
        elif e.event == "disconnect":
            row.seconds += e.seconds or 0.0
        elif e.event in ("refused", "login failed"):
            row.refused += 1
        elif e.event == "login":
            row.hub_logins += 1
        elif e.event == "server start":
            row.servers_started += 1
    return sorted(rows.values(), key=lambda r: (r.team == "", r.login))


def export_into(folder: Path, config, parts: list[Part], raw_logs: list[Path],
                state: StateStore | None = None) -> list[tuple[str, str]]:
    """Write connections.csv, audit.json, summary.csv and gzipped copies of the raw logs into `folder` (each
    under a temporary name first). Returns report lines (what, where)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    events = collect(parts, None, state)
    out = []
    for name, text in (("audit.csv", render(events, "csv")), ("audit.json", render(events, "json"))):
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(folder / name)
    rows = summary(config, events)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(list(LoginSummary.__dataclass_fields__))
    for r in rows:
        writer.writerow(list(r.as_dict().values()))
    (folder / ".summary.csv.tmp").write_text(buf.getvalue())
    (folder / ".summary.csv.tmp").replace(folder / "summary.csv")
    out.append((f"audit trail: {len(events)} events of {len(rows)} logins", f"exported to {folder}"))
    for i, log in enumerate(raw_logs):
        if not log.exists():
            continue
        target = folder / "logs" / f"{i:03d}-{log.name}.gz"
        target.parent.mkdir(exist_ok=True, mode=0o700)
        tmp = target.with_name(f".{target.name}.tmp")
        with open(log, "rb") as src, gzip.open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(target)
        out.append((f"log {log}", f"copied to {target}"))
    mf.clean_partials(folder)
    return out
