"""The watcher in the database: what a team may change on its own role, and what PostgreSQL alone does not stop.

A role may change its own settings (`ALTER ROLE CURRENT_USER SET statement_timeout = 0`, also `IN DATABASE`), and
any session may `SET statement_timeout = 0` for itself. So every few seconds, one cycle:

  observe_guard()  -> GuardFacts   role settings, sessions, temporary files (and, every SIZES_EVERY, schema sizes):
                                   a bounded number of queries whatever the number of teams
  plan_guard(...)  -> [GuardStep]  pure: the settings to put back (tenancy's own `policy_restore`, the same changes
                                   `up` would plan), the statements to cancel, the sessions to end, the teams to flag
  apply_guard(...) -> WatchReport  runs the steps; a cancel or an end re-checks, in the statement that signals,
                                   that it is still the same statement of the same login

A 0 in the policy turns that limit off (nothing cancelled). Nothing here calls a function a team could have made:
the connections search pg_catalog only (database/usage.py)."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from datathon.core.activity import Guarded, WatchReport
from datathon.database.activity import Session, observe_sessions
from datathon.database.facts import RoleFact, parse_role_config
from datathon.database.server import DatabaseServer
from datathon.database.tenancy import Login, policy_restore
from datathon.database.usage import admin, schema_sizes, size_bytes, temp_bytes
from datathon.errors import ProvisionError

SIZES_EVERY = 30.0  # seconds between two measures of the schemas' sizes (one connection per event database)

IDLE_IN_TRANSACTION = ("idle in transaction", "idle in transaction (aborted)")

ROLE_SETTINGS = (
    "SELECT r.rolname::text, r.rolcanlogin, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication,"
    " r.rolbypassrls, r.rolinherit, r.rolconnlimit, d.datname::text, s.setdatabase <> 0, s.setconfig"
    " FROM pg_catalog.pg_roles r LEFT JOIN pg_catalog.pg_db_role_setting s ON s.setrole = r.oid"
    " LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase WHERE r.rolname = ANY(%s::name[])"
)

_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "min": 6e4, "h": 3.6e6, "d": 8.64e7, "": 1.0}


def limit_seconds(text: str) -> float:
    """A timeout as PostgreSQL reads it (no unit: milliseconds); 0 is off."""
    m = re.fullmatch(r"\s*(\d+)\s*(us|ms|s|min|h|d)?\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not a duration")
    return int(m.group(1)) * _MS[m.group(2) or ""] / 1000


@dataclass
class GuardFacts:
    now: datetime  # the server's clock
    roles: dict[str, RoleFact]  # the event's logins as they are now (their own settings)
    sessions: list[Session]
    temp: dict[str, int] | None  # login -> bytes of temporary files; None: this administrator may not see them
    sizes: dict[str, int] | None  # team -> bytes of its schema (every event database); None: not measured


@dataclass
class GuardStep:
    member: str
    action: str  # a core.activity.Guarded action
    detail: str
    statements: list[sql.Composable] = field(default_factory=list)  # none for a flag
    enforced: bool = True
    # a cancel/end: the statement returns a row only if it signalled the very session it was planned for
    signals: bool = False


@dataclass
class GuardMemory:
    """What the watcher keeps between cycles of one process: the teams it flagged already (a flag is written
    once per crossing, not every few seconds), the last schema sizes and when they were measured. A new process
    (`datathon watch --once`) flags again what is over."""

    flagged: set[str] = field(default_factory=set)
    sizes: dict[str, int] | None = None
    sizes_at: float = float("-inf")
    lock: threading.Lock = field(default_factory=threading.Lock)  # one cycle at a time (a `check` runs many)


# One memory per event (its state folder) in this process: a caller that builds its parts anew every cycle (the
# dashboard does, to follow the event file) still flags once per crossing and measures sizes every SIZES_EVERY.
_MEMORIES: dict[str, GuardMemory] = {}


def memory_for(event_key: str) -> GuardMemory:
    return _MEMORIES.setdefault(event_key, GuardMemory())


def observe_guard(server: DatabaseServer, logins: list[Login], databases: list[str], memory: GuardMemory
                  ) -> GuardFacts:
    """Three queries on one connection; every SIZES_EVERY seconds also one connection and query per event
    database. Read-only."""
    names = [x.role for x in logins]
    roles: dict[str, RoleFact] = {}
    with admin(server) as conn:
        for row in conn.execute(ROLE_SETTINGS, (names,)):
            role = row[0]
            fact = roles.setdefault(role, RoleFact(*row[:9], config={}, comment=None))
            if row[11] is None:
                continue
            if row[10]:  # IN DATABASE: a database that is gone keeps its oid as the name
                fact.db_config[row[9] or "?"] = parse_role_config(row[11])
            else:
                fact.config = parse_role_config(row[11])
        now, sessions = observe_sessions(conn, names)
        temp = temp_bytes(conn, names)
        if time.monotonic() - memory.sizes_at >= SIZES_EVERY:
            present = [r[0] for r in conn.execute(
                "SELECT datname::text FROM pg_catalog.pg_database WHERE datname = ANY(%s::name[])", (databases,))]
            memory.sizes_at = time.monotonic()
            memory.sizes = None
            teams = [x.name for x in logins if x.kind == "team"]
            sizes_due = (present, teams)
        else:
            sizes_due = None
    if sizes_due is not None:
        memory.sizes = schema_sizes(server, *sizes_due)
    return GuardFacts(now, roles, sessions, temp, memory.sizes)


def _was(fact: RoleFact, login: Login, reason: str) -> str:
    """The change's reason, with the values the role had for what it names (e.g. statement_timeout=0)."""
    words = set(re.split(r"[\s,:()]+", reason))
    if " in database " in reason:
        had = [f"in {d}: {k}={v}" for d, c in sorted(fact.db_config.items()) if d in words
               for k, v in sorted(c.items())]
    else:
        had = [f"{k}={v}" for k, v in sorted(fact.config.items()) if k in words]
    return f"{login.role}: {reason}" + (f" (it had {', '.join(had)})" if had else "")


