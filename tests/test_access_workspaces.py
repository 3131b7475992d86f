"""Lock, rotate and late changes with workspaces: a real hub, PAM logins as real Unix users, real kernels.

One event (two teams, a mentor) is brought up once and used by every test in order; each test leaves it as it
found it (run under the workspace flock, see COMMON.md)."""

from __future__ import annotations

import os
import shutil

import psycopg
import pytest

from conftest import DEMO_SQL, Event
from datathon.check.runner import run_check
from datathon.commands.access import run_access
from datathon.commands.plan import plan_event
from datathon.commands.rotate import run_rotate
from datathon.commands.status import run_status
from datathon.workspaces import accounts
from datathon.workspaces.client import BrowserSession, KernelClient
from datathon.workspaces.hub import hub_for
from test_workspaces import ws_yaml

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="workspaces make Unix users: needs root")

TEAMS = [{"name": "alpha"}, {"name": "beta"}]


@pytest.fixture(scope="module")
def ev(tmp_path_factory):
    folder = tmp_path_factory.mktemp("acw")
    shutil.copy(DEMO_SQL, folder / "demo-data.sql")
    text = ws_yaml("acw", TEAMS)
    event = Event(folder, text)
    event.text = text
    try:
        event.up()
        yield event
    finally:
        event.close()


def hub_login(ev, user: str, password: str | None = None) -> bool:
    return BrowserSession(hub_for(ev.ctx).local_url).login(user, password if password is not None else
                                                            ev.password(user))


def db_refused(ev, role: str, password: str | None = None) -> bool:
    ep = ev.server.endpoint()
    try:
        psycopg.connect(host=ep.host, port=ep.port, dbname="acwdb", user=role, sslmode="require",
                        password=password if password is not None else ev.password(role), connect_timeout=5).close()
    except psycopg.OperationalError:
        return True
    return False


def server_pid(ev, user: str) -> int | None:
    server = hub_for(ev.ctx).server(user)
    return (server or {}).get("state", {}).get("pid") if server else None


def test_adding_a_team_and_a_mentor_interrupts_no_kernel_session_or_server(ev):
    hub = hub_for(ev.ctx)
    hub.start_server("acw_alpha")
    before = server_pid(ev, "acw_alpha")
    with hub.user_token("acw_alpha") as token:
        k = KernelClient(hub.local_url, "acw_alpha", token, "python3")
        k.start()
        try:
            # a kernel with state, holding a database session of alpha's
            r = k.execute("import psycopg\nconn = psycopg.connect(autocommit=True)\n"
                          "pid = conn.execute('SELECT pg_backend_pid()').fetchone()[0]\nmarker = 42\nprint(pid)")
            assert r.ok, r
            pid = int(r.stdout.strip())
            text = ev.text.replace("- name: beta\n", "- name: beta\n- name: gamma\n", 1)
            text = text.replace("mentors:\n", "mentors:\n- name: mentor_bo\n", 1)
            assert text != ev.text
            ev.rewrite(text)
            plan = plan_event(ev.ctx)
            assert not [c for c in plan.pending if c.destructive or c.action == "restart" and c.component != "hub"]
            ev.up()
            # the same kernel, its state, and its database session are all still there
            r = k.execute("print(marker, conn.execute('SELECT pg_backend_pid()').fetchone()[0])")
            assert r.ok, r
            assert r.stdout.split() == ["42", str(pid)]
        finally:
            k.close()
    assert server_pid(ev, "acw_alpha") == before
    assert hub_login(ev, "acw_gamma") and hub_login(ev, "acw_mentor_bo")
    hub.stop_server("acw_alpha")
    # gamma leaves: refused at once everywhere, its home kept (without --drop-team-data), its sheet gone
    ev.rewrite(ev.text)
    ev.up()
    assert not hub_login(ev, "acw_gamma") and db_refused(ev, "acw_gamma")
    assert accounts.password_locked("acw_gamma") and accounts.lookup("acw_gamma") is not None
    assert not list(ev.ctx.state.handouts_dir.glob("team-gamma*"))
    ev.up(drop_team_data=True)
    assert accounts.lookup("acw_gamma") is None


