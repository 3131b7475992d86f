"""A private sshd on a free port (its own host key, config and log in a temp folder) and a Unix user that may only
forward ports: the jump host a tunnel goes through. Always stopped and removed afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import free_port


@dataclass
class Sshd:
    port: int
    user: str
    key: Path  # the user's private key (0600)
    host_key_pub: Path
    log: Path
    pid: int

    @property
    def target(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    def forwards(self) -> int:
        """How many port forwards sshd has opened (its debug log names each one)."""
        return self.log.read_text(errors="replace").count("server_request_direct_tcpip")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)


@contextlib.contextmanager
def sshd(user: str) -> Iterator[Sshd]:
    # sshd reads authorized_keys as the user: the folder must be readable by it (pytest's are root's only)
    folder = Path(tempfile.mkdtemp(prefix="datathon-sshd-"))
    os.chmod(folder, 0o755)
    # '*': no password, and not locked ('!', which sshd without PAM refuses even for keys)
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "-p", "*", user],
                   check=True, capture_output=True)
    proc = None
    try:
        host_key, key = folder / "host_ed25519", folder / "user_ed25519"
        for k in (host_key, key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True)
        keys = folder / "authorized_keys"
        keys.write_text(key.with_suffix(".pub").read_text())
        port, log = free_port(), folder / "sshd.log"
        config = folder / "sshd_config"
        config.write_text("\n".join([
            f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"PidFile {folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {keys}", "StrictModes no",  # the folder is under /tmp (world-writable parent)
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin no",
            f"AllowUsers {user}", "AllowTcpForwarding local", "PermitTTY no", "X11Forwarding no",
            "UsePAM no", "LogLevel DEBUG1", "",
        ]))
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation folder
        proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                                stdout=subprocess.DEVNULL, stderr=log.open("w"))
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield Sshd(port=port, user=user, key=key, host_key_pub=host_key.with_suffix(".pub"), log=log, pid=proc.pid)
    finally:
        if proc is not None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
        # the forwards' own session processes run as the user: end them before the user goes
        subprocess.run(["pkill", "-KILL", "-u", user], capture_output=True)
        subprocess.run(["userdel", user], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
