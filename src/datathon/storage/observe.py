"""Observe the storage part: the store, its policies, each dataset's folder against the store, the teams' group.

Read-only: nothing is created or written, here or in the state folder. The hash cache and the journal of earlier
pushes are read (so a plan does not hash an unchanged dataset again, nor ask the store about objects a push
recorded); a push writes them, at apply time.
"""

from __future__ import annotations

from pathlib import Path

from datathon.core import unix
from datathon.core.context import Context
from datathon.core.roster import teams_group
from datathon.errors import DatathonError
from datathon.storage.base import ObjectStore
from datathon.storage.facts import DatasetFacts, GroupFacts, PolicyFacts, StorageFacts, StoreFacts
from datathon.storage.manifest import Manifest, manifest_key, object_key


def state_dir(ctx: Context) -> Path:
    return ctx.state.root / "storage"


def policies(ctx: Context, store: ObjectStore):
    from datathon.storage.policies import Policies

    cfg = ctx.config.storage
    return Policies(store, event=ctx.config.event, organizer_arn=cfg.organizer_role_arn,
                    workspace_role=cfg.workspace_role_name)


def observe_storage(ctx: Context, store: ObjectStore, *, folders: bool = True) -> StorageFacts | None:
    """The storage part as it is. `folders=False` leaves out the dataset folders here (nothing is hashed): what
    `down` and its proof need."""
    cfg = ctx.config.storage
    if cfg is None:
        return None
    try:
        sf = store.observe()
    except OSError as exc:  # e.g. not root: the store's folder is not readable
        why = f"{exc.strerror}: {exc.filename}"
        sf = StoreFacts(store.kind, store.location, exists=False, blocked=why, error=why)
    if sf.error:
        return StorageFacts(sf)
    pol = _observe_policies(ctx, store, readable=sf.exists and sf.ours) if store.kind == "s3" else None
    readable = sf.exists and not sf.blocked
    datasets = tuple(_observe_dataset(ctx, store, ds.name, ds.path, readable=readable,
                                      folders=folders and not sf.blocked)
                     for ds in cfg.datasets)
    return StorageFacts(sf, pol, datasets, _observe_group(ctx) if store.kind == "local" else None)


def _observe_policies(ctx: Context, store: ObjectStore, *, readable: bool) -> PolicyFacts:
    from datathon.storage.policies import read_policy_name

    pol = policies(ctx, store)

    def state(current, wanted) -> str:
        return "missing" if current is None else "in place" if current == wanted else "differs"

    facts = dict(bucket=store.bucket, organizer_arn=pol.organizer_arn, workspace_role=pol.workspace_role,
                 read_policy_name=read_policy_name(ctx.config.event))
    try:
        wanted = pol.wanted_bucket_policy()
        bucket = ("not wanted" if wanted is None else
                  state(pol.current_bucket_policy() if readable else None, wanted))
        read = "not wanted" if not pol.workspace_role else state(pol.current_read_policy(), pol.wanted_read_policy())
    except DatathonError as exc:
        return PolicyFacts(**facts, bucket_policy="unknown", read_policy="unknown", error=exc.message)
    return PolicyFacts(**facts, bucket_policy=bucket, read_policy=read)


def _observe_dataset(ctx: Context, store: ObjectStore, name: str, folder: Path, *, readable: bool,
                     folders: bool) -> DatasetFacts:
    from datathon.storage.transfer import Journal, compare, hash_dataset

    remote, stored, out = {}, None, {}
    if readable:
        try:
            remote = store.list(f"{name}/")
            stored = store.read_bytes(manifest_key(name))
            out["keys"] = tuple(p for p, there in ((f"{name}/", bool(remote)), (manifest_key(name), stored is not None))
                                if there)
            if stored is not None:
                manifest = Manifest.from_bytes(stored, where=f"{store.location}{manifest_key(name)}")
                out.update(stored_files=len(manifest.files), stored_bytes=manifest.total_bytes, present=sum(
                    1 for e in manifest.files if (o := remote.get(object_key(name, e.path))) and o.size == e.size))
        except DatathonError as exc:
            out["stored_error"] = exc.message
        except OSError as exc:
            out["stored_error"] = f"{exc.strerror}: {exc.filename}"
    if not folders:
        return DatasetFacts(name, **out)
    if not folder.is_dir():
        return DatasetFacts(name, folder_error=f"dataset {name}: folder {folder} not found", **out)
    cfg = ctx.config.storage
    cache = state_dir(ctx) / f"{name}.hashes.json"
    try:
        manifest, hashes = hash_dataset(name, folder, workers=cfg.concurrency, hash_cache=cache, save=False,
                                        console=ctx.console)
        journal = Journal(state_dir(ctx) / f"{name}.journal.json", readonly=True)
        todo, current = compare(store, manifest, remote, stored, journal=journal, workers=cfg.concurrency)
    except DatathonError as exc:
        return DatasetFacts(name, folder_error=exc.message, **out)
    except OSError as exc:
        return DatasetFacts(name, folder_error=f"dataset {name}: {exc.strerror}: {exc.filename}", **out)
    return DatasetFacts(name, files=len(manifest.files), bytes=manifest.total_bytes, todo_files=len(todo),
                        todo_bytes=sum(e.size for e in todo), manifest_current=current, hashes=hashes, **out)


def _observe_group(ctx: Context) -> GroupFacts:
    name = teams_group(ctx.config.event)
    made = bool(ctx.state.load().get("storage", {}).get("group_created"))
    exists = unix.group_exists(name)
    return GroupFacts(name, exists, made, tuple(unix.group_members(name)) if exists else ())