def test_lock_stops_the_server_refuses_every_login_and_up_keeps_it(ev):
    hub = hub_for(ev.ctx)
    hub.start_server("acw_beta")
    assert hub_login(ev, "acw_beta")
    run_access(ev.ctx, ["beta"], lock=True)
    assert hub.server("acw_beta") is None
    assert not hub_login(ev, "acw_beta") and db_refused(ev, "acw_beta")
    assert hub_login(ev, "acw_alpha") and not db_refused(ev, "acw_alpha")
    # `up` keeps the lock (before: it set the password again, which unlocked the Unix account)
    assert not [c for c in plan_event(ev.ctx).pending if "beta" in c.target]
    ev.up()
    assert not hub_login(ev, "acw_beta") and db_refused(ev, "acw_beta")
    logins = {x.name: x.access for x in run_status(ev.ctx).tables["logins"]}
    assert logins["beta"] == "locked"
    report = run_check(ev.ctx, only=["beta"])
    got = {r.probe: r.outcome for r in report.results}
    assert got == {"locked.db.login": "pass", "locked.ws.login": "pass", "locked.ws.running": "pass"}
    run_access(ev.ctx, ["beta"], lock=False)
    assert hub_login(ev, "acw_beta") and not db_refused(ev, "acw_beta")
    assert not [c for c in plan_event(ev.ctx).pending if "beta" in c.target]


def test_rotate_refuses_the_old_password_everywhere_and_restarts_the_running_server(ev):
    hub = hub_for(ev.ctx)
    hub.start_server("acw_alpha")
    before = server_pid(ev, "acw_alpha")
    old = ev.password("acw_alpha")
    browser = BrowserSession(hub.local_url)
    assert browser.login("acw_alpha", old)  # someone with the leaked password is logged in to the hub
    assert "/hub/login" not in browser.request("/hub/home")[1]
    (rotated,) = run_rotate(ev.ctx, ["alpha"]).rotated
    new = ev.password("acw_alpha")
    assert rotated.restarted and new != old
    assert not hub_login(ev, "acw_alpha", old) and hub_login(ev, "acw_alpha", new)
    assert db_refused(ev, "acw_alpha", old) and not db_refused(ev, "acw_alpha", new)
    assert "/hub/login" in browser.request("/hub/home")[1]  # that hub session ended with the rotation
    after = server_pid(ev, "acw_alpha")
    assert after is not None and after != before  # started again: what the team runs now has the new password
    pgpass = (accounts.lookup("acw_alpha").pw_dir + "/.pgpass")
    text = open(pgpass).read()
    assert new in text and old not in text
    assert plan_event(ev.ctx).pending == []
    report = run_check(ev.ctx, only=["alpha"])
    got = {r.probe: r.outcome for r in report.results}
    assert got["ws.login.retired_password"] == "pass" and got["db.login.retired_password"] == "pass"
    assert got["ws.python"] == "pass"  # the restarted server's kernel connects with no arguments
    assert report.go, [r.as_dict() for r in report.failures]
    hub.stop_server("acw_alpha")


def test_the_shared_environment_records_this_event_and_down_only_forgets_that(ev):
    from datathon.engine import plan_down
    from datathon.providers import get_provider
    from datathon.workspaces.environment import TeamEnvironment

    env = TeamEnvironment(ev.ctx.config.workspaces)
    assert env.uses(ev.ctx.state.tag)
    plan = plan_down(get_provider(ev.ctx).parts())  # read-only: what `down` would do
    env_changes = [c for c in plan.pending if str(c.component) == "environment"]
    assert [(c.action, c.reason) for c in env_changes] == [("update", "this event no longer uses it")]
    assert not any(c.action == "drop" and str(c.component) == "environment" for c in plan.changes)
