"""Workspace probes: each team's JupyterHub login, and its Python and R kernels doing real work.

Run through the hub as a team would: the login form with the team's password, kernels over the Jupyter kernel
protocol in the team's own server, with a short-lived token of the team's own: the organizer's token never travels
to a server a team controls. A server that was not running is started for the check and stopped again after.
"""

from __future__ import annotations

import contextlib
import json
import secrets

from psycopg import sql

from datathon.check.model import ProbeFailed, ProbeSkipped, probe
from datathon.check.session import Session
from datathon.errors import DatathonError
from datathon.workspaces.client import BrowserSession, Execution, KernelClient, wait_for_server

SERVER_TIMEOUT = 90.0  # a cold server on a busy machine: started, then routed by the proxy


class TeamWorkspace:
    """One team's server and kernels for the length of a check. A server started here is stopped again in
    close(), which is registered before the start: a start that fails or times out leaves nothing running."""

    def __init__(self, s: Session) -> None:
        self.hub = s.env.hub
        self.user = s.me.login.role
        self.kernels: dict[str, KernelClient] = {}
        self.was_running = self.hub.server(self.user) is not None
        self._token = contextlib.ExitStack()
        self.token: str | None = None

    def open(self) -> None:
        if not self.was_running:
            self.hub.start_server(self.user)
        self.token = self._token.enter_context(self.hub.user_token(self.user))
        # "ready" for the hub is not yet routed by the proxy: wait until the server itself answers there.
        wait_for_server(self.hub.local_url, self.user, self.token, timeout=SERVER_TIMEOUT)

    def kernel(self, name: str) -> KernelClient:
        if name not in self.kernels:
            k = KernelClient(self.hub.local_url, self.user, self.token, name)
            k.start()
            self.kernels[name] = k
        return self.kernels[name]

    def close(self) -> None:
        for k in self.kernels.values():
            k.close()
        self._token.close()
        if not self.was_running:
            with contextlib.suppress(OSError, DatathonError):
                self.hub.stop_server(self.user)


def _workspace(s: Session) -> TeamWorkspace:
    if s.env.hub is None:
        raise ProbeSkipped("the event runs no hub")
    ws = getattr(s, "workspace", None)
    if ws is None:
        ws = TeamWorkspace(s)
        s.workspace = ws
        s.closers.append(ws.close)
        try:
            ws.open()
        except (OSError, DatathonError) as exc:
            s.workspace_error = f"{type(exc).__name__}: {exc}"
    if getattr(s, "workspace_error", None):
        raise ProbeFailed(f"the team's server could not be started: {s.workspace_error}")
    return ws


def _run(s: Session, kernel: str, code: str, *, what: str) -> Execution:
    try:
        result = _workspace(s).kernel(kernel).execute(code)
    except (OSError, DatathonError) as exc:
        s.note(f"[{kernel}] {what}", f"ERROR: {exc}")
        raise ProbeFailed(f"the {kernel} kernel could not run: {exc}") from None
    s.note(f"[{kernel}] {code}", result.summary())
    return result


def _first_shared(s: Session) -> str | None:
    """The first shared table, quoted for SQL (names come from loaded data: any case, any character)."""
    for schema, table, _kind, _col in s.env.shared_tables.get(s.databases[0], []):
        return sql.Identifier(schema, table).as_string(s.conn())
    return None


def own_work_problem(r: Execution, role: str, schema: str, language: str) -> str | None:
    """The kernel printed: its database user, its schema, rows read from shared data, rows it wrote and read.
    None when it did, else what went wrong (shared with the machine probes, which run the same cells)."""
    if not r.ok:
        return f"{language}: {r.error}"
    me, seen, _, m = (r.stdout.split() + ["", "", "", ""])[:4]
    if me != role or seen != schema or m != "2":
        return f"{language} ran as {me!r} in schema {seen!r} and read {m} rows back"
    return None


def _expect_own_work(s: Session, r: Execution, language: str) -> None:
    if problem := own_work_problem(r, s.me.login.role, s.team, language):
        raise ProbeFailed(problem)


def table_name() -> str:
    return f"datathon_probe_{secrets.token_hex(4)}"


@probe("ws.login", "logs in to the hub with its own password; a wrong one is refused", expect="works")
def hub_login(s: Session) -> None:
    if s.env.hub is None:
        raise ProbeSkipped("the event runs no hub")
    user, url = s.me.login.role, s.env.hub.local_url
    ok = BrowserSession(url).login(user, s.me.password)
    s.note(f"POST {url}/hub/login as {user} (right password)", "logged in" if ok else "REFUSED")
    bad = BrowserSession(url).login(user, s.me.password + "x")
    s.note(f"POST {url}/hub/login as {user} (wrong password)", "LOGGED IN" if bad else "refused")
    if not ok or bad:
        raise ProbeFailed("the right password was refused" if not ok else "a wrong password was accepted")


@probe("ws.python", "Python kernel: reads shared data, writes its own schema (no arguments to connect)",
       expect="works")
def python_kernel(s: Session) -> None:
    code = python_code(_first_shared(s), table_name())
    _expect_own_work(s, _run(s, "python3", code, what="query and write"), "Python")