def _cancel(fn: str, s: Session) -> sql.Composable:
    """Signals session `s` only if it still runs the same statement (or is still in the same state) as observed."""
    same = "a.query_start = {}" if fn == "pg_cancel_backend" else "a.state_change = {}"
    stamp = s.query_start if fn == "pg_cancel_backend" else s.state_change
    return sql.SQL("SELECT {}(a.pid) FROM pg_catalog.pg_stat_activity a WHERE a.pid = {} AND a.usename = {}"
                   " AND a.state = {} AND " + same).format(
        sql.Identifier("pg_catalog", fn), sql.Literal(s.pid), sql.Literal(s.login), sql.Literal(s.state),
        sql.Literal(stamp))


def plan_guard(logins: list[Login], owners: dict[str, str], facts: GuardFacts, *, quota: int | None,
               flagged: set[str]) -> tuple[list[GuardStep], set[str]]:
    """Pure. `owners`: login -> member (team or mentor). Returns the steps and the teams over quota now."""
    steps: list[GuardStep] = []
    by_role = {x.role: x for x in logins}
    # (a) settings a member put on its own role: back as the policy says (what `up` would plan)
    for login in logins:
        fact = facts.roles.get(login.role)
        if fact is None:
            continue  # not made yet, or removed: `up`'s business
        for change in policy_restore(fact, login):
            steps.append(GuardStep(owners[login.role], "setting restored", _was(fact, login, change.reason),
                                   list(change.statements)))
    # (b) statements past the event's statement_timeout, (c) sessions idle in a transaction past theirs
    for s in facts.sessions:
        login = by_role.get(s.login)
        since = s.since()
        if login is None or since is None:
            continue
        seconds = (facts.now - since).total_seconds()
        if s.state == "active":
            limit = limit_seconds(login.policy.statement_timeout)
            if limit and seconds > limit:
                steps.append(GuardStep(owners[s.login], "statement cancelled",
                                       f"{s.login} session {s.pid}: ran {seconds:.0f}s, past statement_timeout "
                                       f"{login.policy.statement_timeout}: {s.query[:200]}",
                                       [_cancel("pg_cancel_backend", s)], signals=True))
        elif s.state in IDLE_IN_TRANSACTION:
            limit = limit_seconds(login.policy.idle_in_transaction_session_timeout)
            if limit and seconds > limit:
                steps.append(GuardStep(owners[s.login], "session ended",
                                       f"{s.login} session {s.pid}: {s.state} for {seconds:.0f}s, past "
                                       f"idle_in_transaction_session_timeout "
                                       f"{login.policy.idle_in_transaction_session_timeout}",
                                       [_cancel("pg_terminate_backend", s)], signals=True))
    # (d) a team whose schema or temporary files pass the quota: flagged once per crossing (not enforced)
    over: set[str] = set()
    if quota is not None:
        for login in logins:
            if login.kind != "team":
                continue
            schema = (facts.sizes or {}).get(login.name)
            temp = (facts.temp or {}).get(login.role)
            what = [f"{name} {n / 2**20:.1f} MiB" for name, n in (("schema", schema), ("temporary files", temp))
                    if n is not None and n > quota]
            if what:
                over.add(login.name)
                if login.name not in flagged:
                    steps.append(GuardStep(login.name, "over disk quota",
                                           f"{', '.join(what)}, over policy.disk_quota {quota / 2**20:.1f} MiB "
                                           "(flagged, not enforced)", enforced=False))
        if facts.sizes is None:  # not measured this cycle: what was flagged stays flagged
            over |= flagged
    return steps, over


