"""An SSH tunnel to a database server this machine cannot reach directly (RDS inside a VPC, an on-premise server
behind a bastion): `ssh -N -L 127.0.0.1:<free port>:<server>:<port> user@jump`, opened on first use and closed
when the command ends.

Why ssh(1) and not a Python SSH library: it is on every organizer's machine and its forwarding is what the
handouts tell teams to run too; it runs with core/ssh.py's options (the given key only, no agent, no ssh config,
no prompt). The jump host's key is pinned: the first one seen is written to a known_hosts file in the state folder
(or the organizer gives their own file, and only a key in it is accepted), and a changed key stops the tunnel."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from datathon.config.common import SSH_TARGET_RE
from datathon.core import ssh
from datathon.errors import ProvisionError

OPEN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class TunnelSpec:
    user: str
    host: str
    port: int
    identity_file: Path
    known_hosts: Path  # the organizer's file (checked strictly) or datathon's own (first key pinned)
    pin_first_key: bool

    @classmethod
    def parse(cls, target: str, identity_file: Path, known_hosts: Path | None, state_dir: Path) -> TunnelSpec:
        m = SSH_TARGET_RE.match(target)
        if not m:
            raise ProvisionError(f"database.tunnel.ssh {target!r} is not user@host or user@host:port")
        return cls(user=m["user"], host=m["host"].strip("[]"), port=int(m["port"] or 22),
                   identity_file=identity_file, known_hosts=known_hosts or state_dir / "tunnel_known_hosts",
                   pin_first_key=known_hosts is None)


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


class SshTunnel:
    """One forwarded port to `target_host:target_port` through the jump host, for the life of this process."""

    def __init__(self, spec: TunnelSpec, target_host: str, target_port: int) -> None:
        self.spec = spec
        self.target = (target_host, target_port)
        self._proc: subprocess.Popen | None = None
        self.local_port: int | None = None

    @property
    def where(self) -> str:
        return f"{self.spec.user}@{self.spec.host}:{self.spec.port}"

    def command(self, local_port: int) -> list[str]:
        s = self.spec
        target = ssh.SshTarget(s.host, s.port, s.user, s.identity_file, s.known_hosts, strict=not s.pin_first_key)
        # ExitOnForwardFailure: a port that cannot be forwarded is an error, not a silent tunnel
        return target.argv("-N", "-T", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveCountMax=3",
                           "-L", f"127.0.0.1:{local_port}:{self.target[0]}:{self.target[1]}")

    def open(self) -> int:
        """Start the tunnel (once) and return the local port; a clear error when it cannot be made."""
        if self._proc is not None and self._proc.poll() is None and self.local_port is not None:
            return self.local_port
        if shutil.which("ssh") is None:
            raise ProvisionError("the database is reached through an SSH tunnel, and ssh is not installed here",
                                 hint="apt-get install openssh-client")
        key = self.spec.identity_file
        if not key.is_file():
            raise ProvisionError(f"database.tunnel.identity_file {key} does not exist",
                                 hint="give the private key that logs in to the jump host")
        if key.stat().st_mode & 0o077:
            raise ProvisionError(f"database.tunnel.identity_file {key} is readable by others (ssh refuses it)",
                                 hint=f"chmod 600 {key}")
        self.spec.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        last = ""
        for _ in range(3):  # a free port taken between our probe and ssh's bind: try another
            port = ssh.free_port()
            proc = subprocess.Popen(self.command(port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True)
            deadline = time.monotonic() + OPEN_TIMEOUT_S
            while time.monotonic() < deadline and proc.poll() is None and not _accepts(port):
                time.sleep(0.1)
            if proc.poll() is None and _accepts(port):
                self._proc, self.local_port = proc, port
                atexit.register(self.close)
                return port
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)
            last = _last_line(proc.stderr.read() if proc.stderr else "")
            if "Address already in use" not in last and "forwarding" not in last:
                break
        raise ProvisionError(f"cannot open the SSH tunnel to the database through {self.where}: "
                             f"{last or 'no answer within %d s' % OPEN_TIMEOUT_S}", hint=_hint(last))

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()


def _last_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip() and not x.startswith("Warning: Permanently")]
    return lines[-1] if lines else ""


def _hint(message: str) -> str:
    if "Permission denied" in message:
        return "the jump host refused the key: check database.tunnel.identity_file and the user name"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in message or "Host key verification failed" in message:
        return ("the jump host's key is not the one pinned before: if the host was rebuilt, remove its line from "
                "the known_hosts file named in the error; otherwise stop: someone may be in the middle")
    if "Connection refused" in message or "timed out" in message or "No route" in message:
        return "check database.tunnel.ssh (host and port) and that this machine may reach it"
    return "run the ssh command by hand with -v to see why (datathon's log has it)"


# One tunnel per jump host and target for the life of the process: every object that reaches the server
# (the provider is made afresh by each command step) shares it instead of opening its own.
_TUNNELS: dict[tuple[TunnelSpec, str, int], SshTunnel] = {}


def tunnel_for(spec: TunnelSpec, target_host: str, target_port: int) -> SshTunnel:
    key = (spec, target_host, target_port)
    if key not in _TUNNELS:
        _TUNNELS[key] = SshTunnel(spec, target_host, target_port)
    return _TUNNELS[key]
