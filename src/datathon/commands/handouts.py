"""`datathon handouts`: rewrite every member's handout and the organizer roster from what the parts say."""

from __future__ import annotations

from pathlib import Path

from datathon.core.context import Context
from datathon.errors import StateError
from datathon.handouts import HandoutFiles, build_handouts
from datathon.providers import get_provider


def write_handouts(ctx: Context) -> tuple[list[HandoutFiles], Path]:
    if not ctx.state.exists():
        raise StateError(f"event {ctx.config.event!r} has not been brought up yet", hint="run `datathon up` first")
    return build_handouts(ctx, get_provider(ctx).parts())
