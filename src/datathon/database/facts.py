"""Read-only observation of what an event's tenancy looks like on a server right now."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from datathon.config import EventConfig
from datathon.database import roles
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
        readers = [g for g in (roles.teams_group(config.event), roles.mentors_group(config.event)) if g in facts.roles]
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

