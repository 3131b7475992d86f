"""The hub as a background service: its generated config, its process (pid file, log), its REST API.

There is no systemd here, so datathon runs JupyterHub itself, in its own session, as root (PAM logins and
starting servers as the team users need it). Its files live in the event's state folder (0700).

Any local user may bind a free port, and a port is free while its process restarts. So the proxy runs apart from
the hub (datathon starts it; the hub only talks to it) and holds the public port across hub restarts, and the
hub's own port and the proxy's API port are privileged ports on loopback, which only root can bind. Before the
proxy starts, and before anything is sent to a port, datathon makes sure the port is held by this event's own
process, and names whoever else holds it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import jinja2

from datathon.config.workspaces import Workspaces
from datathon.core import procs
from datathon.core.context import Context
from datathon.core.state import StateStore, write_private
from datathon.errors import ProvisionError
from datathon.workspaces import sandbox
from datathon.workspaces.accounts import Account
from datathon.workspaces.environment import TeamEnvironment

log = logging.getLogger("datathon")

ORGANIZER_SECRET = "hub-organizer-token"
PROXY_SECRET = "hub-proxy-token"
START_TIMEOUT = 60.0
PROXY_START_TIMEOUT = 20.0
# Privileged loopback ports for the hub and the proxy's API: only root can bind below 1024, so no team can take
# them while the hub restarts. Chosen per event file (starting from its tag) and recorded in state.json.
PRIVILEGED = range(600, 1024)


class HubApiError(ProvisionError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the hub answered {status}: {message}",
                         hint="see `datathon status` and the hub's log in the state folder")
        self.status = status


SERVICE_MARK = "DATATHON_HUB"
# user_options of a server datathon pre-started (the time it asked, ISO UTC): the idle culler's rule
# (templates/idle_culler_config.py) leaves it alone until its team's first visit
PRESTART_MARK = "datathon_prestart"
CULLER_CONFIG = "idle_culler_config.py"


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


def _held_by_others(ports: list[tuple[int, str]]) -> str | None:
    busy = {p: procs.port_holders(p, host) for p, host in ports if procs.port_in_use(p, host)}
    if not busy:
        return None
    return "; ".join(f"port {p} is held by {', '.join(who)}" for p, who in busy.items())


LOOPBACK = "127.0.0.1"


def local_host(ws: Workspaces) -> str:
    """The address datathon connects to the hub's public port on."""
    return LOOPBACK if ws.listen in ("0.0.0.0", "127.0.0.1") else "::1" if ws.listen == "::" else ws.listen


