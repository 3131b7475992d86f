"""What a removed Unix user leaves behind beyond its home: SysV IPC objects and files anywhere on the local
filesystems (/tmp, /var/tmp, /dev/shm, /run/lock, a crontab, ...). The next user given that uid would own them.

Files are found with one `find -xdev` per local mount (links not followed, /proc and /sys never entered) and
removed relative to folders opened without following links, so nothing another user swaps in is touched.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
import subprocess
from pathlib import Path

# Filesystems that hold files on this machine (network and pseudo filesystems are not scanned).
LOCAL_FS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "f2fs", "jfs", "reiserfs", "mqueue"}
SKIP = (Path("/proc"), Path("/sys"))
IPC = {"shm": ("shmid", "-m", "shared memory segment"), "msg": ("msqid", "-q", "message queue"),
       "sem": ("semid", "-s", "semaphore set")}
FIND_TIMEOUT = 900.0


def local_mounts() -> list[Path]:
    out: list[Path] = []
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return [Path("/")]
    for line in lines:
        fields = line.split()
        if len(fields) < 3 or fields[2] not in LOCAL_FS:
            continue
        mount = Path(fields[1].replace("\\040", " "))
        if any(mount == s or s in mount.parents for s in SKIP) or mount in out:
            continue
        out.append(mount)
    return out


def ipc_objects(uids: set[int]) -> list[tuple[str, int, int]]:
    """(kind, id, uid) of the SysV IPC objects owned or created by one of `uids`, from /proc/sysvipc."""
    found = []
    for kind, (id_col, _, _) in IPC.items():
        try:
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()
        except OSError:
            continue
        if not lines:
            continue
        head = lines[0].split()
        for line in lines[1:]:
            row = dict(zip(head, line.split(), strict=False))
            owner = {int(row.get("uid", -1)), int(row.get("cuid", -1))} & uids
            if owner:
                found.append((kind, int(row[id_col]), owner.pop()))
    return found


def remove_ipc(uids: set[int]) -> list[str]:
    removed = []
    for kind, ident, uid in ipc_objects(uids):
        _, flag, label = IPC[kind]
        res = subprocess.run(["ipcrm", flag, str(ident)], capture_output=True, text=True)
        if res.returncode == 0:
            removed.append(f"{label} {ident} of uid {uid}")
    return removed


def files_of(uids: set[int]) -> list[Path]:
    """Every file or folder owned by one of `uids` on the local filesystems, deepest first."""
    if not uids:
        return []
    test: list[str] = []
    for uid in sorted(uids):
        test += (["-o"] if test else []) + ["-uid", str(uid)]
    found: set[Path] = set()
    for mount in local_mounts():
        try:
            res = subprocess.run(["find", str(mount), "-xdev", "(", *test, ")", "-print0"], capture_output=True,
                                 timeout=FIND_TIMEOUT)
        except subprocess.TimeoutExpired:
            continue  # reported by the leftover check that follows
        found.update(Path(p.decode(errors="surrogateescape")) for p in res.stdout.split(b"\0") if p)
    return sorted(found, key=lambda p: (-len(p.parts), str(p)))


def _unlink_owned(path: Path, owners: dict[int, str | None]) -> bool:
    """Remove `path` if it is still owned by one of the uids and that uid is still held as expected, walking to it
    without following any link."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in path.parts[1:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        st = os.stat(path.name, dir_fd=fd, follow_symlinks=False)
        if st.st_uid not in owners or not _held_as_expected(st.st_uid, owners[st.st_uid]):
            return False
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(path.name, dir_fd=fd)  # emptied first (deepest first); another user's file inside stays
        else:
            os.unlink(path.name, dir_fd=fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_files(owners: dict[int, str | None], *, homes: tuple[Path, ...] = ()) -> tuple[list[Path], list[Path]]:
    """(removed, left) files of the uids in `owners`, each of which must still be held by the named user (the
    event's user, not yet deleted: its uid cannot have gone to anyone else) or by nobody (a user an interrupted
    run already deleted). A uid held by anyone else is skipped, and checked again before every file: uids are
    reused, and a user given a freed uid must never lose its files to this sweep. `homes` are left to userdel,
    which removes each whole, whoever owns what is inside."""
    owners = {u: who for u, who in owners.items() if _held_as_expected(u, who)}
    removed, left = [], []
    for path in files_of(set(owners)):
        if any(path == h or h in path.parents for h in homes):
            continue
        (removed if _unlink_owned(path, owners) else left).append(path)
    return removed, [p for p in left if _owned_by(p, owners)]


def _held_as_expected(uid: int, who: str | None) -> bool:
    try:
        return pwd.getpwuid(uid).pw_name == who
    except KeyError:
        return who is None


def _owned_by(path: Path, owners: dict[int, str | None]) -> bool:
    with contextlib.suppress(OSError):
        uid = os.lstat(path).st_uid
        return uid in owners and _held_as_expected(uid, owners[uid])
    return False


def summary(paths: list[Path], *, limit: int = 5) -> str:
    shown = ", ".join(str(p) for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")
