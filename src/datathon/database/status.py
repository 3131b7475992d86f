"""`status` of the event's data part: each login as observed (its policy drift, connections, schema size,
temporary files), the event databases and sources, the limits as the server applies them."""

from __future__ import annotations

from dataclasses import dataclass, field

from datathon.core.context import Context
from datathon.core.part import PartStatus
from datathon.core.status import ComponentStatus
from datathon.database.facts import Facts
from datathon.database.server import DatabaseServer
from datathon.database.tenancy import policy_drift, wanted_logins
from datathon.database.usage import admin
from datathon.database.usage import usage as shared_usage


@dataclass
class LoginStatus:
    kind: str
    name: str
    role: str
    exists: bool
    schemas: str  # e.g. "2/2"; for a mentor, its per-team logins present, e.g. "3/3 teams"
    connections: int
    drift: list[str] = field(default_factory=list)  # policy settings not as wanted (observed, not the file's)
    schema_bytes: int | None = None  # a team's own schema, all databases
    temp_bytes: int | None = None  # temporary files its sessions hold now (None: not visible to this admin)
    over_quota: bool = False
    title: str = ""  # a team's display name
    # "open", or "locked" (an organizer's lock, logins refused); anything else says what is wrong
    access: str = "open"

    @property
    def healthy(self) -> bool:
        return self.exists and not self.drift and self.access in ("open", "locked")

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _access(fact, locked: bool) -> str:
    if fact is None:
        return "open" if not locked else "locked"
    if locked:
        return "locked" if not fact.login else "locked in state, but logins allowed (`datathon lock` again)"
    return "open" if fact.login else "logins refused on the server (`datathon up` or `unlock` allows them)"


def data_status(ctx: Context, server: DatabaseServer, facts: Facts) -> PartStatus:
    from datathon.core import access

    config = ctx.config
    locked = access.locked(ctx.state)
    result = PartStatus()
    result.tables["logins"] = []
    usage = shared_usage(server, config, [db.name for db in config.databases if db.name in facts.databases])
    with admin(server) as conn:
        conns = dict(conn.execute(
            "SELECT usename::text, count(*) FROM pg_catalog.pg_stat_activity"
            " WHERE pg_catalog.starts_with(usename, %s) GROUP BY 1", (f"{config.event}_",),
        ).fetchall())
    logins = wanted_logins(config)
    titles = {t.name: t.title or "" for t in config.team_list}
    for login in (x for x in logins if x.person):
        # a mentor's logins for each team count as the mentor's
        own = [login] + [x for x in logins if x.kind == "mentor_team" and x.name == login.name]
        drift = [f"{x.role}: {d}" if x is not login else d
                 for x in own if x.role in facts.roles for d in policy_drift(facts.roles[x.role], x)]
        if login.kind == "team":
            present = sum(1 for db in config.databases
                          if db.name in facts.databases and login.name in facts.databases[db.name].schemas)
            schemas = f"{present}/{len(config.databases)}"
        else:
            schemas = f"{sum(1 for x in own[1:] if x.role in facts.roles)}/{len(own) - 1} teams"
        size = usage.sizes.get(login.name) if login.kind == "team" else None
        temp = sum(usage.temp.get(x.role, 0) for x in own)
        result.tables["logins"].append(LoginStatus(
            kind=login.kind, name=login.name, role=login.role, exists=all(x.role in facts.roles for x in own),
            schemas=schemas, connections=sum(conns.get(x.role, 0) for x in own), drift=drift,
            schema_bytes=size, temp_bytes=temp if usage.temp_visible else None,
            over_quota=usage.quota is not None and size is not None and size > usage.quota,
            title=titles.get(login.name, "") if login.kind == "team" else "",
            access=_access(facts.roles.get(login.role), login.kind == "team" and login.name in locked),
        ))
    if held := removed_holding_data(config, facts):
        result.components.append(ComponentStatus(
            "database", "removed teams", "holding data",
            "left the event file, logins refused, schemas kept: " + "; ".join(held)
            + " (`datathon up --drop-team-data` deletes them; archive them first)"))
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
    drifted = [f"{x.name}: {', '.join(x.drift)}" for x in result.tables["logins"] if x.drift]
    p = config.policy
    result.components.append(ComponentStatus(
        "database", "per-team limits", "drifted" if drifted else "enforced",
        ("observed settings differ from the policy (`datathon up` restores them): " + "; ".join(drifted)) if drifted
        else f"observed on every login: {p.connection_limit} connections, statement_timeout {p.statement_timeout}, "
             f"temp_file_limit {p.temp_file_limit}, work_mem {p.work_mem} (role defaults: a session may SET its "
             "own statement_timeout and work_mem, and the watcher of `datathon serve` or `watch` still cancels a "
             "statement past the event's timeout and puts back a setting a team changed on its role)",
        healthy=not drifted,
    ))
    over = [x.name for x in result.tables["logins"] if x.over_quota]
    if p.disk_quota is not None:
        result.components.append(ComponentStatus(
            "database", "team disk quota", "exceeded" if over else "ok",
            (f"over {p.disk_quota}: {', '.join(over)}" if over else f"every team's schema under {p.disk_quota}")
            + " (reported, not enforced: PostgreSQL has no per-schema quota)", healthy=not over))
    return result


def removed_holding_data(config, facts: Facts) -> list[str]:
    """Teams that left the file whose schema still holds tables: '<team>: db.schema (N tables), ...'."""
    from datathon.core import roster
    from datathon.database.tenancy import MARK

    wanted = {x.role for x in wanted_logins(config)}
    out = []
    for role in facts.members_of(roster.teams_group(config.event)):
        fact = facts.roles.get(role)
        if role in wanted or fact is None or fact.comment != MARK.format(event=config.event):
            continue
        name = role.removeprefix(f"{config.event}_")
        held = [f"{db}.{name} ({f.schemas[name].tables} tables)" for db, f in sorted(facts.databases.items())
                if name in f.schemas and f.schemas[name].owner == role and f.schemas[name].tables]
        if held:
            out.append(f"{name}: {', '.join(held)}" + ("" if not fact.login else " (its logins still allowed)"))
    return out
