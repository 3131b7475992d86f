"""up / plan / down over time: idempotence, resuming, removing teams, secrets, teardown proof."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from conftest import event_yaml, free_port
from datathon import apply as apply_mod
from datathon.commands.down import run_down
from datathon.commands.plan import plan_event
from datathon.commands.up import run_up
from datathon.database.cluster import process_alive
from datathon.errors import Aborted, ProvisionError

TWO = [{"name": "alpha"}, {"name": "beta"}]


def login(ev, name, db=None):
    role = f"{ev.ctx.config.event}_{name}"
    ep = ev.server.endpoint()
    return psycopg.connect(host=ep.host, port=ep.port, dbname=db or f"{ev.ctx.config.event}db", user=role,
                           password=ev.password(role), sslmode="require", autocommit=True, connect_timeout=5)


def role_exists(ev, role) -> bool:
    with ev.server.connect(autocommit=True) as c:
        return c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def test_removing_a_team_with_tables_needs_the_flag_and_a_confirmation(make_event, monkeypatch):
    ev = make_event(event="rm", teams=[*TWO, {"name": "gamma"}])
    ev.up()
    with login(ev, "gamma") as c:
        c.execute("CREATE TABLE results (x int)")
    ev.rewrite(event_yaml(event="rm", port=ev.ctx.config.database.port, teams=TWO))

    result = ev.up()  # without the flag: kept, and said so
    blocked = [c for c in result.plan.changes if c.action == "blocked"]
    assert blocked and "rmdb.gamma (1 tables)" in blocked[0].reason and "--drop-team-data" in blocked[0].reason
    assert role_exists(ev, "rm_gamma")

    # with the flag but nobody to confirm: refused, nothing dropped
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    with pytest.raises(Aborted, match="--yes"):
        run_up(ev.ctx, yes=False, drop_team_data=True)
    assert role_exists(ev, "rm_gamma")

    result = run_up(ev.ctx, yes=True, drop_team_data=True)
    assert {c.target for c in result.plan.changes if c.action == "drop"} >= {"rm_gamma", "rmdb.gamma", "rmextra.gamma"}
    assert not role_exists(ev, "rm_gamma")
    with login(ev, "alpha") as c:  # the others are untouched
        assert c.execute("SELECT current_schema()").fetchone() == ("alpha",)
    assert run_up(ev.ctx, yes=True).applied == 0


def test_removing_a_team_without_data_asks_first(make_event, monkeypatch):
    ev = make_event(event="rm2", teams=[*TWO, {"name": "gamma"}])
    ev.up()
    ev.rewrite(event_yaml(event="rm2", port=ev.ctx.config.database.port, teams=TWO))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    with pytest.raises(Aborted):
        run_up(ev.ctx, yes=False)
    assert role_exists(ev, "rm2_gamma")
    run_up(ev.ctx, yes=True)
    assert not role_exists(ev, "rm2_gamma")


def test_up_shows_the_plan_and_asks_before_changing_anything(make_event, monkeypatch):
    ev = make_event(event="ask1", teams=TWO)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    with pytest.raises(Aborted, match="re-run with --yes"):
        run_up(ev.ctx, yes=False)
    assert not ev.server.exists() and not ev.server.home.exists()
    assert "Plan:" in ev.ctx.console.file.getvalue()


def test_an_interrupted_up_is_finished_by_the_next(make_event, monkeypatch):
    ev = make_event(event="intr", teams={"count": 5})
    real = apply_mod.run_change
    calls = {"n": 0}

    def flaky(change, conns):
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt  # the organizer pressed Ctrl-C half-way
        return real(change, conns)

    monkeypatch.setattr(apply_mod, "run_change", flaky)
    with pytest.raises(KeyboardInterrupt):
        ev.up()
    monkeypatch.setattr(apply_mod, "run_change", real)
    assert plan_event(ev.ctx).pending  # work is left
    result = ev.up()
    assert result.applied > 0
    assert ev.up().applied == 0
    for t in ("team01", "team05"):
        with login(ev, t) as c:
            assert c.execute("SELECT count(*) FROM mimiciv_demo.patients").fetchone() == (50,)


def test_a_half_made_cluster_from_an_interrupted_initdb_is_redone(make_event):
    ev = make_event(event="half", teams={"count": 1})
    server = ev.server
    (server.home / "pgdata.initdb").mkdir(parents=True)  # what a killed initdb leaves
    (server.home / "pgdata.initdb" / "junk").write_text("x")
    ev.up()
    assert server.running() and not (server.home / "pgdata.initdb").exists()


def test_policy_change_updates_only_the_roles(make_event):
    ev = make_event(event="pol", teams=TWO)
    ev.up()
    ev.rewrite(event_yaml(event="pol", port=ev.ctx.config.database.port, teams=TWO,
                          policy={"statement_timeout": "1min", "connection_limit": 2}))
    result = ev.up()
    pending = result.plan.pending
    assert {c.component for c in pending} <= {"role", "cluster"}
    assert any("statement_timeout" in c.reason for c in pending)
    with login(ev, "beta") as c:
        assert c.execute("SHOW statement_timeout").fetchone() == ("1min",)
    assert ev.up().applied == 0


def test_a_lost_secret_file_resets_that_password(make_event):
    ev = make_event(event="lost", teams=TWO)
    ev.up()
    old = ev.password("lost_alpha")
    ev.ctx.state.secret_path("lost_alpha").unlink()
    plan = plan_event(ev.ctx)
    assert [c.reason for c in plan.pending] == ["password reset: its secret file is missing"]
    ev.up()
    assert ev.password("lost_alpha") != old
    with login(ev, "alpha") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_secrets_are_private_and_never_printed(make_event, tmp_path):
    ev = make_event(event="sec", teams=TWO)
    cfg = ev.ctx.loaded.path
    cli = [sys.executable, "-m", "datathon.cli"]
    outputs = ""
    for verb in (["up", "--yes"], ["plan"], ["status"], ["status", "--json"], ["handouts"], ["up", "--yes"]):
        proc = subprocess.run([*cli, *verb, "-c", str(cfg)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        outputs += proc.stdout + proc.stderr
    state = ev.ctx.state
    secrets = {p.name: p.read_text().strip() for p in state.secrets_dir.iterdir()}
    assert {"admin", "sec_alpha", "sec_beta", "sec_mentor_ana"} <= set(secrets)
    for path in [*state.secrets_dir.iterdir(), *state.handouts_dir.iterdir(), state.state_file]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(state.secrets_dir.stat().st_mode) == 0o700
    server_log = "".join(p.read_text() for p in ev.server.log_files() if p.exists())  # start-up log and collector's
    assert "connection authorized" in server_log
    log = (cfg.parent / ".datathon" / "datathon.log").read_text()
    for value in secrets.values():
        assert value not in outputs and value not in log and value not in server_log
    assert len(set(secrets.values())) == len(secrets)  # every login its own password
    assert all(re.fullmatch(r"[A-Za-z2-9]{20}", v) for v in secrets.values())
    # the roster holds them (that is its job) and is private
    assert secrets["sec_alpha"] in (state.handouts_dir / "roster.csv").read_text()


def test_the_cluster_survives_the_datathon_process(make_event):
    ev = make_event(event="surv", teams=TWO)
    proc = subprocess.run([sys.executable, "-m", "datathon.cli", "up", "--yes", "-c", str(ev.ctx.loaded.path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert ev.server.running()  # the CLI process has exited; the server runs on
    proc = subprocess.run([sys.executable, "-m", "datathon.cli", "status", "--json", "-c", str(ev.ctx.loaded.path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and '"state": "running"' in proc.stdout


def test_stopped_cluster_is_started_by_up(make_event):
    ev = make_event(event="stp", teams=TWO)
    ev.up()
    ev.server._stop()
    assert not ev.server.running()
    plan = plan_event(ev.ctx)
    assert [c.action for c in plan.pending] == ["start"]
    ev.up()
    with login(ev, "alpha") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_port_in_use_gives_a_clear_message(make_event):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        ev = make_event(event="busy", teams=TWO)
        ev.rewrite(event_yaml(event="busy", port=port, teams=TWO))
        # found before anything is made (preflight), naming who holds it
        with pytest.raises(ProvisionError, match=f"database.port {port} on 127.0.0.1 is held by pid {os.getpid()} "):
            ev.up()
        assert not ev.server.home.exists()


def test_down_removes_everything_and_proves_it(make_event):
    ev = make_event(event="gone", teams=TWO)
    ev.up()
    server = ev.server
    pid, home, port = server.pid(), server.home, ev.ctx.config.database.port
    result = run_down(ev.ctx, yes=True, no_archive=True)
    assert result.removed >= 1
    assert not home.exists() and not ev.ctx.state.root.exists()
    assert not process_alive(pid)  # gone (or a zombie waiting for init to reap it)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    assert server.leftovers() == []
    assert run_down(ev.ctx, yes=True, no_archive=True).removed == 0  # a second down finds nothing to do


def test_down_asks_before_deleting(make_event, monkeypatch):
    ev = make_event(event="ask", teams=TWO)
    ev.up()
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    with pytest.raises(Aborted):
        run_down(ev.ctx, yes=False, no_archive=True)
    assert ev.server.running()


def test_handout_snippets_connect_when_pasted(make_event):
    from datathon.database.handout import database_section
    from datathon.database.tenancy import wanted_logins

    ev = make_event(event="snip", teams=TWO)
    ev.up()
    login_ = next(x for x in wanted_logins(ev.ctx.config) if x.name == "beta")
    section = database_section(ev.ctx.config, login_, ev.server.endpoint(), ev.password(login_.role))
    code = next(s.code for s in section.snippets if s.title == "Python (psycopg)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "('snip_beta', 'beta')" in out.stdout
    handout = (ev.ctx.state.handouts_dir / "team-beta.html").read_text()
    for expected in ("snip_beta", str(ev.ctx.config.database.port), ev.password("snip_beta"), "sslmode=require",
                     "RPostgreSQL", "create_engine"):
        assert expected in handout
    assert "<script" not in handout


def listening_sockets_of(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by one of `pids`, read from /proc."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:  # 0A = LISTEN
                    addr, port = parts[1].split(":")
                    raw = bytes.fromhex(addr)
                    ip = socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6,
                                          b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
                    found.add((ip, int(port, 16)))
    return found


def test_the_cluster_listens_only_where_the_file_says(make_event):
    ev = make_event(event="lis", teams=TWO)
    ev.up()
    pid = ev.server.pid()
    children = {int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == pid}
    assert listening_sockets_of({pid, *children}) == {("127.0.0.1", ev.ctx.config.database.port)}
    sock = ev.server.socket_dir
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o700  # the admin socket: server user and root only


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def test_changing_the_port_restarts_the_cluster_and_rewrites_handouts(make_event):
    ev = make_event(event="mv", teams=TWO)
    ev.up()
    old_pid = ev.server.pid()
    new_port = free_port()
    ev.rewrite(event_yaml(event="mv", port=new_port, teams=TWO))
    result = ev.up()
    # the port is read only at start: a restart of its own, which says what it ends (and `up` asks for it)
    assert [c.reason for c in result.plan.pending] == [
        "changed: port", "port take effect only on a restart, which ends the 0 open session(s) of teams and mentors"]
    assert ev.server.pid() != old_pid
    with login(ev, "alpha") as c:
        assert c.execute("SELECT current_setting('port')").fetchone() == (str(new_port),)
    assert f"port={new_port}" in (ev.ctx.state.handouts_dir / "team-alpha.md").read_text()
    assert ev.up().applied == 0


def _snapshot(folder: Path) -> list[tuple[str, bytes]]:
    if not folder.exists():
        return []
    return sorted((str(p.relative_to(folder)), p.read_bytes() if p.is_file() else b"") for p in folder.rglob("*"))


def test_plan_writes_nothing_on_a_fresh_file_nor_after_up(make_event):
    """`datathon plan` (observe + plan) creates no secret, cache or state, and can run while `up` runs."""
    ev = make_event(event="pnw", teams=TWO)
    cli = [sys.executable, "-m", "datathon.cli", "plan", "-c", str(ev.ctx.loaded.path)]
    assert _snapshot(ev.ctx.state.root) == []
    proc = subprocess.run(cli, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _snapshot(ev.ctx.state.root) == [] and not ev.server.home.exists()
    ev.up()
    before = _snapshot(ev.ctx.state.root)
    with ev.ctx.state.lock():  # as while `up` runs
        proc = subprocess.run(cli, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _snapshot(ev.ctx.state.root) == before