def usage(logins: list[Login], owners: dict[str, str], facts: GuardFacts) -> dict[str, dict[str, float]]:
    """member -> sessions, schema_bytes (teams), temp_bytes: the figures the dashboard plots."""
    out: dict[str, dict[str, float]] = {}
    for login in logins:
        row = out.setdefault(owners[login.role], {"sessions": 0, "temp_bytes": 0})
        if login.kind == "team" and facts.sizes is not None:
            row["schema_bytes"] = facts.sizes.get(login.name, 0)
        if facts.temp is not None:
            row["temp_bytes"] += facts.temp.get(login.role, 0)
    for s in facts.sessions:
        if s.login in owners:
            out[owners[s.login]]["sessions"] += 1
    return out


def apply_guard(server: DatabaseServer, steps: list[GuardStep]) -> WatchReport:
    """Run the steps, each on its own (one that fails is reported, the others still run)."""
    report = WatchReport()
    todo = [x for x in steps if x.statements]
    report.actions += [Guarded(x.member, x.action, x.detail, enforced=False) for x in steps if not x.statements]
    if not todo:
        return report
    with admin(server) as conn:
        for step in todo:
            try:
                with conn.transaction():
                    rows = [conn.execute(stmt).fetchall() if step.signals else conn.execute(stmt)
                            for stmt in step.statements]
            except psycopg.Error as exc:
                report.problems.append(f"data: {step.action} for {step.member} failed: {str(exc).strip()}")
                continue
            if step.signals and not any(r for r in rows):
                continue  # it ended by itself between the look and the signal: nothing done
            report.actions.append(Guarded(step.member, step.action, step.detail, enforced=step.enforced))
    return report


def guard(server: DatabaseServer, logins: list[Login], databases: list[str], *, quota: str | None,
          memory: GuardMemory) -> WatchReport:
    owners = {x.role: x.name for x in logins}
    with memory.lock:
        try:
            facts = observe_guard(server, logins, databases, memory)
        except psycopg.Error as exc:  # e.g. the server restarting: this cycle watched nothing, the next tries again
            raise ProvisionError(f"the watcher could not read the database server: {str(exc).strip()}",
                                 hint="`datathon status` shows whether it runs") from None
        steps, over = plan_guard(logins, owners, facts, quota=size_bytes(quota), flagged=memory.flagged)
        report = apply_guard(server, steps)
        memory.flagged = over
    report.usage = usage(logins, owners, facts)
    if facts.temp is None:
        report.problems.append("data: temporary files not visible to this administrator (needs pg_monitor)")
    return report
