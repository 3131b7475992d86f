"""A private sshd for tests: its own host key and config in a temporary folder, on a free loopback port; always
stopped by the context manager."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


def available() -> str | None:
    """None when a private sshd can run here, else why not."""
    if not SSHD.exists() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "openssh-server/openssh-client not installed (apt-get install openssh-server)"
    return None


def keygen(path: Path, comment: str = "datathon-test") -> str:
    """An ed25519 key pair at `path` (private) and `path`.pub; returns the public line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


@contextlib.contextmanager
def private_sshd(folder: Path, port: int, *, log_level: str = "VERBOSE"):
    """`log_level`: DEBUG1 also logs each port forward (what a tunnel's test counts)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    host_key = folder / "host_ed25519"
    keygen(host_key, "test-host")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation folder
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile .ssh/authorized_keys {folder}/authorized_keys_%u\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nUsePAM yes\nAllowTcpForwarding yes\nX11Forwarding no\n"
        # root only with a key the test wrote into this folder (as an image's admin user with sudo would be)
        f"PermitRootLogin {'prohibit-password' if (folder / 'authorized_keys_root').exists() else 'no'}\n"
        f"StrictModes yes\nLogLevel {log_level}\n")
    log = folder / "sshd.log"
    proc = subprocess.Popen([str(SSHD), "-D", "-f", str(config), "-E", str(log)])
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {log.read_text() if log.exists() else ''}")
            time.sleep(0.1)
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
