"""The workspace section of a handout: where to log in, and what the team finds there."""

from __future__ import annotations

from datathon.config import EventConfig
from datathon.core.handout import Item, Section, Snippet
from datathon.core.roster import Member


def workspace_section(config: EventConfig, member: Member, password: str) -> Section | None:
    ws = config.workspaces
    if ws is None or not ws.hub:
        return None
    from datathon.workspaces.hub import public_url

    url = public_url(ws)
    team = next((t for t in config.team_list if t.name == member.name and member.kind == "team"), None)
    items = [
        Item("Address", url),
        Item("User name", member.login),
        Item("Password (as for the database)", password, secret=True),
        Item("Kernels", "Python 3 and R"),
    ]
    if team is not None:
        n = team.gpu_count
        items.append(Item("GPUs", f"{n} (CUDA_VISIBLE_DEVICES is set for you)" if n else "none"))
    if ws.idle_seconds:
        items.append(Item("Idle servers stop after", ws.idle_timeout + " (your files stay)"))
    intro = ("Open the address in a browser and log in: JupyterLab starts in your own home folder, which no other "
             "team can read. The database needs no settings there: psql, Python and R connect with no arguments "
             "(PGHOST, PGUSER, ... and ~/.pgpass are set up). Start with the notebooks in ~/examples.")
    snippets = [
        Snippet("In a JupyterLab terminal", "shell", "psql -c 'SELECT current_user, current_schema()'"),
        Snippet("In a Python notebook", "python",
                "import pandas as pd\nfrom sqlalchemy import create_engine\n\n"
                "engine = create_engine('postgresql+psycopg://')  # settings come from the environment\n"
                "pd.read_sql('SELECT current_user, current_schema()', engine)"),
        Snippet("In an R notebook", "r",
                "library(DBI)\ncon <- dbConnect(RPostgreSQL::PostgreSQL())  # settings come from the environment\n"
                'dbGetQuery(con, "SELECT current_user, current_schema()")'),
    ]
    return Section("workspace", "Workspace (JupyterLab)", intro=intro, items=items, snippets=snippets, order=10)
