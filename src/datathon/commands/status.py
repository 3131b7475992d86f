"""`datathon status`: what runs, where, and how each team's database login looks."""

from __future__ import annotations

from dataclasses import dataclass, field

from datathon.database import roles
from datathon.database.facts import observe
from datathon.database.server import ComponentStatus
from datathon.database.tenancy import wanted_logins
from datathon.providers import get_provider
from datathon.providers.base import Context
from datathon.storage.sync import storage_status


@dataclass
class LoginStatus:
    kind: str
    name: str
    role: str
    exists: bool
    schemas: str  # e.g. "2/2"
    connections: int

    def as_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class StatusResult:
    event: str
    components: list[ComponentStatus]
    logins: list[LoginStatus] = field(default_factory=list)
    servers: list = field(default_factory=list)  # workspaces.lifecycle.ServerStatus per team and mentor

    @property
    def healthy(self) -> bool:
        return all(c.healthy for c in self.components) and all(login.exists for login in self.logins)

    def as_dict(self) -> dict:
        return {"event": self.event, "healthy": self.healthy,
                "components": [c.as_dict() for c in self.components],
                "logins": [x.as_dict() for x in self.logins],
                "workspaces": [x.as_dict() for x in self.servers]}


def run_status(ctx: Context) -> StatusResult:
    from datathon.workspaces.lifecycle import workspace_status

    config = ctx.config
    server = get_provider(ctx).database_server()
    result = StatusResult(event=config.event, components=server.status() + storage_status(ctx))
    ws_components, result.servers = workspace_status(ctx)
    if not server.is_reachable():
        result.components += ws_components
        return result
    facts = observe(server, config)
    with server.connect(autocommit=True) as conn:
        conns = dict(conn.execute(
            "SELECT usename, count(*) FROM pg_stat_activity WHERE starts_with(usename, %s) GROUP BY 1",
            (f"{config.event}_",),
        ).fetchall())
    for login in wanted_logins(config):
        present = sum(
            1 for db in config.databases
            if login.kind == "team" and db.name in facts.databases and login.name in facts.databases[db.name].schemas
        )
        result.logins.append(LoginStatus(
            kind=login.kind, name=login.name, role=login.role, exists=login.role in facts.roles,
            schemas=f"{present}/{len(config.databases)}" if login.kind == "team" else "-",
            connections=conns.get(login.role, 0),
        ))
    missing = [d.name for d in config.databases if d.name not in facts.databases]
    result.components.append(ComponentStatus(
        "database", "event databases", "missing" if missing else "ok",
        f"missing: {', '.join(missing)}" if missing else ", ".join(d.name for d in config.databases),
        healthy=not missing,
    ))
    from datathon.database.sources import source_identity

    for db in config.databases:
        if not db.sources or db.name not in facts.databases:
            continue
        loaded = facts.databases[db.name].loaded_sources
        names = [source_identity(src, ctx.loaded.base_dir)[0] for src in db.sources]
        missing = [n for n in names if n not in loaded]
        result.components.append(ComponentStatus(
            "data", f"sources of {db.name}", "loaded" if not missing else "incomplete",
            f"{len(names) - len(missing)}/{len(names)} loaded"
            + (f"; not yet: {', '.join(missing)}" if missing else ""),
            healthy=not missing,
        ))
    groups = [roles.teams_group(config.event), roles.mentors_group(config.event)]
    result.components.append(ComponentStatus(
        "database", "per-team limits", "enforced",
        f"by PostgreSQL role settings: {config.policy.connection_limit} connections, statement_timeout "
        f"{config.policy.statement_timeout}, temp_file_limit {config.policy.temp_file_limit} "
        f"({', '.join(groups)})",
    ))
    result.components += ws_components
    return result
