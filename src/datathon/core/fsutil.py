"""Writing, as root, into folders that another Unix user owns (a team's home, the database server's folder).

That user can plant links where we write. Every operation here opens the folder itself without following a link
(O_DIRECTORY|O_NOFOLLOW) and works relative to that descriptor, so a planted link is never followed. Whatever that
user put where we write (a link, a folder, a FIFO, a socket, a device node where a file goes; anything but a folder
where a folder goes) is moved aside under a timestamped name and reported, never followed, deleted or fatal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from datathon.errors import ProvisionError


def file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


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


KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "folder", stat.S_IFLNK: "link", stat.S_IFIFO: "FIFO",
         stat.S_IFSOCK: "socket", stat.S_IFCHR: "device node", stat.S_IFBLK: "device node"}


def kind_of(path: Path) -> str:
    """What is at `path` (file, folder, link, FIFO, socket, device node), or "missing"; never follows a link."""
    try:
        return KINDS.get(stat.S_IFMT(os.lstat(path).st_mode), "special file")
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unreadable"


def _kind_at(dfd: int, name: str) -> str:
    try:
        return KINDS.get(stat.S_IFMT(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode), "special file")
    except FileNotFoundError:
        return "missing"


def _move_aside(dfd: int, name: str) -> str:
    """Rename `name` (whatever it is: rename never follows a link) to a free timestamped name in the same folder."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for i in range(100):
        new = f"{name}.moved-aside-{stamp}" + (f"-{i}" if i else "")
        try:
            os.stat(new, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(name, new, src_dir_fd=dfd, dst_dir_fd=dfd)
            return new
    raise ProvisionError(f"cannot find a free name to move {name} aside", hint="clean up the *.moved-aside-* entries")


def write_owned(path: Path, data: bytes, *, uid: int, gid: int, mode: int = 0o600) -> str | None:
    """Replace `path` atomically with a file of `data`, owned by uid:gid with `mode`, never following a link.
    Anything but a plain file at `path` is moved aside first: returns "<kind> moved aside to <name>", else None."""
    moved = None
    with open_dir(path.parent) as dfd:
        # An unguessable temporary name, created exclusively: nothing can be planted there beforehand.
        tmp = f".{path.name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
        try:
            os.write(fd, data)
            if os.geteuid() == 0:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        error = ""
        for _ in range(5):  # the owner may plant something again between our look and the rename
            kind = _kind_at(dfd, path.name)
            if kind not in ("missing", "file"):
                moved = f"{kind} moved aside to {_move_aside(dfd, path.name)}"
            try:
                os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
                return moved
            except OSError as exc:  # a folder planted again since the look, say
                error = exc.strerror or str(exc)
        os.unlink(tmp, dir_fd=dfd)
        raise ProvisionError(f"cannot write {path}: {error}", hint="see what is there, then run again")


def read_plain(path: Path, *, limit: int = 1 << 20) -> bytes | None:
    """The bytes of a regular file of at most `limit` bytes, or None when it is missing, bigger, or not a plain
    file. A link is not followed, and a FIFO or device cannot make the reader wait (O_NONBLOCK, then S_ISREG)."""
    try:
        with open_dir(path.parent) as dfd:
            # Looked at before it is opened: root opening a device node may have effects of its own.
            if _kind_at(dfd, path.name) != "file":
                return None
            fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except (OSError, ProvisionError):
        return None
    st = os.fstat(fd)  # what was opened, whatever was swapped in since the look
    if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as fh:
        return fh.read(limit + 1)


def make_dir_owned(path: Path, *, uid: int, gid: int, mode: int) -> str | None:
    """Create a folder (or take the existing plain one) owned by uid:gid with `mode`. Something else in its
    place (a link, a file) is moved aside under a new name, never followed and never deleted: returns
    "<kind> moved aside to <name>", else None."""
    moved = None
    with open_dir(path.parent) as dfd:
        for attempt in range(5):  # the owner may plant something again between our look and the open
            kind = _kind_at(dfd, path.name)
            if kind not in ("missing", "folder"):
                moved = f"{kind} moved aside to {_move_aside(dfd, path.name)}"
            with contextlib.suppress(FileExistsError):
                os.mkdir(path.name, mode, dir_fd=dfd)
            try:
                fd = os.open(path.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
            except OSError:
                if attempt == 4:
                    raise ProvisionError(f"{path} is not a plain folder",
                                         hint="see what is there, then run again") from None
                continue
            try:
                if os.geteuid() == 0:
                    os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            return moved
    return moved


def untrusted_ancestor(path: Path) -> str | None:
    """Why root must not run code from (or keep a store, or make homes under) `path`: the first existing folder
    on its way that is not root's, that others may write in, or that other users cannot traverse. A shared sticky
    folder such as /tmp is fine above a folder of root's (nobody else may rename or remove root's entry there).
    None when the path is sound."""
    below_is_roots = False  # the next folder down the path exists and is root's
    for folder in [path, *path.parents]:
        try:
            st = os.stat(folder)
        except FileNotFoundError:
            below_is_roots = False  # made later, by root, with safe modes
            continue
        if st.st_uid != 0:
            return f"{folder} belongs to uid {st.st_uid}, not root"
        if st.st_mode & 0o022 and not (st.st_mode & stat.S_ISVTX and below_is_roots):
            return f"{folder} is writable by other users"
        if not st.st_mode & 0o001:
            return f"{folder} cannot be traversed by other users"
        below_is_roots = True
    return None
