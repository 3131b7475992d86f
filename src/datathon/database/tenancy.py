"""Team tenancy as SQL that is the same on the managed cluster, an on-premise server or RDS.

`plan_tenancy` is pure: wanted state (the config) + observed facts -> changes, each a few statements built
with psycopg.sql. Running it again after `up` yields only `keep` entries.

The model (for event E, team T, mentor M):
  E_teams, E_mentors      NOLOGIN groups; E_data NOLOGIN owner of the shared dataset schemas
  E_T, E_M                LOGIN roles with the policy as role defaults, members of their group
  E_M__T                  LOGIN of mentor M for team T (member of E_mentors): the only role that reads schema T
                          besides E_T
  in every event database: CONNECT (and TEMP if allowed) for the groups only, nothing for PUBLIC, no CREATE
  on public; shared schemas: USAGE + SELECT (also on future tables) for both groups; schema T owned by E_T,
  readable by every E_M__T (also future tables) and by nobody else.

Why a mentor login per team: whatever a mentor runs on a team's schema may run that team's code (a view over a
function, a row-level security policy, a trigger, an overload of a built-in found first on the search path),
and that code acts with the rights of whoever runs it. Read-only sessions cannot contain it (the code can turn
them off, signal out by NOTIFY, locks or settings, or change the mentor's password). So the login that reads
team T can read nothing T cannot: the worst T's code can do with it is what T can already do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from datathon.config import EventConfig, Policy
from datathon.core import roster as roles
from datathon.core.plan import Change
from datathon.core.roster import members
from datathon.database.facts import META_SCHEMA, Facts, RoleFact

MARK = "datathon:{event}"  # COMMENT on roles and databases datathon made: how it recognises its own


# The connections one mentor may hold per team login: one notebook and one psql. Per team, so that the server's
# connection budget grows with mentors x teams by this much, not by the mentors' whole limit.
MENTOR_TEAM_CONNECTIONS = 2


@dataclass(frozen=True)
class Login:
    role: str
    name: str  # team or mentor name
    kind: str  # "team", "mentor" or "mentor_team" (a mentor's login for one team)
    group: str
    policy: Policy
    search_path: tuple[str, ...]
    team: str | None = None  # for "mentor_team": the one team schema it reads

    @property
    def person(self) -> bool:
        """A team or a mentor (who gets a handout, a home, a Unix user), not a mentor's per-team login."""
        return self.kind != "mentor_team"


def wanted_logins(config: EventConfig) -> list[Login]:
    """The event's members (core.roster: the one list of who is in the event), as database logins."""
    shared = tuple(dict.fromkeys(s for d in config.databases for s in d.readable_schemas))
    mentor_policy = config.effective_mentor_policy
    per_team = mentor_policy.model_copy(
        update={"connection_limit": min(MENTOR_TEAM_CONNECTIONS, mentor_policy.connection_limit)})
    out = []
    for m in members(config):
        if m.kind == "team":
            out.append(Login(m.login, m.name, m.kind, m.group, config.policy, (m.name, *shared)))
        elif m.kind == "mentor":
            out.append(Login(m.login, m.name, m.kind, m.group, mentor_policy, shared or ("public",)))
        else:
            out.append(Login(m.login, m.name, m.kind, m.group, per_team, (m.team, *shared), team=m.team))
    return out


def team_readers(config: EventConfig, team: str) -> list[str]:
    """The roles that may read team `team`'s schema, besides the team: its mentors' logins for it."""
    return [roles.mentor_team_role(config.event, m.name, team) for m in config.mentors]


def role_settings(login: Login) -> dict[str, str]:
    p = login.policy
    settings = {
        "statement_timeout": p.statement_timeout,
        "idle_in_transaction_session_timeout": p.idle_in_transaction_session_timeout,
        "temp_file_limit": p.temp_file_limit,
        "work_mem": p.work_mem,
        "search_path": ", ".join(login.search_path),
    }
    if login.kind != "team":
        # Mentors read, they do not write. Not a wall (team code can turn it off, see the module docstring):
        # a guard against a mentor's own slip.
        settings["default_transaction_read_only"] = "on"
    return settings


def _norm(value: str) -> str:
    return value.replace('"', "").replace(" ", "")


def _set_role_setting(role: str, key: str, value: str) -> sql.Composable:
    if key == "search_path":
        rhs = sql.SQL(", ").join(sql.Identifier(s) for s in value.split(", "))
    else:
        rhs = sql.Literal(value)
    return sql.SQL("ALTER ROLE {} SET {} = {}").format(sql.Identifier(role), sql.Identifier(key), rhs)


