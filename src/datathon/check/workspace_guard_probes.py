"""Workspace probes for what keeps teams apart on the machine itself: the hub's ports held by the hub's own
processes, the team's account as datathon recorded it, and what a team's kernel runs with (umask 0077, a private
TMPDIR, process and data limits), read inside a real kernel of the team."""

from __future__ import annotations

import json
import pwd

from datathon.check.model import ProbeFailed, ProbeSkipped, probe
from datathon.check.session import Session
from datathon.check.workspace_probes import _run, _workspace
from datathon.core import procs
from datathon.workspaces import record, sandbox


def _hub(s: Session):
    if s.env.hub is None:
        raise ProbeSkipped("the event runs no hub")
    return s.env.hub


@probe("ws.hub.ports", "the hub's ports are held by the hub's own processes (nobody else listens there)",
       expect="works")
def hub_ports(s: Session) -> None:
    hub = _hub(s)
    public, hub_port, api_port = hub.ports
    proxy, main = hub.proxy_pid(), hub.pid()
    wrong = []
    from datathon.workspaces.hub import LOOPBACK, local_host

    for port, pid, what, host in ((public, proxy, "proxy", local_host(hub.ws)),
                                  (api_port, proxy, "proxy API", LOOPBACK), (hub_port, main, "hub", LOOPBACK)):
        held = pid is not None and procs.holds_port(pid, port, host)
        who = procs.port_holders(port, host)
        s.note(f"who listens on port {port} ({what})", ", ".join(who) or "nobody")
        if not held:
            wrong.append(f"port {port} ({what}): {', '.join(who) or 'nobody listens'}")
    if wrong:
        raise ProbeFailed("the hub's ports are not held by its own processes: " + "; ".join(wrong))


@probe("ws.account", "its Unix user is the one datathon recorded (uid, private home)", expect="works")
def account(s: Session) -> None:
    hub = _hub(s)
    user = s.me.login.role
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ProbeFailed(f"no Unix user {user}") from None
    made = {m.user: m for m in record.made(hub.state)}
    rec = made.get(user)
    s.note(f"record of {user} in {hub.state.state_file}", f"uid {rec.uid}, made {rec.created}" if rec else "none")
    s.note(f"passwd entry of {user}", f"uid {entry.pw_uid}, home {entry.pw_dir}, comment {entry.pw_gecos!r}")
    if rec is None or rec.uid != entry.pw_uid:
        raise ProbeFailed(f"{user} is not the user datathon recorded (record: {rec.uid if rec else 'none'}, "
                          f"passwd: uid {entry.pw_uid})")
    import os

    st = os.lstat(entry.pw_dir)
    s.note(f"stat {entry.pw_dir}", f"uid {st.st_uid}, mode {st.st_mode & 0o7777:04o}")
    if st.st_uid != entry.pw_uid or st.st_mode & 0o077:
        raise ProbeFailed(f"home {entry.pw_dir} is not a private folder of {user}")


SANDBOX_CODE = """\
import json, os, resource, tempfile
m = os.umask(0); os.umask(m)
t = tempfile.gettempdir(); st = os.stat(t)
with tempfile.NamedTemporaryFile() as f:
    fm = os.stat(f.name).st_mode & 0o777
print(json.dumps({"umask": m, "tmpdir": t, "tmp_mode": st.st_mode & 0o777, "tmp_uid": st.st_uid,
                  "uid": os.getuid(), "file_mode": fm, "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[1],
                  "data": resource.getrlimit(resource.RLIMIT_DATA)[1]}))
"""


@probe("ws.sandbox", "its kernel runs with umask 0077, a private TMPDIR and process and memory limits",
       expect="works")
def kernel_sandbox(s: Session) -> None:
    hub = _hub(s)
    r = _run(s, "python3", SANDBOX_CODE, what="umask, TMPDIR, limits")
    try:
        seen = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ProbeFailed(f"the kernel did not report: {r.error or r.stdout.strip()}") from None
    want = sandbox.rlimits(hub.ws)
    wrong = []
    if seen["umask"] != sandbox.UMASK or seen["file_mode"] & 0o077:
        wrong.append(f"umask {seen['umask']:04o} (a temporary file is {seen['file_mode']:04o})")
    if seen["tmpdir"] != str(sandbox.tmpdir(hub.state, s.me.login.role)) or seen["tmp_mode"] != 0o700 \
            or seen["tmp_uid"] != seen["uid"]:
        wrong.append(f"TMPDIR {seen['tmpdir']} ({seen['tmp_mode']:04o}, uid {seen['tmp_uid']})")
    if seen["nproc"] < 0 or seen["nproc"] > want.nproc:
        wrong.append(f"process limit {seen['nproc']} (want {want.nproc})")
    if seen["data"] < 0 or seen["data"] > want.data:
        wrong.append(f"data limit {seen['data']} (want {want.data})")
    if wrong:
        raise ProbeFailed("the team's kernel runs without its walls: " + "; ".join(wrong))


@probe("ws.other.tmp", "cannot list another team's TMPDIR", expect="refused")
def other_tmp(s: Session) -> None:
    hub = _hub(s)
    if s.neighbour is None:
        raise ProbeSkipped("only one team")
    _workspace(s)
    other = str(sandbox.tmpdir(hub.state, s.neighbour.role))
    code = ("import os\n"
            "try:\n"
            f"    print('ALLOWED', len(os.listdir({other!r})))\n"
            "except PermissionError:\n"
            "    print('refused')\n"
            "except FileNotFoundError:\n"
            "    print('MISSING')")
    r = _run(s, "python3", code, what="list another team's TMPDIR")
    if "refused" not in r.stdout:
        raise ProbeFailed(f"another team's TMPDIR {other}: {r.stdout.strip() or r.error}")


@probe("ws.culler", "the idle culler runs datathon's rule (a pre-started server waits for its team) and the hub "
                    "lets only datathon pre-start a server", expect="works")
def culler_rule(s: Session) -> None:
    """A hub running another configuration than the generated one may keep a pre-start mark a team sent itself
    (its server then never culled), and a culler without the rule stops pre-started servers before the teams come."""
    hub = _hub(s)
    if not hub.ws.idle_seconds:
        raise ProbeSkipped("idle culling is off (workspaces.idle_timeout: 0)")
    from pathlib import Path

    from datathon.workspaces.hub import CULLER_CONFIG, service_marker

    running, generated = hub.config_digest_running(), hub.config_digest()
    s.note("the hub's configuration", f"running {running or 'unknown'}, generated {generated}")
    if running != generated:
        raise ProbeFailed("the hub does not run the configuration datathon generated (the one that removes a "
                          "pre-start mark a team sends itself)")
    rule = hub.dir / CULLER_CONFIG
    template = Path(sandbox.__file__).parent / "templates" / CULLER_CONFIG
    try:
        same = rule.read_text() == template.read_text()
    except OSError as exc:
        raise ProbeFailed(f"the culler's rule {rule} cannot be read: {exc}") from None
    culler = [pid for pid in procs.root_processes_with_env(service_marker(hub.state))
              if f"--config={rule}".encode() in _cmdline(pid)]
    s.note("idle culler processes with datathon's rule", ", ".join(map(str, culler)) or "none")
    if not same:
        raise ProbeFailed(f"{rule} differs from datathon's rule")
    if not culler:
        raise ProbeFailed("no idle culler runs with datathon's rule")


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ")
    except OSError:
        return b""
