"""Database probes, run as each team with its own credentials. Import registers them, in this order."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import psycopg
from psycopg import sql

from datathon.check.model import ProbeFailed, ProbeSkipped, probe
from datathon.check.session import Credentials, Session, _error
from datathon.core import roster as roles
from datathon.database.tenancy import role_settings

I = sql.Identifier  # noqa: E741  (short, and only ever an identifier)


def _probe_table() -> str:
    return f"datathon_probe_{secrets.token_hex(4)}"


def _shared_tables(s: Session, *, writable_only: bool = False):
    for db, tables in s.env.shared_tables.items():
        for schema, table, kind, column in tables:
            if not writable_only or kind in ("r", "p"):
                yield db, schema, table, column


# -- must work ---------------------------------------------------------------------------------------------

@probe("db.login.tls", "logs in with its own password, over TLS", expect="works")
def login_tls(s: Session) -> None:
    rows = s.works(s.conn(), "SELECT current_user, ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    if not rows or rows[0][0] != s.me.login.role or rows[0][1] is not True:
        raise ProbeFailed(f"not a TLS session as {s.me.login.role}: {rows}")


@probe("db.search_path", "search_path is its own schema, then the shared schemas", expect="works")
def search_path(s: Session) -> None:
    for db in s.databases:
        conn = s.conn(db)
        (found,) = s.works(conn, "SELECT current_schemas(false)")[0]
        present = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
        wanted = [x for x in s.me.login.search_path if x in present]
        if found != wanted:
            raise ProbeFailed(f"in {db}: search_path resolves to {found}, expected {wanted}")


@probe("db.policy", "the event's limits are this login's settings, in every database", expect="works")
def policy(s: Session) -> None:
    # every database: a role's own settings for one database (ALTER ROLE ... IN DATABASE) win there
    for db in s.databases:
        conn = s.conn(db)
        for key, value in role_settings(s.me.login).items():
            if key == "search_path":
                continue
            (shown,) = s.works(conn, sql.SQL("SHOW {}").format(I(key)))[0]
            if shown != _as_shown(conn, key, value):
                raise ProbeFailed(f"in {db}, {key} is {shown}; the policy says {value}")
    conn = s.conn()
    (limit,) = s.works(conn, "SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user")[0]
    if limit != s.me.login.policy.connection_limit:
        raise ProbeFailed(f"connection limit is {limit}, the policy says {s.me.login.policy.connection_limit}")


def _as_shown(conn: psycopg.Connection, key: str, value: str) -> str:
    """How the server shows a configured value (120s is shown as 2min): set it for a moment, read it back.
    temp_file_limit is not the team's to set: its value is compared as written."""
    if key == "temp_file_limit":
        return value
    with conn.transaction(force_rollback=True):
        return conn.execute("SELECT set_config(%s, %s, true)", (key, value)).fetchone()[0]


@probe("db.shared.read", "reads every table of every shared schema", expect="works")
def shared_read(s: Session) -> None:
    count = 0
    for db, schema, table, _ in _shared_tables(s):
        s.works(s.conn(db), sql.SQL("SELECT 1 FROM {}.{} LIMIT 1").format(I(schema), I(table)))
        count += 1
    if count == 0:
        raise ProbeSkipped("no shared tables loaded yet")


@probe("db.own.lifecycle", "creates, writes, reads and drops a table in its own schema, in every database",
       expect="works")
def own_lifecycle(s: Session) -> None:
    for db in s.databases:
        conn = s.conn(db)
        t = sql.SQL("{}.{}").format(I(s.team), I(_probe_table()))
        s.works(conn, sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, note text)").format(t))
        try:
            s.works(conn, sql.SQL("INSERT INTO {} VALUES (1, 'datathon check')").format(t))
            rows = s.works(conn, sql.SQL("SELECT note FROM {}").format(t))
            if rows != [("datathon check",)]:
                raise ProbeFailed(f"read back {rows}")
        finally:
            s.works(conn, sql.SQL("DROP TABLE {}").format(t))