def password_statement(role: str, secret_for: Callable[[str], str]) -> Callable[[psycopg.Connection], sql.Composable]:
    """Built at apply time (planning reads no secret): the server, and its log, only ever see a SCRAM
    verifier computed by libpq on this side, never the password."""

    def build(conn: psycopg.Connection) -> sql.Composable:
        password = secret_for(role)
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
        return sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier.decode()))

    return build


def _group_changes(config: EventConfig, facts: Facts) -> list[Change]:
    out = []
    mark = MARK.format(event=config.event)
    for group, why in (
        (roles.teams_group(config.event), "group of every team login"),
        (roles.mentors_group(config.event), "group of mentors and their per-team logins (read the shared data)"),
        (roles.data_owner(config.event), "owner of the shared dataset schemas"),
    ):
        if group in facts.roles:
            out.append(Change("role", group, "keep", "exists"))
            continue
        stmts: list = [
            sql.SQL("CREATE ROLE {} NOLOGIN NOINHERIT").format(sql.Identifier(group)),
            sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(group), sql.Literal(mark)),
        ]
        if not facts.admin_superuser:
            stmts.append(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(group)))
        out.append(Change("role", group, "create", why, statements=stmts))
    return out


def end_sessions(role: str) -> sql.Composable:
    """Ends every session of a login (NOLOGIN alone lets the open ones run on)."""
    return sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {} "
                   "AND pid <> pg_backend_pid()").format(sql.Literal(role))


def refuse_logins(role: str) -> list[sql.Composable]:
    return [sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)), end_sessions(role)]


def _login_attr_problems(fact: RoleFact, login: Login, *, locked: bool = False) -> list[str]:
    bad = [a for a in ("superuser", "createdb", "createrole", "replication", "bypassrls") if getattr(fact, a)]
    if not fact.login and not locked:
        bad.append("nologin")
    if not fact.inherit:
        bad.append("noinherit")
    if fact.connlimit != login.policy.connection_limit:
        bad.append(f"connection limit {fact.connlimit}")
    return bad


