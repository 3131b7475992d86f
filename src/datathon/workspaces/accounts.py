"""Unix users and groups for the teams (and mentors), as The Littlest JupyterHub does it: check before acting,
refuse to touch a same-named user datathon did not make. What datathon made is in its own record (record.py), in
the root-only state folder: the GECOS mark is still written, for people, but a team can change it (`chfn`)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from datathon.config import EventConfig
from datathon.core import unix
from datathon.core.state import StateStore
from datathon.errors import ProvisionError
from datathon.workspaces import names, record, remnants

log = logging.getLogger("datathon")


@dataclass(frozen=True)
class Account:
    kind: str  # team or mentor
    name: str  # as in the event file
    user: str  # the Unix (and hub, and database) user name
    group: str  # primary group
    home: Path
    admin: bool = False
    gpus: tuple[int, ...] = ()
    # supplementary groups: a mentor is also in the teams' group, which the imaging store's folder belongs to
    # (mentors read what teams read; the teams' homes stay 0700, their own)
    extra_groups: tuple[str, ...] = ()


def wanted_accounts(config: EventConfig, gpus: dict[str, list[int]] | None = None) -> list[Account]:
    ws = config.workspaces
    assert ws is not None
    gpus = gpus or {}
    out = [Account("team", t.name, names.unix_user(config.event, t.name), names.teams_group(config.event),
                   ws.home_root / names.unix_user(config.event, t.name), gpus=tuple(gpus.get(t.name, ())))
           for t in config.team_list]
    out += [Account("mentor", m.name, names.unix_user(config.event, m.name), names.mentors_group(config.event),
                    ws.home_root / names.unix_user(config.event, m.name), admin=ws.mentors_are_admins,
                    extra_groups=(names.teams_group(config.event),))
            for m in config.mentors]
    return out


def lookup(user: str) -> pwd.struct_passwd | None:
    return record.lookup(user)


def is_ours(entry: pwd.struct_passwd, state: StateStore) -> bool:
    return record.is_ours(state, entry)


def event_users(state: StateStore) -> list[pwd.struct_passwd]:
    """Every Unix user datathon made for this event file (from its record, so removed teams are found too)."""
    return record.users(state)


def create_user(acct: Account, state: StateStore) -> None:
    acct.home.parent.mkdir(parents=True, exist_ok=True)
    record.about_to_create(state, acct.user)  # first: an interrupted useradd still leaves a user we know
    unix.run(["useradd", "--create-home", "--home-dir", str(acct.home), "--shell", "/bin/bash", "--no-user-group",
              "--gid", acct.group, *(["--groups", ",".join(acct.extra_groups)] if acct.extra_groups else []),
              "--comment", names.MARK.format(owner=names.owner(state)), acct.user],
             what=f"creating Unix user {acct.user}")
    record.created(state, acct.user, pwd.getpwnam(acct.user).pw_uid)
    os.chmod(acct.home, 0o700)  # no team reads another's home, whatever the system's HOME_MODE


def repair_user(acct: Account, state: StateStore) -> None:
    """Primary group, our mark in the comment and a private home (made again, empty but for the skeleton, when it
    was removed)."""
    extra = ["--append", "--groups", ",".join(acct.extra_groups)] if acct.extra_groups else []
    unix.run(["usermod", "--gid", acct.group, *extra, "--comment", names.MARK.format(owner=names.owner(state)),
              acct.user], what=f"setting the groups of {acct.user}")
    entry = pwd.getpwnam(acct.user)
    if not acct.home.exists():
        acct.home.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree("/etc/skel", acct.home, symlinks=True)
        for root, dirs, files in os.walk(acct.home):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.lchown(name, entry.pw_uid, entry.pw_gid)
    os.chmod(acct.home, 0o700)


def set_password(user: str, password: str) -> None:
    unix.run(["chpasswd"], stdin=f"{user}:{password}\n", what=f"setting the password of {user}")


def _shadow_hash(user: str) -> str | None:
    try:
        with open("/etc/shadow") as fh:
            for line in fh:
                parts = line.split(":")
                if parts[0] == user:
                    return parts[1]
    except OSError:
        return None
    return None


def password_fingerprint(user: str, password: str) -> str | None:
    """Changes when the user's password hash changes (someone ran passwd) or the secret does; never reveals
    either. Stored in state.json after we set the password, compared on the next `up`. A lock (`usermod -L`
    puts a "!" before the hash) does not change it: whether the user is locked is observed on its own."""
    h = _shadow_hash(user)
    if h is None:
        return None
    return hashlib.sha256(f"{h.removeprefix('!')}\0{password}".encode()).hexdigest()[:24]


def password_locked(user: str) -> bool:
    """Password logins refused: the hash in /etc/shadow starts with "!" (PAM, so the hub, refuses it)."""
    h = _shadow_hash(user)
    return h is not None and h.startswith("!")


def lock_password(user: str) -> None:
    unix.run(["usermod", "--lock", user], what=f"locking the password of {user}")


def unlock_password(user: str) -> None:
    unix.run(["usermod", "--unlock", user], what=f"unlocking the password of {user}")


def processes_of(uid: int) -> list[int]:
    """Live processes of `uid`; a zombie (already dead, waiting for its parent to collect it) is not one."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as fh:
                for line in fh:
                    if line.startswith("State:") and line.split()[1] == "Z":
                        break
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry.name))
                        break
        except OSError:
            continue
    return pids