@probe("db.temp_tables", "temporary tables are allowed or refused as the policy says", expect="works")
def temp_tables(s: Session) -> None:
    stmt = "CREATE TEMP TABLE datathon_probe_tmp (x int)"
    if s.me.login.policy.temp_tables:
        s.works(s.conn(), stmt)
        s.works(s.conn(), "DROP TABLE datathon_probe_tmp")
    else:
        s.refused(s.conn(), stmt)


@probe("db.statement_timeout", "a query running past statement_timeout is cancelled", expect="works")
def statement_timeout(s: Session) -> None:
    conn = s.conn()
    (shown,) = s.works(conn, "SHOW statement_timeout")[0]
    if shown != _as_shown(conn, "statement_timeout", s.me.login.policy.statement_timeout):
        raise ProbeFailed(f"statement_timeout is {shown}, the policy says {s.me.login.policy.statement_timeout}")
    # The configured timeout is minutes long; prove the server cancels at a timeout with a short one.
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL statement_timeout = '150ms'")
        try:
            conn.execute("SELECT pg_sleep(3)")
        except psycopg.errors.QueryCanceled as exc:
            s.note("SET LOCAL statement_timeout = '150ms'; SELECT pg_sleep(3)", _error(exc))
            return
    s.note("SET LOCAL statement_timeout = '150ms'; SELECT pg_sleep(3)", "completed: not cancelled")
    raise ProbeFailed("a query ran past statement_timeout")


# What the probe sets on the team's role for a moment. The timeouts are lifted (the hole itself; a session opened
# meanwhile is still held to them by the watcher, which cancels by duration); work_mem is changed downwards, so
# that a team session opened in that moment gets less memory, never more.
LIFTED = {"statement_timeout": "0", "idle_in_transaction_session_timeout": "0", "work_mem": "1MB"}

OWN_SETTINGS = ("SELECT d.datname::text, s.setconfig FROM pg_catalog.pg_db_role_setting s"
                " LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase"
                " WHERE s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)")


def _own_settings(s: Session, conn: psycopg.Connection) -> dict[str | None, dict[str, str]]:
    """database (None: every database) -> the settings this role has there, as the team reads them."""
    return {db: dict(x.split("=", 1) for x in config or []) for db, config in s.works(conn, OWN_SETTINGS)}


@probe("db.policy.lifted", "a limit the team lifts on its own role (ALTER ROLE CURRENT_USER SET) does not last",
       expect="refused")
def policy_lifted(s: Session) -> None:
    """The hole: any role may change its own settings, and its later sessions get them. As the team: lift the
    limits on its role (everywhere, and in one database), see a fresh session get them, ask the organizer's side
    for one watcher cycle on this team (what `datathon watch` runs every few seconds), and see a fresh session
    have the event's limits again. Whatever happens, the team then puts back what it changed as it was before.

    This proves that a watcher cycle undoes the lift; that a watcher runs during the event is `serve`'s (or
    `datathon watch`'s) to show."""
    if s.env.guard is None:
        raise ProbeSkipped("no organizer side to run the watcher from")
    conn = s.conn()
    db = s.databases[0]
    wanted = {k: v for k, v in role_settings(s.me.login).items() if k in LIFTED}
    before = _own_settings(s, conn)
    lift = {**LIFTED, "work_mem": "2MB" if wanted.get("work_mem") == "1MB" else "1MB"}
    try:
        for key, value in lift.items():
            s.works(conn, sql.SQL("ALTER ROLE CURRENT_USER SET {} = {}").format(I(key), sql.Literal(value)))
        s.works(conn, sql.SQL("ALTER ROLE CURRENT_USER IN DATABASE {} SET statement_timeout = 0").format(I(db)))
        with s.open(db) as fresh:
            (lifted,) = s.works(fresh, "SHOW statement_timeout")[0]
        s.env.guard(s.me.login.role)
        s.note(f"the organizer's side: one watcher cycle on {s.me.login.role}", "done")
        lasted = []
        with s.open(db) as fresh:
            for key, value in wanted.items():
                (shown,) = s.works(fresh, sql.SQL("SHOW {}").format(I(key)))[0]
                if shown != _as_shown(fresh, key, value):
                    lasted.append(f"{key} = {shown} (the policy says {value})")
        if lasted:
            raise ProbeFailed(f"after a watcher cycle a fresh session still has what the team set: {'; '.join(lasted)}"
                              f" (right after the lift: statement_timeout = {lifted})")
    finally:
        with contextlib.suppress(psycopg.Error):  # as it was, for what the probe changed
            mine, here = before.get(None, {}), before.get(db, {})
            for key in LIFTED:
                conn.execute(sql.SQL("ALTER ROLE CURRENT_USER SET {} = {}").format(I(key), sql.Literal(mine[key]))
                             if key in mine else sql.SQL("ALTER ROLE CURRENT_USER RESET {}").format(I(key)))
            conn.execute(sql.SQL("ALTER ROLE CURRENT_USER IN DATABASE {} RESET statement_timeout").format(I(db)))
            if "statement_timeout" in here:
                conn.execute(sql.SQL("ALTER ROLE CURRENT_USER IN DATABASE {} SET statement_timeout = {}").format(
                    I(db), sql.Literal(here["statement_timeout"])))


