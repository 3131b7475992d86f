"""`datathon status`: what runs, where, and how each member's logins look, as every part observes it."""

from __future__ import annotations

from datathon.core.context import Context
from datathon.engine import EventStatus, event_status
from datathon.providers import get_provider


def run_status(ctx: Context) -> EventStatus:
    return event_status(ctx.config.event, get_provider(ctx).parts())
