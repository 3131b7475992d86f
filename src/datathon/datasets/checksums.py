"""SHA256SUMS.txt: check every file about to be loaded before loading anything, and say which one is bad."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.progress import Progress

from datathon.errors import ProvisionError


def read_sums(root: Path) -> dict[str, str]:
    path = root / "SHA256SUMS.txt"
    if not path.exists():
        return {}
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, _, name = line.strip().partition(" ")
            sums[name.strip().lstrip("*").removeprefix("./")] = digest.lower()
    return sums


def verify(root: Path, files: list[str], *, progress: Progress | None = None, cache: Path | None = None) -> int:
    """Check `files` (relative to root) against SHA256SUMS.txt. Returns how many were checked. A cache of
    (size, mtime) -> digest keeps a resumed load from hashing gigabytes again."""
    sums = read_sums(root)
    if not sums:
        return 0
    known = json.loads(cache.read_text()) if cache and cache.exists() else {}
    todo = [f for f in files if f in sums]
    task = progress.add_task("verify SHA256SUMS", total=sum((root / f).stat().st_size for f in todo)) \
        if progress else None
    def digest_of(name: str) -> tuple[str, str, str]:
        path = root / name
        st = path.stat()
        key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
        digest = known.get(key)
        if digest is None:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)  # releases the GIL: the files hash on every core at once
                    if progress:
                        progress.advance(task, len(block))
            digest = h.hexdigest()
        elif progress:
            progress.advance(task, st.st_size)
        return name, key, digest

    bad = []
    biggest_first = sorted(todo, key=lambda f: -(root / f).stat().st_size)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for name, key, digest in pool.map(digest_of, biggest_first):
            if digest != sums[name]:
                bad.append(f"{name} (expected {sums[name][:12]}..., found {digest[:12]}...)")
            else:
                known[key] = digest
    if cache:
        cache.write_text(json.dumps(known))
    if bad:
        raise ProvisionError(
            f"{len(bad)} file(s) in {root} fail their SHA256SUMS.txt check: {'; '.join(bad)}; nothing was loaded",
            hint="re-download those files (the download was incomplete or damaged)",
        )
    return len(todo)