# -- must be refused ---------------------------------------------------------------------------------------

def _login_refused(s: Session, what: str, *, because: str | None = None, **how) -> None:
    """A login that must fail (and, with `because`, fail for that reason)."""
    try:
        s.open(**how).close()
    except psycopg.OperationalError as exc:
        s.note(what, _error(exc))
        if because is None or because in str(exc):
            return
        raise ProbeFailed(f"refused, but not because of: {because}") from None
    s.note(what, "ALLOWED")
    raise ProbeFailed(f"allowed: {what}")


@probe("db.login.wrong_password", "a wrong password is refused", expect="refused")
def wrong_password(s: Session) -> None:
    _login_refused(s, f"log in as {s.me.login.role} with a wrong password", because="password authentication failed",
                   password="not-" + s.me.password)


@probe("db.login.without_tls", "a login without TLS is refused", expect="refused")
def without_tls(s: Session) -> None:
    _login_refused(s, f"log in as {s.me.login.role} with sslmode=disable", sslmode="disable")


@probe("db.login.other_database", "logging in to a database outside the event is refused", expect="refused")
def other_database(s: Session) -> None:
    if not s.env.managed:
        raise ProbeSkipped("an external server's own access rules decide this")
    _login_refused(s, f"log in as {s.me.login.role} to database postgres", db="postgres")


def _writable_shared(s: Session) -> list[tuple[str, str, str, str]]:
    """The shared tables (not views) of every database; the probe does not apply before any is loaded."""
    found = list(_shared_tables(s, writable_only=True))
    if not found:
        raise ProbeSkipped("no shared tables loaded yet")
    return found


@probe("db.shared.write", "inserting, updating, deleting or truncating shared data is refused", expect="refused")
def shared_write(s: Session) -> None:
    for db, schema, table, column in _writable_shared(s):
        t = sql.SQL("{}.{}").format(I(schema), I(table))
        conn = s.conn(db)
        for stmt in (sql.SQL("INSERT INTO {} DEFAULT VALUES").format(t),
                     sql.SQL("UPDATE {} SET {} = {} WHERE false").format(t, I(column), I(column)),
                     sql.SQL("DELETE FROM {} WHERE false").format(t),
                     sql.SQL("TRUNCATE {}").format(t)):
            s.refused(conn, stmt)


@probe("db.shared.alter", "altering or dropping a shared table is refused", expect="refused")
def shared_alter(s: Session) -> None:
    for db, schema, table, _ in _writable_shared(s):
        t = sql.SQL("{}.{}").format(I(schema), I(table))
        s.refused(s.conn(db), sql.SQL("ALTER TABLE {} ADD COLUMN datathon_probe int").format(t))
        s.refused(s.conn(db), sql.SQL("DROP TABLE {}").format(t))


@probe("db.shared.create", "creating a table in a shared schema is refused", expect="refused")
def shared_create(s: Session) -> None:
    schemas = [(d.name, x) for d in s.env.config.databases for x in d.readable_schemas]
    if not schemas:
        raise ProbeSkipped("no shared schemas")
    for db, schema in schemas:
        s.refused(s.conn(db), sql.SQL("CREATE TABLE {}.{} (x int)").format(I(schema), I(_probe_table())))


