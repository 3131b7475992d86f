"""`datathon scale database --class C [--storage-gb N]`: resize the event's database server now (RDS), shown in a
plan with the price difference and asked first, since a class change is a few minutes' outage. The request is
recorded so that later `up`s keep it (until a scale step of the file that comes later in time); declined or
the request is forgotten; a run that fails after it was confirmed keeps it (the next `up` finishes it)."""

from __future__ import annotations

from datathon.commands.plan import ready_provider
from datathon.commands.up import UpResult, run_up
from datathon.core.context import Context
from datathon.errors import Aborted, ConfigError


def run_scale(ctx: Context, *, instance_class: str | None, storage_gb: int | None, yes: bool) -> UpResult:
    if instance_class is None and storage_gb is None:
        raise ConfigError("nothing to scale", hint="give --class (e.g. db.r6g.2xlarge) and/or --storage-gb")
    server = ready_provider(ctx).database_server()
    with ctx.state.lock():
        undo = server.scale(instance_class=instance_class, storage_gb=storage_gb)
    try:
        return run_up(ctx, yes=yes)
    except Aborted:
        with ctx.state.lock():
            undo()  # declined: the request is not kept for a later `up`
        raise
