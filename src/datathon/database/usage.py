"""What teams use on the server (schema bytes, temporary files), read by `status` and the watcher, over
administrator connections that never run a team's code.

A team owns a schema in every event database, and may put functions and operators in it. The administrator is a
superuser: a function of the team's found before pg_catalog's on the search path (say, `pg_total_relation_size(oid)`,
a closer match than pg_catalog's `(regclass)`) would run with every right. The administrator's default search path
is `"$user", public`, and a team may be named like the administrator's role (a team `datathon` owns schema
`datathon`). So every connection here searches pg_catalog only (`admin`), and the statements name pg_catalog's
functions too (operators and types are found there first once the path holds nothing else)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import psycopg

from datathon.database.server import DatabaseServer

SAFE_SEARCH_PATH = "pg_catalog, pg_temp"  # pg_temp last: never searched for functions or operators anyway

_SIZE_UNITS = {"": 1, "B": 1, "kB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40, "PB": 2**50}


def size_bytes(text: str | None) -> int | None:
    """A size as PostgreSQL's pg_size_bytes reads it (units of 1024), without asking the server."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(B|kB|MB|GB|TB|PB)?\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not a size")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2) or ""]


def safe(conn: psycopg.Connection) -> psycopg.Connection:
    """Make an administrator's connection search pg_catalog only (see the module docstring)."""
    conn.execute("SELECT pg_catalog.set_config('search_path', %s, false)", (SAFE_SEARCH_PATH,))
    return conn


@contextlib.contextmanager
def admin(server: DatabaseServer, dbname: str | None = None) -> Iterator[psycopg.Connection]:
    """An autocommit administrator's connection to `dbname` that never finds a team's function or operator."""
    with server.connect(dbname, autocommit=True) as conn:
        yield safe(conn)


SCHEMA_SIZES = (
    "SELECT n.nspname::text, coalesce(pg_catalog.sum(pg_catalog.pg_total_relation_size(c.oid::regclass)),"
    " 0)::int8 FROM pg_catalog.pg_namespace n LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid"
    " AND c.relkind IN ('r', 'm', 'p') WHERE n.nspname = ANY(%s::name[]) GROUP BY 1"
)

# superuser or pg_monitor: a file pgsql_tmp<pid>.<n> belongs to the session (or worker) <pid>
TEMP_BYTES = (
    "SELECT a.usename::text, pg_catalog.sum(f.size)::int8 FROM pg_catalog.pg_ls_tmpdir() f"
    " JOIN pg_catalog.pg_stat_activity a ON f.name LIKE 'pgsql_tmp' || a.pid || '.%%'"
    " WHERE a.usename = ANY(%s::name[]) GROUP BY 1"
)


def schema_sizes(server: DatabaseServer, databases: Iterable[str], teams: list[str]) -> dict[str, int]:
    """team -> bytes of its schema (tables, their indexes and TOAST) summed over `databases` (which must
    exist): one connection and one query per database, whatever the number of teams."""
    sizes: dict[str, int] = {}
    for db in databases:
        with admin(server, db) as conn:
            for schema, size in conn.execute(SCHEMA_SIZES, (teams,)):
                sizes[schema] = sizes.get(schema, 0) + size
    return sizes


def temp_bytes(conn: psycopg.Connection, logins: list[str]) -> dict[str, int] | None:
    """login -> bytes of temporary files its sessions hold now; None when this administrator may not see them."""
    try:
        return dict(conn.execute(TEMP_BYTES, (logins,)).fetchall())
    except psycopg.errors.InsufficientPrivilege:
        return None


@dataclass
class Usage:
    sizes: dict[str, int]  # team -> bytes of its schema in every event database
    temp: dict[str, int]  # role -> bytes of temporary files its sessions hold now
    temp_visible: bool
    quota: int | None


def usage(server: DatabaseServer, config, databases: Iterable[str]) -> Usage:
    """Schema sizes of every team in the event `databases` that exist, and the temporary files of every event
    login's sessions (for `status`)."""
    from datathon.database.tenancy import wanted_logins

    sizes = schema_sizes(server, databases, [t.name for t in config.team_list])
    with admin(server) as conn:
        temp = temp_bytes(conn, [x.role for x in wanted_logins(config)])
    return Usage(sizes, temp or {}, temp is not None, size_bytes(config.policy.disk_quota))
