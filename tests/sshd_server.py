"""A jump host for tunnels: the private sshd of tests/sshd.py with a Unix user that may only forward ports (no
shell), logging each forward. Always stopped and the user removed afterwards."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import free_port
from sshd import keygen, private_sshd


@dataclass
class Sshd:
    port: int
    user: str
    key: Path  # the user's private key (0600)
    log: Path

    @property
    def target(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    def forwards(self) -> int:
        """How many port forwards sshd has opened (its debug log names each one)."""
        return self.log.read_text(errors="replace").count("server_request_direct_tcpip")


@contextlib.contextmanager
def sshd(user: str) -> Iterator[Sshd]:
    # sshd reads authorized keys as the user, and (StrictModes) refuses a path below a world-writable folder: a
    # folder of /run the user may read, not pytest's private ones nor /tmp
    folder = Path(tempfile.mkdtemp(prefix="datathon-sshd-", dir="/run"))
    folder.chmod(0o755)
    # '*': no password, and not locked ('!')
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "-p", "*", user],
                   check=True, capture_output=True)
    try:
        key = folder / "user_ed25519"
        (folder / f"authorized_keys_{user}").write_text(keygen(key) + "\n")
        port = free_port()
        with private_sshd(folder, port, log_level="DEBUG1") as log:
            yield Sshd(port=port, user=user, key=key, log=log)
    finally:
        # the forwards' own session processes run as the user: end them before the user goes
        subprocess.run(["pkill", "-KILL", "-u", user], capture_output=True)
        subprocess.run(["userdel", user], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