def local_url(ws: Workspaces) -> str:
    """How datathon reaches the hub from this machine."""
    host = local_host(ws)
    host = f"[{host}]" if ":" in host else host
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
        """Public (the proxy), the hub's own and the proxy's API (privileged, loopback)."""
        hub_port, api_port = self.internal_ports()
        return self.ws.port, hub_port, api_port

    def internal_ports(self) -> tuple[int, int]:
        recorded = self.state.load().get("workspaces", {}).get("hub_ports")
        if recorded:
            return recorded["hub"], recorded["api"]
        # Not recorded yet (written with the configuration): the first two free ones from this event's own start.
        start = int(self.state.tag, 16) % len(PRIVILEGED)
        order = list(PRIVILEGED[start:]) + list(PRIVILEGED[:start])
        # any address: the hub binds loopback; looked at one by one, only until two are found
        free = list(itertools.islice((p for p in order if not procs.port_in_use(p)), 2))
        if len(free) < 2:
            raise ProvisionError("no free privileged port for the hub", hint="free a port below 1024 on loopback")
        return free[0], free[1]

    def _record_ports(self) -> None:
        hub_port, api_port = self.internal_ports()
        data = self.state.load()
        data.setdefault("workspaces", {})["hub_ports"] = {"hub": hub_port, "api": api_port}
        self.state.save(data)

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
            rlimits=sandbox.rlimits(self.ws).as_dict(), umask=sandbox.UMASK,
            event=self.event, hub_dir=self.dir, bind_url=f"http://{listen}:{public}",
            hub_bind_url=f"http://127.0.0.1:{hub_port}", proxy_api_url=f"http://127.0.0.1:{api_port}",
            proxy_token_file=self.state.secret_path(PROXY_SECRET),
            organizer_token_file=self.state.secret_path(ORGANIZER_SECRET),
            users=sorted(a.user for a in accounts), admins=sorted(a.user for a in accounts if a.admin),
            singleuser=self.env.bin / "jupyterhub-singleuser", python=self.env.bin / "python",
            mem_limit=self.ws.limits.memory, cpu_limit=self.ws.limits.cpus,
            idle_seconds=idle, cull_every=max(10, min(300, idle // 4)) if idle else 0,
            service_mark=SERVICE_MARK, light_start=self.ws.light_start, prestart_mark=PRESTART_MARK,
        )

    def files(self, accounts: list[Account], user_env: dict[str, dict[str, str]]) -> dict[Path, str]:
        culler = (Path(__file__).parent / "templates" / CULLER_CONFIG).read_text()
        return {self.config_file: self.render(accounts),
                self.dir / "user-env.json": json.dumps(user_env, indent=1, sort_keys=True) + "\n",
                self.dir / CULLER_CONFIG: culler}

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
        self._record_ports()
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
        for name in ("jupyterhub_config.py", "user-env.json", CULLER_CONFIG):
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

    def proxy_args(self) -> list[str]:
        """The proxy's command line (its token comes in its environment, never on a command line)."""
        public, hub_port, api_port = self.ports
        return [str(self.env.proxy), "--ip", self.ws.listen, "--port", str(public), "--api-ip", "127.0.0.1",
                "--api-port", str(api_port), "--error-target", f"http://127.0.0.1:{hub_port}/hub/error",
                "--log-level", "warn"]

    def proxy_pid(self) -> int | None:
        pid = procs.read_pid(self.dir / "proxy.pid")
        needle = f"--api-port\x00{self.ports[2]}".encode()
        return pid if pid and procs.is_root_process(pid, needle) else None

    def proxy_current(self) -> bool:
        """This event's proxy runs with the wanted command line and holds both its ports."""
        pid = self.proxy_pid()
        if pid is None:
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:
            return False
        wanted = [a.encode() for a in self.proxy_args()[1:]]
        public, _, api_port = self.ports
        return (cmdline[-len(wanted):] == wanted and procs.holds_port(pid, public, self.ws.listen)
                and procs.holds_port(pid, api_port, LOOPBACK))

    def check_listener(self) -> None:
        """The public port must be held by this event's proxy before a token or password is sent to it: any
        local user may bind a free port (while the proxy is down, say) and read what comes."""
        proxy, host = self.proxy_pid(), local_host(self.ws)
        if proxy is None or not procs.holds_port(proxy, self.ws.port, host):
            who = procs.port_holders(self.ws.port, host)
            raise HubApiError(503, f"port {self.ws.port} is not held by this event's hub proxy"
                                   + (f" but by {', '.join(who)}" if who else ""))

    def is_running(self) -> bool:
        return self.pid() is not None

    def start_proxy(self) -> None:
        """Start the proxy unless it runs as wanted; it keeps the public port while the hub restarts."""
        if self.proxy_current():
            return
        if pid := self.proxy_pid():
            self._terminate(pid)
        public, _, api_port = self.ports
        if busy := _held_by_others([(public, self.ws.listen), (api_port, LOOPBACK)]):
            raise ProvisionError(f"the hub's proxy cannot start: {busy}",
                                 hint="stop that process (nothing is sent to it), or set workspaces.port to a free "
                                      "port; then run `datathon up` again")
        fd = os.open(self.dir / "proxy.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(
                self.proxy_args(), cwd=self.dir, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                start_new_session=True,  # it outlives this command and the hub
                env={"PATH": f"{self.env.bin}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                     "CONFIGPROXY_AUTH_TOKEN": self.state.secret(PROXY_SECRET)},
            )
        finally:
            os.close(fd)
        (self.dir / "proxy.pid").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + PROXY_START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if procs.holds_port(proc.pid, public, self.ws.listen) and procs.holds_port(proc.pid, api_port, LOOPBACK):
                return
            time.sleep(0.1)
        if proc.poll() is None:
            self._terminate(proc.pid)
        else:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, os.WNOHANG)
        busy = _held_by_others([(public, self.ws.listen), (api_port, LOOPBACK)])
        raise ProvisionError(f"the hub's proxy did not take its ports: {busy or self.log_tail(name='proxy.log')}",
                             hint="stop that process (nothing was sent to it), or set workspaces.port to a free "
                                  "port; then run `datathon up` again")

    def start(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.state.load().get("workspaces", {}).get("hub_ports"):
            self._record_ports()
        self.start_proxy()
        if busy := _held_by_others([(self.ports[1], LOOPBACK)]):
            raise ProvisionError(f"the hub cannot start: {busy}",
                                 hint="stop that process, or remove `hub_ports` from state.json to choose others")
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
                # the process we started wrote its pid file and holds the hub's port: it is not another one
                if self.pid() == proc.pid and procs.holds_port(proc.pid, self.ports[1], LOOPBACK):
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

    def log_tail(self, lines: int = 3, *, name: str = "hub.log") -> str:
        try:
            text = (self.dir / name).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(line.strip() for line in text[-lines:])

    def stop(self) -> None:
        """The hub, its services and its proxy."""
        stop_processes(hub_processes(self.state))
        (self.dir / "running-config").unlink(missing_ok=True)

    def stop_hub(self) -> None:
        """The hub and its services; the proxy keeps the public port (and the team servers' routes)."""
        proxy = self.proxy_pid()
        stop_processes([p for p in hub_processes(self.state) if p != proxy])
        (self.dir / "running-config").unlink(missing_ok=True)

    @staticmethod
    def _terminate(pid: int) -> None:
        procs.terminate(pid)

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

    def spawn(self, user: str, *, options: dict | None = None) -> None:
        """Ask for the user's server to start, without waiting for it (the hub answers once the spawn is under
        way; a server already running or starting is left as it is)."""
        try:
            self.api("POST", f"/hub/api/users/{user}/server",
                     {"user_options": options} if options is not None else None, timeout=60.0)
        except HubApiError as exc:
            if exc.status != 400:  # 400: already running
                raise
        except TimeoutError:
            pass  # a busy hub: the spawn was asked for; `server()` shows it

    def start_server(self, user: str, *, timeout: float = 120.0, options: dict | None = None) -> None:
        """Start the user's server and wait until it is ready. `options`: its user_options (None: the hub reuses
        the last ones, e.g. a pre-start's mark when `restart` moves a server that its team has not opened yet)."""
        deadline = time.monotonic() + timeout
        try:
            # The hub answers once the spawn is under way, which on a busy machine takes more than a plain call's
            # 10 s; a request that times out still started the spawn: the polling below sees it.
            self.api("POST", f"/hub/api/users/{user}/server",
                     {"user_options": options} if options is not None else None, timeout=60.0)
        except HubApiError as exc:
            if exc.status != 400:  # 400: already running
                raise
        except TimeoutError:
            pass
        while time.monotonic() < deadline:
            try:
                server = self.server(user)
            except TimeoutError:  # a busy hub: ask again until the deadline
                server = None
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

    def forget_user(self, user: str) -> None:
        """Remove the user from the hub's database (its server must be stopped): every cookie, API token and
        OAuth token it had dies with it. It is made again when it next logs in (or by `restore_user`)."""
        try:
            self.api("DELETE", f"/hub/api/users/{user}")
        except HubApiError as exc:
            if exc.status != 404:
                raise

    def restore_user(self, user: str, *, admin: bool = False) -> None:
        try:
            self.api("POST", f"/hub/api/users/{user}", {"admin": admin})
        except HubApiError as exc:
            if exc.status != 409:  # 409: it exists
                raise

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


def hub_for(ctx: Context) -> Hub:
    ws = ctx.config.workspaces
    assert ws is not None
    return Hub(ctx.config.event, ctx.state, TeamEnvironment(ws))


def datasets_folder(ctx: Context) -> Path | None:
    """The event's local dataset folder, linked at ~/datasets (None when the event has none on this machine)."""
    storage = ctx.config.storage
    if storage is None or storage.backend != "local":
        return None
    return storage.local_root(ctx.config.event)
