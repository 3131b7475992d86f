"""libpq's own files, as a person's home or laptop holds them: ~/.pgpass and ~/.pg_service.conf.

A mentor reads each team through a login for that team (see tenancy); a service per team lets a notebook pick the
team by name (`psycopg.connect(service="alpha")`, `psql service=alpha`) with the password from ~/.pgpass.
"""

from __future__ import annotations

from datathon.config import EventConfig
from datathon.core.endpoint import Endpoint


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def pgpass(endpoint: Endpoint, credentials: list[tuple[str, str]]) -> bytes:
    """One line per (user, password), for every database of this server."""
    host = _pgpass_escape(endpoint.host)
    return "".join(f"{host}:{endpoint.port}:*:{_pgpass_escape(u)}:{_pgpass_escape(p)}\n"
                   for u, p in credentials).encode()


def database_services(config: EventConfig, endpoint: Endpoint, user: str) -> bytes:
    """A pg_service.conf with one service per event database, as `user` (no password: ~/.pgpass has it)."""
    lines = ["# Written by datathon (`datathon up` rewrites it): one service per event database.",
             "# psql service=DATABASE   |   psycopg.connect(service='DATABASE')   |   "
             "dbConnect(RPostgres::Postgres(), service = 'DATABASE')"]
    for db in config.databases:
        lines += ["", f"[{db.name}]", f"host={endpoint.host}", f"port={endpoint.port}", f"dbname={db.name}",
                  f"user={user}", f"sslmode={endpoint.sslmode}"]
    return ("\n".join(lines) + "\n").encode()


def env_file(variables: dict[str, str], header: str) -> bytes:
    """KEY=value lines: read by a shell (`set -a; . FILE`), by R as ~/.Renviron, and by the team environment's
    Python at start (no secret: passwords stay in ~/.pgpass)."""
    return (f"# {header}\n" + "".join(f"{k}={v}\n" for k, v in variables.items())).encode()


def team_services(config: EventConfig, endpoint: Endpoint, logins: dict[str, str]) -> bytes:
    """A pg_service.conf with one service per team: `logins` maps team name -> the login that reads it. No
    password in it (they stay in ~/.pgpass, mode 0600)."""
    lines = ["# Written by datathon: one service per team, for reading that team's schema.",
             "# psql service=TEAM   |   psycopg.connect(service='TEAM')   |   add dbname=... for another database"]
    for team, user in logins.items():
        lines += ["", f"[{team}]", f"host={endpoint.host}", f"port={endpoint.port}",
                  f"dbname={config.databases[0].name}", f"user={user}", f"sslmode={endpoint.sslmode}"]
    return ("\n".join(lines) + "\n").encode()
