"""The `local` store: a folder owned by root, readable by the group <event>_teams, writable by nobody else.

Folders are 0750 and files 0640, root:<event>_teams. Writes never follow a symbolic link found inside the store
(every folder is opened with O_NOFOLLOW from the store's root down) and are atomic (a fresh temporary name
created with O_EXCL, then renamed over the final name).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

from datathon.core import unix
from datathon.core.fsutil import read_plain, untrusted_ancestor, write_owned
from datathon.core.state import SYSTEM_ROOT
from datathon.errors import ProvisionError
from datathon.storage.base import ObjectInfo, ObjectStore, Progress, check_key
from datathon.storage.facts import StoreFacts

DIR_MODE, FILE_MODE = 0o750, 0o640
CHUNK = 2**20
TMP_SUFFIX = ".datathon-tmp"
# In the store's folder: which event file made it. Only a folder carrying it is ever adopted as ours or deleted.
MARKER = ".datathon-store"


class LocalStore(ObjectStore):
    kind = "local"

    def __init__(self, root: Path, *, group: str | None, part_size: int = 64 * 2**20,
                 owner: str | None = None) -> None:
        self.root = Path(root)
        self.group = group  # None: a reader (pull) that never writes
        self.part_size = part_size
        self.owner = owner  # the event file this store belongs to (see MARKER)

    def _marked(self) -> bool:
        data = read_plain(self.root / MARKER)
        return data is not None and self.owner is not None and data.decode(errors="replace").strip() == self.owner

    @property
    def location(self) -> str:
        return str(self.root)

    def exists(self) -> bool:
        return self.root.is_dir()

    # -- making it -------------------------------------------------------------------------------
    def _wrong(self) -> list[str]:
        st = os.lstat(self.root)
        problems = []
        if stat.S_ISLNK(st.st_mode):
            return [f"{self.root} is a symbolic link"]
        if st.st_uid != 0:
            problems.append("not owned by root")
        if self.group and (not unix.group_exists(self.group) or st.st_gid != unix.group_gid(self.group)):
            problems.append(f"group is not {self.group}")
        if stat.S_IMODE(st.st_mode) != DIR_MODE:
            problems.append(f"mode {stat.S_IMODE(st.st_mode):o} instead of {DIR_MODE:o}")
        return problems

    def observe(self) -> StoreFacts:
        what = f"owned by root, group {self.group}, folders {DIR_MODE:o}, files {FILE_MODE:o}"
        there = os.path.lexists(self.root)
        marked = there and self._marked()
        blocked = ""
        why = untrusted_ancestor(self.root.parent)
        if why:
            blocked = f"{self.root}: {why}; choose a store folder only root can change (storage.path)"
        elif (os.path.isdir(self.root) and not self.root.is_symlink() and not marked
              and any(os.scandir(self.root))):
            blocked = (f"{self.root} exists, holds files and was not made by datathon for this event file: it is "
                       "neither taken over nor ever deleted; set storage.path to a new or empty folder")
        new = "" if unix.group_exists(self.group) else f" and the Unix group {self.group}"
        return StoreFacts("local", str(self.root), exists=there, ours=marked, made_by_datathon=marked,
                          blocked=blocked, drift=tuple(self._wrong()) if there else (), settings=what,
                          create=f"make {self.root}{new}", describe=self.describe(), name=f"folder {self.root}")

    def ensure(self) -> dict:
        if os.geteuid() != 0:
            raise ProvisionError(f"the local store {self.root} belongs to root and the group {self.group}",
                                 hint="run datathon as root (sudo) to make it and push into it")
        created = unix.ensure_group(self.group)
        gid = unix.group_gid(self.group)
        if self.root.parent == SYSTEM_ROOT:
            SYSTEM_ROOT.mkdir(parents=True, exist_ok=True)
            os.chmod(SYSTEM_ROOT, 0o755)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.root, DIR_MODE)
        if self.root.is_symlink():
            raise ProvisionError(f"{self.root} is a symbolic link where datathon expects its own folder",
                                 hint="remove it (someone else put it there), or set storage.path elsewhere")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, 0, gid)
            os.fchmod(fd, DIR_MODE)
        finally:
            os.close(fd)
        if not self._marked():
            write_owned(self.root / MARKER, f"{self.owner}\n".encode(), uid=0, gid=gid, mode=FILE_MODE)
        return {"group_created": created}

    # -- symlink-safe access -----------------------------------------------------------------------
    def _open_dir(self, parts: list[str], *, create: bool) -> int:
        """A descriptor of root/parts..., each step opened without following links (made when `create`)."""
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except PermissionError:
            raise ProvisionError(f"{self.root} is readable by the group {self.group or 'of the teams'} only",
                                 hint="a team member added to the group just now must log in again (or restart "
                                      "the JupyterLab server) to carry it") from None
        try:
            for part in parts:
                if create:
                    try:
                        os.mkdir(part, DIR_MODE, dir_fd=fd)
                    except FileExistsError:
                        pass
                    else:
                        self._set_owner(part, fd, DIR_MODE)
                try:
                    nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                    if create:  # a folder that was there before (made by someone else?) becomes ours too
                        st = os.fstat(nfd)
                        if st.st_uid != 0 or stat.S_IMODE(st.st_mode) != DIR_MODE:
                            os.fchown(nfd, 0, unix.group_gid(self.group))
                            os.fchmod(nfd, DIR_MODE)
                except OSError:
                    with contextlib.suppress(OSError):
                        if stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
                            raise ProvisionError(
                                f"{self.root}: {'/'.join(parts)} passes a symbolic link; refusing to follow it",
                                hint="remove the link (nobody but root can write there: find out who did), "
                                     "then push again") from None
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _set_owner(self, name: str, dir_fd: int, mode: int) -> None:
        if self.group is None:
            raise ProvisionError(f"{self.root} is opened read-only here")
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | (os.O_DIRECTORY if mode == DIR_MODE else 0), dir_fd=dir_fd)
        try:
            os.fchown(fd, 0, unix.group_gid(self.group))
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _open_file(self, key: str) -> Iterator[int]:
        parts = check_key(key)
        dfd = self._open_dir(parts[:-1], create=False)
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
        finally:
            os.close(dfd)
        try:
            yield fd
        finally:
            os.close(fd)

    def _write(self, key: str, chunks: Iterator[bytes], progress: Progress | None, *, sha256: str) -> str:
        """Write atomically; the bytes must hash to `sha256` (the manifest's), else nothing is kept."""
        parts = check_key(key)
        dfd = self._open_dir(parts[:-1], create=True)
        tmp = f".{parts[-1][:200]}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
            try:
                digest = hashlib.sha256()
                with os.fdopen(fd, "wb", closefd=False) as out:
                    for chunk in chunks:
                        out.write(chunk)
                        digest.update(chunk)
                        if progress:
                            progress(len(chunk))
                if digest.hexdigest() != sha256:
                    raise ProvisionError(f"{key}: the file changed since it was hashed for the manifest",
                                         hint="leave the dataset folder alone while it is pushed, then push again")
                os.fchown(fd, 0, unix.group_gid(self.group))
                os.fchmod(fd, FILE_MODE)
            finally:
                os.close(fd)
            os.replace(tmp, parts[-1], src_dir_fd=dfd, dst_dir_fd=dfd)  # replaces a planted link, never its target
            st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
            return _etag(st)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        finally:
            os.close(dfd)

    # -- objects --------------------------------------------------------------------------------------
    def list(self, prefix: str = "") -> dict[str, ObjectInfo]:
        out: dict[str, ObjectInfo] = {}
        if not self.exists():
            return out
        for folder, dirs, files in os.walk(self.root):
            rel_folder = os.path.relpath(folder, self.root)
            base = "" if rel_folder == "." else rel_folder.replace(os.sep, "/") + "/"
            for name in dirs:
                if os.path.islink(os.path.join(folder, name)):
                    raise ProvisionError(f"{self.root}: {base}{name} is a symbolic link; refusing to follow it",
                                         hint="remove the link (nobody but root can write there: find out who did)")
            for name in files:
                key = base + name
                if name.endswith(TMP_SUFFIX) or key == MARKER or not key.startswith(prefix):
                    continue
                st = os.lstat(os.path.join(folder, name))
                if stat.S_ISREG(st.st_mode):
                    out[key] = ObjectInfo(key, st.st_size, _etag(st))
        return out

    def checksum(self, key: str) -> str | None:
        digest = hashlib.sha256()
        for chunk in self.iter_chunks(key):
            digest.update(chunk)
        return digest.hexdigest()

    def put_file(self, key: str, path: Path, *, sha256: str, progress: Progress | None = None) -> str:
        # A dataset file swapped for a link (to /etc/shadow, say) must not be copied into a store teams read.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            why = "is a symbolic link" if exc.errno == errno.ELOOP else f"cannot be read ({exc.strerror})"
            raise ProvisionError(f"{path} {why}", hint="datasets hold plain files only; fix it, then push again") \
                from None
        with os.fdopen(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                raise ProvisionError(f"{path} is not a plain file", hint="datasets hold plain files only")
            return self._write(key, iter(lambda: src.read(CHUNK), b""), progress, sha256=sha256)

    def put_bytes(self, key: str, data: bytes, *, sha256: str) -> None:
        self._write(key, iter([data]), None, sha256=sha256)

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return b"".join(self.iter_chunks(key))
        except FileNotFoundError:
            return None

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        with self._open_file(key) as fd, os.fdopen(fd, "rb", closefd=False) as fh:
            yield from iter(lambda: fh.read(CHUNK), b"")

    def get_file(self, key: str, dest: Path, *, size: int, progress: Progress | None = None) -> None:
        with open(dest, "xb") as out:
            for chunk in self.iter_chunks(key):
                out.write(chunk)
                if progress:
                    progress(len(chunk))

    # -- removing it ------------------------------------------------------------------------------
    def teardown(self) -> None:
        if os.path.islink(self.root) or not self._marked():
            raise ProvisionError(f"{self.root} is not the store datathon made for this event file; left alone",
                                 hint="remove it by hand if it is yours to remove")
        shutil.rmtree(self.root)  # never follows links inside

    def leftovers(self) -> list[str]:
        return [f"folder {self.root}"] if os.path.lexists(self.root) and self._marked() else []

    def describe(self) -> str:
        return f"{self.root}: root:{self.group}, folders {DIR_MODE:o}, files {FILE_MODE:o}; teams read, nobody writes"


def _etag(st: os.stat_result) -> str:
    return f"{st.st_size}-{st.st_mtime_ns}-{st.st_ino}"
