"""Which process is which, from /proc: before root signals a pid or sends a token to a port, it makes sure the
process is the one it means (root-owned, the expected command) and that it is the one holding the port."""

from __future__ import annotations

import os
from pathlib import Path

from datathon.database.cluster import process_alive


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def is_root_process(pid: int, needle: bytes) -> bool:
    """A live process of root whose command line holds `needle` (a pid file may name a recycled pid)."""
    if not process_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        uid = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("Uid:"))
    except (OSError, StopIteration, ValueError):
        return False
    return uid == 0 and needle in cmdline


def root_processes_with_env(entry: bytes) -> list[int]:
    """Live root processes whose environment holds `entry` (b"NAME=value"), e.g. the hub's own services, which
    the hub starts in sessions of their own and which outlive it if it dies without stopping them."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if entry not in Path(f"/proc/{name}/environ").read_bytes().split(b"\0"):
                continue
            if os.stat(f"/proc/{name}").st_uid == 0 and process_alive(int(name)):
                found.append(int(name))
        except OSError:
            continue
    return sorted(found)


def listening_inodes(port: int) -> set[str]:
    """Socket inodes in LISTEN state on `port`, any address."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    return inodes


def holds_port(pid: int, port: int) -> bool:
    """True when every listening socket on `port` belongs to `pid` (nobody else squats on it)."""
    wanted = {f"socket:[{i}]" for i in listening_inodes(port)}
    if not wanted:
        return False
    try:
        held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return False
    return wanted <= held


def port_in_use(port: int) -> bool:
    return bool(listening_inodes(port))


def _owner(pid: int) -> str:
    import pwd

    try:
        uid = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("Uid:"))
    except (OSError, StopIteration, ValueError):
        return "an unknown user"
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def port_holders(port: int) -> list[str]:
    """Who listens on `port`, in words: "pid 123 (python3) of user demo_sepsis (uid 1001)", from /proc (the
    listening socket's inode, found among every process's open files)."""
    wanted = {f"socket:[{i}]" for i in listening_inodes(port)}
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or not wanted:
            continue
        try:
            fds = os.listdir(f"/proc/{name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{name}/fd/{fd}") in wanted:
                    comm = Path(f"/proc/{name}/comm").read_text().strip()
                    found.append(f"pid {name} ({comm}) of {_owner(int(name))}")
                    break
            except OSError:
                continue
    return found or (["a process this machine does not show (another network namespace?)"] if wanted else [])
