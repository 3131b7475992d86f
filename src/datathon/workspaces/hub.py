"""The hub as a background service: its generated config, its process (pid file, log), its REST API.

There is no systemd here, so datathon runs JupyterHub itself, in its own session, as root (PAM logins and
starting servers as the team users need it). Its files live in the event's state folder (0700).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import jinja2

from datathon.config.workspaces import Workspaces
from datathon.database.cluster import process_alive
from datathon.errors import ProvisionError
from datathon.state import StateStore, write_private
from datathon.workspaces import procs
from datathon.workspaces.accounts import Account
from datathon.workspaces.environment import TeamEnvironment

log = logging.getLogger("datathon")

ORGANIZER_SECRET = "hub-organizer-token"
PROXY_SECRET = "hub-proxy-token"
START_TIMEOUT = 60.0


class HubApiError(ProvisionError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the hub answered {status}: {message}",
                         hint="see `datathon status` and the hub's log in the state folder")
        self.status = status


SERVICE_MARK = "DATATHON_HUB"


def hub_processes(state: StateStore) -> list[int]:
    """The hub and proxy of this event's state folder that still run, whatever the event file says now (a
    `workspaces:` section removed, or hub: false, must not leave them running unseen)."""
    folder = state.root / "hub"
    found = []
    for pid_file, needle in ((folder / "hub.pid", str(folder / "jupyterhub_config.py").encode()),
                             (folder / "proxy.pid", b"configurable-http-proxy")):
        pid = procs.read_pid(pid_file)
        if pid and procs.is_root_process(pid, needle):
            found.append(pid)
    # the hub's services (the idle culler) carry the hub's folder in their environment: found even if the hub
    # died without stopping them; listed after the hub, which normally stops them itself
    found += [pid for pid in procs.root_processes_with_env(service_marker(state)) if pid not in found]
    return found


def service_marker(state: StateStore) -> bytes:
    return f"{SERVICE_MARK}={state.root / 'hub'}".encode()


def stop_processes(pids: list[int]) -> None:
    for pid in pids:
        Hub._terminate(pid)


def local_url(ws: Workspaces) -> str:
    """How datathon reaches the hub from this machine."""
    host = "127.0.0.1" if ws.listen in ("0.0.0.0", "127.0.0.1") else ws.listen
    host = "[::1]" if host == "::" else f"[{host}]" if ":" in host else host
    return f"http://{host}:{ws.port}"


def public_url(ws: Workspaces) -> str:
    """The address teams open (the handouts)."""
    return (ws.public_url or local_url(ws)).rstrip("/")


@dataclass
class Hub:
    event: str
    state: StateStore
    env: TeamEnvironment

    @property
    def ws(self):
        return self.env.ws

    @property
    def dir(self) -> Path:
        return self.state.root / "hub"

    @property
    def config_file(self) -> Path:
        return self.dir / "jupyterhub_config.py"

    @property
    def pid_file(self) -> Path:
        return self.dir / "hub.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "hub.log"

    @property
    def ports(self) -> tuple[int, int, int]:
        """Public (proxy), hub (internal), proxy API (internal)."""
        return self.ws.port, self.ws.port + 1, self.ws.port + 2

    @property
    def local_url(self) -> str:
        return local_url(self.ws)

    @property
    def public_url(self) -> str:
        return public_url(self.ws)

    # -- configuration ------------------------------------------------------------------------------
    def render(self, accounts: list[Account]) -> str:
        env = jinja2.Environment(loader=jinja2.PackageLoader("datathon.workspaces", "templates"),
                                 undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                 keep_trailing_newline=True)
        public, hub_port, api_port = self.ports
        listen = f"[{self.ws.listen}]" if ":" in self.ws.listen else self.ws.listen
        idle = self.ws.idle_seconds
        return env.get_template("jupyterhub_config.py.j2").render(
            event=self.event, hub_dir=self.dir, bind_url=f"http://{listen}:{public}",
            hub_bind_url=f"http://127.0.0.1:{hub_port}", proxy_api_url=f"http://127.0.0.1:{api_port}",
            proxy_command=self.env.proxy, proxy_token_file=self.state.secret_path(PROXY_SECRET),
            organizer_token_file=self.state.secret_path(ORGANIZER_SECRET),
            users=sorted(a.user for a in accounts), admins=sorted(a.user for a in accounts if a.admin),
            singleuser=self.env.bin / "jupyterhub-singleuser", python=self.env.bin / "python",
            mem_limit=self.ws.limits.memory, cpu_limit=self.ws.limits.cpus,
            idle_seconds=idle, cull_every=max(10, min(300, idle // 4)) if idle else 0,
            service_mark=SERVICE_MARK,
        )

    def files(self, accounts: list[Account], user_env: dict[str, dict[str, str]]) -> dict[Path, str]:
        return {self.config_file: self.render(accounts),
                self.dir / "user-env.json": json.dumps(user_env, indent=1, sort_keys=True) + "\n"}

    def stale_files(self, accounts: list[Account], user_env: dict[str, dict[str, str]]) -> list[Path]:
        out = []
        for path, text in self.files(accounts, user_env).items():
            try:
                if path.read_text() != text:
                    out.append(path)
            except OSError:
                out.append(path)
        return out

    def write(self, accounts: list[Account], user_env: dict[str, dict[str, str]]) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.state.secret(ORGANIZER_SECRET)
        self.state.secret(PROXY_SECRET)
        cookie = self.dir / "cookie_secret"
        if not cookie.exists():
            write_private(cookie, secrets.token_hex(32) + "\n")
        for path, text in self.files(accounts, user_env).items():
            write_private(path, text)

    def config_digest_running(self) -> str | None:
        try:
            return (self.dir / "running-config").read_text().strip()
        except OSError:
            return None

    def config_digest(self) -> str:
        import hashlib

        h = hashlib.sha256()
        for name in ("jupyterhub_config.py", "user-env.json"):
            try:
                h.update((self.dir / name).read_bytes())
            except OSError:
                pass
        return h.hexdigest()[:16]

    # -- process ------------------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The hub's pid when it runs: the pid file names a live root process started with this config."""
        pid = procs.read_pid(self.pid_file)
        return pid if pid and procs.is_root_process(pid, str(self.config_file).encode()) else None

    def proxy_pid(self) -> int | None:
        pid = procs.read_pid(self.dir / "proxy.pid")
        needle = f"--api-port\x00{self.ports[2]}".encode()
        return pid if pid and procs.is_root_process(pid, needle) else None

    def check_listener(self) -> None:
        """The public port must be held by this event's proxy before a token or password is sent to it: any
        local user may bind a free port (while the hub restarts, say) and read what comes."""
        proxy = self.proxy_pid()
        if proxy is None or not procs.holds_port(proxy, self.ws.port):
            raise HubApiError(503, f"port {self.ws.port} is not held by this event's hub proxy")

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        busy = [p for p in self.ports if procs.port_in_use(p)]
        if busy:
            raise ProvisionError(f"port(s) {', '.join(map(str, busy))} needed by the hub are already in use",
                                 hint="stop what holds them, or set workspaces.port to a free port (it uses "
                                      "port, port+1 and port+2)")
        self.pid_file.unlink(missing_ok=True)
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(
                [str(self.env.bin / "jupyterhub"), "-f", str(self.config_file)], cwd=self.dir, stdin=subprocess.DEVNULL,
                stdout=fd, stderr=fd, start_new_session=True,  # its own session: it outlives this command
                env={"PATH": f"{self.env.bin}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                     "HOME": str(self.dir)},
            )
        finally:
            os.close(fd)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                if self.pid() == proc.pid:  # the process we started wrote its pid file, it is not another one
                    self.api("GET", "/hub/api/")
                    (self.dir / "running-config").write_text(self.config_digest() + "\n")
                    return
            except (OSError, HubApiError):
                pass
            time.sleep(0.3)
        if proc.poll() is None:
            self._terminate(proc.pid)
        self.stop()  # a proxy it started must not outlive it
        raise ProvisionError(f"the hub did not start within {START_TIMEOUT:.0f}s: {self.log_tail()}",
                             hint=f"see {self.log_file}; fix the cause and run `datathon up` again")

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(line.strip() for line in text[-lines:])

    def stop(self) -> None:
        stop_processes(hub_processes(self.state))
        (self.dir / "running-config").unlink(missing_ok=True)

    @staticmethod
    def _terminate(pid: int) -> None:
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not process_alive(pid):
                    with contextlib.suppress(ChildProcessError, OSError):
                        os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child
                    return
                time.sleep(0.1)
        raise ProvisionError(f"process {pid} survives SIGKILL", hint="look at it with ps; then run the command again")

    # -- REST API -----------------------------------------------------------------------------------
    @cached_property
    def token(self) -> str:
        return self.state.secret(ORGANIZER_SECRET)

    def api(self, method: str, path: str, body: dict | None = None, *, timeout: float = 10.0):
        self.check_listener()
        req = urllib.request.Request(
            self.local_url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise HubApiError(exc.code, exc.read().decode(errors="replace")[:300]) from None
        return json.loads(raw) if raw else None

    def users(self) -> dict[str, dict]:
        return {u["name"]: u for u in self.api("GET", "/hub/api/users") or []}

    def server(self, user: str) -> dict | None:
        """The user's default server as the hub sees it; None when it has none (or the hub has no such user)."""
        try:
            info = self.api("GET", f"/hub/api/users/{user}")
        except HubApiError as exc:
            if exc.status == 404:
                return None
            raise
        return (info.get("servers") or {}).get("") or None

    def start_server(self, user: str, *, timeout: float = 120.0) -> None:
        try:
            self.api("POST", f"/hub/api/users/{user}/server")
        except HubApiError as exc:
            if exc.status != 400:  # 400: already running
                raise
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.server(user)
            if server and server.get("ready"):
                return
            time.sleep(0.3)
        raise ProvisionError(f"the server of {user} was not ready within {timeout:.0f}s",
                             hint=f"see {self.log_file}")

    @contextlib.contextmanager
    def user_token(self, user: str, *, minutes: int = 15):
        """A short-lived token of the user's own, that can reach only that user's server. The organizer's token
        never travels to a team's server (a process the team controls could keep it)."""
        made = self.api("POST", f"/hub/api/users/{user}/tokens",
                        {"scopes": [f"access:servers!user={user}"], "expires_in": minutes * 60,
                         "note": "datathon check"})
        try:
            yield made["token"]
        finally:
            with contextlib.suppress(OSError, HubApiError):
                self.api("DELETE", f"/hub/api/users/{user}/tokens/{made['id']}")

    def stop_server(self, user: str, *, timeout: float = 60.0) -> None:
        try:
            self.api("DELETE", f"/hub/api/users/{user}/server")
        except HubApiError as exc:
            if exc.status not in (400, 404):
                raise
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server(user) is None:
                return
            time.sleep(0.3)
        raise ProvisionError(f"the server of {user} did not stop within {timeout:.0f}s", hint=f"see {self.log_file}")
