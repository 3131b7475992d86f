"""What every process of a team's server gets from the spawner, on any machine (no cgroups needed): a limit on
the team's processes and threads (RLIMIT_NPROC: a fork bomb stops there), a data-size limit per process
(RLIMIT_DATA: heap and private memory, which is what a runaway kernel grows; unlike the address-space limit it
does not count the virtual reservations of JITs and thread arenas), umask 0077 and a private TMPDIR, so what a team
writes to a temporary file is its own.

`status` and `check` read these back from the running processes (/proc/<pid>/limits, status, environ), never from
the event file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from datathon.config.workspaces import Workspaces
from datathon.core.fsutil import make_dir_owned
from datathon.core.state import StateStore

UMASK = 0o077
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def size_bytes(text: str) -> int:
    m = re.match(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)$", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a size")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def memory_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class Rlimits:
    nproc: int  # processes and threads of the team's uid
    data: int  # bytes per process

    def as_dict(self) -> dict[str, int]:
        return {"nproc": self.nproc, "data": self.data}


def rlimits(ws: Workspaces) -> Rlimits:
    """From `workspaces.limits`; unset: 32 processes per CPU (at least 512: a server, its kernels and their
    threads), and 3/4 of this machine's memory per process (one process never takes it all)."""
    nproc = ws.limits.processes or max(512, 32 * (os.cpu_count() or 1))
    data = size_bytes(ws.limits.memory) if ws.limits.memory else memory_total() * 3 // 4
    return Rlimits(nproc, data)


# -- private temporary folders -----------------------------------------------------------------------
def tmp_root(state: StateStore) -> Path:
    """root's folder (0711) holding one 0700 folder per team: outside /tmp, so no team can make the folder
    another team will use before it exists."""
    return state.system_dir("-tmp")


def tmpdir(state: StateStore, user: str) -> Path:
    return tmp_root(state) / user


def tmpdir_problem(state: StateStore, user: str, uid: int) -> str | None:
    path = tmpdir(state, user)
    try:
        root, st = os.lstat(tmp_root(state)), os.lstat(path)
    except FileNotFoundError:
        return f"private TMPDIR {path} is missing"
    if root.st_uid != 0 or root.st_mode & 0o022:
        return f"{tmp_root(state)} is not root's alone"
    if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != uid or st.st_mode & 0o777 != 0o700:
        return f"private TMPDIR {path} is not a 0700 folder of {user}"
    return None


def ensure_tmpdir(state: StateStore, user: str, uid: int, gid: int) -> str | None:
    root = tmp_root(state)
    root.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    root.mkdir(mode=0o711, exist_ok=True)
    os.chown(root, 0, 0)
    os.chmod(root, 0o711)
    return make_dir_owned(root / user, uid=uid, gid=gid, mode=0o700)


# -- observed --------------------------------------------------------------------------------------------
@dataclass
class Observed:
    pid: int
    umask: int | None
    tmpdir: str | None
    nproc: int | None  # None: unlimited
    data: int | None

    def problems(self, want: Rlimits, tmp: Path) -> list[str]:
        out = []
        if self.umask != UMASK:
            out.append(f"umask {self.umask:04o}" if self.umask is not None else "umask unknown")
        if self.tmpdir != str(tmp):
            out.append(f"TMPDIR {self.tmpdir or 'unset'}")
        if self.nproc is None or self.nproc > want.nproc:
            out.append(f"process limit {self.nproc or 'unlimited'}")
        if self.data is None or self.data > want.data:
            out.append(f"data limit {self.data or 'unlimited'}")
        return out


def _limit(text: str, name: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(name):
            soft = line[len(name):].split()[0]
            return None if soft == "unlimited" else int(soft)
    return None


def observe(pid: int) -> Observed | None:
    """The umask, TMPDIR and limits of a running process, as the kernel has them."""
    try:
        limits = Path(f"/proc/{pid}/limits").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    umask = next((int(line.split()[1], 8) for line in status.splitlines() if line.startswith("Umask:")), None)
    tmp = next((e[7:].decode(errors="replace") for e in environ if e.startswith(b"TMPDIR=")), None)
    return Observed(pid, umask, tmp, _limit(limits, "Max processes"), _limit(limits, "Max data size"))


def server_environment(pid: int, env_root: Path) -> Path | None:
    """The team environment a server runs from (its interpreter's path on its command line): a server started
    before a package change runs the older one until it is restarted."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    root = str(env_root).rstrip("/") + "/"
    for arg in args:
        text = arg.decode(errors="replace")
        if text.startswith(root) and "/bin/" in text:
            return Path(text.split("/bin/", 1)[0])
    return None


def server_pids(uid: int) -> list[int]:
    """The team's single-user servers (the process the hub spawned), by uid and command."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            # jupyterhub-singleuser, or datathon's launcher of it (workspaces.light_start)
            if b"jupyterhub-singleuser" in cmdline or b"-m\0datathon_singleuser" in cmdline:
                out.append(int(name))
        except OSError:
            continue
    return sorted(out)
