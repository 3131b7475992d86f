"""`datathon plan`: what `up` would change, touching nothing (no secret, cache or state is written)."""

from __future__ import annotations

from datathon.core.context import Context
from datathon.engine import EventPlan, plan_up
from datathon.providers import get_provider


def plan_event(ctx: Context, *, drop_team_data: bool = False) -> EventPlan:
    return plan_up(get_provider(ctx).parts(drop_team_data=drop_team_data))