@probe("db.other_team.read", "reading another team's schema is refused", expect="refused")
def other_read(s: Session) -> None:
    if s.neighbour is None:
        raise ProbeSkipped("only one team")
    for db in s.databases:
        s.refused(s.conn(db), sql.SQL("SELECT * FROM {}.{}").format(I(s.neighbour.name), I(_probe_table())))
    # and every other team, through the privileges the server would check
    names = [o.name for o in s.others]
    for db in s.databases:
        rows = s.works(s.conn(db), "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)"
                       " AND (has_schema_privilege(oid, 'USAGE') OR has_schema_privilege(oid, 'CREATE'))", (names,))
        if rows:
            raise ProbeFailed(f"in {db} this team may use other teams' schemas: {', '.join(r[0] for r in rows)}")


@probe("db.other_team.write", "creating or writing in another team's schema is refused", expect="refused")
def other_write(s: Session) -> None:
    if s.neighbour is None:
        raise ProbeSkipped("only one team")
    for db in s.databases:
        other = sql.SQL("{}.{}").format(I(s.neighbour.name), I(_probe_table()))
        s.refused(s.conn(db), sql.SQL("CREATE TABLE {} (x int)").format(other))
        s.refused(s.conn(db), sql.SQL("INSERT INTO {} VALUES (1)").format(other))


@probe("db.public.create", "creating in schema public is refused", expect="refused")
def public_create(s: Session) -> None:
    for db in s.databases:
        s.refused(s.conn(db), sql.SQL("CREATE TABLE public.{} (x int)").format(I(_probe_table())))


@probe("db.create_schema", "creating a schema is refused", expect="refused")
def create_schema(s: Session) -> None:
    s.refused(s.conn(), sql.SQL("CREATE SCHEMA {}").format(I(_probe_table())))


@probe("db.create_database", "creating a database is refused", expect="refused")
def create_database(s: Session) -> None:
    conn = s.conn()
    stmt = sql.SQL("CREATE DATABASE {}").format(I(_probe_table()))
    text = stmt.as_string(conn)
    try:
        conn.execute(stmt)  # CREATE DATABASE cannot run in a transaction block
    except psycopg.Error as exc:
        s.note(text, _error(exc))
        if getattr(exc, "sqlstate", None) == "42501":
            return
        raise ProbeFailed("failed for another reason than a refusal") from None
    s.note(text, "ALLOWED")
    raise ProbeFailed("created a database")


@probe("db.create_role", "creating or altering roles is refused", expect="refused")
def create_role(s: Session) -> None:
    conn = s.conn()
    s.refused(conn, sql.SQL("CREATE ROLE {} LOGIN").format(I(_probe_table())))
    s.refused(conn, sql.SQL("ALTER ROLE {} CONNECTION LIMIT -1").format(I(s.me.login.role)))


@probe("db.set_role", "SET ROLE and SET SESSION AUTHORIZATION to another role are refused", expect="refused")
def set_role(s: Session) -> None:
    conn = s.conn()
    e = s.env.config.event
    targets = [roles.data_owner(e), roles.mentors_group(e)]
    if s.neighbour:
        targets.insert(0, s.neighbour.role)
    for role in targets:
        s.refused(conn, sql.SQL("SET ROLE {}").format(I(role)))
        s.refused(conn, sql.SQL("SET SESSION AUTHORIZATION {}").format(I(role)))


@probe("db.memberships", "this login holds no role but its team group", expect="refused")
def memberships(s: Session) -> None:
    """Some PostgreSQL releases let a session grant membership in its own login: a team's code run by a mentor
    could then give the team the mentor's login for it, or teams could hand each other theirs."""
    rows = s.works(s.conn(), "SELECT rolname FROM pg_roles WHERE pg_has_role(current_user, oid, 'MEMBER')"
                             " AND rolname NOT IN (current_user, %s) ORDER BY 1",
                   (roles.teams_group(s.env.config.event),))
    if rows:
        raise ProbeFailed(f"{s.me.login.role} holds {', '.join(r[0] for r in rows)}")


@probe("db.pg_authid", "reading password hashes (pg_authid) is refused", expect="refused")
def pg_authid(s: Session) -> None:
    s.refused(s.conn(), "SELECT rolname, rolpassword FROM pg_authid")


