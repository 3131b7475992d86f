"""The storage part of an event for `plan`, `up`, `status` and `down`: observe -> changes -> apply.

Every change runs through a `run=` callable; pushes re-check the store when they run, so a plan made a while ago
never sends a file twice.
"""

from __future__ import annotations

from pathlib import Path

from datathon.core import unix
from datathon.core.context import Context
from datathon.core.plan import Change
from datathon.core.status import ComponentStatus
from datathon.errors import DatathonError, ProvisionError
from datathon.storage import get_store, teams_group
from datathon.storage.base import ObjectStore
from datathon.storage.manifest import Manifest, build_manifest, manifest_key, object_key
from datathon.storage.transfer import Journal, PushResult, plan_push, push


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def state_dir(ctx: Context) -> Path:
    return ctx.state.root / "storage"


def _remember(ctx: Context, facts: dict) -> None:
    """Keep what datathon made (so `down` removes only that); a fact once true stays true."""
    state = ctx.state.load()
    mine = state.get("storage", {})
    for k, v in facts.items():
        mine[k] = bool(mine.get(k)) or bool(v)
    state["storage"] = mine
    ctx.state.save(state)


def _policies(ctx: Context, store: ObjectStore):
    from datathon.storage.policies import Policies

    cfg = ctx.config.storage
    return Policies(store, event=ctx.config.event, organizer_arn=cfg.organizer_role_arn,
                    workspace_role=cfg.workspace_role_name)


def _policy_note(cfg) -> str:
    bucket = (f"bucket policy: only {cfg.organizer_role_arn} writes" if cfg.organizer_role_arn
              else "no bucket policy (no organizer_role_arn): who writes is left to IAM")
    read = (f"role {cfg.workspace_role_name} reads this bucket only" if cfg.workspace_role_name
            else "no workspace_role_name: no read policy made")
    return f"{bucket}; {read}"


def ensure_store(ctx: Context, store: ObjectStore) -> None:
    facts = store.ensure()
    if store.kind == "s3":
        facts.update(_policies(ctx, store).apply())
    _remember(ctx, facts)


def push_dataset(ctx: Context, store: ObjectStore, name: str) -> PushResult:
    ds = next((d for d in ctx.config.storage.datasets if d.name == name), None)
    if ds is None:
        raise ProvisionError(f"no dataset {name!r} in storage.datasets",
                             hint=f"choose one of: {', '.join(d.name for d in ctx.config.storage.datasets) or 'none'}")
    return push(store, ds.name, ds.path, workers=ctx.config.storage.concurrency, state_dir=state_dir(ctx),
                console=ctx.console)


def plan_storage(ctx: Context) -> list[Change]:
    """The store (made, private, encrypted; its policies) and one push per dataset, with what it would send."""
    cfg = ctx.config.storage
    if cfg is None:
        return []
    store = get_store(ctx)
    sp = store.plan()
    changes = [Change("storage", store.location, sp.action, sp.reason,  # type: ignore[arg-type]
                      run=lambda: ensure_store(ctx, store))]
    if sp.action == "blocked":
        return changes
    if store.kind == "s3":
        pol = _policies(ctx, store)
        todo = (([f"bucket policy: only {cfg.organizer_role_arn} writes"] if cfg.organizer_role_arn else [])
                + ([f"read policy on role {cfg.workspace_role_name}"] if cfg.workspace_role_name else [])
                if sp.action == "create" else pol.pending())
        changes.append(Change("policy", f"read-only for teams on {store.location}", "update" if todo else "keep",
                              "; ".join(todo) or _policy_note(cfg), run=lambda: _remember(ctx, pol.apply())))
    for ds in cfg.datasets:
        if sp.action == "create":
            manifest = build_manifest(ds.name, ds.path, cache=state_dir(ctx) / f"{ds.name}.hashes.json",
                                      workers=cfg.concurrency)
            todo, current = manifest.files, False
        else:
            pp = plan_push(store, ds.name, ds.path, journal=Journal(state_dir(ctx) / f"{ds.name}.journal.json"),
                           workers=cfg.concurrency, hash_cache=state_dir(ctx) / f"{ds.name}.hashes.json",
                           console=ctx.console)
            manifest, todo, current = pp.manifest, pp.todo, pp.manifest_current
        n, size = len(manifest.files), human(manifest.total_bytes)
        if todo:
            reason = (f"push {len(todo)} of {n} files ({human(sum(e.size for e in todo))} of {size}), "
                      f"{n - len(todo)} already there")
        elif not current:
            reason = f"all {n} files ({size}) are there; write the manifest"
        else:
            reason = f"all {n} files ({size}) in the store with matching sha256"
        changes.append(Change("dataset", ds.name, "load" if todo or not current else "keep", reason,
                              run=lambda name=ds.name: push_dataset(ctx, store, name)))
    return changes


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
    cfg = ctx.config.storage
    if cfg is None:
        return []
    location = cfg.location(ctx.config.event)
    try:
        store = get_store(ctx)
        if not store.exists():
            return [ComponentStatus("storage", location, "missing", "run `datathon up`", healthy=False)]
        out = [ComponentStatus("storage", location, "ok", store.describe(),
                               extra={"backend": store.kind, "location": location})]
        if store.kind == "s3":
            enforced = bool(cfg.organizer_role_arn)
            out.append(ComponentStatus("storage", "read-only for teams", "enforced" if enforced else "not enforced",
                                       _policy_note(cfg), healthy=enforced))
        else:
            out.append(ComponentStatus("storage", "read-only for teams", "enforced",
                                       f"by Unix permissions: root:{teams_group(ctx.config.event)} 0750/0640"))
        for ds in cfg.datasets:
            data = store.read_bytes(manifest_key(ds.name))
            if data is None:
                out.append(ComponentStatus("dataset", ds.name, "not pushed", f"`datathon data push {ds.name}`",
                                           healthy=False))
                continue
            manifest = Manifest.from_bytes(data, where=f"{location}{manifest_key(ds.name)}")
            listing = store.list(f"{ds.name}/")
            present = sum(1 for e in manifest.files
                          if (o := listing.get(object_key(ds.name, e.path))) and o.size == e.size)
            total = len(manifest.files)
            out.append(ComponentStatus(
                "dataset", ds.name, "complete" if present == total else "incomplete",
                f"{present}/{total} files of the manifest present ({human(manifest.total_bytes)}); "
                f"`datathon data verify {ds.name}` checks every sha256",
                healthy=present == total, extra={"files": total, "present": present}))
        return out
    except DatathonError as exc:
        return [ComponentStatus("storage", location, "error", exc.message, healthy=False)]
    except OSError as exc:  # e.g. not root: the store's folder is not readable
        return [ComponentStatus("storage", location, "error", f"{exc.strerror}: {exc.filename}", healthy=False)]


