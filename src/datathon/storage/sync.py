"""The storage part's work at apply time, and the functions `plan`, `up`, `status`, `down` and `data push` call.

observe (`storage/observe.py`, read-only) -> plan (`storage/planner.py`, pure) -> apply: every change runs through
a `run=` callable of `StorageRunner`; pushes re-check the store when they run, so a plan made a while ago never
sends a file twice. Only here is anything written: the store, its policies, the state record, the hash cache and
the journal of a push.
"""

from __future__ import annotations

from collections.abc import Mapping

from datathon.core import unix
from datathon.core.context import Context
from datathon.core.plan import Change
from datathon.core.status import ComponentStatus
from datathon.errors import ProvisionError
from datathon.storage import get_store
from datathon.storage.base import ObjectStore
from datathon.storage.observe import observe_storage, policies, state_dir
from datathon.storage.planner import human, leftovers, plan_changes, status_rows, teardown_changes
from datathon.storage.transfer import PushResult, push

__all__ = ["StorageRunner", "apply_storage", "ensure_store", "human", "plan_storage", "push_dataset", "state_dir",
           "storage_leftovers", "storage_status", "teardown_storage"]


def _remember(ctx: Context, facts: dict) -> None:
    """Keep what datathon made (so `down` removes only that); a fact once true stays true."""
    state = ctx.state.load()
    mine = state.get("storage", {})
    for k, v in facts.items():
        mine[k] = bool(mine.get(k)) or bool(v)
    state["storage"] = mine
    ctx.state.save(state)


def ensure_store(ctx: Context, store: ObjectStore) -> None:
    facts = store.ensure()
    if store.kind == "s3":
        facts.update(policies(ctx, store).apply())
    _remember(ctx, facts)


def push_dataset(ctx: Context, store: ObjectStore, name: str, *, known: Mapping[str, list] | None = None
                 ) -> PushResult:
    ds = next((d for d in ctx.config.storage.datasets if d.name == name), None)
    if ds is None:
        raise ProvisionError(f"no dataset {name!r} in storage.datasets",
                             hint=f"choose one of: {', '.join(d.name for d in ctx.config.storage.datasets) or 'none'}")
    return push(store, ds.name, ds.path, workers=ctx.config.storage.concurrency, state_dir=state_dir(ctx),
                console=ctx.console, known=known)


class StorageRunner:
    """What the storage changes do when they are applied, on one event's store."""

    def __init__(self, ctx: Context, store: ObjectStore) -> None:
        self.ctx = ctx
        self.store = store

    def ensure_store(self) -> None:
        ensure_store(self.ctx, self.store)

    def apply_policies(self) -> None:
        _remember(self.ctx, policies(self.ctx, self.store).apply())

    def push(self, dataset: str, known: Mapping[str, list]) -> None:
        push_dataset(self.ctx, self.store, dataset, known=known)

    def remove_read_policy(self) -> None:
        policies(self.ctx, self.store).remove()

    def remove_store(self) -> None:
        self.store.teardown()

    def remove_prefixes(self, prefixes: list[str]) -> None:
        self.store.delete_prefixes(prefixes)  # type: ignore[attr-defined]  (adopted: S3 only)

    def remove_group(self, group: str) -> None:
        if unix.group_exists(group) and not unix.group_members(group):
            unix.remove_group(group)


# -- the functions the commands and tests call: thin wrappers over observe -> plan --------------------------------

def plan_storage(ctx: Context) -> list[Change]:
    """The store (made, private, encrypted; its policies) and one push per dataset, with what it would send."""
    if ctx.config.storage is None:
        return []
    store = get_store(ctx)
    return plan_changes(observe_storage(ctx, store), StorageRunner(ctx, store))


def apply_storage(ctx: Context, changes: list[Change]) -> int:
    """Run the storage changes in order (each shows its own progress); returns how many ran."""
    blocked = [c for c in changes if c.action == "blocked"]
    if blocked:
        raise ProvisionError(f"{blocked[0].component} {blocked[0].target}: {blocked[0].reason}",
                             hint="fix this and run `datathon up` again")
    todo = [c for c in changes if c.mutating]
    for change in todo:
        change.run()
    return len(todo)


def storage_status(ctx: Context) -> list[ComponentStatus]:
    if ctx.config.storage is None:
        return []
    return status_rows(observe_storage(ctx, get_store(ctx), folders=False))


def teardown_storage(ctx: Context) -> list[Change]:
    """Changes that remove the store (only one made for this event), its policies, and the group datathon made."""
    if ctx.config.storage is None:
        return []
    store = get_store(ctx)
    return teardown_changes(observe_storage(ctx, store, folders=False), StorageRunner(ctx, store))


def storage_leftovers(ctx: Context) -> list[str]:
    if ctx.config.storage is None:
        return []
    return leftovers(observe_storage(ctx, get_store(ctx), folders=False))