@probe("db.server_files", "reading the server's files is refused", expect="refused")
def server_files(s: Session) -> None:
    conn = s.conn()
    s.refused(conn, "SELECT pg_read_file('/etc/passwd')")
    s.refused(conn, "SELECT pg_ls_dir('.')")
    s.refused(conn, "SELECT lo_import('/etc/passwd')")


@probe("db.copy_program", "COPY to or from a server file or program is refused", expect="refused")
def copy_program(s: Session) -> None:
    conn = s.conn()
    s.refused(conn, "COPY (SELECT 1) TO PROGRAM 'id'")
    s.refused(conn, "COPY (SELECT 1) TO '/tmp/datathon_probe'")
    for source in ("'/etc/passwd'", "PROGRAM 'id'"):
        t = sql.SQL("{}.{}").format(I(s.team), I(_probe_table()))
        s.refused(conn, sql.SQL("CREATE TABLE {} (x text); COPY {} FROM ").format(t, t) + sql.SQL(source))


def _mentor(s: Session) -> Credentials:
    """The first mentor's login for this team: it reads this team's schema and nothing of any other team."""
    found = s.env.mentor_logins.get(s.team)
    if not found:
        raise ProbeSkipped("the event has no mentors")
    return found[0]


@contextlib.contextmanager
def _mentor_on_new_table(s: Session, body: str) -> Iterator[tuple[psycopg.Connection, sql.Composable, str]]:
    """A table this team creates now (`CREATE TABLE t <body>`), and the mentor's session; the table is dropped
    afterwards whatever happens."""
    mentor = _mentor(s)
    conn = s.conn()
    name = _probe_table()
    t = sql.SQL("{}.{}").format(I(s.team), I(name))
    s.works(conn, sql.SQL("CREATE TABLE {} ").format(t) + sql.SQL(body))
    try:
        with s.open(creds=mentor) as m:
            yield m, t, name
    except psycopg.OperationalError as exc:
        s.note(f"log in as mentor {mentor.login.role}", _error(exc))
        raise ProbeFailed("the mentor cannot log in") from None
    finally:
        s.works(conn, sql.SQL("DROP TABLE {} CASCADE").format(t))


@probe("mentor.read_later", "a mentor reads a table this team created after the grants", expect="works")
def mentor_read(s: Session) -> None:
    with _mentor_on_new_table(s, "AS SELECT 1 AS x") as (m, t, _):
        rows = s.works(m, sql.SQL("SELECT x FROM {}").format(t))
        if rows != [(1,)]:
            raise ProbeFailed(f"the mentor read {rows}")


@probe("mentor.write", "a mentor cannot write or create in this team's schema", expect="refused")
def mentor_write(s: Session) -> None:
    with _mentor_on_new_table(s, "(x int)") as (m, t, name):
        # refused twice over: a mentor's session is read-only (25006), and without it, no privilege (42501)
        s.refused(m, sql.SQL("INSERT INTO {} VALUES (1)").format(t), ("25006",))
        m.execute("SET default_transaction_read_only = off")
        s.refused(m, sql.SQL("INSERT INTO {} VALUES (1)").format(t))
        s.refused(m, sql.SQL("CREATE TABLE {}.{} (x int)").format(I(s.team), I(name + "_m")))


@probe("mentor.team_code", "this team's code, run by a mentor (view, row policy), reaches no other team",
       expect="refused")
