"""A probe's view of one team: its own credentials, connections opened as that team, and evidence helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from datathon.check.model import Evidence, ProbeFailed
from datathon.config import EventConfig
from datathon.core.endpoint import Endpoint
from datathon.database.tenancy import Login

INSUFFICIENT_PRIVILEGE = "42501"


def _error(exc: psycopg.Error) -> str:
    state = getattr(exc, "sqlstate", None) or "connection"
    return f"ERROR {state}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"


@dataclass
class Credentials:
    login: Login
    password: str


@dataclass
class Environment:
    """What every team's probes share: read by the organizer once, before the probes run."""

    config: EventConfig
    endpoint: Endpoint
    managed: bool  # datathon runs the server (and so its pg_hba rules)
    # database -> [(schema, table, relkind, first column)] of the shared schemas, listed by the administrator
    shared_tables: dict[str, list[tuple[str, str, str, str]]]
    # team -> every mentor's login for that team (each reads only that team's schema)
    mentor_logins: dict[str, list[Credentials]] = field(default_factory=dict)
    hub: object | None = None  # workspaces.hub.Hub when the event runs a hub; its probes skip otherwise
    datasets: Path | None = None  # the folder linked at ~/datasets, when the event has one on this machine
    # the organizer's side: one cycle of the watcher's database guard on one login (what `datathon watch` does
    # every few seconds for every login); None where `check` cannot act as the organizer
    guard: Callable[[str], None] | None = None


class Session:
    def __init__(self, env: Environment, me: Credentials, neighbour: Login | None, others: list[Login], *,
                 retired: str | None = None) -> None:
        self.env = env
        self.me = me
        self.retired = retired  # the password this team had before its last rotation: must be refused
        self.neighbour = neighbour  # another team, for the cross-team probes
        self.others = others  # every other team
        self.evidence: list[Evidence] = []
        self._conns: dict[str, psycopg.Connection] = {}
        self.closers: list = []  # other parts' per-team resources (a workspace's kernels), closed at the end

    @property
    def team(self) -> str:
        return self.me.login.name

    @property
    def databases(self) -> list[str]:
        return [d.name for d in self.env.config.databases]

    # -- connections ---------------------------------------------------------------------------
    def open(self, db: str | None = None, *, creds: Credentials | None = None, password: str | None = None,
             sslmode: str | None = None) -> psycopg.Connection:
        creds = creds or self.me
        ep = self.env.endpoint
        kw = ep.connect_kwargs()
        kw["sslmode"] = sslmode or ("require" if ep.sslmode in ("disable", "prefer") else ep.sslmode)
        return psycopg.connect(
            **kw, dbname=db or self.databases[0], user=creds.login.role,
            password=password if password is not None else creds.password,
            autocommit=True, connect_timeout=10, application_name="datathon check",
        )

    def conn(self, db: str | None = None) -> psycopg.Connection:
        """This team's connection to `db`, kept for the session; a failure to log in fails the probe."""
        db = db or self.databases[0]
        if db not in self._conns or self._conns[db].closed:
            try:
                self._conns[db] = self.open(db)
            except psycopg.Error as exc:
                self.note(f"log in as {self.me.login.role} to {db}", _error(exc))
                raise ProbeFailed(f"cannot log in to {db}") from None
        return self._conns[db]

    def close(self) -> None:
        for c in self._conns.values():
            c.close()
        self._conns.clear()
        for close in self.closers:
            close()
        self.closers.clear()

    # -- evidence ------------------------------------------------------------------------------
    def note(self, statement: str, result: str) -> None:
        self.evidence.append(Evidence(statement, result))

    def works(self, conn: psycopg.Connection, statement: sql.Composable | str, params=None) -> list[tuple]:
        text = statement.as_string(conn) if isinstance(statement, sql.Composable) else statement
        try:
            cur = conn.execute(statement, params)
            rows = cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            self.note(text, _error(exc))
            raise ProbeFailed(f"failed: {text}") from None
        self.note(text, f"ok: {rows[:3]!r}" if rows else f"ok ({cur.rowcount} rows)")
        return rows

    def refused(self, conn: psycopg.Connection, statement: sql.Composable | str,
                sqlstates: tuple[str, ...] = (INSUFFICIENT_PRIVILEGE,)) -> None:
        """The statement must fail with one of `sqlstates`. It runs in a transaction that is always rolled
        back, so a statement wrongly allowed changes nothing."""
        text = statement.as_string(conn) if isinstance(statement, sql.Composable) else statement
        try:
            with conn.transaction(force_rollback=True):
                cur = conn.execute(statement)
                rows = cur.rowcount
        except psycopg.Error as exc:
            self.note(text, _error(exc))
            if getattr(exc, "sqlstate", None) in sqlstates:
                return
            raise ProbeFailed(f"failed for another reason than a refusal: {text}") from None
        self.note(text, f"ALLOWED ({rows} rows; rolled back)")
        raise ProbeFailed(f"allowed: {text}")