def _group_state(ctx: Context) -> tuple[bool, str]:
    made = bool(ctx.state.load().get("storage", {}).get("group_created"))
    return made, teams_group(ctx.config.event)


def _remove_group_if_empty(group: str) -> None:
    if unix.group_exists(group) and not unix.group_members(group):
        unix.remove_group(group)


def teardown_storage(ctx: Context) -> list[Change]:
    """Changes that remove the store (only one made for this event), its policies, and the group datathon made."""
    cfg = ctx.config.storage
    if cfg is None:
        return []
    store = get_store(ctx)
    changes = []
    if store.kind == "s3":
        pol = _policies(ctx, store)
        if pol.leftovers():
            changes.append(Change("policy", f"read policy on role {cfg.workspace_role_name}", "drop",
                                  "teams lose read access to the datasets", run=pol.remove, destructive=True))
    if store.leftovers():
        changes.append(Change("storage", store.location, "drop", f"delete {store.location} and every dataset in it",
                              run=store.teardown, destructive=True))
    elif store.kind == "s3" and (adopted := _adopted_keys(cfg, store)):
        changes.append(Change("storage", store.location, "drop",
                              f"adopted bucket: delete this event's datasets ({', '.join(adopted)}), keep the bucket",
                              run=lambda: store.delete_prefixes(adopted), destructive=True))
    elif store.kind == "s3" and store.exists():
        changes.append(Change("storage", store.location, "keep", "not made by datathon for this event: left alone"))
    else:
        changes.append(Change("storage", store.location, "keep", "no store"))
    made, group = _group_state(ctx)
    if store.kind == "local" and made and unix.group_exists(group):
        members = unix.group_members(group)
        if members:
            changes.append(Change("group", f"unix group {group}", "keep", f"still has members: {', '.join(members)}"))
        else:
            changes.append(Change("group", f"unix group {group}", "drop", "made by datathon for the teams, now empty",
                                  run=lambda: _remove_group_if_empty(group), destructive=True))
    return changes


def _adopted_keys(cfg, store) -> list[str]:
    """In a bucket an organizer tagged for the event (not one datathon made): the key prefixes of this event's
    datasets and manifests that are still there."""
    if store.kind != "s3" or store._bucket_state() != "ours" or store.made_by_datathon():
        return []
    wanted = [p for ds in cfg.datasets for p in (f"{ds.name}/", manifest_key(ds.name))]
    return [p for p in wanted if store.list(p)]


def storage_leftovers(ctx: Context) -> list[str]:
    cfg = ctx.config.storage
    if cfg is None:
        return []
    store = get_store(ctx)
    left = store.leftovers() + [f"objects under {p}" for p in _adopted_keys(cfg, store)]
    if store.kind == "s3":
        left += _policies(ctx, store).leftovers()
    made, group = _group_state(ctx)
    if store.kind == "local" and made and unix.group_exists(group) and not unix.group_members(group):
        left.append(f"unix group {group}")
    return left
