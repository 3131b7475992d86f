"""Push, verify and pull datasets: parallel, resumable, every byte checked against the manifest.

push: the manifest of the local folder is compared with what the store holds; an object of the same size whose
recorded sha256 matches (from the journal of earlier pushes, else from the object's metadata) is skipped; the
rest is sent in parallel (big files in parts); the manifest goes last, beside the data.
verify: the store against its manifest: what is missing, a different size, or a different sha256.
pull: a subset of a dataset into a folder, each file hashed before it gets its final name; files already there
with the right sha256 are skipped.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from datathon.core.fsutil import file_sha256
from datathon.core.state import write_private
from datathon.errors import ProvisionError
from datathon.storage.base import ObjectInfo, ObjectStore, check_key
from datathon.storage.manifest import FileEntry, Manifest, hash_folder, manifest_key, object_key, read_cache


class Meter:
    """A progress bar in bytes (rate, ETA) with a files counter, or in files only (`in_bytes=False`);
    thread-safe; silent without a terminal."""

    def __init__(self, console: Console | None, label: str, *, files: int, total: int, in_bytes: bool = True) -> None:
        self.files, self.done = files, 0
        self.lock = threading.Lock()
        self.started = time.monotonic()
        amount = (DownloadColumn(), TransferSpeedColumn()) if in_bytes else (MofNCompleteColumn(),)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), *amount,
            TextColumn("{task.fields[files]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, disable=console is None or not console.is_terminal,
        )
        self.task = self.progress.add_task(label, total=total, files=self._files())

    def _files(self) -> str:
        if not self.files:
            return ""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return f"{self.done}/{self.files} files, {self.done / elapsed:.0f} files/s"

    def bytes(self, n: int) -> None:
        self.progress.advance(self.task, n)

    def file_done(self) -> None:
        with self.lock:
            self.done += 1
            self.progress.update(self.task, files=self._files())

    def __enter__(self) -> Meter:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def run_parallel(items: Iterable, fn: Callable, *, workers: int) -> None:
    """fn over the items on a thread pool; the first error cancels what has not started and is raised."""
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    futures: list[Future] = []
    try:
        futures = [pool.submit(fn, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for f in done:
            if f.exception() is not None:
                raise f.exception()
    finally:
        for f in futures:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


class Journal:
    """What earlier pushes sent (key -> size, sha256, etag), so a resumed push asks the store nothing for them.
    Saved every few seconds while pushing and when the push stops, whatever the reason."""

    def __init__(self, path: Path | None, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly  # planning reads what earlier pushes recorded and writes nothing
        self.entries: dict[str, list] = {}
        self.lock = threading.Lock()
        self.saved = time.monotonic()
        if path is not None and path.exists():
            with contextlib.suppress(OSError, ValueError):
                self.entries = json.loads(path.read_text())

    def matches(self, key: str, entry: FileEntry, etag: str) -> bool:
        return self.entries.get(key) == [entry.size, entry.sha256, etag]

    def record(self, key: str, entry: FileEntry, etag: str) -> None:
        with self.lock:
            self.entries[key] = [entry.size, entry.sha256, etag]
            if time.monotonic() - self.saved > 2:
                self._save()

    def save(self) -> None:
        with self.lock:
            self._save()

    def _save(self) -> None:
        if self.path is not None and not self.readonly:
            write_private(self.path, json.dumps(self.entries, separators=(",", ":")))
        self.saved = time.monotonic()


@dataclass
class PushResult:
    dataset: str
    files: int
    bytes: int
    sent_files: int
    sent_bytes: int
    seconds: float

    def as_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass
class PushPlan:
    manifest: Manifest
    todo: list[FileEntry]
    manifest_current: bool  # the store's manifest is this one
    hashes: dict[str, list] = field(default_factory=dict)  # relative path -> [size, mtime_ns, sha256]


def hash_dataset(dataset: str, folder: Path, *, workers: int, hash_cache: Path | None = None,
                 known: Mapping[str, list] | None = None, save: bool = True,
                 console: Console | None = None) -> tuple[Manifest, dict[str, list]]:
    """The folder's manifest (with a progress bar), and the hashes it was made from."""
    total = sum(st.st_size for _, st in _scan(folder))
    cached = read_cache(hash_cache)
    with Meter(console, f"hashing {dataset}", files=0, total=total) as meter:  # bytes only: hashing counts bytes
        manifest, hashes = hash_folder(dataset, folder, known={**cached, **(known or {})}, workers=workers,
                                       progress=meter.bytes)
    if hash_cache is not None and save and hashes != cached:
        write_private(hash_cache, json.dumps(hashes, separators=(",", ":")))
    return manifest, hashes


