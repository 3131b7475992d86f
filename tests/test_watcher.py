"""The watcher (issue 18, part 4): a limit a team lifts on its own role does not last, a statement past the
event's statement_timeout is cancelled and a session idle in a transaction past its limit is ended whatever the
team set, a team over its disk quota is flagged; every action is journaled and shows in `audit export`; a team
never reaches another's session; the watcher never runs a team's code. Real PostgreSQL, as the teams, over TLS."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from datathon.commands.audit import run_audit
from datathon.commands.watch import run_watch_cycle, sample_usage, usage_history, usage_path, watch_loop
from datathon.core import journal
from datathon.core.roster import members
from datathon.database.guard import GuardFacts, limit_seconds, plan_guard
from datathon.database.parts import DataPart
from datathon.errors import DatathonError
from datathon.providers import get_provider
from conftest import DEMO_SQL, Event, event_yaml, free_port

LIMIT = 3  # seconds: the event's statement_timeout and idle_in_transaction_session_timeout here


@pytest.fixture(scope="module")
def event(tmp_path_factory) -> Event:
    """Two teams, short limits, a small disk quota."""
    folder = tmp_path_factory.mktemp("watcher")
    shutil.copy(DEMO_SQL, folder / "demo-data.sql")
    ev = Event(folder, event_yaml(event="w6w", port=free_port(), teams=[{"name": "alpha"}, {"name": "beta"}],
                                  policy={"statement_timeout": f"{LIMIT}s",
                                          "idle_in_transaction_session_timeout": f"{LIMIT}s",
                                          "disk_quota": "1MB"}))
    try:
        ev.up()
        yield ev
    finally:
        ev.close()


def connect(ev: Event, team: str, *, db: str | None = None) -> psycopg.Connection:
    role = f"w6w_{team}"
    ep = ev.server.endpoint()
    return psycopg.connect(host=ep.host, port=ep.port, dbname=db or "w6wdb", user=role, password=ev.password(role),
                           sslmode="require", autocommit=True, connect_timeout=5)


def data_part(ev: Event) -> DataPart:
    return next(p for p in get_provider(ev.ctx).parts() if isinstance(p, DataPart))


def member(ev: Event, name: str):
    return next(m for m in members(ev.ctx.config) if m.name == name and m.person)


def cycles_until(ev: Event, done, *, timeout: float = 20.0, parts=None) -> list:
    """Run watcher cycles (every 0.5 s) until done() or the timeout; every action of every cycle."""
    parts = parts if parts is not None else get_provider(ev.ctx).parts()
    actions = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        actions += run_watch_cycle(ev.ctx, parts).actions
        if done():
            return actions
        time.sleep(0.5)
    raise AssertionError(f"not done after {timeout}s; actions: {actions}")


def show(ev: Event, team: str, key: str) -> str:
    with connect(ev, team) as c:
        return c.execute(f"SHOW {key}").fetchone()[0]


def test_limit_seconds_reads_postgres_durations():
    assert [limit_seconds(x) for x in ("3s", "150ms", "5min", "2h", "0", "30000")] == [3, 0.15, 300, 7200, 0, 30]


def test_a_lifted_statement_timeout_is_restored_and_the_statement_cancelled(event):
    with connect(event, "alpha") as c:
        c.execute("ALTER ROLE CURRENT_USER SET statement_timeout = 0")
    sleeper = connect(event, "alpha")
    assert sleeper.execute("SHOW statement_timeout").fetchone() == ("0",)  # the hole: its later sessions run free
    sleeper.execute("SET statement_timeout = 0")  # and even a session's own setting does not save it
    outcome: dict = {}

    def sleep() -> None:
        started = time.monotonic()
        try:
            sleeper.execute("SELECT pg_sleep(60)")
            outcome["result"] = "completed"
        except psycopg.errors.QueryCanceled as exc:
            outcome["result"] = str(exc)
        outcome["seconds"] = time.monotonic() - started

    t = threading.Thread(target=sleep)
    t.start()
    try:
        actions = cycles_until(event, lambda: "result" in outcome)
    finally:
        t.join(70)
        sleeper.close()
    assert "canceling statement due to user request" in outcome["result"]
    assert LIMIT <= outcome["seconds"] < LIMIT + 10
    got = {(a.member, a.action) for a in actions}
    assert {("alpha", "setting restored"), ("alpha", "statement cancelled")} <= got
    restored = next(a for a in actions if a.action == "setting restored")
    assert "statement_timeout=0" in restored.detail
    assert show(event, "alpha", "statement_timeout") == f"{LIMIT}s"  # a fresh session has the event's limit again
    entries = journal.read(event.ctx.state, member="alpha")
    assert {"setting restored", "statement cancelled"} <= {e.action for e in entries if e.who == "watcher"}
    # `audit export` shows them
    audit = run_audit(event.ctx)
    shown = [e for e in audit.events if e.source == "watcher" and e.login == "alpha"]
    assert {"setting restored", "statement cancelled"} <= {e.event for e in shown}
    assert "statement cancelled" in audit.render("csv") and "pg_sleep" in audit.render("json")


def test_a_setting_lifted_in_one_database_only_is_removed(event):
    with connect(event, "beta") as c:
        c.execute("ALTER ROLE CURRENT_USER IN DATABASE w6wextra SET work_mem = '2GB'")
        c.execute("ALTER ROLE CURRENT_USER SET idle_in_transaction_session_timeout = 0")
    assert show(event, "beta", "idle_in_transaction_session_timeout") == "0"
    actions = run_watch_cycle(event.ctx).actions
    assert [a.member for a in actions if a.action == "setting restored"] == ["beta", "beta"]
    assert show(event, "beta", "idle_in_transaction_session_timeout") == f"{LIMIT}s"
    with connect(event, "beta", db="w6wextra") as c:
        assert c.execute("SHOW work_mem").fetchone() == ("16MB",)
    assert [a for a in run_watch_cycle(event.ctx).actions if a.action == "setting restored"] == []  # once


def test_a_session_idle_in_transaction_past_its_limit_is_ended_whatever_it_set(event):
    conn = connect(event, "beta")
    conn.execute("SET idle_in_transaction_session_timeout = 0")
    conn.execute("BEGIN")
    conn.execute("SELECT 1")
    pid = conn.info.backend_pid
    reports = []
    stop = threading.Event()
    t = threading.Thread(target=watch_loop, args=(event.ctx, 0.5, stop, reports.append))  # as `serve` runs it
    t.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(a.action == "session ended" for r in reports
                                                      for a in r.actions):
            time.sleep(0.2)
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()
    ended = [a for r in reports for a in r.actions if a.action == "session ended"]
    assert len(ended) == 1 and ended[0].member == "beta" and f"session {pid}" in ended[0].detail
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    assert any(r.usage.get("beta", {}).get("sessions") is not None for r in reports)


def test_a_0_in_the_policy_turns_the_limit_off():
    from datathon.config.models import Policy
    from datathon.database.activity import Session
    from datathon.database.tenancy import Login

    policy = Policy(statement_timeout="0", idle_in_transaction_session_timeout="0")
    logins = [Login("w6z_alpha", "alpha", "team", "w6z_teams", policy, ("alpha",))]
    now = datetime.now(UTC)
    old = now - timedelta(days=1)
    facts = GuardFacts(now, {}, [Session(1, "w6z_alpha", "d", "active", old, old, old, "SELECT pg_sleep(1e6)"),
                                 Session(2, "w6z_alpha", "d", "idle in transaction", old, old, old, "SELECT 1")],
                       None, None)
    steps, _ = plan_guard(logins, {"w6z_alpha": "alpha"}, facts, quota=None, flagged=set())
    assert steps == []
    on = Policy(statement_timeout="1h", idle_in_transaction_session_timeout="1h")
    steps, _ = plan_guard([Login("w6z_alpha", "alpha", "team", "w6z_teams", on, ("alpha",))],
                          {"w6z_alpha": "alpha"}, facts, quota=None, flagged=set())
    assert [s.action for s in steps] == ["statement cancelled", "session ended"]


def test_a_team_cannot_cancel_another_teams_session(event):
    part = data_part(event)
    with connect(event, "beta") as other, connect(event, "alpha") as mine:
        pid = str(other.info.backend_pid)
        with pytest.raises(DatathonError, match=f"session {pid} is not one of team alpha's"):
            part.cancel(member(event, "alpha"), pid, terminate=True)
        assert other.execute("SELECT 1").fetchone() == (1,)  # untouched
        with pytest.raises(DatathonError, match="not a database session"):
            part.cancel(member(event, "alpha"), f"{pid} OR true")
        # its own: listed (with the statement), and cancelled
        rows = [a for a in part.activity() if a.member == "alpha"]
        assert [a.ident for a in rows] == [str(mine.info.backend_pid)] and rows[0].kind == "session"
        assert rows[0].started.endswith("+00:00") and rows[0].login == "w6w_alpha" and rows[0].part == "data"
        assert "beta" not in {a.member for a in rows}
        said = part.cancel(member(event, "alpha"), str(mine.info.backend_pid), terminate=True)
        assert said.startswith(f"ended session {mine.info.backend_pid} of w6w_alpha")
        with pytest.raises(psycopg.OperationalError):
            mine.execute("SELECT 1")


def test_a_team_over_its_disk_quota_is_flagged_once(event):
    with connect(event, "alpha") as c:
        c.execute("CREATE TABLE big AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 30000) g")
    try:
        parts = get_provider(event.ctx).parts()
        data_part(event)._guard_memory.sizes_at = float("-inf")  # as if the sizes were last measured long ago
        first = run_watch_cycle(event.ctx, parts)
        flags = [a for a in first.actions if a.action == "over disk quota"]
        assert [(a.member, a.enforced) for a in flags] == [("alpha", False)]
        assert "schema" in flags[0].detail and first.usage["alpha"]["schema_bytes"] > 2**20
        assert first.usage["beta"]["schema_bytes"] == 0
        assert [a for a in run_watch_cycle(event.ctx, parts).actions if a.action == "over disk quota"] == []
        # also for a caller that builds its parts anew every cycle (the dashboard does)
        data_part(event)._guard_memory.sizes_at = float("-inf")
        assert [a for a in run_watch_cycle(event.ctx).actions if a.action == "over disk quota"] == []
        assert journal.read(event.ctx.state, member="alpha")[-1].action == "over disk quota"
    finally:
        with connect(event, "alpha") as c:
            c.execute("DROP TABLE big")
        data_part(event)._guard_memory.sizes_at = float("-inf")  # the next cycle measures again


def test_usage_is_sampled_at_most_once_a_minute_into_a_private_file(event, tmp_path):
    from datathon.core.state import StateStore

    state = StateStore(tmp_path, "w6u")
    now = datetime.now(UTC)
    assert sample_usage(state, {"alpha": {"sessions": 1}}, now=now - timedelta(hours=3))
    os.utime(usage_path(state), (now.timestamp() - 7200, now.timestamp() - 7200))
    assert sample_usage(state, {"alpha": {"sessions": 2}}, now=now)
    assert not sample_usage(state, {"alpha": {"sessions": 3}}, now=now)
    assert stat.S_IMODE(usage_path(state).stat().st_mode) == 0o600
    assert [s["usage"]["alpha"]["sessions"] for s in usage_history(state, 1)] == [2]
    assert [s["usage"]["alpha"]["sessions"] for s in usage_history(state, 4)] == [1, 2]
    assert usage_history(StateStore(tmp_path, "none"), 1) == []


def test_the_watcher_never_runs_a_teams_function(event):
    """An administrator whose search path reaches a team's schema (an organizer's own server with a role-level
    search_path; a team named like the administrator is refused by the file, see test_config). Bait: functions
    named like what the watcher calls, closer matches than pg_catalog's, that record who ran them."""
    with event.server.connect(autocommit=True) as conn:
        conn.execute('ALTER ROLE CURRENT_USER IN DATABASE w6wdb SET search_path = beta, "$user", public')
    with connect(event, "beta") as c:
        c.execute("CREATE TABLE ran (who text)")
        c.execute("GRANT INSERT ON ran TO PUBLIC")
        for sig, returns in (("pg_total_relation_size(oid)", "bigint"), ("pg_cancel_backend(bigint)", "boolean"),
                             ("pg_terminate_backend(bigint)", "boolean"), ("left(text, bigint)", "text"),
                             ("starts_with(name, text)", "boolean"), ("now()", "timestamptz"),
                             ("set_config(text, text, boolean)", "text")):
            c.execute(f"CREATE FUNCTION beta.{sig} RETURNS {returns} LANGUAGE sql AS"
                      f" $$ INSERT INTO beta.ran VALUES (current_user) RETURNING NULL::{returns} $$")
        c.execute("CREATE FUNCTION beta.cat(text, integer) RETURNS text LANGUAGE sql AS"
                  " $$ INSERT INTO beta.ran VALUES (current_user) RETURNING $1 || $2::text $$")
        c.execute("CREATE OPERATOR beta.|| (LEFTARG = text, RIGHTARG = integer, FUNCTION = beta.cat)")
        c.execute("CREATE TABLE big AS SELECT g FROM generate_series(1, 100) g")
    try:
        server = event.server
        # the bait works: on the administrator's default search path, pg_catalog's function loses to the team's
        with server.connect("w6wdb", autocommit=True) as conn:
            conn.execute("SELECT pg_total_relation_size(c.oid) FROM pg_class c WHERE relname = 'big'")
            assert conn.execute("SELECT count(*) FROM beta.ran").fetchone() == (1,)
            conn.execute("SELECT 'pgsql_tmp' || a.pid FROM pg_stat_activity a LIMIT 1")  # and the operator's
            assert conn.execute("SELECT count(*) FROM beta.ran").fetchone() == (2,)
            conn.execute("DELETE FROM beta.ran")
        # the watcher's every query (schema sizes too), `status`, activity, cancel
        from datathon.commands.status import run_status

        with connect(event, "beta") as sleeper:
            sleeper.execute("BEGIN")
            sleeper.execute("SELECT 1")
            data_part(event)._guard_memory.sizes_at = float("-inf")  # this cycle measures the schemas
            run_watch_cycle(event.ctx)
            run_status(event.ctx)
            part = data_part(event)
            part.activity()
            part.cancel(member(event, "beta"), str(sleeper.info.backend_pid))
        with server.connect("w6wdb", autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM beta.ran").fetchone() == (0,)
    finally:
        with event.server.connect(autocommit=True) as conn:
            conn.execute("ALTER ROLE CURRENT_USER IN DATABASE w6wdb RESET search_path")
        with connect(event, "beta") as c:
            c.execute("DROP TABLE IF EXISTS big, ran")
            c.execute("DROP OPERATOR IF EXISTS beta.|| (text, integer)")
            c.execute("DROP FUNCTION IF EXISTS beta.cat(text, integer)")
            for sig in ("pg_total_relation_size(oid)", "pg_cancel_backend(bigint)", "pg_terminate_backend(bigint)",
                        "left(text, bigint)", "starts_with(name, text)", "now()", "set_config(text, text, boolean)"):
                c.execute(f"DROP FUNCTION IF EXISTS beta.{sig}")


def test_watch_once_json(event):
    proc = subprocess.run([sys.executable, "-m", "datathon.cli", "watch", "--once", "--json",
                           "-c", str(event.ctx.loaded.path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"time", "actions", "usage", "problems"}
    assert {"alpha", "beta", "mentor_ana"} <= set(out["usage"])
    assert out["usage"]["alpha"]["sessions"] == 0 and "schema_bytes" in out["usage"]["alpha"]
    # and the lines a person reads, into a pipe
    with connect(event, "beta") as c:
        c.execute("ALTER ROLE CURRENT_USER SET work_mem = '1GB'")
    proc = subprocess.run([sys.executable, "-m", "datathon.cli", "watch", "--once", "-c",
                           str(event.ctx.loaded.path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "beta: setting restored: w6w_beta: policy: work_mem (it had work_mem=1GB)" in proc.stdout


def test_the_check_probe_finds_the_lifted_limit_undone_and_leaves_the_role_as_it_was(event, monkeypatch):
    from datathon.check import runner
    from datathon.check.runner import run_check

    with connect(event, "beta") as c:
        (before,) = c.execute("SELECT setconfig FROM pg_db_role_setting WHERE setrole = "
                              "(SELECT oid FROM pg_roles WHERE rolname = current_user) AND setdatabase = 0").fetchone()
    report = run_check(event.ctx, only=["beta"])
    [result] = [r for r in report.results if r.probe == "db.policy.lifted"]
    assert result.outcome == "pass", result
    assert any('ALTER ROLE CURRENT_USER SET "statement_timeout"' in e.statement for e in result.evidence)
    # without a watcher (what the event had before it), the same probe fails: the lift lasts
    monkeypatch.setattr(runner, "_guard", lambda ctx, server: lambda role: None)
    report = run_check(event.ctx, only=["beta"])
    [result] = [r for r in report.results if r.probe == "db.policy.lifted"]
    assert result.outcome == "fail" and "statement_timeout = 0" in result.detail, result
    with connect(event, "beta") as c:
        (after,) = c.execute("SELECT setconfig FROM pg_db_role_setting WHERE setrole = "
                             "(SELECT oid FROM pg_roles WHERE rolname = current_user) AND setdatabase = 0").fetchone()
        assert sorted(after) == sorted(before)
        assert c.execute("SELECT count(*) FROM pg_db_role_setting WHERE setrole = (SELECT oid FROM pg_roles"
                         " WHERE rolname = current_user) AND setdatabase <> 0").fetchone() == (0,)


def test_watch_prints_each_action_into_a_pipe_and_ctrl_c_ends_it_cleanly(event):
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "datathon.cli", "watch", "--every", "1", "-c",
                             str(event.ctx.loaded.path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "watching event w6w every 1s" in proc.stderr.readline()
        with connect(event, "alpha") as c:
            c.execute("ALTER ROLE CURRENT_USER SET statement_timeout = '1h'")
        line = proc.stdout.readline()  # flushed at once, though not a terminal
        assert "alpha: setting restored: w6w_alpha: policy: statement_timeout (it had statement_timeout=1h)" in line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped watching" in err and "interrupted" not in err
    assert show(event, "alpha", "statement_timeout") == f"{LIMIT}s"


def test_the_watcher_follows_the_event_file_when_it_changes(event):
    """An organizer raises statement_timeout in the file (and runs `up`): the watcher must keep the new value, not
    put the old one back."""
    path = event.ctx.loaded.path
    original = path.read_text()
    reports = []
    stop = threading.Event()
    t = threading.Thread(target=watch_loop, args=(event.ctx, 0.3, stop, reports.append))
    t.start()
    try:
        time.sleep(1)
        path.write_text(original.replace("statement_timeout: 3s", "statement_timeout: 4s"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and show(event, "alpha", "statement_timeout") != "4s":
            time.sleep(0.3)
        assert show(event, "alpha", "statement_timeout") == "4s"
        path.write_text("event: [not, a, file")  # half edited: reported, the file as it was is kept
        time.sleep(1.5)
        assert any("does not load" in p for r in reports for p in r.problems)
        assert show(event, "alpha", "statement_timeout") == "4s"
        path.write_text(original)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and show(event, "alpha", "statement_timeout") != f"{LIMIT}s":
            time.sleep(0.3)
    finally:
        path.write_text(original)
        stop.set()
        t.join(10)
    assert show(event, "alpha", "statement_timeout") == f"{LIMIT}s"


def test_up_runs_while_the_watcher_watches(event):
    """The watcher takes no lock of the state folder: an organizer's `up` runs meanwhile, and finds nothing to do
    that the watcher undid."""
    reports = []
    stop = threading.Event()
    t = threading.Thread(target=watch_loop, args=(event.ctx, 0.3, stop, reports.append))
    t.start()
    try:
        time.sleep(0.5)
        with event.ctx.state.lock():  # the lock `up` takes is free while it watches
            pass
        result = event.up()
    finally:
        stop.set()
        t.join(10)
    assert result.applied == 0  # and nothing the watcher did was undone or redone by `up`
    assert len(reports) >= 2 and not [p for r in reports for p in r.problems]


def test_a_team_whose_temporary_files_pass_the_quota_is_flagged(event):
    with connect(event, "beta") as c:
        c.execute("SET work_mem = '64kB'")
        c.execute("BEGIN")  # a sort kept open by a cursor: its temporary files stay while the cursor does
        c.execute("DECLARE big CURSOR FOR SELECT g FROM generate_series(1, 500000) g ORDER BY g DESC")
        assert c.execute("FETCH 1 FROM big").fetchone() == (500000,)
        report = run_watch_cycle(event.ctx)
        c.execute("ROLLBACK")
    flags = [a for a in report.actions if a.action == "over disk quota"]
    assert [a.member for a in flags] == ["beta"] and "temporary files" in flags[0].detail
    assert report.usage["beta"]["temp_bytes"] > 2**20


def test_the_audit_trail_down_writes_holds_the_journal(event, tmp_path):
    from datathon.archive.audit import export_into

    journal.record(event.ctx.state, "watcher", "statement cancelled", "beta", "w6w_beta session 1: test")
    export_into(tmp_path, event.ctx.config, get_provider(event.ctx).parts(), [], event.ctx.state)
    rows = json.loads((tmp_path / "audit.json").read_text())
    assert any(r["source"] == "watcher" and r["event"] == "statement cancelled" and r["login"] == "beta"
               for r in rows)
