"""Commands on a team's machine over SSH with the team's key: OpenSSH's own client, non-interactive.

Host keys: a known_hosts file of the event (trust on first use, then a changed key is refused). Every call has a
timeout; a forward is a context manager that always ends its ssh process.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from datathon.errors import DatathonError


class SshError(DatathonError):
    pass


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path  # the event's own: written on first contact, checked afterwards
    strict: bool = False  # known_hosts is the organizer's: only a key already in it is accepted

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def argv(self, *extra: str) -> list[str]:
        """ssh with this target's options, `extra` options, then the destination."""
        return ["ssh", "-p", str(self.port), "-i", str(self.key_file), "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                "-o", f"StrictHostKeyChecking={'yes' if self.strict else 'accept-new'}",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=15", "-o", "LogLevel=ERROR",
                "-F", "/dev/null", *extra, "-l", self.user, self.host]


def run(target: SshTarget, command: str, *, stdin: bytes | None = None,
        timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run `command` (a shell line on the machine) and return what came back; ssh's own failure (255) raises."""
    try:
        res = subprocess.run([*target.argv(), command], input=stdin if stdin is not None else b"",
                             capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SshError(f"ssh {target}: no answer within {timeout:.0f}s",
                       hint="is the machine running and its address right? `datathon status`") from None
    if res.returncode == 255:
        raise SshError(f"ssh {target} failed: {res.stderr.decode(errors='replace').strip() or 'no message'}",
                       hint="check the key file, that port 22 is open to this address (aws.ssh_from), "
                            "and that the machine finished booting")
    return res


def put_file(target: SshTarget, path: str, data: bytes, mode: int = 0o600, *, timeout: float = 60.0) -> None:
    """Write ~/`path` on the machine as the target user: created private, renamed into place (never half
    written), the secret on stdin only."""
    q = shlex.quote(path)
    cmd = (f"umask 077 && cd && mkdir -p \"$(dirname {q})\" && cat > {q}.datathon-new && "
           f"chmod {mode:o} {q}.datathon-new && mv -f {q}.datathon-new {q}")
    res = run(target, cmd, stdin=data, timeout=timeout)
    if res.returncode != 0:
        raise SshError(f"writing ~/{path} on {target} failed: {res.stderr.decode(errors='replace').strip()}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def forward(target: SshTarget, remote_port: int, *, timeout: float = 30.0) -> Iterator[int]:
    """`ssh -L` to 127.0.0.1:`remote_port` on the machine; yields the local port."""
    local = free_port()
    proc = subprocess.Popen(target.argv("-N", "-o", "ExitOnForwardFailure=yes",
                                        "-L", f"127.0.0.1:{local}:127.0.0.1:{remote_port}"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                raise SshError(f"ssh -L to port {remote_port} on {target} failed: {err or 'no message'}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), timeout=1):
                break
            if time.monotonic() > deadline:
                raise SshError(f"ssh -L to port {remote_port} on {target}: not ready within {timeout:.0f}s")
            time.sleep(0.2)
        yield local
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
