"""The database section of a handout: where to connect, and snippets that work when pasted."""

from __future__ import annotations

from urllib.parse import quote

from datathon.config import EventConfig
from datathon.database.server import Endpoint
from datathon.database.tenancy import Login
from datathon.handouts.model import Item, Section, Snippet


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
        intro = "As a mentor you may read the shared data and every team's schema; you cannot change them."
    snippets = [
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
    return Section("database", "Database", intro=intro, items=items, snippets=snippets)


def pgadmin_servers(config: EventConfig, login: Login, endpoint: Endpoint) -> dict:
    """pgAdmin 4 (7.0+) servers.json: File > Import/Export Servers."""
    servers = {}
    for i, db in enumerate(config.databases, start=1):
        servers[str(i)] = {
            "Name": f"{config.event} {db.name} ({login.name})",
            "Group": config.title or config.event,
            "Host": endpoint.host,
            "Port": endpoint.port,
            "MaintenanceDB": db.name,
            "Username": login.role,
            "ConnectionParameters": {"sslmode": endpoint.sslmode, "connect_timeout": 10},
        }
    return {"Servers": servers}
