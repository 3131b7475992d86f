"""Writing, as root, into folders that another Unix user owns (a team's home, the database server's folder).

That user can plant links where we write. Every operation here opens the folder itself without following a link
(O_DIRECTORY|O_NOFOLLOW) and works relative to that descriptor, so a planted link is refused or replaced, never
followed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from datathon.errors import ProvisionError


@contextlib.contextmanager
def open_dir(path: Path) -> Iterator[int]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ProvisionError(f"{path} is not a plain folder ({exc.strerror})",
                             hint="remove what is there (a link or a file), then run `datathon up` again") from None
    try:
        yield fd
    finally:
        os.close(fd)


def write_owned(path: Path, data: bytes, *, uid: int, gid: int, mode: int = 0o600) -> None:
    """Replace `path` atomically with a file of `data`, owned by uid:gid with `mode`, never following a link."""
    with open_dir(path.parent) as dfd:
        tmp = f".{path.name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)  # removes a planted link itself, never its target
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
        try:
            os.write(fd, data)
            if os.geteuid() == 0:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)


def read_plain(path: Path) -> bytes | None:
    """The bytes of a regular file, or None when it is missing or not a plain file (a link is not followed)."""
    try:
        with open_dir(path.parent) as dfd:
            fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
    except (OSError, ProvisionError):
        return None
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def make_dir_owned(path: Path, *, uid: int, gid: int, mode: int) -> None:
    """Create a folder (or take the existing plain one) owned by uid:gid with `mode`."""
    with open_dir(path.parent) as dfd:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path.name, mode, dir_fd=dfd)
        with open_dir(path) as fd:
            if os.geteuid() == 0:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
