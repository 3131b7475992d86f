"""Which process is which, from /proc: before root signals a pid or sends a token to a port, it makes sure the
process is the one it means (root-owned, the expected command) and that it is the one holding the port."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import sys
import time
from pathlib import Path


def process_alive(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True


def terminate(pid: int) -> None:
    """SIGTERM, then SIGKILL after 15 s; returns once the process is gone (reaped when it is our own child)."""
    from datathon.errors import ProvisionError

    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not process_alive(pid):
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
                return
            time.sleep(0.1)
    raise ProvisionError(f"process {pid} survives SIGKILL", hint="look at it with ps; then run the command again")


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


def _address(hexaddr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp{,6} writes it: hex, each 32-bit word in the host's byte order."""
    raw = bytes.fromhex(hexaddr)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    return ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip


def listening_inodes(port: int, host: str | None = None) -> set[str]:
    """Socket inodes in LISTEN state on `port`. With `host`, only those that would take a connection to
    host:port (bound to it or to every address): a listener on another address of this machine (127.0.0.2, say)
    takes nothing meant for the hub, and must not make datathon stop it."""
    target = ipaddress.ip_address(host) if host else None
    if target is not None and target.is_unspecified:
        target = None  # a listener on every address: any listener on the port competes with it
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            addr, _, hexport = f[1].rpartition(":")
            if f[3] != "0A" or int(hexport, 16) != port:
                continue
            if target is not None:
                ip = _address(addr)
                if not (ip.is_unspecified or ip == target):
                    continue
            inodes.add(f[9])
    return inodes


def holds_port(pid: int, port: int, host: str | None = None) -> bool:
    """True when every listening socket on `port` (that would take a connection to `host`) belongs to `pid`:
    nobody else squats on it."""
    wanted = {f"socket:[{i}]" for i in listening_inodes(port, host)}
    if not wanted:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    held = set()
    for fd in fds:
        try:
            held.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue  # closed meanwhile
    return wanted <= held


def port_in_use(port: int, host: str | None = None) -> bool:
    return bool(listening_inodes(port, host))


def others_on_port(port: int, host: str | None, ours: set[int]) -> list[str]:
    """Who else listens on `port` (that would take a connection to `host`), in words; empty when it is free or
    held only by `ours` (this event's own processes, from its pid files)."""
    if not port_in_use(port, host):
        return []
    if any(holds_port(pid, port, host) for pid in ours):
        return []
    return [w for w in port_holders(port, host) if not any(w.startswith(f"pid {p} ") for p in ours)]


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


def port_holders(port: int, host: str | None = None) -> list[str]:
    """Who listens on `port`, in words: "pid 123 (python3) of user demo_sepsis (uid 1001)", from /proc (the
    listening socket's inode, found among every process's open files)."""
    wanted = {f"socket:[{i}]" for i in listening_inodes(port, host)}
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
