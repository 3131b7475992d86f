"""The object store interface: what push, verify, pull, status and down need from a place that holds datasets.

Keys are relative to the store (`<dataset>/<path>`, `<dataset>.manifest.json`); a store adds its own prefix.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from datathon.errors import ProvisionError
from datathon.storage.facts import StoreFacts

Progress = Callable[[int], None]  # called with the number of bytes just moved


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # changes whenever the object is written again


def check_key(key: str) -> list[str]:
    """The parts of a key; refuses keys that could leave the store or the destination folder."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in key:
        raise ProvisionError(f"refusing object name {key!r}: it is empty, absolute or holds '.'/'..' parts",
                             hint="rename the file in the dataset folder")
    return parts


class ObjectStore(ABC):
    """A bucket or a folder that datathon owns: teams read it, only the organizer writes it."""

    kind: str
    part_size: int = 64 * 2**20

    @property
    @abstractmethod
    def location(self) -> str:
        """Where it is, as `datathon data pull --from` takes it."""

    @abstractmethod
    def exists(self) -> bool: ...

    @abstractmethod
    def observe(self) -> StoreFacts:
        """The store as it is (exists, ours, blocked, settings that drifted), observed without changing anything."""

    @abstractmethod
    def ensure(self) -> dict:
        """Create the store or bring its settings back to what they must be; returns facts to remember."""

    @abstractmethod
    def list(self, prefix: str = "") -> dict[str, ObjectInfo]:
        """Every object under the prefix, by key."""

    @abstractmethod
    def checksum(self, key: str) -> str | None:
        """The object's sha256 as the store records it (None when it records none)."""

    @abstractmethod
    def put_file(self, key: str, path: Path, *, sha256: str, progress: Progress | None = None) -> str:
        """Store a file (in parts when it is big), recording its sha256; returns the new object's etag."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, sha256: str) -> None: ...

    @abstractmethod
    def read_bytes(self, key: str) -> bytes | None:
        """A small object's content, None when it is missing."""

    @abstractmethod
    def iter_chunks(self, key: str) -> Iterator[bytes]: ...

    @abstractmethod
    def get_file(self, key: str, dest: Path, *, size: int, progress: Progress | None = None) -> None:
        """Write the object to `dest` (a fresh temporary name chosen by the caller)."""

    @abstractmethod
    def teardown(self) -> None:
        """Remove the store and everything in it (only a store made for this event)."""

    @abstractmethod
    def leftovers(self) -> list[str]:
        """What of the store is still there after teardown (empty means proven gone)."""

    @abstractmethod
    def describe(self) -> str:
        """One line for `status`: where it is and how it is protected."""
