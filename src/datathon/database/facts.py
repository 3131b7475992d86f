"""Read-only observation of what an event's tenancy looks like on a server right now."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from datathon.config import EventConfig
from datathon.core import roster as roles
from datathon.database.server import DatabaseServer

META_SCHEMA = "datathon_meta"
Grant = tuple[str, str]  # (grantee or "PUBLIC", privilege)


@dataclass
class RoleFact:
    name: str
    login: bool
    superuser: bool
    createdb: bool
    createrole: bool
    replication: bool
    bypassrls: bool
    inherit: bool
    connlimit: int
    config: dict[str, str]
    comment: str | None
    # settings the role has only in one database (ALTER ROLE ... IN DATABASE d SET ...): database -> settings.
    # They win over the role-wide ones, so a team could lift its limits there.
    db_config: dict[str, dict[str, str]] = field(default_factory=dict)
    # the stored SCRAM verifier, where the administrator may read it (a superuser); None elsewhere (RDS)
    verifier: str | None = None


@dataclass
class SchemaFact:
    owner: str
    grants: set[Grant]
    tables: int


@dataclass
class DatabaseFact:
    comment: str | None
    grants: set[Grant]
    schemas: dict[str, SchemaFact]
    # (owner role, schema, grantee, privilege) for default privileges on tables
    default_acls: set[tuple[str, str, str, str]]
    # (schema, grantee) -> number of tables in that schema the grantee cannot SELECT
    missing_select: dict[tuple[str, str], int]
    loaded_sources: dict[str, str]  # source name -> sha256


@dataclass
class Facts:
    admin: str
    admin_superuser: bool
    roles: dict[str, RoleFact] = field(default_factory=dict)
    memberships: set[tuple[str, str]] = field(default_factory=set)  # (member, group)
    databases: dict[str, DatabaseFact] = field(default_factory=dict)
    # logins whose password on the server is no longer the stored secret: filled in by whoever may read both
    # (the data part, from the verifiers above and the state folder); empty when nobody could tell
    changed_passwords: set[str] = field(default_factory=set)
    # open sessions per event login (pg_stat_activity): a locked or removed login's must be ended
    sessions: dict[str, int] = field(default_factory=dict)

    def members_of(self, group: str) -> list[str]:
        return sorted(m for m, g in self.memberships if g == group)


def parse_role_config(entries: list[str] | None) -> dict[str, str]:
    out = {}
    for entry in entries or []:
        key, _, value = entry.partition("=")
        out[key] = value
    return out


def observe(server: DatabaseServer, config: EventConfig) -> Facts:
    """One query for roles, one connection per existing event database."""
    prefix = f"{config.event}_"
    with server.connect(autocommit=True) as conn:
        admin, superuser = conn.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        facts = Facts(admin=admin, admin_superuser=superuser)
        for row in conn.execute(
            "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls,"
            " rolinherit, rolconnlimit, rolconfig, shobj_description(oid, 'pg_authid')"
            " FROM pg_roles WHERE starts_with(rolname, %s)",
            (prefix,),
        ):
            facts.roles[row[0]] = RoleFact(*row[:9], parse_role_config(row[9]), row[10])
        for role, dbname, setconfig in conn.execute(
            "SELECT r.rolname, coalesce(d.datname, s.setdatabase::text), s.setconfig FROM pg_db_role_setting s"
            " JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase"
            " WHERE s.setdatabase <> 0 AND starts_with(r.rolname, %s)",
            (prefix,),
        ):
            if role in facts.roles:
                facts.roles[role].db_config[dbname] = parse_role_config(setconfig)
        if superuser:  # any role may change its own password: find a password datathon did not set
            for role, verifier in conn.execute(
                "SELECT rolname, rolpassword FROM pg_authid WHERE starts_with(rolname, %s)", (prefix,)
            ):
                if role in facts.roles:
                    facts.roles[role].verifier = verifier
        facts.sessions = dict(conn.execute(
            "SELECT usename, count(*) FROM pg_stat_activity WHERE starts_with(usename, %s) GROUP BY 1", (prefix,)
        ).fetchall())
        facts.memberships = set(conn.execute(
            "SELECT m.rolname, g.rolname FROM pg_auth_members a"
            " JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.roleid"
            " WHERE starts_with(g.rolname, %s) OR starts_with(m.rolname, %s)",
            (prefix, prefix),
        ).fetchall())
        existing = {
            name: comment
            for name, comment in conn.execute(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = ANY(%s)",
                ([d.name for d in config.databases],),
            )
        }
    for db in config.databases:
        if db.name in existing:
            facts.databases[db.name] = _observe_database(server, config, db.name, existing[db.name], facts)
    return facts


def _observe_database(server: DatabaseServer, config: EventConfig, dbname: str, comment: str | None,
                      facts: Facts) -> DatabaseFact:
    with server.connect(dbname, autocommit=True) as conn:
        grants = set(conn.execute(
            "SELECT coalesce(pg_get_userbyid(NULLIF(a.grantee, 0)), 'PUBLIC'), a.privilege_type"
            " FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
            " WHERE d.datname = current_database()"
        ).fetchall())
        schemas: dict[str, SchemaFact] = {}
        for name, owner, tables in conn.execute(
            "SELECT n.nspname, pg_get_userbyid(n.nspowner),"
            " (SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind IN ('r','p','v','m','f'))"
            " FROM pg_namespace n WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"
        ):
            schemas[name] = SchemaFact(owner=owner, grants=set(), tables=tables)
        for name, grantee, priv in conn.execute(
            "SELECT n.nspname, coalesce(pg_get_userbyid(NULLIF(a.grantee, 0)), 'PUBLIC'), a.privilege_type"
            " FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a"
            " WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"
        ):
            schemas[name].grants.add((grantee, priv))
        default_acls = set(conn.execute(
            "SELECT pg_get_userbyid(d.defaclrole), coalesce(n.nspname, ''),"
            " coalesce(pg_get_userbyid(NULLIF(a.grantee, 0)), 'PUBLIC'), a.privilege_type"
            " FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace,"
            " aclexplode(d.defaclacl) a WHERE d.defaclobjtype = 'r'"
        ).fetchall())
        missing: dict[tuple[str, str], int] = {}
        # the groups, and every mentor's per-team login (each reads one team's schema)
        readers = [g for g in (roles.teams_group(config.event), roles.mentors_group(config.event)) if g in facts.roles]
        readers += facts.members_of(roles.mentors_group(config.event))
        if readers:
            for schema, grantee, count in conn.execute(
                "SELECT n.nspname, r.rolname, count(*) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " CROSS JOIN pg_roles r"
                " WHERE r.rolname = ANY(%s) AND c.relkind IN ('r','p','v','m','f')"
                " AND n.nspname !~ '^pg_' AND n.nspname NOT IN ('information_schema', %s)"
                " AND NOT has_table_privilege(r.oid, c.oid, 'SELECT')"
                " GROUP BY 1, 2",
                (readers, META_SCHEMA),
            ):
                missing[(schema, grantee)] = count
        loaded: dict[str, str] = {}
        if META_SCHEMA in schemas and schemas[META_SCHEMA].tables:
            loaded = dict(conn.execute(
                sql.SQL("SELECT name, sha256 FROM {}.loaded_sources").format(sql.Identifier(META_SCHEMA))
            ).fetchall())
    return DatabaseFact(comment=comment, grants=grants, schemas=schemas, default_acls=default_acls,
                        missing_select=missing, loaded_sources=loaded)



def scram_matches(verifier: str, password: str) -> bool:
    """Whether a SCRAM-SHA-256 verifier (as pg_authid stores it) was made from `password` (RFC 5802/7677):
    SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>. Passwords datathon makes are ASCII, for which
    SASLprep changes nothing."""
    import base64
    import hashlib
    import hmac

    try:
        method, rest = verifier.split("$", 1)
        params, keys = rest.split("$", 1)
        iterations, salt = params.split(":", 1)
        stored_key, _ = keys.split(":", 1)
        if method != "SCRAM-SHA-256":
            return False
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), base64.b64decode(stored_key))
