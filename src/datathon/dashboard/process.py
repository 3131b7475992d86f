"""Where `datathon serve` runs on this machine: its own session, a pid file and a log in the state folder (0600),
and the port it must hold before anyone is told its address."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from datathon.core import procs
from datathon.core.context import Context
from datathon.errors import ProvisionError

START_TIMEOUT = 30.0
ORGANIZER_SECRET = "dashboard-organizer"  # the organizer's token (state secret, 0600), made before the first start
MARK = b"datathon-serve"  # in the command line: a recycled pid is never taken for the dashboard


@dataclass(frozen=True)
class Place:
    folder: Path
    listen: str
    port: int
    tls: bool

    @property
    def pid_file(self) -> Path:
        return self.folder / "serve.pid"

    @property
    def log_file(self) -> Path:
        return self.folder / "serve.log"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.listen in ("0.0.0.0", "::") else self.listen
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


def place(ctx: Context, *, default: bool = False) -> Place | None:
    """Where the file puts the dashboard; None when it has no `dashboard:` (`default`: the defaults then, for a
    `datathon serve` run by hand)."""
    from datathon.config.dashboard import Dashboard

    d = ctx.config.dashboard or (Dashboard() if default else None)
    if d is None:
        return None
    return Place(folder(ctx), d.listen, d.port, d.tls)


def folder(ctx: Context) -> Path:
    return ctx.state.root / "dashboard"


def running_pid(folder_: Path) -> int | None:
    """The pid of this event's dashboard when it runs (the pid file names a live `datathon serve` of root)."""
    pid = procs.read_pid(folder_ / "serve.pid")
    return pid if pid is not None and procs.is_root_process(pid, MARK) else None


def healthy(p: Place, timeout: float = 2.0) -> bool:
    """It answers /healthz on its address (TLS: the certificate is not checked here, the port's holder is)."""
    context = ssl._create_unverified_context() if p.tls else None  # noqa: S323 (our own process, by pid and port)
    try:
        with urllib.request.urlopen(f"{p.url}/healthz", timeout=timeout, context=context) as r:
            return r.status == 200
    except OSError:
        return False


def start(ctx: Context, p: Place) -> int:
    """Start `datathon serve --foreground` detached; returns its pid once it holds the port and answers."""
    p.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ctx.state.secret(ORGANIZER_SECRET)  # the organizer can read it before the first login
    if who := procs.port_holders(p.port, p.listen):
        raise ProvisionError(f"the dashboard cannot listen on {p.listen}:{p.port}: held by {', '.join(who)}",
                             hint="stop that process, or set dashboard.port to a free port; then run this again")
    fd = os.open(p.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "datathon", "serve", "--foreground", "-c", str(ctx.loaded.path),
             f"--mark={MARK.decode()}"],
            stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True, cwd=p.folder,
        )
    finally:
        os.close(fd)
    p.pid_file.write_text(f"{proc.pid}\n")
    os.chmod(p.pid_file, 0o600)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if procs.holds_port(proc.pid, p.port, p.listen) and healthy(p):
            return proc.pid
        time.sleep(0.2)
    if proc.poll() is None:
        procs.terminate(proc.pid)
    p.pid_file.unlink(missing_ok=True)
    raise ProvisionError(f"the dashboard did not start within {START_TIMEOUT:.0f}s: {log_tail(p.log_file)}",
                         hint=f"see {p.log_file}; fix the cause and run this again")


def stop(folder_: Path) -> bool:
    """Stop the dashboard if it runs; True when one was stopped."""
    pid = running_pid(folder_)
    if pid is not None:
        procs.terminate(pid)
    (folder_ / "serve.pid").unlink(missing_ok=True)
    return pid is not None


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:]) or "no output"
