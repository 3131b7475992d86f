"""The storage part of an event: the imaging store and its datasets, on the provider's object store."""

from __future__ import annotations

from collections.abc import Callable

from datathon.core.context import Context
from datathon.core.handout import Section
from datathon.core.part import Part, PartStatus
from datathon.core.plan import Change
from datathon.core.roster import Member
from datathon.storage.sync import plan_storage, storage_leftovers, storage_status, teardown_storage


class StoragePart(Part):
    name = "storage"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def observe(self):
        # Not yet split into facts and a pure plan: planning is deferred until the plan is asked for.
        return lambda: plan_storage(self.ctx)

    def plan(self, facts) -> list[Change]:
        return facts()

    def status(self, facts) -> PartStatus:
        return PartStatus(storage_status(self.ctx))

    def teardown(self, facts) -> list[Change]:
        return teardown_storage(self.ctx)

    def leftovers(self) -> list[str]:
        return storage_leftovers(self.ctx)

    def gone(self) -> list[tuple[str, str]]:
        cfg = self.ctx.config.storage
        return [(f"imaging store {cfg.location(self.ctx.config.event)}", "verified gone")] if cfg else []

    def handout(self, member: Member, secret: Callable[[str], str]) -> list[Section]:
        from datathon.storage.handout import storage_section

        section = storage_section(self.ctx.config, member)
        return [section] if section else []
