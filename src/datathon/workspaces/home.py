"""What a team finds in its home: a .pgpass, the server's certificate, example notebooks, ~/datasets.

With these and the PG* variables the hub sets, psql, psycopg, SQLAlchemy and R's DBI connect with no arguments.
Files are written as root into a folder the team owns, so every write goes through fsutil (no link followed).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from datathon.config import EventConfig
from datathon.core import clientfiles
from datathon.core.endpoint import Endpoint
from datathon.core.fsutil import make_dir_owned, open_dir, read_plain, write_owned
from datathon.core.state import StateStore
from datathon.workspaces import sandbox
from datathon.workspaces.accounts import Account


@dataclass
class HomeFile:
    path: str  # relative to the home folder
    data: bytes
    mode: int
    overwrite: bool  # False: the team may edit it; written only when missing


def pg_environment(config: EventConfig, acct: Account, endpoint: Endpoint) -> dict[str, str]:
    """The libpq variables of a team's server: every client library reads them."""
    return {"PGHOST": endpoint.host, "PGPORT": str(endpoint.port), "PGUSER": acct.user,
            "PGDATABASE": config.databases[0].name, "PGSSLMODE": endpoint.sslmode}


def user_environment(config: EventConfig, state: StateStore, accts: list[Account],
                     endpoint: Endpoint) -> dict[str, dict[str, str]]:
    """What the hub gives each team's server: libpq's variables, its GPUs and its private TMPDIR."""
    env = {}
    for a in accts:
        e = pg_environment(config, a, endpoint)
        # No GPU unless assigned: an empty CUDA_VISIBLE_DEVICES hides every device from that team.
        e["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in a.gpus)
        e["TMPDIR"] = str(sandbox.tmpdir(state, a.user))  # private: /tmp is shared by every team
        env[a.user] = e
    return env


def _notebook(cells: list[tuple[str, str]], kernel: dict) -> bytes:
    nb = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": kernel},
        "cells": [
            {"cell_type": kind, "id": f"cell-{i}", "metadata": {}, "source": src,
             **({"execution_count": None, "outputs": []} if kind == "code" else {})}
            for i, (kind, src) in enumerate(cells)
        ],
    }
    return (json.dumps(nb, indent=1) + "\n").encode()


# Row counts from the statistics (instant, where count(*) on chartevents takes minutes).
SIZES_SQL = ("SELECT n.nspname AS schema_name, c.relname AS table_name, "
             "GREATEST(c.reltuples, s.n_live_tup, 0)::bigint AS n_rows "
             "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
             "LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid "
             "WHERE c.relkind IN ('r', 'p') AND {in_shared} ORDER BY n_rows DESC, 1, 2")


