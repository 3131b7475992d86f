"""A dataset's manifest: every file's relative path, size and sha256, stored beside the data.

The bytes are deterministic (sorted, no timestamps): the same folder always gives the same manifest. Hashes are
cached per file (size and mtime) in the state folder, so a second push does not read the dataset again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from datathon.core.fsutil import file_sha256
from datathon.core.state import write_private
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


def build_manifest(dataset: str, folder: Path, *, cache: Path | None = None, workers: int = 4,
                   progress: Callable[[int], None] | None = None) -> Manifest:
    """Hash the folder (files unchanged since the last run come from the cache) into a manifest."""
    if not folder.is_dir():
        raise ProvisionError(f"dataset {dataset}: folder {folder} not found", hint="check storage.datasets[].path")
    cached: dict[str, list] = {}
    if cache is not None and cache.exists():
        with contextlib.suppress(OSError, ValueError):
            cached = json.loads(cache.read_text())
    files = scan(folder)
    entries: dict[str, FileEntry] = {}
    todo = []
    for rel, st in files:
        hit = cached.get(rel)
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
    if cache is not None and todo:
        stats = dict(files)
        write_private(cache, json.dumps({rel: [e.size, stats[rel].st_mtime_ns, e.sha256]
                                         for rel, e in entries.items()}, separators=(",", ":")))
    return Manifest(dataset, [entries[rel] for rel, _ in files])
