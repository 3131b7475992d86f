"""A dataset's manifest: every file's relative path, size and sha256, stored beside the data.

The bytes are deterministic (sorted, no timestamps): the same folder always gives the same manifest. Hashes are
cached per file (size and mtime) in the state folder by a push, so the next one does not read the dataset again;
planning reads that cache and never writes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from datathon.core.fsutil import file_sha256
from datathon.errors import ProvisionError

FORMAT = 1


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative, '/'-separated
    size: int
    sha256: str


@dataclass
class Manifest:
    dataset: str
    files: list[FileEntry]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_bytes(self) -> bytes:
        rows = ",\n".join(json.dumps({"path": f.path, "sha256": f.sha256, "size": f.size}, sort_keys=True)
                          for f in self.files)
        return (f'{{"dataset": {json.dumps(self.dataset)}, "format": {FORMAT}, "files": [\n{rows}\n]}}\n').encode()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str) -> Manifest:
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT}")
            files = [FileEntry(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in doc["files"]]
            dataset = str(doc["dataset"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProvisionError(f"the manifest {where} cannot be read: {exc}",
                                 hint="push the dataset again from the organizer's copy") from None
        return cls(dataset, files)


def manifest_key(dataset: str) -> str:
    return f"{dataset}.manifest.json"


def object_key(dataset: str, path: str) -> str:
    return f"{dataset}/{path}"


def scan(folder: Path) -> list[tuple[str, os.stat_result]]:
    """Regular files under the folder (links are not followed), sorted by relative path."""
    found = []
    for here, dirs, files in os.walk(folder):
        dirs.sort()
        rel = os.path.relpath(here, folder)
        for name in files:
            full = os.path.join(here, name)
            st = os.lstat(full)
            if os.path.isfile(full) and not os.path.islink(full):
                found.append((name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}", st))
    found.sort(key=lambda x: x[0])
    return found


def read_cache(cache: Path | None) -> dict[str, list]:
    """The hash cache of earlier runs (relative path -> [size, mtime_ns, sha256]); empty when there is none."""
    if cache is None or not cache.exists():
        return {}
    with contextlib.suppress(OSError, ValueError):
        found = json.loads(cache.read_text())
        if isinstance(found, dict):
            return found
    return {}


def hash_folder(dataset: str, folder: Path, *, known: Mapping[str, list], workers: int = 4,
                progress: Callable[[int], None] | None = None) -> tuple[Manifest, dict[str, list]]:
    """Hash the folder into a manifest (files unchanged since `known` was made are not read again); returns it and
    the hashes to remember. Writes nothing."""
    if not folder.is_dir():
        raise ProvisionError(f"dataset {dataset}: folder {folder} not found", hint="check storage.datasets[].path")
    files = scan(folder)
    entries: dict[str, FileEntry] = {}
    todo = []
    for rel, st in files:
        hit = known.get(rel)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            entries[rel] = FileEntry(rel, st.st_size, hit[2])
            if progress:
                progress(st.st_size)
        else:
            todo.append((rel, st))

    def work(item: tuple[str, os.stat_result]) -> FileEntry:
        rel, st = item
        entry = FileEntry(rel, st.st_size, file_sha256(folder / rel))
        if progress:
            progress(st.st_size)
        return entry

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for entry in pool.map(work, todo):
            entries[entry.path] = entry
    stats = dict(files)
    hashes = {rel: [e.size, stats[rel].st_mtime_ns, e.sha256] for rel, e in entries.items()}
    return Manifest(dataset, [entries[rel] for rel, _ in files]), hashes
