"""The walls between teams on the machine itself, tried as a hostile team would (issue 11), against a real hub and
real Unix users: the hub's ports while `up` restarts the hub, a team's own account record, things planted where
datathon writes, starvation limits, temporary files, what `down` leaves behind, and `check` on a cold event."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from test_workspaces import ws_yaml

from conftest import DEMO_SQL, Event
from datathon.check.runner import run_check
from datathon.commands.status import run_status
from datathon.core import procs
from datathon.errors import ProvisionError
from datathon.workspaces import accounts, record, remnants, sandbox
from datathon.workspaces.client import BrowserSession, KernelClient
from datathon.workspaces.hub import hub_for
from datathon.workspaces.plan import plan_workspaces

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="workspaces make Unix users: needs root")

EVENT = "w11w"


@pytest.fixture(scope="module")
def walls(tmp_path_factory) -> Event:
    folder = tmp_path_factory.mktemp("walls")
    shutil.copy(DEMO_SQL, folder / "demo-data.sql")
    ev = Event(folder, ws_yaml(EVENT, [{"name": "alpha"}, {"name": "beta"}],
                               workspaces={"limits": {"memory": "1G", "processes": 300}}))
    try:
        ev.up()
        yield ev
    finally:
        ev.close()


def as_user(user: str, args: list[str], **kw) -> subprocess.Popen:
    """A process of the team's Unix user, as a team's terminal would run it (no groups of root's)."""
    entry = pwd.getpwnam(user)
    return subprocess.Popen(args, user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], cwd=entry.pw_dir,
                            env={"HOME": entry.pw_dir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, **kw)


def run_as(user: str, args: list[str], **kw) -> subprocess.CompletedProcess:
    entry = pwd.getpwnam(user)
    return subprocess.run(args, user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], cwd=entry.pw_dir,
                          env={"HOME": entry.pw_dir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                          capture_output=True, text=True, timeout=60, **kw)


# A team process that tries to bind the hub's ports every 5 ms, on loopback and on every address, and records
# what it got and every byte anyone sent it.
BINDER = textwrap.dedent("""\
    import select, socket, sys, time
    ports, out = [int(p) for p in sys.argv[2:]], open(sys.argv[1], "a", buffering=1)
    held = []
    end = time.monotonic() + float(60)
    while time.monotonic() < end:
        for port in ports:
            for addr in ("127.0.0.1", "0.0.0.0"):
                s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((addr, port)); s.listen(); held.append(s); out.write(f"GOT {addr}:{port}\\n")
                except OSError:
                    s.close()
        ready = select.select(held, [], [], 0.005)[0]
        for s in ready:
            conn, _ = s.accept(); conn.settimeout(1)
            try:
                out.write("RECEIVED " + conn.recv(65536).decode(errors="replace").replace("\\n", " ") + "\\n")
            except OSError:
                out.write("CONNECTED\\n")
""")


def test_a_team_retrying_bind_on_the_hubs_ports_while_up_restarts_the_hub_gets_none(walls, tmp_path):
    ev = walls
    hub = hub_for(ev.ctx)
    public, hub_port, api_port = hub.ports
    assert hub_port < 1024 and api_port < 1024  # only root binds them
    user = f"{EVENT}_alpha"
    log = Path(pwd.getpwnam(user).pw_dir) / "binder.log"
    script = Path(pwd.getpwnam(user).pw_dir) / "binder.py"
    script.write_text(BINDER)
    os.chown(script, pwd.getpwnam(user).pw_uid, -1)
    binder = as_user(user, [sys.executable, str(script), str(log), str(public), str(hub_port), str(api_port)])
    proxy_before = hub.proxy_pid()
    try:
        time.sleep(1)
        data = yaml.safe_load(ev.ctx.loaded.path.read_text())
        data["workspaces"]["idle_timeout"] = "20min"  # a change that restarts the hub
        ev.rewrite(yaml.safe_dump(data, sort_keys=False))
        result = ev.up()
        assert any(c.component == "hub" and c.action == "restart" for c in result.plan.pending)
        # the proxy kept the public port while the hub restarted; the hub is back behind it
        assert hub.proxy_pid() == proxy_before and hub.is_running()
        assert BrowserSession(hub.local_url).login(user, ev.password(user))
    finally:
        binder.kill()
        binder.wait()
    got = log.read_text() if log.exists() else ""
    assert "GOT" not in got and "RECEIVED" not in got and "CONNECTED" not in got, got


SQUATTER = textwrap.dedent("""\
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[2]))); s.listen(); s.settimeout(120)
    open(sys.argv[1], "w").write("LISTENING\\n")
    conn, _ = s.accept()
    open(sys.argv[1], "a").write("CONNECTED " + conn.recv(65536).decode(errors="replace") + "\\n")
""")


def test_a_squatter_on_the_public_port_is_named_and_sent_nothing(walls):
    ev = walls
    hub = hub_for(ev.ctx)
    user = f"{EVENT}_beta"
    home = Path(pwd.getpwnam(user).pw_dir)
    (home / "squat.py").write_text(SQUATTER)
    log = home / "squat.log"
    hub.stop()  # the whole hub, proxy included: the public port is free (the hub died, a reboot, ...)
    squatter = as_user(user, [sys.executable, str(home / "squat.py"), str(log), str(hub.ports[0])])
    try:
        deadline = time.monotonic() + 20
        while not (log.exists() and "LISTENING" in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        with pytest.raises(ProvisionError) as info:
            ev.up()
        message = str(info.value)
        assert f"pid {squatter.pid}" in message and user in message, message
        assert not hub.is_running()  # the hub never comes up behind someone else's listener
        # nor does datathon's token go there
        with pytest.raises(Exception, match="not held by this event's hub proxy"):
            hub.api("GET", "/hub/api/users")
    finally:
        squatter.kill()
        squatter.wait()
    assert "CONNECTED" not in log.read_text()
    ev.up()
    assert hub.is_running() and hub.proxy_current()


def test_a_team_listening_on_another_local_address_of_the_hubs_port_stops_nothing(walls):
    """127.0.0.2:port is free to bind while the proxy holds 127.0.0.1:port; it takes nothing meant for the hub,
    and must not make `up` stop the proxy or datathon refuse to talk to the hub."""
    ev = walls
    hub = hub_for(ev.ctx)
    user = f"{EVENT}_beta"
    home = Path(pwd.getpwnam(user).pw_dir)
    (home / "aside.py").write_text("import socket, sys, time\n"
                                   "s = socket.socket(); s.bind(('127.0.0.2', int(sys.argv[1]))); s.listen()\n"
                                   "open(sys.argv[2], 'w').write('LISTENING'); time.sleep(120)\n")
    log = home / "aside.log"
    proc = as_user(user, [sys.executable, str(home / "aside.py"), str(hub.ports[0]), str(log)])
    try:
        deadline = time.monotonic() + 20
        while not (log.exists() and log.read_text() == "LISTENING") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert log.read_text() == "LISTENING"
        proxy = hub.proxy_pid()
        assert hub.users()  # datathon still talks to its hub
        assert ev.up().applied == 0 and hub.proxy_pid() == proxy
    finally:
        proc.kill()
        proc.wait()


def test_a_team_that_changes_its_gecos_stays_ours_and_gets_its_mark_back(walls):
    ev = walls
    user = f"{EVENT}_alpha"
    res = run_as(user, ["chfn", "-r", "42"], input=ev.password(user) + "\n")  # setuid, allowed for a user
    if pwd.getpwnam(user).pw_gecos == accounts.names.MARK.format(owner=ev.ctx.state.owner):
        # chfn asks PAM for the password on a terminal on some systems: the same change, made as root
        subprocess.run([shutil.which("usermod", path="/usr/sbin:/sbin"), "-c", "42", user], check=True)
    assert "42" in pwd.getpwnam(user).pw_gecos, res.stderr
    changes = plan_workspaces(ev.ctx, ev.server.endpoint())
    assert not [c for c in changes if c.action == "blocked"]
    mine = [c for c in changes if c.target == f"{user} home"]
    assert mine and "comment changed" in mine[0].reason
    ev.up()
    assert pwd.getpwnam(user).pw_gecos == accounts.names.MARK.format(owner=ev.ctx.state.owner)
    assert ev.up().applied == 0


def test_a_user_never_recorded_is_still_refused_even_with_our_mark(walls):
    ev = walls
    useradd = shutil.which("useradd", path="/usr/sbin:/sbin")
    mark = accounts.names.MARK.format(owner=ev.ctx.state.owner)
    subprocess.run([useradd, "--no-create-home", "--comment", mark, f"{EVENT}_gamma"], check=True)
    try:
        data = yaml.safe_load(ev.ctx.loaded.path.read_text())
        data["teams"].append({"name": "gamma"})
        ev.rewrite(yaml.safe_dump(data, sort_keys=False))
        blocked = [c for c in plan_workspaces(ev.ctx, ev.server.endpoint()) if c.action == "blocked"]
        assert [c.target for c in blocked] == [f"{EVENT}_gamma"] and "did not make" in blocked[0].reason
        assert f"{EVENT}_gamma" not in {e.pw_name for e in accounts.event_users(ev.ctx.state)}
    finally:
        subprocess.run([shutil.which("userdel", path="/usr/sbin:/sbin"), f"{EVENT}_gamma"], check=True)
        data["teams"].pop()
        ev.rewrite(yaml.safe_dump(data, sort_keys=False))


def test_a_folder_socket_or_fifo_where_datathon_writes_is_moved_aside_and_never_stops_up(walls):
    ev = walls
    user = f"{EVENT}_beta"
    home = Path(pwd.getpwnam(user).pw_dir)
    # as the team: rm ~/.pgpass; mkdir ~/.pgpass (and a socket, a FIFO, a file where a folder goes)
    script = ("import os, socket\n"
              "os.remove('.pgpass'); os.mkdir('.pgpass')\n"
              "os.remove('.postgresql/root.crt'); socket.socket(socket.AF_UNIX).bind('.postgresql/root.crt')\n"
              "os.remove('examples/02-r-sql.ipynb'); os.mkfifo('examples/02-r-sql.ipynb')\n")
    res = run_as(user, [sys.executable, "-c", script])
    assert res.returncode == 0, res.stderr
    changes = plan_workspaces(ev.ctx, ev.server.endpoint())  # was: internal error: IsADirectoryError
    mine = next(c for c in changes if c.target == f"{user} home")
    assert "a folder is there" in mine.reason and "a socket is there" in mine.reason, mine.reason
    ev.up()
    for name in (".pgpass", ".postgresql/root.crt", "examples/02-r-sql.ipynb"):
        assert stat.S_ISREG((home / name).lstat().st_mode), name
    assert ev.password(user) in (home / ".pgpass").read_text()
    aside = sorted(p.name for p in home.glob(".pgpass.moved-aside-*"))
    assert aside and (home / aside[0]).is_dir()  # the team's folder is kept, renamed
    assert list((home / ".postgresql").glob("root.crt.moved-aside-*"))
    assert list((home / "examples").glob("02-r-sql.ipynb.moved-aside-*"))
    assert ev.up().applied == 0


def _kernel(hub, user: str):
    hub.start_server(user)
    token_cm = hub.user_token(user)
    token = token_cm.__enter__()
    from datathon.workspaces.client import wait_for_server

    wait_for_server(hub.local_url, user, token)
    k = KernelClient(hub.local_url, user, token, "python3")
    k.start()
    return k, token_cm


def test_team_kernels_have_process_and_memory_limits_umask_0077_and_a_private_tmpdir(walls):
    ev = walls
    hub = hub_for(ev.ctx)
    alpha, beta = f"{EVENT}_alpha", f"{EVENT}_beta"
    ka, ta = _kernel(hub, alpha)
    kb, tb = _kernel(hub, beta)
    try:
        r = ka.execute("import os, resource, tempfile\n"
                       "print(resource.getrlimit(resource.RLIMIT_NPROC), resource.getrlimit(resource.RLIMIT_DATA))\n"
                       "m = os.umask(0); os.umask(m); print(oct(m), os.environ['TMPDIR'])\n"
                       "f = tempfile.NamedTemporaryFile(suffix='.csv', delete=False)\n"
                       "f.write(b'patient,secret\\n'); f.close(); print(f.name)")
        assert r.ok, r
        limits, mask_tmp, path = r.stdout.strip().splitlines()
        assert limits == f"(300, 300) ({1 << 30}, {1 << 30})"
        assert mask_tmp == f"0o77 {sandbox.tmpdir(ev.ctx.state, alpha)}"
        assert path.startswith(str(sandbox.tmpdir(ev.ctx.state, alpha)) + "/")
        # another team, from its own kernel, reads neither the file nor the folder, nor a copy in /tmp
        ka.execute(f"import shutil; shutil.copy({path!r}, '/tmp/{EVENT}-export.csv')")
        r = kb.execute("out = []\n"
                       f"for p in ({path!r}, '/tmp/{EVENT}-export.csv'):\n"
                       "    try:\n"
                       "        open(p).read(); out.append('READ ' + p)\n"
                       "    except PermissionError:\n"
                       "        out.append('denied')\n"
                       "print(' '.join(out))")
        assert r.ok and r.stdout.split() == ["denied", "denied"], r
        # the limits hold: memory beyond 1G per process, threads beyond 300 for the team
        r = ka.execute("try:\n    x = bytearray(3 << 30); print('ALLOCATED')\nexcept MemoryError:\n"
                       "    print('MemoryError')")
        assert r.stdout.strip() == "MemoryError", r
        r = ka.execute("import threading, time\nev = threading.Event(); n = 0\n"
                       "try:\n"
                       "    for _ in range(1000):\n"
                       "        threading.Thread(target=ev.wait, daemon=True).start(); n += 1\n"
                       "except RuntimeError as e:\n"
                       "    print('stopped', n)\n"
                       "ev.set()", timeout=120)
        assert r.ok and r.stdout.startswith("stopped"), r
        assert int(r.stdout.split()[1]) < 300
        # status reads the limits back from the running servers, not from the file
        comps = {c.name: c for c in run_status(ev.ctx).components}
        seen = comps["per-process limits, umask, TMPDIR"]
        assert seen.state == "enforced" and alpha in seen.detail and beta in seen.detail, seen
        disk = comps["per-team disk quota"]
        assert disk.state in ("none", "not enforced") and "quota" in disk.detail  # no quotas on this machine
    finally:
        for k in (ka, kb):
            k.close()
        for t in (ta, tb):
            t.__exit__(None, None, None)
        hub.stop_server(alpha)
        hub.stop_server(beta)
        Path(f"/tmp/{EVENT}-export.csv").unlink(missing_ok=True)


def test_check_on_a_cold_event_is_go_and_stops_only_the_servers_it_started(walls):
    ev = walls
    hub = hub_for(ev.ctx)
    for user, info in hub.users().items():
        if (info.get("servers") or {}).get(""):
            hub.stop_server(user)
    report = run_check(ev.ctx)
    assert report.go, [(r.probe, r.subject, r.detail) for r in report.failures]
    outcomes = {(r.probe, r.subject): r.outcome for r in report.results}
    for team in ("alpha", "beta"):
        for p in ("ws.python", "ws.r", "ws.hub.ports", "ws.account", "ws.sandbox", "ws.other.tmp"):
            assert outcomes[(p, team)] == "pass", (p, team)
    assert not any((u.get("servers") or {}).get("") for u in hub.users().values()), "check left a server running"
    # a server that was running before the check still runs after it
    hub.start_server(f"{EVENT}_beta")
    try:
        assert run_check(ev.ctx, only=["beta"]).go
        assert hub.server(f"{EVENT}_beta") is not None
    finally:
        hub.stop_server(f"{EVENT}_beta")


def test_check_names_a_team_whose_record_does_not_match(walls):
    ev = walls
    state = ev.ctx.state
    data = state.load()
    real = data["workspaces"]["users"][f"{EVENT}_alpha"]["uid"]
    data["workspaces"]["users"][f"{EVENT}_alpha"]["uid"] = real + 1000
    state.save(data)
    try:
        report = run_check(ev.ctx, only=["alpha"])
        assert ("ws.account", "alpha") in {(r.probe, r.subject) for r in report.failures}
    finally:
        data["workspaces"]["users"][f"{EVENT}_alpha"]["uid"] = real
        state.save(data)


def test_down_removes_a_teams_processes_ipc_and_files_after_chfn(event_dir):
    ev = Event(event_dir, ws_yaml("w11d", [{"name": "solo"}]))
    user = "w11d_solo"
    try:
        ev.up()
        entry = pwd.getpwnam(user)
        uid = entry.pw_uid
        assert [m.uid for m in record.made(ev.ctx.state) if m.user == user] == [uid]
        # as the team: its comment changed, a background process, a file in /run/lock, SysV IPC objects
        run_as(user, ["chfn", "-r", "42"], input=ev.password(user) + "\n")
        if "42" not in pwd.getpwnam(user).pw_gecos:
            subprocess.run([shutil.which("usermod", path="/usr/sbin:/sbin"), "-c", "42", user], check=True)
        background = as_user(user, ["setsid", "-f", "sleep", "600"], start_new_session=True)  # detached
        background.wait(timeout=10)
        lock_file = Path("/run/lock") / f"w11d-{uid}"
        assert run_as(user, ["touch", str(lock_file)]).returncode == 0
        assert run_as(user, ["ipcmk", "-M", "4096"]).returncode == 0
        assert run_as(user, ["ipcmk", "-Q"]).returncode == 0
        left_running = accounts.processes_of(uid)
        assert remnants.ipc_objects({uid}) and lock_file.exists() and left_running
        assert not [c for c in plan_workspaces(ev.ctx, ev.server.endpoint()) if c.action == "blocked"]
        from datathon.commands.down import run_down

        result = run_down(ev.ctx, yes=True, no_archive=True)
    finally:
        ev.close()
    report = dict(result.checked)
    line = report[f"unix user {user} (uid {uid})"]
    assert "process" in line and "shared memory segment" in line and "message queue" in line, line
    swept = next(v for k, v in report.items() if k.startswith("files and IPC objects of uids"))
    assert str(lock_file) in swept, swept
    assert any("verified gone" == v and str(uid) in k for k, v in result.checked)
    assert accounts.lookup(user) is None and not accounts.processes_of(uid)
    assert not remnants.ipc_objects({uid}) and not lock_file.exists()
    assert not remnants.files_of({uid})
    assert not [pid for pid in left_running if Path(f"/proc/{pid}").exists()]


def test_port_holders_names_the_process_and_its_user():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        holders = procs.port_holders(port)
    assert holders == [f"pid {os.getpid()} ({Path('/proc/self/comm').read_text().strip()}) of user root (uid 0)"]


def test_users_of_an_event_from_before_the_record_are_taken_in_once(tmp_path):
    """No record yet (an event brought up by an older datathon): its users are known by the GECOS mark, and the
    first write of the record keeps them; after that the mark alone adopts nobody."""
    from datathon.core.state import StateStore

    state = StateStore(tmp_path, "w11m")
    useradd, userdel = (shutil.which(t, path="/usr/sbin:/sbin") for t in ("useradd", "userdel"))
    mark = accounts.names.MARK.format(owner=state.owner)
    subprocess.run([useradd, "--no-create-home", "--comment", mark, "w11m_old"], check=True)
    try:
        assert [e.pw_name for e in record.users(state)] == ["w11m_old"]
        record.about_to_create(state, "w11m_new")  # the first write of the record
        assert set(state.load()["workspaces"]["users"]) == {"w11m_old", "w11m_new"}
        subprocess.run([useradd, "--no-create-home", "--comment", mark, "w11m_forged"], check=True)
        try:
            assert "w11m_forged" not in {e.pw_name for e in record.users(state)}
        finally:
            subprocess.run([userdel, "w11m_forged"], check=True)
    finally:
        subprocess.run([userdel, "w11m_old"], check=True)
