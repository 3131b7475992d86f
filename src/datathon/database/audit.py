"""The connection audit trail from the database server's log: every connection and disconnection per login, with
time, database, client address, TLS and the session's length, and every refused login.

The managed cluster logs with `log_connections`, `log_disconnections`, `log_timezone = UTC` and the prefix
`%m [%p] %q%u@%d %r ` (time, pid, user@database, client). A session is one backend pid from its
`connection authorized` line to its `disconnection` line (which carries the session time itself).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from datathon.core.audit import AuditEvent
from datathon.database.server import DatabaseServer

LINE = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (?P<tz>\S+) \[(?P<pid>\d+)\] "
                  r"(?:(?P<user>\S*)@(?P<db>\S*) (?P<client>\S+) )?(?P<level>[A-Z]+):  (?P<msg>.*)$")
# RDS's own prefix, which it does not let one change: `%t:%r:%u@%d:[%p]:` (time without milliseconds, client
# `host(port)`, IPv6 addresses included, or empty for the server's own processes).
RDS_LINE = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (?P<tz>[A-Z+\-0-9]+):"
                      r"(?P<client>\[local\]|[0-9A-Fa-f:.]+\(\d+\)|[^:]*):(?P<user>[^@:]*)@(?P<db>[^:]*):"
                      r"\[(?P<pid>\d+)\]:(?P<level>[A-Z]+):  (?P<msg>.*)$")
AUTHORIZED = re.compile(r"connection authorized: user=(?P<user>\S+)(?: database=(?P<db>\S+))?"
                        r"(?:.*?SSL enabled \(protocol=(?P<proto>[^,]+), cipher=(?P<cipher>[^,]+))?")
DISCONNECT = re.compile(r"disconnection: session time: (?P<h>\d+):(?P<m>\d\d):(?P<s>[\d.]+) user=(?P<user>\S+) "
                        r"database=(?P<db>\S+) host=(?P<host>\S+)(?: port=(?P<port>\d+))?")
REFUSED = re.compile(r'(password authentication failed for user "(?P<u1>[^"]+)"'
                     r'|no pg_hba\.conf entry for host "(?P<host>[^"]+)", user "(?P<u2>[^"]+)", '
                     r'database "(?P<d2>[^"]+)"(?P<ssl>, [^ ]+ encryption|, SSL (?:on|off))?'
                     r'|too many connections for role "(?P<u3>[^"]+)"'
                     r'|role "(?P<u4>[^"]+)" is not permitted to log in)')


def _time(ts: str, tz: str) -> datetime:
    """The prefix's time in its zone (UTC since datathon sets log_timezone; a log written before may carry a zone
    name such as CET; an abbreviation no zone database knows is taken as this machine's local time)."""
    when = datetime.fromisoformat(ts)
    if tz in ("UTC", "GMT", "+00", "Z"):
        return when.replace(tzinfo=UTC)
    try:
        return when.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)
    except (ZoneInfoNotFoundError, ValueError):
        return when.astimezone(UTC)


def _client(raw: str | None) -> str:
    """`127.0.0.1(51234)` -> `127.0.0.1:51234`; `[local]` stays."""
    if not raw:
        return ""
    m = re.fullmatch(r"(.+)\((\d+)\)", raw)
    return f"{m.group(1)}:{m.group(2)}" if m else raw


def parse_lines(lines, since: datetime | None = None) -> list[AuditEvent]:
    tls: dict[str, str] = {}  # pid -> TLS of its session
    out = []
    for line in lines:
        text = line.rstrip("\n")
        m = LINE.match(text) or RDS_LINE.match(text)
        if not m:
            continue
        when = _time(m["ts"], m["tz"])
        if since and when < since:
            continue
        iso = when.isoformat(timespec="milliseconds")
        msg, client = m["msg"], _client(m["client"])
        if a := AUTHORIZED.match(msg):
            t = f"{a['proto']} {a['cipher']}" if a["proto"] else ("no" if client == "[local]" else "no (plain TCP)")
            tls[m["pid"]] = t
            out.append(AuditEvent(iso, "database", "connect", a["user"], a["db"] or "", client, t))
        elif d := DISCONNECT.match(msg):
            secs = int(d["h"]) * 3600 + int(d["m"]) * 60 + float(d["s"])
            host = d["host"] + (f":{d['port']}" if d["port"] else "")
            out.append(AuditEvent(iso, "database", "disconnect", d["user"], d["db"], host, tls.pop(m["pid"], ""),
                                  round(secs, 3)))
        elif m["level"] == "FATAL" and (r := REFUSED.search(msg)):
            login = r["u1"] or r["u2"] or r["u3"] or r["u4"] or m["user"] or ""
            out.append(AuditEvent(iso, "database", "refused", login, r["d2"] or m["db"] or "", client, "",
                                  detail=msg.strip()))
    return out


def server_events(server: DatabaseServer, since: datetime | None) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    for path in server.log_files():
        events += parse_file(path, since)
    return sorted(events, key=lambda e: e.time)


def parse_file(path: Path, since: datetime | None) -> list[AuditEvent]:
    try:
        with open(path, errors="replace") as fh:
            return parse_lines(fh, since)
    except FileNotFoundError:
        return []
