"""`datathon plan`: what `up` would change, touching nothing (no secret, cache or state is written)."""

from __future__ import annotations

from datathon.core.context import Context
from datathon.engine import EventPlan, plan_up, preflight
from datathon.errors import PreflightError, ProvisionError
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
    parts = ready_provider(ctx).parts(drop_team_data=drop_team_data)
    problems = preflight(parts)
    p = plan_up(parts)
    p.preflight = problems
    return p


def check_preflight(parts: list) -> None:
    """Stop before anything changes when this machine would stop the event (every problem at once)."""
    problems = preflight(parts)
    if problems:
        n = len(problems)
        raise PreflightError(f"this machine would stop the event ({n} problem{'s' if n != 1 else ''}); nothing "
                             "was changed", problems=problems, hint="fix these, then run the command again")