def kill_processes(uid: int, gid: int, *, grace: float = 5.0) -> int:
    """SIGTERM every process of the user, then SIGKILL what is left, sent as the user itself (kill -1): all its
    processes at once, so a process that keeps forking cannot slip between a listing and the signals. Returns how
    many there were."""
    first = processes_of(uid)
    for pid in first:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and processes_of(uid):
        time.sleep(0.1)
    for _ in range(20):
        if not processes_of(uid):
            return len(first)
        subprocess.run(["/bin/kill", "-KILL", "-1"], user=uid, group=gid, extra_groups=[], capture_output=True)
        time.sleep(0.1)
    raise ProvisionError(f"processes of uid {uid} survive SIGKILL: {processes_of(uid)}", hint="look at them with ps")


def remove_user(user: str, state: StateStore, *, files: bool = True) -> list[str]:
    """End the user's processes, remove its SysV IPC objects, the user and its home, then (unless `files` is
    False: the caller sweeps the files of several users in one pass) its files anywhere on the local filesystems.
    Returns what was removed, for the report."""
    entry = lookup(user)
    if entry is None:
        return []
    if not is_ours(entry, state):
        raise ProvisionError(f"Unix user {user} was not made by datathon for this event file; not removing it")
    uid = entry.pw_uid
    done = []
    if n := kill_processes(uid, entry.pw_gid):
        done.append(f"{n} process(es)")
    done += remnants.remove_ipc({uid})
    if files:  # while the user still holds its uid: no one else can have been given it
        done += sweep_files({uid: user}, homes=(Path(entry.pw_dir),))
    unix.run(["userdel", "--remove", user], what=f"removing Unix user {user}")
    done.append(f"user and home {entry.pw_dir}")
    if files:
        record.forget(state, user)
    return done


def sweep_files(owners: dict[int, str | None], *, homes: tuple[Path, ...] = ()) -> list[str]:
    """Files anywhere (but in `homes`, which userdel removes) of these uids, each still held by the named user
    (or by nobody): see remnants."""
    removed, left = remnants.remove_files(owners, homes=homes)
    out = [f"{len(removed)} file(s): {remnants.summary(removed)}"] if removed else []
    if left:
        raise ProvisionError(f"files of removed users could not be removed: {remnants.summary(left)}",
                             hint="look at them (another user's files inside?); then run the command again")
    return out
