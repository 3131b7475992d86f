"""Workspace probes for a team's own machine (AWS), run from the organizer's laptop over SSH with the team's key:
what the team gets after the bootstrap. JupyterLab is reached as the team reaches it, through an SSH tunnel to
127.0.0.1 on the machine, with the token that only the team's account can read; the kernels run the same cells as
the hub's probes (workspace_probes.python_code / r_code)."""

from __future__ import annotations

import contextlib
import shlex
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from datathon.check.model import Evidence, Probe, ProbeFailed, ProbeResult, ProbeSkipped
from datathon.check.workspace_probes import own_work_problem, python_code, r_code, table_name
from datathon.core import ssh
from datathon.errors import DatathonError
from datathon.workspaces.client import KernelClient

MACHINE_PROBES: list[Probe] = []


def machine_probe(id: str, description: str, *, expect: str):
    def register(fn):
        MACHINE_PROBES.append(Probe(id, description, expect, fn))
        return fn

    return register


@dataclass
class MachineSession:
    target: ssh.SshTarget
    team: str  # the team's name: its schema
    role: str  # its database login, which is also its Unix user
    port: int = 8888  # JupyterLab on the machine
    scratch: str = "/scratch"
    shared_table: str | None = None  # a shared table, quoted for SQL, that the team reads
    evidence: list[Evidence] = field(default_factory=list)
    closers: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _lab: tuple[str, str] | None = None  # (local URL through the tunnel, token)
    _kernels: dict[str, KernelClient] = field(default_factory=dict)

    def note(self, statement: str, result: str) -> None:
        self.evidence.append(Evidence(statement, result))

    def sh(self, command: str, *, what: str | None = None, timeout: float = 60.0) -> tuple[int, str]:
        """Run a shell line as the team; the evidence shows the line and what came back."""
        try:
            res = ssh.run(self.target, command, timeout=timeout)
        except ssh.SshError as exc:
            self.note(what or command, f"ERROR: {exc}")
            raise ProbeFailed(f"ssh {self.target}: {exc}") from None
        out = (res.stdout + res.stderr).decode(errors="replace").strip()
        self.note(what or command, f"exit {res.returncode}: {out[-300:]}")
        return res.returncode, res.stdout.decode(errors="replace").strip()

    def lab(self) -> tuple[str, str]:
        """JupyterLab through a tunnel, and its token (read over SSH: it never travels elsewhere)."""
        if self._lab is None:
            rc, token = self.sh("cat ~/.datathon/jupyter-token", what="read the JupyterLab token (cat ~/.datathon/"
                                                                       "jupyter-token)")
            self.evidence[-1] = Evidence(self.evidence[-1].statement, f"exit {rc}: ({len(token)} characters)")
            if rc != 0 or not token:
                raise ProbeFailed("the team has no JupyterLab token")
            try:
                local = self.closers.enter_context(ssh.forward(self.target, self.port))
            except ssh.SshError as exc:
                raise ProbeFailed(str(exc)) from None
            self._lab = (f"http://127.0.0.1:{local}", token)
        return self._lab

    def kernel(self, name: str) -> KernelClient:
        if name not in self._kernels:
            url, token = self.lab()
            k = KernelClient(url, self.role, token, name, prefix="")
            self.closers.callback(k.close)
            k.start()
            self._kernels[name] = k
        return self._kernels[name]

    def close(self) -> None:
        self.closers.close()


def _status(url: str, token: str | None) -> int:
    req = urllib.request.Request(f"{url}/api/status", headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@machine_probe("vm.ssh", "logs in over SSH with the team's key, as its own user with a private home", expect="works")
def ssh_login(s: MachineSession) -> None:
    rc, out = s.sh('id -un; stat -c %a "$HOME"')
    if rc != 0 or out.split() != [s.role, "700"]:
        raise ProbeFailed(f"expected user {s.role} with home mode 700, got {out!r}")


@machine_probe("vm.login.db", "a login shell reaches the database with no arguments (PG* settings, ~/.pgpass)",
               expect="works")
def login_db(s: MachineSession) -> None:
    rc, out = s.sh("bash -lc " + shlex.quote("psql -XAtw -c 'SELECT current_user, current_schema()'"))
    if rc != 0 or out.splitlines()[-1:] != [f"{s.role}|{s.team}"]:
        raise ProbeFailed(f"psql in a login shell: {out or 'no output'}")


@machine_probe("vm.lab.local", "JupyterLab listens on 127.0.0.1 only (reached through an SSH tunnel)", expect="works")
def lab_local(s: MachineSession) -> None:
    rc, out = s.sh(f"ss -Hltn 'sport = :{s.port}'")
    addrs = [line.split()[3] for line in out.splitlines() if len(line.split()) >= 4]
    if rc != 0 or not addrs:
        raise ProbeFailed(f"nothing listens on port {s.port}")
    if any(a != f"127.0.0.1:{s.port}" for a in addrs):
        raise ProbeFailed(f"port {s.port} is open beyond the machine itself: {', '.join(addrs)}")


@machine_probe("vm.lab.token", "JupyterLab answers with the team's token and refuses a request without it",
               expect="works")
def lab_token(s: MachineSession) -> None:
    url, token = s.lab()
    with_token, without = _status(url, token), _status(url, None)
    s.note(f"GET {url}/api/status with the token", f"HTTP {with_token}")
    s.note(f"GET {url}/api/status without a token", f"HTTP {without}")
    if with_token != 200 or without not in (401, 403):
        raise ProbeFailed(f"with the token HTTP {with_token}, without HTTP {without}")


def _kernel_work(s: MachineSession, kernel: str, code: str, language: str) -> None:
    try:
        r = s.kernel(kernel).execute(code)
    except (OSError, DatathonError) as exc:
        s.note(f"[{kernel}] query and write", f"ERROR: {exc}")
        raise ProbeFailed(f"the {kernel} kernel could not run: {exc}") from None
    s.note(f"[{kernel}] {code}", r.summary())
    if problem := own_work_problem(r, s.role, s.team, language):
        raise ProbeFailed(problem)


@machine_probe("vm.python", "Python kernel: reads shared data, writes its own schema (no arguments to connect)",
               expect="works")
def python_kernel(s: MachineSession) -> None:
    _kernel_work(s, "python3", python_code(s.shared_table, table_name()), "Python")


@machine_probe("vm.r", "R kernel: reads shared data, writes its own schema (DBI, no arguments to connect)",
               expect="works")
def r_kernel(s: MachineSession) -> None:
    _kernel_work(s, "ir", r_code(s.shared_table, table_name()), "R")


@machine_probe("vm.scratch", "the instance-store disk is mounted at /scratch with its README, writable by the team",
               expect="works")
def scratch(s: MachineSession) -> None:
    d = shlex.quote(s.scratch)
    rc, source = s.sh(f"findmnt -rn -o SOURCE --mountpoint {d}")
    if rc != 0 or not source:
        raise ProbeSkipped(f"nothing is mounted at {s.scratch} (no instance-store disk)")
    rc, out = s.sh(f"grep -c ERASED {d}/README && f={d}/.datathon-probe-$$ && echo x > $f && rm $f && echo written")
    if rc != 0 or not out.endswith("written"):
        raise ProbeFailed(f"{s.scratch}: README or write failed: {out or 'no output'}")


def run_machine_probes(session: MachineSession, probes: list[Probe] | None = None) -> list[ProbeResult]:
    """Every machine probe as this team, in order; the tunnel and kernels are closed at the end."""
    from datathon.check.runner import run_probe

    try:
        return [run_probe(p, session) for p in (probes or MACHINE_PROBES)]
    finally:
        session.close()
