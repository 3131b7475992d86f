"""Event day in the database: every session of the event's team and mentor logins (what runs, since when), and
cancelling one of a member's statements or sessions, never another's.

One query reads them all (pg_stat_activity); cancelling checks, in the same statement that cancels, that the pid
still belongs to one of the member's logins: a pid that ended and was given to another team's session between
the page and the click is refused, not cancelled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from datathon.core.activity import Activity
from datathon.database.server import DatabaseServer
from datathon.database.usage import admin
from datathon.errors import DatathonError

QUERY_CHARS = 300  # of a statement's text, shown on the dashboard

SESSIONS = (
    "SELECT pg_catalog.now(), a.pid, a.usename::text, a.datname::text, a.state, a.query_start, a.state_change,"
    " a.xact_start, pg_catalog.left(a.query, %s) FROM pg_catalog.pg_stat_activity a"
    " WHERE a.backend_type = 'client backend' AND a.usename = ANY(%s::name[]) ORDER BY a.pid"
)


@dataclass(frozen=True)
class Session:
    pid: int
    login: str
    database: str | None
    state: str | None  # "active", "idle", "idle in transaction", "idle in transaction (aborted)", ...
    query_start: datetime | None
    state_change: datetime | None
    xact_start: datetime | None
    query: str

    def since(self) -> datetime | None:
        """When what it does now began: its statement (active), else its state (idle, idle in transaction)."""
        return self.query_start if self.state == "active" else self.state_change


def observe_sessions(conn: psycopg.Connection, logins: list[str]) -> tuple[datetime, list[Session]]:
    """The server's time and every client session of `logins` (one query; `conn` searches pg_catalog only)."""
    rows = conn.execute(SESSIONS, (QUERY_CHARS, logins)).fetchall()
    if not rows:
        (now,) = conn.execute("SELECT pg_catalog.now()").fetchone()
        return now, []
    return rows[0][0], [Session(*r[1:]) for r in rows]


def as_activity(s: Session, member: str, now: datetime) -> Activity:
    since = s.since()
    return Activity(member=member, part="data", ident=str(s.pid), kind="session", state=s.state or "unknown",
                    seconds=max(0.0, (now - since).total_seconds()) if since else 0.0,
                    started=since.astimezone(UTC).isoformat(timespec="seconds") if since else "",
                    detail=s.query or "",
                    login=s.login)


def activities(server: DatabaseServer, owners: dict[str, str]) -> list[Activity]:
    """`owners`: login -> the member (team or mentor) it belongs to."""
    with admin(server) as conn:
        now, sessions = observe_sessions(conn, sorted(owners))
    return [as_activity(s, owners[s.login], now) for s in sessions]


def cancel_session(server: DatabaseServer, logins: list[str], who: str, ident: str, *, terminate: bool) -> str:
    """Cancel the statement of session `ident` (a pid), or end the session (`terminate`), if and only if it is
    a session of one of `logins` (the member's): checked in the very statement that signals it."""
    if not ident.isdigit() or not 0 < int(ident) < 2**31:
        raise DatathonError(f"{ident!r} is not a database session (a backend pid, a number)",
                            hint="take the session's id from the dashboard or `datathon watch`")
    fn = sql.Identifier("pg_catalog", "pg_terminate_backend" if terminate else "pg_cancel_backend")
    stmt = sql.SQL("SELECT a.usename::text, {}(a.pid) FROM pg_catalog.pg_stat_activity a WHERE a.pid = %s"
                   " AND a.usename = ANY(%s::name[]) AND a.backend_type = 'client backend'").format(fn)
    with admin(server) as conn:
        row = conn.execute(stmt, (int(ident), logins)).fetchone()
    if row is None:
        raise DatathonError(f"database session {ident} is not one of {who}'s: it ended, or it is someone else's; "
                            "nothing was cancelled", hint="refresh the list of sessions and try again")
    login, signalled = row
    done = "ended session" if terminate else "cancelled the statement of session"
    return f"{done} {ident} of {login}" + ("" if signalled else " (it had just ended)")