def _login_changes(config: EventConfig, facts: Facts, login: Login, secret_for: Callable[[str], str],
                   stored: set[str], *, locked: bool = False) -> list[Change]:
    ident = sql.Identifier(login.role)
    mark = MARK.format(event=config.event)
    fact = facts.roles.get(login.role)
    limit = sql.Literal(login.policy.connection_limit)
    attrs = sql.SQL(("NOLOGIN" if locked else "LOGIN") + " NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                    "NOBYPASSRLS INHERIT CONNECTION LIMIT {}")
    what = f"login of {login.kind} {login.name}" if login.person else \
        f"login of mentor {login.name} for team {login.team} (reads that team only)"
    if fact is None:
        stmts: list = [
            sql.SQL("CREATE ROLE {} ").format(ident) + attrs.format(limit)
            + sql.SQL(" IN ROLE {}").format(sql.Identifier(login.group)),
            sql.SQL("COMMENT ON ROLE {} IS {}").format(ident, sql.Literal(mark)),
            password_statement(login.role, secret_for),
            *(_set_role_setting(login.role, k, v) for k, v in role_settings(login).items()),
        ]
        if not facts.admin_superuser:
            stmts.append(sql.SQL("GRANT {} TO CURRENT_USER").format(ident))
        return [Change("role", login.role, "create", what, statements=stmts)]
    if fact.comment != mark:
        return [Change("role", login.role, "blocked",
                       "a role of that name exists and was not made by datathon for this event; "
                       "rename the team or drop that role")]
    out = []
    if locked and (fact.login or facts.sessions.get(login.role)):
        # the organizer's lock is wanted state: `up` keeps it (and ends a session that got in before it)
        out.append(Change("role", login.role, "update", f"{what}: locked, so logins refused and its sessions "
                          "ended (`datathon unlock` lets it in again)", statements=refuse_logins(login.role)))
    bad = _login_attr_problems(fact, login, locked=locked)
    if bad:
        out.append(Change("role", login.role, "update", f"reset attributes ({', '.join(bad)})",
                          statements=[sql.SQL("ALTER ROLE {} ").format(ident) + attrs.format(limit)]))
    if (login.role, login.group) not in facts.memberships:
        out.append(Change("role", login.role, "update", f"add to {login.group}",
                          statements=[sql.SQL("GRANT {} TO {}").format(sql.Identifier(login.group), ident)]))
    out += policy_restore(fact, login)
    if login.role not in stored:
        out.append(Change("role", login.role, "update", "password reset: its secret file is missing",
                          statements=[password_statement(login.role, secret_for)]))
    elif login.role in facts.changed_passwords:
        # a role may change its own password (a team, or a team's code run by a mentor): the handouts' one wins
        out.append(Change("role", login.role, "update", "password changed on the server: set back to its handout's",
                          statements=[password_statement(login.role, secret_for)]))
    if not facts.admin_superuser and (facts.admin, login.role) not in facts.memberships:
        out.append(Change("role", login.role, "update", "let the administrator manage it",
                          statements=[sql.SQL("GRANT {} TO CURRENT_USER").format(ident)]))
    return out or [Change("role", login.role, "keep", "locked (logins refused)" if locked else
                          "exists with the wanted attributes and policy")]


def policy_restore(fact: RoleFact, login: Login) -> list[Change]:
    """The changes that put the login's policy settings back as wanted (`up` plans them; the watcher applies them
    every few seconds, since a role may change its own settings): one change per kind of drift, pure."""
    ident = sql.Identifier(login.role)
    out = []
    wanted = role_settings(login)
    drift = [k for k, v in wanted.items() if _norm(fact.config.get(k, "")) != _norm(v)]  # role-wide
    if drift:
        out.append(Change("role", login.role, "update", f"policy: {', '.join(drift)}",
                          statements=[_set_role_setting(login.role, k, wanted[k]) for k in drift]))
    extra = sorted(set(fact.config) - set(wanted))
    if extra:
        # settings datathon never made (e.g. `role`, which would start every later session as another role)
        out.append(Change("role", login.role, "update", f"remove settings it was not given: {', '.join(extra)}",
                          statements=[sql.SQL("ALTER ROLE {} RESET {}").format(ident, sql.Identifier(k))
                                      for k in extra]))
    for dbname, settings in sorted(fact.db_config.items()):
        # ALTER ROLE ... IN DATABASE wins over the role's own settings: a team lifting its limits in one database
        out.append(Change("role", login.role, "update",
                          f"remove its own settings in database {dbname} ({', '.join(sorted(settings))})",
                          statements=[sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(
                              ident, sql.Identifier(dbname))]))
    return out


def policy_drift(fact: RoleFact, login: Login) -> list[str]:
    """The policy settings this role does not have as wanted, where the server would apply them: role-wide,
    or overridden in one database. Computed from observed facts (`status` and `plan` share it)."""
    wanted = role_settings(login)
    out = [k for k, v in wanted.items() if _norm(fact.config.get(k, "")) != _norm(v)]
    out += sorted(set(fact.config) - set(wanted))
    for dbname, settings in sorted(fact.db_config.items()):
        out += [f"{k} in {dbname}" for k in sorted(settings)]
    return out


def _database_changes(config: EventConfig, facts: Facts, dbname: str) -> list[Change]:
    """The database itself and its database-level privileges."""
    e = config.event
    ident = sql.Identifier(dbname)
    groups = [roles.teams_group(e), roles.mentors_group(e)]
    db = facts.databases.get(dbname)
    out = []
    if db is None:
        out.append(Change("database", dbname, "create", "event database", autocommit=True, statements=[
            sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(ident),
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident, sql.Literal(MARK.format(event=e))),
        ]))
        current: set = set()
    else:
        made = db.comment == MARK.format(event=e)
        out.append(Change("database", dbname, "keep", "exists" if made else "exists (adopted, not made by datathon)"))
        current = db.grants
    wanted = {(g, "CONNECT") for g in groups}
    if config.policy.temp_tables:
        wanted |= {(g, "TEMPORARY") for g in groups}
    public = {p for g, p in current if g == "PUBLIC"}
    stmts: list = []
    if db is None or public:
        stmts.append(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident))
    for grantee, priv in sorted(wanted - current):
        stmts.append(sql.SQL("GRANT {} ON DATABASE {} TO {}").format(sql.SQL(priv), ident, sql.Identifier(grantee)))
    if not config.policy.temp_tables:
        for g in groups:
            if (g, "TEMPORARY") in current:
                stmts.append(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM {}").format(ident, sql.Identifier(g)))
    if stmts:
        out.append(Change("grant", f"database {dbname}", "update" if db else "create",
                          "only the event's teams and mentors may connect", database=None, statements=stmts))
    return out


def _schema_grants(dbname: str, schema: str, owner: str, readers: list[str], facts: Facts,
                   *, kind: str, create_reason: str, who: str) -> list[Change]:
    """A schema owned by `owner`, readable (now and later tables) by `readers`; nothing for PUBLIC."""
    db = facts.databases.get(dbname)
    fact = db.schemas.get(schema) if db else None
    s = sql.Identifier(schema)
    target = f"{dbname}.{schema}"
    out: list[Change] = []
    if fact is None:
        out.append(Change("schema", target, "create", create_reason, database=dbname, statements=[
            sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(s, sql.Identifier(owner)),
        ]))
        grants: set = set()
    else:
        grants = fact.grants
        if fact.owner != owner and kind == "team":
            out.append(Change("schema", target, "update", f"owner is {fact.owner}, should be {owner}", database=dbname,
                              statements=[sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(s, sql.Identifier(owner))]))
        else:
            why = "exists" if fact.owner == owner else f"exists (owner {fact.owner})"
            out.append(Change("schema", target, "keep", why))
        owner = fact.owner if kind == "shared" else owner
    stmts: list = []
    # A team schema is for its team and the mentors only; a shared schema must at least not be public.
    strangers = sorted({g for g, _ in grants} - {owner, *readers}) if kind == "team" else (
        ["PUBLIC"] if any(g == "PUBLIC" for g, _ in grants) else [])
    for g in strangers:
        stmts.append(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(
            s, sql.SQL("PUBLIC") if g == "PUBLIC" else sql.Identifier(g)))
    if kind == "team" and db is not None:
        # Default privileges for anyone but the readers (e.g. all mentors, as events before per-team mentor
        # logins had): revoked, with what they already granted on the schema's tables.
        for g in sorted({r for o, sch, r, _ in db.default_acls if o == owner and sch == schema} - {owner, *readers}):
            grantee = sql.SQL("PUBLIC") if g == "PUBLIC" else sql.Identifier(g)
            stmts.append(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} REVOKE ALL ON TABLES FROM {}")
                         .format(sql.Identifier(owner), s, grantee))
            stmts.append(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(s, grantee))
            strangers.append(g)
    for r in readers:
        if (r, "USAGE") not in grants:
            stmts.append(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, sql.Identifier(r)))
        # Tables already there: a reader made in this run has no grants yet; an old one may lack some.
        if fact is not None and fact.tables and (r not in facts.roles or db.missing_select.get((schema, r))):
            stmts.append(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, sql.Identifier(r)))
        if db is None or (owner, schema, r, "SELECT") not in db.default_acls:
            stmts.append(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON TABLES TO {}")
                         .format(sql.Identifier(owner), s, sql.Identifier(r)))
    if stmts:
        out.append(Change("grant", target, "update" if fact else "create",
                          f"{who} read it (also tables made later)" + ("; others revoked" if strangers else ""),
                          database=dbname, statements=stmts))
    return out