def compare(store: ObjectStore, manifest: Manifest, remote: dict[str, ObjectInfo], stored: bytes | None, *,
            journal: Journal, workers: int) -> tuple[list[FileEntry], bool]:
    """Which files of the manifest the store lacks (or holds with another size or sha256), in manifest order, and
    whether the store's manifest (`stored`) is this one. An object of the right size that the journal does not
    vouch for is checked against the sha256 the store recorded for it."""
    dataset = manifest.dataset
    todo: list[FileEntry] = []
    unsure: list[tuple[FileEntry, str, str]] = []
    for entry in manifest.files:
        key = object_key(dataset, entry.path)
        obj = remote.get(key)
        if obj is None or obj.size != entry.size:
            todo.append(entry)
        elif not journal.matches(key, entry, obj.etag):
            unsure.append((entry, key, obj.etag))
    lock = threading.Lock()

    def check(item: tuple[FileEntry, str, str]) -> None:
        entry, key, etag = item
        if store.checksum(key) == entry.sha256:
            journal.record(key, entry, etag)
        else:
            with lock:
                todo.append(entry)

    run_parallel(unsure, check, workers=workers)
    journal.save()
    order = {e.path: i for i, e in enumerate(manifest.files)}
    todo.sort(key=lambda e: order[e.path])
    return todo, bool(remote) and stored == manifest.to_bytes()


def plan_push(store: ObjectStore, dataset: str, folder: Path, *, journal: Journal, workers: int,
              hash_cache: Path | None = None, console: Console | None = None,
              known: Mapping[str, list] | None = None) -> PushPlan:
    """Which files of the folder the store lacks (or holds with another size or sha256), the store as it is now."""
    manifest, hashes = hash_dataset(dataset, folder, workers=workers, hash_cache=hash_cache, known=known,
                                    save=not journal.readonly, console=console)
    exists = store.exists()
    remote = store.list(f"{dataset}/") if exists else {}
    stored = store.read_bytes(manifest_key(dataset)) if remote else None
    todo, current = compare(store, manifest, remote, stored, journal=journal, workers=workers)
    return PushPlan(manifest, todo, current, hashes)


def _scan(folder: Path):
    from datathon.storage.manifest import scan

    return scan(folder) if folder.is_dir() else []


def push(store: ObjectStore, dataset: str, folder: Path, *, workers: int = 16, state_dir: Path | None = None,
         console: Console | None = None, known: Mapping[str, list] | None = None) -> PushResult:
    """Send what the store lacks, then the manifest. Resumable: a stopped push is finished by the next.
    `known`: hashes observed by the plan (files unchanged since are not hashed again)."""
    started = time.monotonic()
    journal = Journal(state_dir / f"{dataset}.journal.json" if state_dir else None)
    cache = state_dir / f"{dataset}.hashes.json" if state_dir else None
    plan = plan_push(store, dataset, folder, journal=journal, workers=workers, hash_cache=cache, console=console,
                     known=known)
    sent = {"files": 0, "bytes": 0}
    lock = threading.Lock()
    todo_bytes = sum(e.size for e in plan.todo)
    with Meter(console, f"pushing {dataset}", files=len(plan.todo), total=todo_bytes) as meter:

        def send(entry: FileEntry) -> None:
            key = object_key(dataset, entry.path)
            etag = store.put_file(key, folder / entry.path, sha256=entry.sha256, progress=meter.bytes)
            journal.record(key, entry, etag)
            meter.file_done()
            with lock:
                sent["files"] += 1
                sent["bytes"] += entry.size

        try:
            run_parallel(plan.todo, send, workers=workers)
        except ProvisionError as exc:
            raise ProvisionError(
                f"push of {dataset} stopped after {sent['files']} of {len(plan.todo)} files: {exc.message}",
                hint=f"run `datathon data push {dataset}` again: files already sent are skipped") from exc
        finally:
            journal.save()
    if not plan.manifest_current or plan.todo:
        data = plan.manifest.to_bytes()
        store.put_bytes(manifest_key(dataset), data, sha256=hashlib.sha256(data).hexdigest())
    m = plan.manifest
    return PushResult(dataset, len(m.files), m.total_bytes, sent["files"], sent["bytes"], time.monotonic() - started)


def stored_manifest(store: ObjectStore, dataset: str) -> Manifest:
    data = store.read_bytes(manifest_key(dataset)) if store.exists() else None
    if data is None:
        raise ProvisionError(f"dataset {dataset} has no manifest in {store.location}",
                             hint=f"push it first: `datathon data push {dataset}` (or check the name)")
    return Manifest.from_bytes(data, where=f"{store.location}{manifest_key(dataset)}")


@dataclass
class VerifyResult:
    dataset: str
    files: int
    missing: list[str] = field(default_factory=list)
    different: list[tuple[str, str]] = field(default_factory=list)  # (path, what differs)
    extra: list[str] = field(default_factory=list)  # objects no manifest names

    @property
    def ok(self) -> bool:
        return not self.missing and not self.different

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "files": self.files, "ok": self.ok, "missing": self.missing,
                "different": [{"path": p, "why": w} for p, w in self.different], "extra": self.extra}


