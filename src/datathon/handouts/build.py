"""Write every team's and mentor's handout (HTML, Markdown, pgAdmin servers.json) and the organizer roster."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from datathon.config import EventConfig
from datathon.database.server import Endpoint
from datathon.database.tenancy import Login, mentor_team_logins, wanted_logins
from datathon.handouts.database import database_section, mentor_teams_section, pgadmin_servers
from datathon.handouts.model import Handout, Section
from datathon.handouts.storage import storage_section
from datathon.handouts.workspace import workspace_section
from datathon.providers.base import Context
from datathon.state import write_private

SectionBuilder = Callable[[EventConfig, Login, Endpoint, str], Section | None]

# The parts of the environment that appear on a handout, in order. Later parts (workspace address and login,
# SSH key, imaging-data access) add their builder here.
SECTION_BUILDERS: list[SectionBuilder] = [workspace_section, database_section, storage_section]


@dataclass
class HandoutFiles:
    name: str
    kind: str
    html: Path
    markdown: Path
    pgadmin: Path


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("datathon.handouts", "templates"),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build_handouts(ctx: Context, endpoint: Endpoint) -> tuple[list[HandoutFiles], Path]:
    """Render all handouts into the state folder (files 0600). Returns them and the roster path."""
    config = ctx.config
    out_dir = ctx.state.handouts_dir
    env = _env()
    html_t, md_t = env.get_template("handout.html.j2"), env.get_template("handout.md.j2")
    members = {t.name: [(m.name, m.email or "") for m in t.members] for t in config.team_list}
    emails = {m.name: m.email or "" for m in config.mentors}
    files: list[HandoutFiles] = []
    roster = io.StringIO()
    writer = csv.writer(roster)
    writer.writerow(["kind", "name", "members", "emails", "db_user", "db_password", "host", "port", "databases",
                     "sslmode", "workspace", "handout"])
    workspace = ""
    if config.workspaces is not None and config.workspaces.hub:
        from datathon.workspaces.hub import public_url

        workspace = public_url(config.workspaces)
    for login in (x for x in wanted_logins(config) if x.person):
        password = ctx.state.secret(login.role)
        sections = [s for b in SECTION_BUILDERS if (s := b(config, login, endpoint, password)) is not None]
        team_logins = [(x, ctx.state.secret(x.role)) for x in mentor_team_logins(config, login.name)]
        if login.kind == "mentor":
            at = next((i + 1 for i, s in enumerate(sections) if s.key == "database"), len(sections))
            sections.insert(at, mentor_teams_section(config, login, endpoint, team_logins))
        handout = Handout(event=config.event, title=config.title or config.event, kind=login.kind, name=login.name,
                          members=members.get(login.name, []), sections=sections)
        stem = f"{login.kind}-{login.name}"
        f = HandoutFiles(login.name, login.kind, out_dir / f"{stem}.html", out_dir / f"{stem}.md",
                         out_dir / f"{stem}-pgadmin-servers.json")
        write_private(f.html, html_t.render(h=handout))
        write_private(f.markdown, md_t.render(h=handout))
        write_private(f.pgadmin, json.dumps(pgadmin_servers(config, login, endpoint, [x for x, _ in team_logins]),
                                             indent=2) + "\n")
        files.append(f)
        people = members.get(login.name, [])
        writer.writerow([
            login.kind, login.name, "; ".join(n for n, _ in people),
            "; ".join(e for _, e in people if e) or emails.get(login.name, ""),
            login.role, password, endpoint.host, endpoint.port, " ".join(d.name for d in config.databases),
            endpoint.sslmode, workspace, f.html.name,
        ])
    roster_path = out_dir / "roster.csv"
    write_private(roster_path, roster.getvalue())
    if endpoint.ca_cert and endpoint.ca_cert.exists():
        write_private(out_dir / "server-ca.crt", endpoint.ca_cert.read_bytes())
    return files, roster_path