def _public_schema(config: EventConfig, facts: Facts, dbname: str) -> list[Change]:
    db = facts.databases.get(dbname)
    fact = db.schemas.get("public") if db else None
    if fact is not None and ("PUBLIC", "CREATE") not in fact.grants:
        return []
    return [Change("grant", f"{dbname}.public", "update", "nobody but the owner creates in public", database=dbname,
                   statements=[sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC")])]


def _removed_logins(config: EventConfig, facts: Facts, wanted: list[Login], *, drop_team_data: bool) -> list[Change]:
    e = config.event
    wanted_roles = {w.role for w in wanted}
    out = []
    for group, kind in ((roles.teams_group(e), "team"), (roles.mentors_group(e), "mentor")):
        for role in facts.members_of(group):
            fact = facts.roles.get(role)
            # only logins datathon made for this event: never an administrator or a DBA's own role
            if role in wanted_roles or role == facts.admin or fact is None or fact.comment != MARK.format(event=e):
                continue
            name = role.removeprefix(f"{e}_")
            who = f"{kind} {name}"
            if "__" in name and kind == "mentor":  # a mentor's login for one team
                who = "the login of mentor {} for team {}".format(*name.split("__", 1))
            if fact.login or facts.sessions.get(role):
                # at once, whatever happens to its data (its handout, which holds the password, goes too)
                out.append(Change("role", role, "update", f"{who} left the file: logins refused, its sessions "
                                  "ended", statements=refuse_logins(role)))
            owned = {db: f.schemas[name] for db, f in facts.databases.items()
                     if name in f.schemas and f.schemas[name].owner == role}
            with_tables = [f"{db}.{name} ({s.tables} tables)" for db, s in owned.items() if s.tables]
            if with_tables and not drop_team_data:
                out.append(Change("role", role, "blocked",
                                  f"{who} left the file but its schema holds data: {', '.join(with_tables)}; "
                                  "run `datathon up --drop-team-data` to delete it (archive it first)"))
                continue
            # ARCHIVE-FIRST: the archive verb (issue 16) puts its "archive team <name>" change before these drops
            for db in facts.databases:
                stmts = []
                if db in owned:
                    stmts.append(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
                stmts.append(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                out.append(Change("schema" if db in owned else "grant", f"{db}.{name}", "drop",
                                  f"{who} left the event file", database=db, statements=stmts, destructive=True))
            out.append(Change("role", role, "drop", f"{who} left the event file", destructive=True,
                              statements=[sql.SQL("DROP ROLE {}").format(sql.Identifier(role))]))
    return out


def _granted_logins(facts: Facts, logins: list[Login]) -> list[Change]:
    """Memberships in a login role. Some PostgreSQL releases let a session user grant membership in its own role
    (15.18 refuses it), so a team, or a team's code run by a mentor, could hand its login to another: revoked.
    The administrator's own membership (for a non-superuser admin, to manage the roles) stays."""
    ours = {x.role for x in logins}
    out = []
    for member, granted in sorted(facts.memberships):
        if granted in ours and member != facts.admin:
            out.append(Change("role", granted, "update", f"revoke its membership granted to {member}",
                              statements=[sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(granted),
                                                                              sql.Identifier(member))]))
    return out


def plan_tenancy(config: EventConfig, facts: Facts, *, secret_for: Callable[[str], str], stored_secrets: set[str],
                 drop_team_data: bool = False, locked: frozenset[str] = frozenset()) -> list[Change]:
    """Every change needed for the event's roles, databases, schemas and grants (pure: no I/O). `locked`: the
    team logins an organizer locked out (core.access), kept NOLOGIN.

    A lock is the team's own login only, not its mentors' logins for it: those read nothing the team could not,
    and the organizers need them to look at a locked team's work (to judge it, or to decide on unlocking)."""
    e = config.event
    teams_g, mentors_g, owner = roles.teams_group(e), roles.mentors_group(e), roles.data_owner(e)
    logins = wanted_logins(config)
    changes = _group_changes(config, facts)
    if not facts.admin_superuser and (facts.admin, owner) not in facts.memberships and owner in facts.roles:
        changes.append(Change("role", owner, "update", "let the administrator load data as it",
                              statements=[sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(owner))]))
    for login in logins:
        changes += _login_changes(config, facts, login, secret_for, stored_secrets, locked=login.role in locked)
    for db in config.databases:
        changes += _database_changes(config, facts, db.name)
        changes += _public_schema(config, facts, db.name)
        for schema in db.readable_schemas:
            changes += _schema_grants(db.name, schema, owner, [teams_g, mentors_g], facts, kind="shared",
                                      create_reason="shared dataset schema", who="teams and mentors")
        for login in logins:
            if login.kind == "team":
                changes += _schema_grants(db.name, login.name, login.role, team_readers(config, login.name), facts,
                                          kind="team", create_reason=f"team {login.name}'s own schema",
                                          who="its mentors' logins for it")
    changes += _granted_logins(facts, logins)
    changes += _removed_logins(config, facts, logins, drop_team_data=drop_team_data)
    return changes


def teardown_tenancy(config: EventConfig, facts: Facts) -> list[Change]:
    """On a server datathon did not create: drop the event's databases (those it made) and roles."""
    mark = MARK.format(event=config.event)
    out = []
    for name, db in facts.databases.items():
        if db.comment == mark:
            out.append(Change("database", name, "drop", "made by datathon for this event", autocommit=True,
                              destructive=True, statements=[
                                  sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))]))
        else:
            out.append(Change("schema", f"{name}.*", "drop", "team schemas and grants in an adopted database",
                              database=name, destructive=True, statements=[
                                  *(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(r))
                                    for r in sorted(facts.roles) if facts.roles[r].comment == mark),
                                  # what was loaded went with its owner: forget that it was loaded
                                  sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(META_SCHEMA))]))
    ours = sorted(r for r, f in facts.roles.items() if f.comment == mark)
    logins = [r for r in ours if facts.roles[r].login]
    for r in logins + [r for r in ours if r not in logins]:
        out.append(Change("role", r, "drop", "made by datathon for this event", destructive=True,
                          statements=[sql.SQL("DROP ROLE {}").format(sql.Identifier(r))]))
    return out


__all__ = ["META_SCHEMA", "Login", "plan_tenancy", "policy_drift", "policy_restore", "teardown_tenancy", "wanted_logins"]
