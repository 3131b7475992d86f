"""Talking to the hub as people and programs do: a browser session that logs in through the login form, and a
Jupyter kernel driven over the kernel protocol (websocket), as JupyterLab does. Used by `check` and the tests."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

from websockets.sync.client import connect as ws_connect


class BrowserSession:
    """Cookies and redirects, like a browser: what a team sees when it opens the hub."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def request(self, path: str, *, data: dict | None = None, timeout: float = 30.0) -> tuple[int, str, str]:
        """(status, final URL, body) after redirects."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body)
        try:
            with self.opener.open(req, timeout=timeout) as resp:
                return resp.status, resp.geturl(), resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.geturl(), exc.read().decode(errors="replace")

    def login(self, user: str, password: str) -> bool:
        """True when the hub accepted the password (it set its login cookie)."""
        _, _, page = self.request("/hub/login")
        m = re.search(r'name="_xsrf"\s+value="([^"]+)"', page)
        form = {"username": user, "password": password, **({"_xsrf": m.group(1)} if m else {})}
        self.request("/hub/login?next=%2Fhub%2Fhome", data=form)
        return any(c.name == "jupyterhub-hub-login" for c in self.jar)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect means the hub answered, not the server


def server_answers(base_url: str, user: str, token: str) -> bool:
    """True when the user's own server (not the hub, which answers while the proxy has no route to a server that
    just started) answers its status API through the proxy."""
    req = urllib.request.Request(f"{base_url.rstrip('/')}/user/{user}/api/status",
                                 headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.build_opener(_NoRedirect).open(req, timeout=10) as resp:
            body = json.loads(resp.read() or b"{}")
    except (OSError, ValueError, urllib.error.HTTPError):
        return False
    return isinstance(body, dict) and "kernels" in body and "started" in body


def wait_for_server(base_url: str, user: str, token: str, *, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server_answers(base_url, user, token):
            return
        time.sleep(0.5)
    raise TimeoutError(f"the server of {user} did not answer through the hub's proxy within {timeout:.0f}s")


@dataclass
class Execution:
    status: str  # ok, error, timeout
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def summary(self) -> str:
        if self.ok:
            return "ok: " + (self.stdout.strip().splitlines() or [""])[-1][:200]
        return f"{self.status}: {(self.error or self.stderr).strip()[-300:]}"


@dataclass
class KernelClient:
    """One kernel in one user's server, reached through the hub's proxy with an API token (or in a JupyterLab
    running alone, prefix="", with its own token)."""

    base_url: str  # the hub's public address
    user: str
    token: str
    kernel_name: str
    prefix: str | None = None  # the server's path under base_url: the hub's /user/<name> unless given ("" alone)
    kernel_id: str | None = None
    session: str = field(default_factory=lambda: uuid.uuid4().hex)
    _ws: object = None
    _stack: contextlib.ExitStack | None = None

    @property
    def api(self) -> str:
        prefix = f"/user/{self.user}" if self.prefix is None else self.prefix
        return f"{self.base_url.rstrip('/')}{prefix}/api"

    def _http(self, method: str, path: str, body: dict | None = None) -> dict | None:
        req = urllib.request.Request(self.api + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def start(self) -> None:
        self.kernel_id = self._http("POST", "/kernels", {"name": self.kernel_name})["id"]
        url = self.api.replace("http://", "ws://").replace("https://", "wss://")
        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(ws_connect(
            f"{url}/kernels/{self.kernel_id}/channels?session_id={self.session}",
            additional_headers={"Authorization": f"token {self.token}"}, open_timeout=30, max_size=2**24))

    def execute(self, code: str, *, timeout: float = 120.0) -> Execution:
        msg_id = uuid.uuid4().hex
        self._ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "datathon", "session": self.session,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        result = Execution("timeout")
        started = time.monotonic()
        replied = idle = False
        out: dict[str, list[str]] = {"stdout": [], "stderr": []}
        while not (replied and idle):
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                result.status = "timeout"
                result.error = f"no answer within {timeout:.0f}s"
                break
            try:
                msg = json.loads(self._ws.recv(timeout=left))
            except TimeoutError:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["header"]["msg_type"], msg.get("content", {})
            if kind == "stream":
                out[content.get("name", "stdout")].append(content.get("text", ""))
            elif kind == "error":
                result.error = f"{content.get('ename')}: {content.get('evalue')}"
            elif kind == "execute_reply":
                replied = True
                result.status = content.get("status", "error")
                if result.status == "error" and not result.error:
                    result.error = f"{content.get('ename')}: {content.get('evalue')}"
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True
        result.stdout, result.stderr = "".join(out["stdout"]), "".join(out["stderr"])
        result.seconds = time.monotonic() - started
        return result

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._stack.close()
            except Exception:  # noqa: BLE001 - closing a broken socket must not hide the real result
                pass
            self._ws = None
        if self.kernel_id:
            try:
                self._http("DELETE", f"/kernels/{self.kernel_id}")
            except (OSError, urllib.error.HTTPError):
                pass
            self.kernel_id = None
