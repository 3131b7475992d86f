"""`datathon state recover`: rebuild the local state folder's record of what the event made, from what the provider
finds by tags (a laptop lost, a state folder deleted). Secrets made only here (private keys, passwords) cannot come
back: what is missing is said, and `up` replaces it."""

from __future__ import annotations

from datathon.commands.plan import ready_provider
from datathon.core.context import Context


def run_recover(ctx: Context) -> list[tuple[str, str]]:
    provider = ready_provider(ctx)
    with ctx.state.lock():
        return provider.recover()
