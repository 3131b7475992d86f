"""The database section of a handout: where to connect, and snippets that work when pasted."""

from __future__ import annotations

from urllib.parse import quote

from datathon.config import EventConfig
from datathon.core.clientfiles import pgpass, team_services
from datathon.core.endpoint import Endpoint
from datathon.core.handout import Item, Section, Snippet
from datathon.database.tenancy import Login


def database_section(config: EventConfig, login: Login, endpoint: Endpoint, password: str) -> Section:
    db = config.databases[0].name
    names = ", ".join(d.name for d in config.databases)
    shared = [s for d in config.databases for s in d.readable_schemas]
    h, p, u, ssl = endpoint.host, endpoint.port, login.role, endpoint.sslmode
    example = shared[0] if shared else "public"
    list_tables = (
        "SELECT table_schema, table_name FROM information_schema.tables "
        f"WHERE table_schema = '{example}' ORDER BY 1, 2"
    )
    items = [
        Item("Host", h),
        Item("Port", str(p)),
        Item("Database" + ("s" if len(config.databases) > 1 else ""), names),
        Item("User", u),
        Item("Password", password, secret=True),
        Item("TLS (sslmode)", ssl),
        Item("Shared data (read-only)", ", ".join(shared) or "none"),
    ]
    if login.kind == "team":
        items.append(Item("Your own schema (read and write)", login.name))
        intro = (f"Your tables go in schema {login.name}; it comes first on your search path, so "
                 f"CREATE TABLE cohort AS SELECT ... lands there. Mentors can read it; other teams cannot.")
    else:
        intro = ("This login reads the shared data. To read a team's schema you use a login of yours for that team "
                 "(see \"Reading the teams' work\" below).")
    items.append(Item("Search path (in this order)", ", ".join(login.search_path)))
    intro += " " + search_path_note(config, login)
    snippets = [
        Snippet("What your laptop needs (in the workspace everything is installed)", "shell",
                f"pip install {' '.join(LAPTOP_PIP)}\n"
                "# R: install.packages(c(\"DBI\", \"RPostgreSQL\"))   psql: the postgresql-client package"),
        Snippet("psql", "shell",
                f'psql "host={h} port={p} dbname={db} user={u} sslmode={ssl}"\n'
                f"# the password is asked for; or keep it in ~/.pgpass (mode 0600):\n"
                f"#   {h}:{p}:*:{u}:{password}"),
        Snippet("Python (SQLAlchemy + pandas)", "python",
                "import pandas as pd\nfrom sqlalchemy import create_engine\n\n"
                f'engine = create_engine("postgresql+psycopg://{quote(u)}:{quote(password)}@{h}:{p}/{db}'
                f'?sslmode={ssl}")\n'
                f'tables = pd.read_sql("{list_tables}", engine)\nprint(tables)'),
        Snippet("Python (psycopg)", "python",
                "import psycopg\n\n"
                f'with psycopg.connect(host="{h}", port={p}, dbname="{db}", user="{u}",\n'
                f'                     password="{password}", sslmode="{ssl}") as conn:\n'
                '    print(conn.execute("SELECT current_user, current_schema()").fetchone())'),
        Snippet("R (DBI + RPostgreSQL)", "r",
                "library(DBI)\n"
                f'Sys.setenv(PGSSLMODE = "{ssl}")\n'
                f'con <- dbConnect(RPostgreSQL::PostgreSQL(), host = "{h}", port = {p},\n'
                f'                 dbname = "{db}", user = "{u}", password = "{password}")\n'
                f'dbGetQuery(con, "{list_tables}")\n'
                "dbDisconnect(con)"),
    ]
    return Section("database", "Database", intro=intro, items=items, snippets=snippets, order=20)


# The Python snippets' packages, for a laptop (the workspace has them); quoted for any shell.
LAPTOP_PIP = ["pandas", "'SQLAlchemy>=2'", "'psycopg[binary]>=3.1'"]


def search_path_note(config: EventConfig, login: Login) -> str:
    """How an unqualified name is found, with the event's own clash as the example when its datasets have one
    (MIMIC-IV-ED and eICU both have `diagnosis`)."""
    order = [s for s in login.search_path if s not in ("$user", "public")]
    note = (f"An unqualified table name is looked up in your search path, in order ({', '.join(order)}): the first "
            "schema that has it wins. Write schema.table to be sure")
    for db in config.databases:
        for table, schemas in db.known_tables().items():
            held = [s for s in order if s in schemas]
            if len(held) > 1:
                return (note + f": `{table}` is in {' and '.join(held)}; unqualified, it means {held[0]}.{table}, "
                        f"so write {held[1]}.{table} for the other.")
    example = next((s for s in order if s != login.name), None)
    return note + (f", e.g. {example}.some_table." if example else ".")


def mentor_teams_section(config: EventConfig, login: Login, endpoint: Endpoint,
                         team_logins: list[tuple[Login, str]]) -> Section:
    """A mentor's logins, one per team: each reads that team's schema and the shared data, nothing else."""
    items = []
    for team_login, password in team_logins:
        items += [Item(f"Team {team_login.team}: user", team_login.role),
                  Item(f"Team {team_login.team}: password", password, secret=True)]
    first = team_logins[0][0].team if team_logins else "TEAM"
    first_login = team_logins[0][0].role if team_logins else "LOGIN"
    tables_of = f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{first}'"
    services = team_services(config, endpoint, {x.team: x.role for x, _ in team_logins}).decode()
    lines = pgpass(endpoint, [(x.role, p) for x, p in team_logins]).decode()
    intro = ("You read each team's schema through a login of your own for that team. It can read that team's schema "
             "and the shared data, nothing else, and cannot write: whatever a team's tables, views or functions do "
             "when you look at them, they cannot reach another team's work or your other logins. In your workspace "
             "~/.pg_service.conf names one service per team (the passwords are in ~/.pgpass); on a laptop, save the "
             "two files below.")
    snippets = [
        Snippet("Read a team (terminal)", "shell", f"psql service={first} -c '\\dt {first}.*'"),
        Snippet("Read a team (Python)", "python",
                "import pandas as pd\nimport psycopg\n\n"
                f'with psycopg.connect(service="{first}") as conn:\n'
                f'    print(pd.read_sql("{tables_of}", conn))'),
        Snippet("Read a team (R)", "r",
                "library(DBI)\n"
                f'con <- dbConnect(RPostgreSQL::PostgreSQL(), user = "{first_login}")  # the rest: environment\n'
                f'dbGetQuery(con, "{tables_of}")'),
        Snippet("~/.pg_service.conf", "text", services.rstrip()),
        Snippet("~/.pgpass (mode 0600)", "text", lines.rstrip()),
    ]
    return Section("mentor_teams", "Reading the teams' work", intro=intro, items=items, snippets=snippets,
                   order=25)


def pgadmin_servers(config: EventConfig, login: Login, endpoint: Endpoint, team_logins: list[Login] = ()) -> dict:
    """pgAdmin 4 (7.0+) servers.json: File > Import/Export Servers. A mentor gets one more per team login."""
    servers = {}
    for db in config.databases:
        for who in [login, *team_logins]:
            label = who.name if who.team is None else f"team {who.team}"
            servers[str(len(servers) + 1)] = {
                "Name": f"{config.event} {db.name} ({label})",
                "Group": config.title or config.event,
                "Host": endpoint.host,
                "Port": endpoint.port,
                "MaintenanceDB": db.name,
                "Username": who.role,
                "ConnectionParameters": {"sslmode": endpoint.sslmode, "connect_timeout": 10},
            }
    return {"Servers": servers}
