"""`datathon plan`: what `up` would change, touching nothing (no secret, cache or state is written)."""

from __future__ import annotations

from datathon.core.context import Context
from datathon.engine import EventPlan, plan_up
from datathon.errors import ProvisionError
from datathon.providers import get_provider
from datathon.providers.base import Provider


def ready_provider(ctx: Context) -> Provider:
    """The event's provider, once it says it can act here (credentials, rights); otherwise how to fix it."""
    provider = get_provider(ctx)
    ok, fix = provider.check_credentials()
    if not ok:
        raise ProvisionError(f"provider {provider.name!r} cannot act from here", hint=fix)
    return provider


def plan_event(ctx: Context, *, drop_team_data: bool = False) -> EventPlan:
    return plan_up(ready_provider(ctx).parts(drop_team_data=drop_team_data))