def mentor_team_code(s: Session) -> None:
    """The attack: a team's function runs with the rights of whoever calls it. Planted behind a view and a row
    security policy, it reports which other teams' schemas and which other roles its caller could use."""
    mentor = _mentor(s)
    others = [o.name for o in s.others]
    # (the mentors group is not among them: every mentor login is in it, for the shared data only)
    other_roles = [o.role for o in s.others] + [roles.data_owner(s.env.config.event)]
    other_roles += [c.login.role for team, cs in s.env.mentor_logins.items() if team != s.team for c in cs]
    other_roles += list(dict.fromkeys(roles.login_role(s.env.config.event, c.login.name)
                                      for cs in s.env.mentor_logins.values() for c in cs))
    fn = sql.SQL("{}.{}").format(I(s.team), I(_probe_table()))
    body = ("SELECT current_user || ':' || coalesce((SELECT string_agg(nspname, ',') FROM pg_namespace"
            " WHERE nspname = ANY({others}) AND (has_schema_privilege(oid, 'USAGE')"
            " OR has_schema_privilege(oid, 'CREATE'))), '') || ':' || coalesce((SELECT string_agg(rolname, ',')"
            " FROM pg_roles WHERE rolname = ANY({roles}) AND pg_has_role(current_user, oid, 'MEMBER')), '')")
    conn = s.conn()
    s.works(conn, sql.SQL("CREATE FUNCTION {}() RETURNS text LANGUAGE sql AS {}").format(
        fn, sql.Literal(sql.SQL(body).format(others=sql.Literal(others), roles=sql.Literal(other_roles))
                        .as_string(conn))))
    try:
        with _mentor_on_new_table(s, "AS SELECT 1 AS x") as (m, t, name):
            view = sql.SQL("{}.{}").format(I(s.team), I(name + "_v"))
            s.works(conn, sql.SQL("CREATE VIEW {} AS SELECT {}() AS seen").format(view, fn))
            s.works(conn, sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(t))
            s.works(conn, sql.SQL("CREATE POLICY p ON {} USING ({}() LIKE '%::')").format(t, fn))
            [(seen,)] = s.works(m, sql.SQL("SELECT seen FROM {}").format(view))
            who, schemas, reached = seen.split(":")
            if who != mentor.login.role or schemas or reached:
                raise ProbeFailed(f"run by the mentor, this team's code ran as {who}, could use "
                                  f"schemas [{schemas}] and roles [{reached}]")
            rows = s.works(m, sql.SQL("SELECT x FROM {}").format(t))
            if rows != [(1,)]:  # the policy passes only for a caller that reaches nothing else
                raise ProbeFailed(f"through the row policy the mentor saw {rows}")
    finally:
        s.works(conn, sql.SQL("DROP FUNCTION IF EXISTS {}() CASCADE").format(fn))


@probe("mentor.logins", "every mentor's login for this team logs in with its own password", expect="works")
def mentor_logins(s: Session) -> None:
    """A team's code run by a mentor can change that login's password (any role may change its own): this
    finds it, and `up` sets it back."""
    found = s.env.mentor_logins.get(s.team)
    if not found:
        raise ProbeSkipped("the event has no mentors")
    for creds in found:
        try:
            with s.open(creds=creds) as m:
                s.works(m, "SELECT current_user")
        except psycopg.OperationalError as exc:
            s.note(f"log in as {creds.login.role}", _error(exc))
            raise ProbeFailed(f"{creds.login.role} cannot log in with its stored password") from None


@probe("db.disk_quota", "this team's tables fit its disk quota (policy.disk_quota)", expect="works")
def disk_quota(s: Session) -> None:
    quota = s.me.login.policy.disk_quota
    if quota is None:
        raise ProbeSkipped("no policy.disk_quota")
    used = 0
    for db in s.databases:
        conn = s.conn(db)
        (size,) = s.works(conn, "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c"
                                " WHERE c.relnamespace = to_regnamespace(%s) AND c.relkind IN ('r', 'm', 'p')",
                          (s.team,))[0]
        used += size
    (limit,) = s.works(s.conn(), "SELECT pg_size_bytes(%s)", (quota,))[0]
    if used > limit:
        raise ProbeFailed(f"team {s.team}'s tables take {used / 2**30:.2f} GiB, over its quota of {quota}")


@probe("db.connection_limit", "connections beyond the team's limit are refused", expect="refused")
def connection_limit(s: Session) -> None:
    s.close()  # this probe counts connections: hold none of our own
    limit = s.me.login.policy.connection_limit
    opened: list[psycopg.Connection] = []
    try:
        for i in range(limit + 1):
            try:
                opened.append(s.open())
            except psycopg.OperationalError as exc:
                s.note(f"open connection {i + 1} of {limit + 1} as {s.me.login.role}", _error(exc))
                if "too many connections" in str(exc):
                    return
                raise ProbeFailed("refused, but not for the connection limit") from None
        s.note(f"open {limit + 1} connections as {s.me.login.role}", "ALLOWED: all opened")
        raise ProbeFailed(f"{limit + 1} connections were allowed; the limit is {limit}")
    finally:
        for c in opened:
            c.close()