def verify(store: ObjectStore, dataset: str, *, workers: int = 16, deep: bool = False,
           console: Console | None = None) -> VerifyResult:
    """Compare the store with its manifest: sizes from the listing, sha256 as recorded with each object (deep:
    computed from the bytes read back)."""
    manifest = stored_manifest(store, dataset)
    remote = store.list(f"{dataset}/")
    result = VerifyResult(dataset, len(manifest.files))
    named = {object_key(dataset, e.path) for e in manifest.files}
    result.extra = sorted(k.removeprefix(f"{dataset}/") for k in remote if k not in named)
    to_hash = []
    for e in manifest.files:
        obj = remote.get(object_key(dataset, e.path))
        if obj is None:
            result.missing.append(e.path)
        elif obj.size != e.size:
            result.different.append((e.path, f"size {obj.size}, manifest {e.size}"))
        else:
            to_hash.append(e)
    lock = threading.Lock()
    total = sum(e.size for e in to_hash) if deep else len(to_hash)
    with Meter(console, f"verifying {dataset}", files=len(to_hash), total=total, in_bytes=deep) as meter:

        def check(e: FileEntry) -> None:
            key = object_key(dataset, e.path)
            if deep:
                digest = hashlib.sha256()
                for chunk in store.iter_chunks(key):
                    digest.update(chunk)
                    meter.bytes(len(chunk))
                got, what = digest.hexdigest(), "content sha256"
            else:
                got, what = store.checksum(key), "recorded sha256"
                meter.bytes(1)
            meter.file_done()
            if got != e.sha256:
                with lock:
                    result.different.append((e.path, f"{what} {(got or 'none')[:16]}, manifest {e.sha256[:16]}"))

        run_parallel(to_hash, check, workers=workers)
    result.different.sort()
    return result


@dataclass
class PullResult:
    dataset: str
    files: int  # selected by the filter
    bytes: int
    fetched: int
    skipped: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict:
        return {**{k: v for k, v in self.__dict__.items() if k != "failed"}, "ok": self.ok,
                "failed": [{"path": p, "why": w} for p, w in self.failed]}


def select(manifest: Manifest, *, prefix: str | None = None, pattern: str | None = None) -> list[FileEntry]:
    files = manifest.files
    if prefix:
        p = prefix.lstrip("/")
        files = [e for e in files if e.path.startswith(p)]
    if pattern:
        files = [e for e in files if fnmatch.fnmatchcase(e.path, pattern)]
    return files


def pull(store: ObjectStore, dataset: str, dest: Path, *, prefix: str | None = None, pattern: str | None = None,
         workers: int = 16, console: Console | None = None) -> PullResult:
    """Fetch the selected files into dest (resumable); a file whose bytes do not match the manifest is named in
    the result and not kept (no partial or wrong file is left under its name)."""
    started = time.monotonic()
    manifest = stored_manifest(store, dataset)
    chosen = select(manifest, prefix=prefix, pattern=pattern)
    result = PullResult(dataset, len(chosen), sum(e.size for e in chosen), 0, 0)
    dest = dest.resolve()
    for e in chosen:
        check_key(e.path)  # a manifest naming ../x could write outside dest

    def already_there(e: FileEntry) -> bool:
        target = dest / e.path
        return target.is_file() and target.stat().st_size == e.size and file_sha256(target) == e.sha256

    # A resumed pull first checks what it has, in parallel (hashing is most of a resume's time).
    with ThreadPoolExecutor(max_workers=max(1, min(workers, 8))) as pool:
        present = list(pool.map(already_there, chosen))
    todo = [e for e, ok in zip(chosen, present, strict=True) if not ok]
    result.skipped = len(chosen) - len(todo)
    lock = threading.Lock()
    with Meter(console, f"pulling {dataset}", files=len(todo), total=sum(e.size for e in todo)) as meter:

        def fetch(e: FileEntry) -> None:
            target = dest / e.path
            # A fixed name per file: a part left by a killed pull is replaced by the next one, not left behind.
            tmp = target.with_name(f".{target.name}.datathon-part")
            why = None
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp.unlink(missing_ok=True)
                store.get_file(object_key(dataset, e.path), tmp, size=e.size, progress=meter.bytes)
                got = file_sha256(tmp)
                if got != e.sha256:
                    why = f"sha256 {got[:16]} does not match the manifest's {e.sha256[:16]}"
                else:
                    os.replace(tmp, target)
            except ProvisionError as exc:
                why = exc.message
            except FileNotFoundError:
                why = "missing in the store"
            except OSError as exc:  # e.g. --to not writable, or a file where a folder belongs
                why = f"{exc.strerror}: {exc.filename}"
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            meter.file_done()
            with lock:
                if why:
                    result.failed.append((e.path, why))
                else:
                    result.fetched += 1

        run_parallel(todo, fetch, workers=workers)
    result.failed.sort()
    result.seconds = time.monotonic() - started
    return result
