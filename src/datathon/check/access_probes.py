"""Access probes: a locked team is refused everywhere, and a rotated password is refused.

A locked team runs only the `locked=True` probes (the others would fail by design: it cannot log in); every other
team runs the rest as usual, so a check after `datathon lock beta` proves both that beta is out and that alpha is
not. After `datathon rotate`, the password a team had before (kept 0600 as retired, for this) must be refused by
the database and the hub.
"""

from __future__ import annotations

import pwd

import psycopg

from datathon.check.model import ProbeFailed, ProbeSkipped, probe
from datathon.check.session import Session, _error
from datathon.workspaces.client import BrowserSession


def _db_refused(s: Session, password: str, what: str) -> None:
    role = s.me.login.role
    try:
        s.open(password=password).close()
    except psycopg.OperationalError as exc:
        s.note(f"log in as {role} with {what}", _error(exc))
        return
    s.note(f"log in as {role} with {what}", "ALLOWED")
    raise ProbeFailed(f"the database let {role} in with {what}")


def _hub_refused(s: Session, password: str, what: str) -> None:
    if s.env.hub is None:
        raise ProbeSkipped("the event runs no hub")
    user, url = s.me.login.role, s.env.hub.local_url
    ok = BrowserSession(url).login(user, password)
    s.note(f"POST {url}/hub/login as {user} ({what})", "LOGGED IN" if ok else "refused")
    if ok:
        raise ProbeFailed(f"the hub let {user} in with {what}")


# -- a rotated password -------------------------------------------------------------------------------------------

@probe("db.login.retired_password", "the password before the last rotation is refused by the database",
       expect="refused")
def db_retired(s: Session) -> None:
    if not s.retired:
        raise ProbeSkipped("its password was never rotated")
    _db_refused(s, s.retired, "its password from before the rotation")


@probe("ws.login.retired_password", "the password before the last rotation is refused by the hub", expect="refused")
def hub_retired(s: Session) -> None:
    if not s.retired:
        raise ProbeSkipped("its password was never rotated")
    _hub_refused(s, s.retired, "its password from before the rotation")


# -- a locked team ------------------------------------------------------------------------------------------------

@probe("locked.db.login", "locked: its own password is refused by the database", expect="refused", locked=True)
def locked_db(s: Session) -> None:
    _db_refused(s, s.me.password, "its own password")


@probe("locked.ws.login", "locked: its own password is refused by the hub", expect="refused", locked=True)
def locked_hub(s: Session) -> None:
    _hub_refused(s, s.me.password, "its own password")


@probe("locked.ws.running", "locked: no server, session or process of it runs", expect="refused", locked=True)
def locked_nothing_runs(s: Session) -> None:
    from datathon.workspaces.accounts import processes_of

    role = s.me.login.role
    if s.env.hub is not None:
        server = s.env.hub.server(role)
        s.note(f"GET /hub/api/users/{role}: its server", "RUNNING" if server else "none")
        if server:
            raise ProbeFailed("its server runs")
    try:
        uid = pwd.getpwnam(role).pw_uid
    except KeyError:
        if s.env.hub is None:
            raise ProbeSkipped("the event has no Unix user per team") from None
        raise ProbeFailed(f"its Unix user {role} is missing") from None
    pids = processes_of(uid)
    s.note(f"processes of uid {uid}", f"RUNNING: {len(pids)}" if pids else "none")
    if pids:
        raise ProbeFailed(f"{len(pids)} process(es) of {role} run")