def python_code(target: str | None, table: str) -> str:
    """A cell that connects with no arguments, reads `target` (a quoted shared table), writes and reads `table`."""
    read = f"SELECT count(*) FROM (SELECT 1 FROM {target} LIMIT 10) t" if target else "SELECT 1"
    return (
        "import psycopg\n"
        "with psycopg.connect() as conn:\n"
        "    me, schema = conn.execute('SELECT current_user, current_schema()').fetchone()\n"
        f"    n = conn.execute({read!r}).fetchone()[0]\n"
        f"    conn.execute('CREATE TABLE {table} (x int)')\n"
        f"    conn.execute('INSERT INTO {table} VALUES (1), (2)')\n"
        f"    m = conn.execute('SELECT count(*) FROM {table}').fetchone()[0]\n"
        f"    conn.execute('DROP TABLE {table}')\n"
        "print(me, schema, n, m)"
    )


@probe("ws.r", "R kernel: reads shared data, writes its own schema (DBI, no arguments to connect)", expect="works")
def r_kernel(s: Session) -> None:
    code = r_code(_first_shared(s), table_name())
    _expect_own_work(s, _run(s, "ir", code, what="query and write"), "R")


def r_code(target: str | None, table: str) -> str:
    """The R (DBI) twin of python_code."""
    read = f"SELECT count(*) AS n FROM (SELECT 1 FROM {target} LIMIT 10) t" if target else "SELECT 1 AS n"
    return (
        "suppressMessages(library(DBI))\n"
        "con <- dbConnect(RPostgreSQL::PostgreSQL())\n"
        "who <- dbGetQuery(con, 'SELECT current_user AS u, current_schema() AS s')\n"
        f"n <- dbGetQuery(con, {json.dumps(read)})$n\n"
        f"invisible(dbWriteTable(con, '{table}', data.frame(x = c(1L, 2L)), row.names = FALSE))\n"
        f"m <- dbGetQuery(con, 'SELECT count(*) AS m FROM {table}')$m\n"
        f"invisible(dbExecute(con, 'DROP TABLE {table}'))\n"
        "invisible(dbDisconnect(con))\n"
        "cat(who$u, who$s, n, m, '\\n')"
    )


@probe("ws.datasets.read", "reads a file under ~/datasets", expect="works")
def datasets_read(s: Session) -> None:
    if s.env.datasets is None:
        raise ProbeSkipped("the event has no dataset folder on this server")
    code = (
        "import os\n"
        "root = os.path.expanduser('~/datasets')\n"
        "f = next((os.path.join(d, n) for d, _, ns in os.walk(root, followlinks=True) for n in sorted(ns)), None)\n"
        "print(f, len(open(f, 'rb').read(4096)) if f else 'EMPTY')"
    )
    r = _run(s, "python3", code, what="read ~/datasets")
    if not r.ok or r.stdout.strip().endswith("EMPTY"):
        raise ProbeFailed(f"cannot read a file under ~/datasets: {r.error or r.stdout.strip()}")


@probe("ws.datasets.write", "changes nothing under ~/datasets", expect="refused")
def datasets_write(s: Session) -> None:
    if s.env.datasets is None:
        raise ProbeSkipped("the event has no dataset folder on this server")
    name = table_name()
    code = (
        "import os\n"
        f"p = os.path.join(os.path.expanduser('~/datasets'), {name!r})\n"
        "try:\n"
        "    open(p, 'wb').close(); os.unlink(p); print('ALLOWED')\n"
        "except PermissionError as e:\n"
        "    print('refused', e.errno)"
    )
    r = _run(s, "python3", code, what="write ~/datasets")
    if "refused" not in r.stdout:
        raise ProbeFailed(f"a team could write into ~/datasets: {r.stdout.strip() or r.error}")


@probe("ws.other.home", "cannot list or read another team's home", expect="refused")
def other_home(s: Session) -> None:
    if s.neighbour is None:
        raise ProbeSkipped("only one team")
    _workspace(s)
    import pwd

    try:
        home = pwd.getpwnam(s.neighbour.role).pw_dir
    except KeyError:
        raise ProbeSkipped(f"{s.neighbour.role} has no Unix user") from None
    code = (
        "import os\n"
        "out = []\n"
        f"for p in ({home!r}, {home + '/.pgpass'!r}):\n"
        "    try:\n"
        "        os.listdir(p) if not p.endswith('/.pgpass') else open(p).read()\n"
        "        out.append('ALLOWED:' + p)\n"
        "    except PermissionError:\n"
        "        out.append('refused')\n"
        "print(' '.join(out))"
    )
    r = _run(s, "python3", code, what="read another home")
    if "ALLOWED" in r.stdout or "refused" not in r.stdout:
        raise ProbeFailed(f"another team's home is readable: {r.stdout.strip() or r.error}")


@probe("ws.other.server", "cannot open another team's server with its own login", expect="refused")
def other_server(s: Session) -> None:
    if s.neighbour is None:
        raise ProbeSkipped("only one team")
    ws = _workspace(s)
    other = s.neighbour.role
    # Whether the other server runs or not (the hub answers for a stopped one), the team must not get in.
    running = ws.hub.server(other) is not None
    browser = BrowserSession(ws.hub.local_url)
    if not browser.login(s.me.login.role, s.me.password):
        raise ProbeFailed("cannot log in to the hub")
    status, final, _ = browser.request(f"/user/{other}/api/contents")
    s.note(f"GET /user/{other}/api/contents with {s.me.login.role}'s cookie "
           f"({other}'s server {'running' if running else 'stopped'})", f"HTTP {status} at {final}")
    if status == 200:
        raise ProbeFailed(f"{s.me.login.role} opened {other}'s server")
