"""Team workspaces on a real JupyterHub: PAM logins as real Unix users, real Python and R kernels.

The team environment is built once per machine (about a minute) under /opt/datathon/envs and shared by every
test and event asking for the same packages.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import urllib.error
from pathlib import Path

import psycopg
import pytest
import yaml

from conftest import DEMO_SQL, Event, event_data, free_port
from datathon.check.runner import run_check
from datathon.config import load_config
from datathon.core import procs, unix
from datathon.errors import ConfigError, ProvisionError
from datathon.workspaces import accounts, gpus
from datathon.workspaces.client import BrowserSession, KernelClient
from datathon.workspaces.hub import hub_for, hub_processes, service_marker
from datathon.workspaces.plan import plan_workspaces

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="workspaces make Unix users: needs root")


def hub_port() -> int:
    """A port whose next two (the hub's internal ports) are free too, below the kernel's ephemeral range, so
    that no port free_port() hands out later (the database's) can land on them."""
    import random

    for _ in range(100):
        port = random.randrange(20000, 30000)
        if all(_free(p) for p in (port, port + 1, port + 2)):
            return port
    raise RuntimeError("no free port triple")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def ws_yaml(event: str, teams, *, workspaces: dict | None = None, **extra) -> str:
    data = event_data(event=event, port=free_port(), teams=teams, **extra)
    data["workspaces"] = {"port": hub_port(), "idle_timeout": "30min", **(workspaces or {})}
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture(scope="module")
def hub_event(tmp_path_factory) -> Event:
    folder = tmp_path_factory.mktemp("hub_event")
    shutil.copy(DEMO_SQL, folder / "demo-data.sql")
    images = folder / "cxr" / "p10" / "s5000"
    images.mkdir(parents=True)
    for i in range(3):
        (images / f"view{i}.jpg").write_bytes(bytes([i]) * 2048)
    ev = Event(folder, ws_yaml("wst", [{"name": "alpha"}, {"name": "beta"}],
                               workspaces={"limits": {"memory": "2G"}},
                               storage={"backend": "local", "datasets": [{"name": "cxr", "path": "cxr"}]}))
    try:
        ev.up()
        yield ev
    finally:
        ev.close()


def _browser(ev: Event) -> BrowserSession:
    return BrowserSession(hub_for(ev.ctx).local_url)


def _listening_on(port: int) -> list[str]:
    """Local addresses listening on `port` (from /proc, like ss)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.rsplit(":", 1)
            if state == "0A" and int(p, 16) == port:
                found.append(addr)
    return found


def test_up_makes_users_homes_and_a_hub_and_twice_changes_nothing(hub_event):
    ev = hub_event
    for team in ("alpha", "beta"):
        entry = pwd.getpwnam(f"wst_{team}")
        assert entry.pw_gecos == f"datathon event wst {ev.ctx.state.tag}"
        home = Path(entry.pw_dir)
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        pgpass = home / ".pgpass"
        assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600 and pgpass.stat().st_uid == entry.pw_uid
        assert pgpass.read_text().strip().endswith(f":wst_{team}:{ev.password(f'wst_{team}')}")
        assert (home / "examples" / "01-python-sql.ipynb").exists()
        assert (home / "examples" / "02-r-sql.ipynb").exists()
        # the event's imaging store, read-only by its own permissions
        assert os.readlink(home / "datasets") == str(ev.ctx.config.storage.local_root("wst"))
    hub = hub_for(ev.ctx)
    assert hub.is_running()
    # Only the configured address listens publicly; the hub's own ports are on loopback.
    public, internal, api = hub.ports
    assert _listening_on(public) == ["0100007F"]
    assert _listening_on(internal) == ["0100007F"] and _listening_on(api) == ["0100007F"]
    for secret in ("hub-organizer-token", "hub-proxy-token"):
        assert stat.S_IMODE(ev.ctx.state.secret_path(secret).stat().st_mode) == 0o600
    assert stat.S_IMODE((hub.dir / "cookie_secret").stat().st_mode) == 0o600
    again = ev.up()
    assert again.applied == 0, [c.target for c in again.plan.pending]


def test_right_password_logs_in_wrong_one_does_not(hub_event):
    ev = hub_event
    assert _browser(ev).login("wst_alpha", ev.password("wst_alpha"))
    assert not _browser(ev).login("wst_alpha", ev.password("wst_alpha") + "x")
    assert not _browser(ev).login("wst_alpha", ev.password("wst_beta"))  # another team's password
    assert not _browser(ev).login("root", "root")  # only the event's users


def test_a_team_cannot_open_another_teams_server_or_home(hub_event):
    ev = hub_event
    hub = hub_for(ev.ctx)
    hub.start_server("wst_alpha")
    hub.start_server("wst_beta")
    try:
        browser = _browser(ev)
        assert browser.login("wst_alpha", ev.password("wst_alpha"))
        assert browser.request("/user/wst_alpha/lab")[0] == 200
        assert browser.request("/user/wst_alpha/api/contents")[0] == 200
        status, _, _ = browser.request("/user/wst_beta/api/contents")
        assert status == 403
        status, _, body = browser.request("/user/wst_beta/lab")
        assert status == 403 and "wst_beta" not in body.split("<title>")[0]
        # alpha's own API token opens alpha's server and nothing else.
        with hub.user_token("wst_alpha") as token:
            with pytest.raises(urllib.error.HTTPError) as refused:
                KernelClient(hub.local_url, "wst_beta", token, "python3").start()
            assert refused.value.code == 403
            k = KernelClient(hub.local_url, "wst_alpha", token, "python3")
            k.start()
        # From inside its own server (a kernel runs as the team's Unix user): beta's home is closed.
        try:
            r = k.execute("import os\n"
                          "for p in ('/home/wst_beta', '/home/wst_beta/.pgpass'):\n"
                          "    try:\n"
                          "        os.listdir(p) if p.endswith('beta') else open(p).read(); print('OPEN', p)\n"
                          "    except PermissionError:\n"
                          "        print('denied', p)")
        finally:
            k.close()
        assert r.ok and r.stdout.count("denied") == 2 and "OPEN" not in r.stdout, r
    finally:
        hub.stop_server("wst_alpha")
        hub.stop_server("wst_beta")


@pytest.mark.parametrize("kernel,code", [
    ("python3", "import psycopg\n"
                "with psycopg.connect() as c:\n"
                "    print(c.execute('SELECT current_user, count(*) FROM mimiciv_demo.patients').fetchone())\n"
                "    c.execute('CREATE TABLE IF NOT EXISTS kernel_py AS SELECT 1 AS x')\n"
                "    print(c.execute(\"SELECT schemaname FROM pg_tables WHERE tablename = 'kernel_py'\").fetchone())"),
    ("ir", "library(DBI)\ncon <- dbConnect(RPostgreSQL::PostgreSQL())\n"
           "print(dbGetQuery(con, 'SELECT current_user, count(*) FROM mimiciv_demo.patients'))\n"
           "invisible(dbWriteTable(con, 'kernel_r', data.frame(x = 1L), overwrite = TRUE, row.names = FALSE))\n"
           "print(dbGetQuery(con, \"SELECT schemaname FROM pg_tables WHERE tablename = 'kernel_r'\"))"),
])
def test_both_kernels_query_shared_data_and_write_their_schema(hub_event, kernel, code):
    hub = hub_for(hub_event.ctx)
    hub.start_server("wst_alpha")
    try:
        with hub.user_token("wst_alpha") as token:
            k = KernelClient(hub.local_url, "wst_alpha", token, kernel)
            k.start()
            try:
                r = k.execute(code)
            finally:
                k.close()
    finally:
        hub.stop_server("wst_alpha")
    assert r.ok, r
    assert "wst_alpha" in r.stdout and "alpha" in r.stdout.split("wst_alpha", 1)[1], r.stdout
    with hub_event.server.connect(f"{hub_event.ctx.config.event}db") as conn:
        rows = conn.execute("SELECT schemaname, tableowner FROM pg_tables WHERE tablename LIKE 'kernel_%'").fetchall()
    assert ("alpha", "wst_alpha") in rows


def test_example_notebooks_run_top_to_bottom(hub_event):
    """As the team's Unix user, with the environment its server gets, through nbclient (jupyter execute)."""
    ev = hub_event
    hub = hub_for(ev.ctx)
    user_env = json.loads((hub.dir / "user-env.json").read_text())["wst_beta"]
    entry = pwd.getpwnam("wst_beta")
    home = Path(entry.pw_dir)
    env = {"HOME": str(home), "PATH": f"{hub.env.bin}:/usr/bin:/bin", "LANG": "C.UTF-8", **user_env}
    for nb in ("01-python-sql", "02-r-sql"):
        res = subprocess.run([str(hub.env.bin / "jupyter"), "execute", f"--output={nb}-out", f"{nb}.ipynb"],
                             cwd=home / "examples", env=env, user=entry.pw_uid, group=entry.pw_gid,
                             extra_groups=[], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        out = json.loads((home / "examples" / f"{nb}-out.ipynb").read_text())
        outputs = [o for c in out["cells"] for o in c.get("outputs", [])]
        assert not [o for o in outputs if o["output_type"] == "error"]
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{nb} drew no plot"
    with ev.server.connect(f"{ev.ctx.config.event}db") as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'beta'")}
    assert {"example_table_sizes", "example_table_sizes_r"} <= tables


def test_check_runs_workspace_probes_and_finds_an_open_home(hub_event):
    ev = hub_event
    report = run_check(ev.ctx)
    ws = {(r.probe, r.subject): r.outcome for r in report.results if r.probe.startswith("ws.")}
    assert report.go, [(r.probe, r.subject, r.detail) for r in report.failures]
    for team in ("alpha", "beta"):
        for p in ("ws.login", "ws.python", "ws.r", "ws.datasets.read", "ws.datasets.write", "ws.other.home",
                  "ws.other.server", "ws.culler"):
            assert ws[(p, team)] == "pass", (p, team)
    hub = hub_for(ev.ctx)
    assert not any((u.get("servers") or {}).get("") for u in hub.users().values()), "check left a server running"
    # Someone opens beta's home: alpha's probe sees it, and `up` closes it again.
    os.chmod("/home/wst_beta", 0o755)
    try:
        broken = run_check(ev.ctx, only=["alpha"])
        assert [(r.probe, r.subject) for r in broken.failures] == [("ws.other.home", "alpha")]
        assert ev.up().applied >= 1
        assert run_check(ev.ctx, only=["alpha"]).go
    finally:
        os.chmod("/home/wst_beta", 0o700)


def test_a_planted_link_in_a_home_is_replaced_never_followed(hub_event, tmp_path):
    ev = hub_event
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    pgpass = Path("/home/wst_alpha/.pgpass")
    pgpass.unlink()
    os.symlink(victim, pgpass)
    os.lchown(pgpass, pwd.getpwnam("wst_alpha").pw_uid, -1)
    ev.up()
    assert victim.read_text() == "root's file\n"
    assert not pgpass.is_symlink() and ev.password("wst_alpha") in pgpass.read_text()


def test_a_changed_unix_password_is_set_back(hub_event):
    ev = hub_event
    chpasswd = shutil.which("chpasswd", path="/usr/sbin:/sbin")
    subprocess.run([chpasswd], input="wst_beta:SomethingElse123\n", text=True, check=True)
    assert not _browser(ev).login("wst_beta", ev.password("wst_beta"))
    result = ev.up()
    assert any(c.target == "wst_beta password" for c in result.plan.pending)
    assert _browser(ev).login("wst_beta", ev.password("wst_beta"))


def test_a_unix_user_datathon_did_not_make_is_refused(hub_event):
    ev = hub_event
    subprocess.run([shutil.which("useradd", path="/usr/sbin:/sbin"), "--no-create-home", "wst_gamma"], check=True)
    try:
        data = yaml.safe_load(ev.ctx.loaded.path.read_text())
        data["teams"].append({"name": "gamma"})
        ev.rewrite(yaml.safe_dump(data, sort_keys=False))
        blocked = [c for c in plan_workspaces(ev.ctx, ev.server.endpoint()) if c.action == "blocked"]
        assert [c.target for c in blocked] == ["wst_gamma"] and "did not make" in blocked[0].reason
        with pytest.raises(ProvisionError, match="wst_gamma"):
            ev.up()
        assert pwd.getpwnam("wst_gamma").pw_gecos == ""  # untouched
    finally:
        subprocess.run([shutil.which("userdel", path="/usr/sbin:/sbin"), "wst_gamma"], check=True)
        data["teams"].pop()
        ev.rewrite(yaml.safe_dump(data, sort_keys=False))
        ev.up()


def test_status_shows_the_hub_each_server_and_honest_limits(hub_event):
    from datathon.commands.status import run_status

    st = run_status(hub_event.ctx)
    comps = {c.name: c for c in st.components}
    assert comps["JupyterHub"].state == "running"
    assert comps["per-team memory/CPU limits"].state == "not enforced"
    assert "memory 2G" in comps["per-team memory/CPU limits"].detail
    assert {s.user: s.server for s in st.tables["workspaces"]} == {"wst_alpha": "stopped", "wst_beta": "stopped",
                                                      "wst_mentor_ana": "stopped"}
    handout = (hub_event.ctx.state.handouts_dir / "team-alpha.md").read_text()
    assert hub_for(hub_event.ctx).public_url in handout and "wst_alpha" in handout


def test_down_leaves_no_process_user_group_or_port(event_dir):
    ev = Event(event_dir, ws_yaml("wsd", [{"name": "solo"}]))
    mark = service_marker(ev.ctx.state)
    try:
        ev.up()
        hub = hub_for(ev.ctx)
        hub.start_server("wsd_solo")
        uid = pwd.getpwnam("wsd_solo").pw_uid
        assert accounts.processes_of(uid)
        ports = hub.ports
        culler = procs.root_processes_with_env(mark)
        assert len(culler) == 1 and culler[0] in hub_processes(ev.ctx.state)  # the idle culler, by its mark
        # a hub that dies without stopping its services (SIGKILL, OOM): they are still found and stopped
        os.kill(procs.read_pid(hub.pid_file), 9)
        hub.stop()
        assert not procs.root_processes_with_env(mark) and not hub_processes(ev.ctx.state)
        ev.up()  # and the event comes back
        assert len(procs.root_processes_with_env(mark)) == 1
    finally:
        ev.close()
    assert not procs.root_processes_with_env(mark)
    assert accounts.lookup("wsd_solo") is None and accounts.lookup("wsd_mentor_ana") is None
    assert not unix.group_exists("wsd_teams") and not unix.group_exists("wsd_mentors")
    assert not accounts.processes_of(uid)
    assert not Path("/home/wsd_solo").exists()
    assert all(not _listening_on(p) for p in ports)


def test_gpus_asked_for_on_a_machine_without_them_are_refused_before_anything_changes(event_dir):
    ev = Event(event_dir, ws_yaml("wsg", [{"name": "vision", "gpus": 1}, {"name": "text"}]))
    try:
        with pytest.raises(ProvisionError, match="GPU") as info:
            ev.up()
        assert "nvidia-smi" in str(info.value) or "this machine has" in str(info.value)
        assert not ev.server.exists() and accounts.lookup("wsg_vision") is None
    finally:
        ev.close()


@pytest.mark.parametrize("teams,available,expected", [
    ([("a", 1), ("b", 2)], 3, {"a": [0], "b": [1, 2]}),
    ([("a", [2]), ("b", 2)], 3, {"a": [2], "b": [0, 1]}),
    ([("a", 0), ("b", [0, 1])], 2, {"b": [0, 1]}),
])
def test_gpu_assignment_never_overlaps(tmp_path, teams, available, expected):
    cfg = _config(tmp_path, [{"name": n, "gpus": g} for n, g in teams])
    assert gpus.assign(cfg, available) == expected


@pytest.mark.parametrize("teams,available,message", [
    ([("a", 2), ("b", 1)], 2, "ask for 3 GPU"),
    ([("a", [0]), ("b", [0])], 2, "GPU 0 is asked for by both a and b"),
    ([("a", [3])], 2, "GPUs 0-1"),
    ([("a", 1)], 0, "has 0"),
])
def test_gpu_requests_beyond_the_machine_are_refused(tmp_path, teams, available, message):
    cfg = _config(tmp_path, [{"name": n, "gpus": g} for n, g in teams])
    with pytest.raises(gpus.GpuRequestError, match=message):
        gpus.assign(cfg, available)


def _config(folder: Path, teams: list, **ws):
    data = {"event": "g", "teams": teams, "databases": [{"name": "gdb"}], "workspaces": ws}
    path = folder / "datathon.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path).config


@pytest.mark.parametrize("workspaces,teams,message", [
    ({"listen": "everywhere"}, [{"name": "a"}], "workspaces.listen"),
    ({"listen": "0.0.0.0"}, [{"name": "a"}], "passwords in clear"),
    ({"idle_timeout": "soon"}, [{"name": "a"}], "not a duration"),
    ({"packages": {"pip": ["pandas; rm -rf /"]}}, [{"name": "a"}], "not a pip requirement"),
    ({"packages": {"apt": ["Bad Name"]}}, [{"name": "a"}], "not a Debian package"),
    ({"env_root": "/root/envs"}, [{"name": "a"}], "under /root"),
    ({"limits": {"memory": "lots"}}, [{"name": "a"}], "not a size"),
    ({"prots": 8000}, [{"name": "a"}], "did you mean 'port'"),
    ({}, [{"name": "a_very_long_team_name_indeed"}], "32 characters"),
    ({}, [{"name": "a", "gpus": [1, 1]}], "same GPU twice"),
    (None, [{"name": "a", "gpus": 1}], "no `workspaces:` section"),
])
def test_bad_workspace_settings_are_reported_with_where_and_how(tmp_path, workspaces, teams, message):
    data = {"event": "a_long_event_name", "teams": teams, "databases": [{"name": "gdb"}]}
    if workspaces is not None:
        data["workspaces"] = workspaces
    path = tmp_path / "datathon.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value), str(info.value)


def test_the_handouts_r_snippet_runs_as_printed(hub_event):
    """The Database section's R snippet (for a laptop outside the hub), pasted into Rscript as is."""
    import re

    text = (hub_event.ctx.state.handouts_dir / "team-alpha.md").read_text()
    snippets = re.findall(r"```r\n(.*?)```", text, flags=re.S)
    standalone = next(s for s in snippets if "password =" in s)
    res = subprocess.run(["Rscript", "-e", standalone], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})  # no ~/.pgpass to lean on
    assert res.returncode == 0, res.stderr
    assert "mimiciv_demo" in res.stdout


def test_the_handouts_pull_command_works_in_a_team_terminal(hub_event):
    """`datathon` is in the team environment: the handout's exact pull line runs as the team, checks every file
    against the manifest, and the team still cannot change the store."""
    import re

    ev = hub_event
    hub = hub_for(ev.ctx)
    text = (ev.ctx.state.handouts_dir / "team-alpha.md").read_text()
    line = next(m for m in re.findall(r"^datathon data pull .*$", text, flags=re.M) if "--prefix" not in m)
    assert "--to" in line
    entry = pwd.getpwnam("wst_alpha")
    env = {"HOME": entry.pw_dir, "PATH": f"{hub.env.bin}:/usr/bin:/bin", "LANG": "C.UTF-8"}
    res = subprocess.run(["bash", "-c", line], cwd=entry.pw_dir, env=env, user=entry.pw_uid, group=entry.pw_gid,
                         extra_groups=[], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    pulled = sorted(p.name for p in Path(entry.pw_dir).rglob("view*.jpg") if "datasets" not in p.parts)
    assert pulled == ["view0.jpg", "view1.jpg", "view2.jpg"]
    store = ev.ctx.config.storage.local_root("wst")
    res = subprocess.run(["bash", "-c", f"touch {store}/cxr/x || rm -f {store}/cxr.manifest.json"], env=env,
                         user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], capture_output=True, text=True)
    assert res.returncode != 0 and (store / "cxr.manifest.json").exists()


def test_a_fifo_or_a_link_planted_in_a_home_neither_hangs_nor_misleads_up(hub_event, tmp_path):
    """A team owns its home: a FIFO where .pgpass goes must not make root's `up` wait forever, and a link
    where ~/examples goes is moved aside, not followed."""
    ev = hub_event
    entry = pwd.getpwnam("wst_beta")
    home = Path(entry.pw_dir)
    (home / ".pgpass").unlink()
    os.mkfifo(home / ".pgpass")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(home / "examples")
    os.symlink(outside, home / "examples")
    os.lchown(home / "examples", entry.pw_uid, -1)
    ev.up()
    assert stat.S_ISREG((home / ".pgpass").lstat().st_mode)
    assert (home / "examples").is_dir() and not (home / "examples").is_symlink()
    assert list(outside.iterdir()) == []  # nothing written through the link
    assert [p.name for p in home.glob("examples.moved-aside-*")]  # the team's link is kept, renamed
    assert ev.up().applied == 0


def test_no_token_goes_to_a_port_the_hub_proxy_does_not_hold(tmp_path):
    """Any local user may bind the hub's port while the hub is down: datathon then sends nothing to it."""
    from datathon.core.state import StateStore
    from datathon.workspaces.environment import TeamEnvironment
    from datathon.workspaces.hub import Hub, HubApiError

    port = hub_port()
    cfg = _config(tmp_path, [{"name": "a"}], port=port)
    hub = Hub("g", StateStore(tmp_path, "g"), TeamEnvironment(cfg.workspaces))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        squatter.settimeout(1.0)
        with pytest.raises(HubApiError, match="not held by this event's hub proxy"):
            hub.api("GET", "/hub/api/users")
        with pytest.raises(TimeoutError):
            squatter.accept()  # nothing ever connected
    # and the hub does not start behind it: its proxy refuses, naming the process that holds the port
    with pytest.raises(ProvisionError, match=f"port {port} is held by pid {os.getpid()} .* of user root"):
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            hub.start()


def test_removing_the_workspaces_section_stops_the_hub_and_removes_the_users(event_dir):
    ev = Event(event_dir, ws_yaml("wsr", [{"name": "solo"}]))
    try:
        ev.up()
        hub = hub_for(ev.ctx)
        assert hub.is_running()
        data = yaml.safe_load(ev.ctx.loaded.path.read_text())
        del data["workspaces"]
        ev.rewrite(yaml.safe_dump(data, sort_keys=False))
        ev.up()
        assert not hub.is_running() and accounts.lookup("wsr_solo") is None
        assert ev.up().applied == 0
    finally:
        ev.close()


def test_an_idle_server_is_culled_after_the_configured_timeout(event_dir):
    """jupyterhub-idle-culler runs as a hub service with the event file's timeout (files stay, the server goes)."""
    import time

    ev = Event(event_dir, ws_yaml("wsi", [{"name": "solo"}], workspaces={"idle_timeout": "15s"}))
    try:
        ev.up()
        hub = hub_for(ev.ctx)
        hub.start_server("wsi_solo")
        started = time.monotonic()
        while hub.server("wsi_solo") is not None and time.monotonic() - started < 120:
            time.sleep(2)
        assert hub.server("wsi_solo") is None, "the idle server was not culled within 120 s"
        assert time.monotonic() - started >= 10  # not before it was idle
        assert (Path(pwd.getpwnam("wsi_solo").pw_dir) / "examples").is_dir()
    finally:
        ev.close()


def test_apt_packages_count_as_missing_unless_installed_as_asked():
    from datathon.workspaces.environment import missing_apt

    assert missing_apt(["r-base-core"]) == []
    assert missing_apt(["r-base-core=0.0-not-this-one", "no-such-package-datathon"]) == [
        "r-base-core=0.0-not-this-one", "no-such-package-datathon"]


def test_a_mentor_reads_each_team_by_service_name_in_its_workspace(hub_event):
    """The mentor's ~/.pg_service.conf and ~/.pgpass carry its login for each team: `psql service=alpha` reads
    alpha's schema with the login for alpha, which cannot read beta's."""
    ev = hub_event
    ep = ev.server.endpoint()
    with psycopg.connect(host=ep.host, port=ep.port, dbname="wstdb", user="wst_alpha", sslmode="require",
                         password=ev.password("wst_alpha"), autocommit=True) as alpha:
        alpha.execute("CREATE TABLE IF NOT EXISTS for_mentor AS SELECT 42 AS x")
    entry = pwd.getpwnam("wst_mentor_ana")
    home = Path(entry.pw_dir)
    assert stat.S_IMODE((home / ".pg_service.conf").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / ".pgpass").stat().st_mode) == 0o600
    env = {"HOME": entry.pw_dir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}

    def psql(service: str, query: str) -> subprocess.CompletedProcess:
        return subprocess.run(["psql", f"service={service}", "-Atc", query], env=env, user=entry.pw_uid,
                              group=entry.pw_gid, extra_groups=[], capture_output=True, text=True, timeout=30)

    res = psql("alpha", "SELECT current_user, x FROM alpha.for_mentor")
    assert res.returncode == 0 and res.stdout.strip() == "wst_mentor_ana__alpha|42", res.stderr
    res = psql("beta", "SELECT x FROM alpha.for_mentor")
    assert res.returncode != 0 and "permission denied" in res.stderr
    text = (ev.ctx.state.handouts_dir / "mentor-mentor_ana.md").read_text()
    assert "wst_mentor_ana__alpha" in text and "wst_mentor_ana__beta" in text and "service=alpha" in text
