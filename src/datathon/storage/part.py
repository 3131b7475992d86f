"""The storage part of an event: the imaging store and its datasets, on the provider's object store.

observe() -> StorageFacts (read-only: the hash cache and push journal are read, never written); plan(facts) and
teardown(facts) are pure and hand out changes whose `run` does the work at apply time; status(facts) and
leftovers() report what was observed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from datathon.core.context import Context
from datathon.core.handout import Section
from datathon.core.part import Part, PartStatus, Purpose
from datathon.core.plan import Change
from datathon.core.roster import Member
from datathon.storage.base import ObjectStore
from datathon.storage.facts import StorageFacts
from datathon.storage.observe import observe_storage
from datathon.storage.planner import leftovers, plan_changes, status_rows, teardown_changes


class StoragePart(Part):
    name = "storage"

    def __init__(self, ctx: Context, store: ObjectStore | None = None) -> None:
        self.ctx = ctx
        self._given = store  # the provider's object store; None: the one the event file describes

    @cached_property
    def store(self) -> ObjectStore | None:
        if self.ctx.config.storage is None:
            return None
        if self._given is not None:
            return self._given
        from datathon.storage import get_store

        return get_store(self.ctx)

    @cached_property
    def runner(self):
        from datathon.storage.sync import StorageRunner

        return StorageRunner(self.ctx, self.store)

    def observe(self, purpose: Purpose = "plan") -> StorageFacts | None:
        """Only a plan hashes the dataset folders (to know what to push); status and teardown read the store."""
        if self.store is None:
            return None
        return observe_storage(self.ctx, self.store, folders=purpose == "plan")

    def plan(self, facts: StorageFacts | None) -> list[Change]:
        return plan_changes(facts, self.runner)

    def status(self, facts: StorageFacts | None) -> PartStatus:
        return PartStatus(status_rows(facts))

    def teardown(self, facts: StorageFacts | None) -> list[Change]:
        return teardown_changes(facts, self.runner)

    def leftovers(self) -> list[str]:
        return leftovers(observe_storage(self.ctx, self.store, folders=False)) if self.store is not None else []

    def gone(self) -> list[tuple[str, str]]:
        cfg = self.ctx.config.storage
        return [(f"imaging store {cfg.location(self.ctx.config.event)}", "verified gone")] if cfg else []

    def handout(self, member: Member, secret: Callable[[str], str]) -> list[Section]:
        from datathon.storage.handout import storage_section

        section = storage_section(self.ctx.config, member, self._manifests)
        return [section] if section else []

    @cached_property
    def _manifests(self) -> dict:
        """The datasets' manifests as the store holds them now (read once per handout run)."""
        from datathon.errors import ProvisionError
        from datathon.storage.transfer import stored_manifest

        cfg, found = self.ctx.config.storage, {}
        for d in (cfg.datasets if cfg is not None and self.store is not None else []):
            try:
                found[d.name] = stored_manifest(self.store, d.name)
            except ProvisionError:
                continue  # not pushed yet: the handout says only how to fetch everything
        return found
