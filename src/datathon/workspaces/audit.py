"""Hub logins and team servers started and stopped, from the hub's log (JupyterHub's own lines)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from datathon.core.audit import AuditEvent

# `[I 2026-12-02 07:30:00.123 JupyterHub base:837] User logged in: acc_alpha` (the hub's local time)
LINE = re.compile(r"^\[(?P<lvl>[DIWEC]) (?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) [^\]]*\] (?P<msg>.*)$")
PATTERNS = [
    (re.compile(r"User logged in: (?P<user>\S+)"), "login"),
    (re.compile(r"Failed login for (?P<user>\S+)"), "login failed"),
    (re.compile(r"User (?P<user>\S+) took (?P<s>[\d.]+) seconds to start"), "server start"),
    (re.compile(r"User (?P<user>\S+) server took (?P<s>[\d.]+) seconds to stop"), "server stop"),
]


def parse_lines(lines, since: datetime | None = None) -> list[AuditEvent]:
    out = []
    for line in lines:
        m = LINE.match(line.rstrip("\n"))
        if not m:
            continue
        when = datetime.fromisoformat(m["ts"]).astimezone(UTC)
        if since and when < since:
            continue
        for pattern, event in PATTERNS:
            if p := pattern.search(m["msg"]):
                user = p["user"].rstrip(".,:")
                secs = float(p["s"]) if "s" in pattern.groupindex else None
                out.append(AuditEvent(when.isoformat(timespec="milliseconds"), "hub", event, user, seconds=secs))
                break
    return out


def hub_events(paths: list[Path], since: datetime | None) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    for path in paths:
        try:
            with open(path, errors="replace") as fh:
                events += parse_lines(fh, since)
        except FileNotFoundError:
            continue
    return events
