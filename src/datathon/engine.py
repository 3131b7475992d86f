"""Observe -> plan -> apply for a whole event. The commands are thin layers over these functions."""

from __future__ import annotations

from dataclasses import dataclass, field

from datathon.database.facts import Facts, observe, scram_matches
from datathon.database.server import DatabaseServer
from datathon.database.sources import plan_sources
from datathon.database.tenancy import plan_tenancy, wanted_logins
from datathon.plan import Change, Plan
from datathon.providers.base import Context
from datathon.storage.sync import plan_storage


def stored_secrets(ctx: Context) -> set[str]:
    return {login.role for login in wanted_logins(ctx.config) if ctx.state.secret_path(login.role).exists()}


def secret_for(ctx: Context):
    def get(role: str) -> str:
        return ctx.state.secret(role)  # generated and stored 0600 on first use, before the role is made

    return get


def password_changed(ctx: Context):
    """Reads the stored secret (never creates one) and compares it with the server's verifier."""
    def changed(role: str, verifier: str) -> bool:
        secret = ctx.state.secret(role, create=False)
        return secret is not None and not scram_matches(verifier, secret)

    return changed


def data_plan(ctx: Context, facts: Facts, *, drop_team_data: bool = False,
              server: DatabaseServer | None = None) -> list[Change]:
    """Tenancy and shared data, from observed facts. With a server, bulk sources get their loaders."""
    changes = plan_tenancy(ctx.config, facts, secret_for=secret_for(ctx), stored_secrets=stored_secrets(ctx),
                           drop_team_data=drop_team_data, password_changed=password_changed(ctx))
    bulk = describe = None
    if server is not None:
        from datathon.datasets.run import bulk_factory, describe_source

        bulk = bulk_factory(ctx, server)
        describe = describe_source(server)
    return changes + plan_sources(ctx.config, facts, ctx.loaded.base_dir, bulk, describe)


@dataclass
class EventPlan(Plan):
    """A whole event's plan: the server's part, then the data part (None when it could not be observed)."""

    infra: list[Change] = field(default_factory=list)
    storage: list[Change] = field(default_factory=list)  # imaging store and dataset pushes
    data: list[Change] | None = None
    observed: bool = False  # the data part was planned from the server's real facts
    workspaces: list[Change] = field(default_factory=list)

    @property
    def blocked_infra(self) -> list[Change]:
        """Blocked changes that stop `up` before it touches anything."""
        return [c for c in self.infra + self.storage + self.workspaces if c.action == "blocked"]


def full_plan(ctx: Context, server: DatabaseServer, *, drop_team_data: bool = False) -> EventPlan:
    """What `up` would do, touching nothing. For a server still to be made, the data part is planned as for
    an empty server (exact for a new managed cluster); for a stopped one it cannot be observed yet."""
    from datathon.workspaces.plan import plan_workspaces

    infra = server.plan()
    plan = EventPlan(changes=list(infra), infra=infra)
    plan.storage = plan_storage(ctx)
    plan.extend(plan.storage)
    plan.workspaces = plan_workspaces(ctx, server.endpoint())
    if server.is_reachable():
        facts = observe(server, ctx.config)
        plan.observed = True
    elif server.exists():
        plan.notes.append("the database server is not running: roles and schemas are checked once `up` starts it")
        plan.extend(plan.workspaces)
        return plan
    else:
        facts = Facts(admin="datathon", admin_superuser=True)
        plan.notes.append("the database server does not exist yet: roles and schemas are planned as for an empty one")
    plan.data = data_plan(ctx, facts, drop_team_data=drop_team_data, server=server)
    plan.extend(plan.data)
    plan.extend(plan.workspaces)
    return plan