def python_example(shared: list[str]) -> bytes:
    return _notebook([
        ("markdown", "# Querying the event database from Python\n"
                     "The connection comes from the environment (`PGHOST`, `PGUSER`, ...) and `~/.pgpass`: "
                     "no password in the notebook. Shared data is read-only; your tables go in your own schema, "
                     "first on your search path."),
        ("code", "import psycopg\nimport pandas as pd\nimport matplotlib.pyplot as plt\n"
                 "from sqlalchemy import create_engine\n\n"
                 "with psycopg.connect() as conn:\n"
                 "    print(conn.execute('SELECT current_user, current_database(), current_schema()').fetchone())\n"
                 "engine = create_engine('postgresql+psycopg://')  # same settings, for pandas"),
        ("code", f"SHARED = {json.dumps(shared or ['-'])}  # the event's shared, read-only schemas\n"
                 f"sql = {SIZES_SQL.format(in_shared='n.nspname = ANY(%(shared)s)')!r}\n"
                 "sizes = pd.read_sql(sql, engine, params={'shared': SHARED})\n"
                 "sizes.head(20)"),
        ("code", "# Write a table into your own schema, then read it back\n"
                 "sizes.to_sql('example_table_sizes', engine, if_exists='replace', index=False)\n"
                 "pd.read_sql('SELECT count(*) AS n FROM example_table_sizes', engine)"),
        ("code", "top = sizes.head(10)\n"
                 "if top.empty:\n"
                 "    print('no shared tables yet')\n"
                 "else:\n"
                 "    top.plot.barh(x='table_name', y='n_rows', legend=False, title='Largest shared tables')\n"
                 "    plt.xlabel('rows (estimate)')\n"
                 "    plt.show()"),
        ("code", "import os\n"
                 "folder = os.path.expanduser('~/datasets')\n"
                 "print(sorted(os.listdir(folder))[:20] if os.path.isdir(folder) else 'no ~/datasets on this server')"),
    ], {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"})


def r_example(shared: list[str]) -> bytes:
    shared_r = ", ".join(f'"{s}"' for s in shared or ["-"])
    return _notebook([
        ("markdown", "# Querying the event database from R\n"
                     "DBI with RPostgreSQL; the connection comes from the environment and `~/.pgpass`."),
        ("code", "library(DBI)\n"
                 "con <- dbConnect(RPostgreSQL::PostgreSQL())\n"
                 'dbGetQuery(con, "SELECT current_user, current_database(), current_schema()")'),
        ("code", f"shared <- c({shared_r})  # the event's shared, read-only schemas\n"
                 "schemas <- paste(dbQuoteString(con, shared), collapse = \", \")\n"
                 f"sql <- sprintf({json.dumps(SIZES_SQL.format(in_shared='n.nspname IN (%s)'))}, schemas)\n"
                 "sizes <- dbGetQuery(con, sql)\n"
                 "head(sizes, 20)"),
        ("code", "# Write a table into your own schema, then read it back\n"
                 'dbWriteTable(con, "example_table_sizes_r", sizes, overwrite = TRUE, row.names = FALSE)\n'
                 'dbGetQuery(con, "SELECT count(*) AS n FROM example_table_sizes_r")'),
        ("code", "top <- head(sizes, 10)\n"
                 "if (nrow(top) == 0) print(\"no shared tables yet\") else\n"
                 "  barplot(rev(as.numeric(top$n_rows)), names.arg = rev(top$table_name), horiz = TRUE, las = 1,\n"
                 "          main = \"Largest shared tables\", cex.names = 0.6)"),
        ("code", "dbDisconnect(con)"),
    ], {"name": "ir", "display_name": "R", "language": "R"})


def home_files(config: EventConfig, acct: Account, endpoint: Endpoint, password: str,
               team_logins: list[tuple[str, str, str]] = ()) -> list[HomeFile]:
    """`team_logins`: for a mentor, (team, login, password) of its login for each team."""
    shared = list(dict.fromkeys(s for d in config.databases for s in d.readable_schemas))
    creds = [(acct.user, password)] + [(login, pw) for _, login, pw in team_logins]
    files = [HomeFile(".pgpass", clientfiles.pgpass(endpoint, creds), 0o600, True)]
    if team_logins:  # a service per team: psql service=alpha, psycopg.connect(service="alpha")
        services = clientfiles.team_services(config, endpoint, {team: login for team, login, _ in team_logins})
    else:  # a service per event database: psql service=mimic
        services = clientfiles.database_services(config, endpoint, acct.user)
    files.append(HomeFile(".pg_service.conf", services, 0o600, True))
    files += login_files(pg_environment(config, acct, endpoint))
    if endpoint.ca_cert and endpoint.ca_cert.exists():
        # libpq then verifies the server's certificate even under sslmode=require.
        files.append(HomeFile(".postgresql/root.crt", endpoint.ca_cert.read_bytes(), 0o644, True))
    files += [HomeFile("examples/01-python-sql.ipynb", python_example(shared), 0o644, False),
              HomeFile("examples/02-r-sql.ipynb", r_example(shared), 0o644, False)]
    return files


DATABASE_ENV = ".config/datathon/database.env"
BASH_PROFILE = """# Written by datathon (`datathon up` rewrites it; put your own settings in ~/.profile, read below).
# The event database's settings for login shells: ssh, `su -`, `bash -l -c` in cron.
if [ -r "$HOME/{env}" ]; then set -a; . "$HOME/{env}"; set +a; fi
if [ -f "$HOME/.profile" ]; then . "$HOME/.profile"; fi
"""


def login_files(variables: dict[str, str]) -> list[HomeFile]:
    """The database settings for every way a team reaches its machine, not only the hub (which sets them itself):
    login shells (~/.bash_profile reads them), R (~/.Renviron), and the team environment's Python, whose
    datathon-database-env.pth reads the same file for any process of a team (runuser, cron, nbconvert). No secret in them."""
    header = "Written by datathon (`datathon up` rewrites it): libpq's settings for the event database"
    env = clientfiles.env_file(variables, header)
    return [HomeFile(DATABASE_ENV, env, 0o644, True),
            HomeFile(".bash_profile", BASH_PROFILE.format(env=DATABASE_ENV).encode(), 0o644, True),
            HomeFile(".Renviron", clientfiles.env_file(
                variables, header + "; your own R settings go in ~/.Rprofile (Sys.setenv)"), 0o644, True)]


def stale_files(acct: Account, files: list[HomeFile]) -> list[HomeFile]:
    """The files that are missing, or differ where datathon owns the content."""
    out = []
    for f in files:
        current = read_plain(acct.home / f.path)
        if current is None or (f.overwrite and current != f.data):
            out.append(f)
    return out


def write_files(acct: Account, files: list[HomeFile], uid: int, gid: int) -> list[str]:
    """Write the files; whatever the team put where one goes is moved aside (never followed, never fatal).
    Returns what was moved aside, for the report."""
    moved = []
    for f in files:
        target = acct.home / f.path
        for parent in reversed([p for p in target.relative_to(acct.home).parents if p != Path(".")]):
            aside = make_dir_owned(acct.home / parent, uid=uid, gid=gid,
                                   mode=0o700 if parent.name.startswith(".") else 0o755)
            if aside:
                moved.append(f"~/{parent}: {aside}")
        if aside := write_owned(target, f.data, uid=uid, gid=gid, mode=f.mode):
            moved.append(f"~/{f.path}: {aside}")
    return moved


def datasets_link(acct: Account, folder: Path) -> str:
    """`ok` when ~/datasets points at the event's dataset folder, `missing`, or `other` (the team's own thing,
    which stays)."""
    try:
        with open_dir(acct.home) as dfd:
            return "ok" if os.readlink("datasets", dir_fd=dfd) == str(folder) else "other"
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "other"


def link_datasets(acct: Account, folder: Path, uid: int, gid: int) -> None:
    """~/datasets -> the event's dataset folder, read-only to teams by that folder's own permissions."""
    with open_dir(acct.home) as dfd:
        os.symlink(str(folder), "datasets", dir_fd=dfd)
        os.chown("datasets", uid, gid, dir_fd=dfd, follow_symlinks=False)
