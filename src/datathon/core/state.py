"""Per-event state folder: `.datathon/<event>/` next to the event file.

state.json records what datathon created (written atomically); secrets/ holds generated passwords, one file
each, mode 0600. A lock file keeps two runs of `up`/`down` from interleaving.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets as _secrets
import string
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from datathon.config.names import SYSTEM_ROOT, state_root, state_tag, system_dir
from datathon.errors import StateError

__all__ = ["SYSTEM_ROOT", "Resource", "StateStore", "generate_password", "write_private"]

# No look-alike characters (0/O, 1/l/I): passwords get read off paper on event day.
PASSWORD_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")
PASSWORD_LENGTH = 20  # about 115 bits


def generate_password(length: int = PASSWORD_LENGTH) -> str:
    return "".join(_secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


def write_private(path: Path, data: str | bytes, *, unless_same: bool = False) -> bool:
    """Write a file atomically with mode 0600 (created that way, never world-readable for an instant).
    `unless_same`: leave a file that already holds exactly this (mode 0600) alone. Returns whether it wrote."""
    raw = data.encode() if isinstance(data, str) else data
    if unless_same:
        with contextlib.suppress(OSError):
            if path.stat().st_mode & 0o777 == 0o600 and path.read_bytes() == raw:
                return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return True


@dataclass(frozen=True)
class Resource:
    kind: str  # e.g. "event", "database server", "bucket"
    name: str
    created: bool  # True: datathon made it (and `down` removes it); False: adopted (left as found)
    since: str
    attrs: dict[str, Any]


class StateStore:
    def __init__(self, config_dir: Path, event: str) -> None:
        self.config_dir = config_dir
        self.root = state_root(config_dir, event)
        self.base = self.root.parent
        self.event = event

    # -- layout -------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def handouts_dir(self) -> Path:
        return self.root / "handouts"

    def exists(self) -> bool:
        return self.state_file.exists()

    @property
    def tag(self) -> str:
        """Names this event file's state folder: two checkouts of one event never share what carries it."""
        return state_tag(self.config_dir, self.event)

    @property
    def owner(self) -> str:
        """How datathon marks what it made for this event file (Unix users, a dataset folder)."""
        return f"{self.event} {self.tag}"

    def system_dir(self, suffix: str = "") -> Path:
        """A folder for this event outside the state folder, that other Unix users can be allowed to reach:
        /var/lib/datathon/<event>-<tag><suffix>."""
        return system_dir(self.config_dir, self.event, suffix)

    def ensure_dirs(self) -> None:
        for d in (self.base, self.root, self.secrets_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(d, 0o700)

    # -- state.json ----------------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        if not self.state_file.exists():
            return {}
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise StateError(
                f"cannot read {self.state_file}: {exc}",
                hint="restore it from a backup, or move it aside and run `datathon up` to rediscover",
            ) from None

    def save(self, state: dict[str, Any]) -> None:
        self.ensure_dirs()
        write_private(self.state_file, json.dumps(state, indent=2, sort_keys=True) + "\n")

    def update(self, **changes: Any) -> dict[str, Any]:
        state = self.load()
        state.update(changes)
        self.save(state)
        return state

    # -- typed records of what the event made or adopted -----------------------------------------
    def record(self, kind: str, name: str, *, created: bool, **attrs: Any) -> Resource:
        """Remember a resource (SkyPilot-style: made by datathon, or adopted). Once made, it stays made."""
        state = self.load()
        records = state.setdefault("resources", {})
        key = f"{kind}/{name}"
        old = records.get(key, {})
        now = datetime.now(UTC).isoformat(timespec="seconds")
        records[key] = {"kind": kind, "name": name, "created": bool(old.get("created")) or created,
                        "since": old.get("since", now), "attrs": {**old.get("attrs", {}), **attrs}}
        self.save(state)
        return Resource(**records[key])

    # -- secrets -------------------------------------------------------------------------------
    def secret_path(self, name: str) -> Path:
        return self.secrets_dir / name

    def secret(self, name: str, *, create: bool = True) -> str | None:
        """The secret called `name`, generated and stored (0600) on first use."""
        path = self.secret_path(name)
        if path.exists():
            return path.read_text().strip()
        if not create:
            return None
        self.ensure_dirs()
        value = generate_password()
        write_private(path, value + "\n")
        return value

    # -- locking -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.ensure_dirs()
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateError(
                    f"another datathon command is working on event {self.event!r}",
                    hint="wait for it to finish, then run this again",
                ) from None
            yield
        finally:
            os.close(fd)
