"""Lock, unlock, rotate and late changes on a real managed cluster (database only: the workspace side is in
test_access_workspaces.py). One event is brought up once and reused; each test leaves it as it found it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import psycopg
import pytest
import yaml

from conftest import DEMO_SQL, Event, event_data, free_port
from datathon.check.runner import run_check
from datathon.commands.access import run_access
from datathon.commands.plan import plan_event
from datathon.commands.rotate import run_rotate
from datathon.commands.status import run_status
from datathon.core import access
from datathon.errors import ConfigError

TEAMS = [{"name": "alpha"}, {"name": "beta"}]


def yaml_for(port: int, teams, mentors=None) -> str:
    data = event_data(event="ac", port=port, teams=teams)
    if mentors is not None:
        data["mentors"] = mentors
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture(scope="module")
def ev(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ac")
    shutil.copy(DEMO_SQL, folder / "demo-data.sql")
    port = free_port()
    event = Event(folder, yaml_for(port, TEAMS))
    event.port = port
    try:
        event.up()
        yield event
    finally:
        event.close()


def connect(ev, role: str, password: str | None = None) -> psycopg.Connection:
    ep = ev.server.endpoint()
    return psycopg.connect(host=ep.host, port=ep.port, dbname="acdb", user=role,
                           password=password if password is not None else ev.password(role),
                           sslmode="require", autocommit=True, connect_timeout=5)


def refused(ev, role: str, password: str | None = None) -> bool:
    try:
        connect(ev, role, password).close()
    except psycopg.OperationalError:
        return True
    return False


def outcomes(report) -> dict[tuple[str, str], str]:
    return {(r.subject, r.probe): r.outcome for r in report.results}


def test_lock_refuses_the_team_at_once_ends_its_session_and_up_keeps_it(ev):
    held = connect(ev, "ac_beta")  # a session of beta's that is open when the lock comes
    other = connect(ev, "ac_alpha")
    result = run_access(ev.ctx, ["beta"], lock=True)
    assert result.recorded == ["beta"] and {c.target for c in result.changes} == {"ac_beta"}
    assert refused(ev, "ac_beta")
    with pytest.raises(psycopg.OperationalError):
        held.execute("SELECT 1")  # ended, not left to run on
    assert other.execute("SELECT 1").fetchone() == (1,)  # another team is not touched
    # `up` plans from the lock: nothing to undo (today `up` let the team in again)
    assert not [c for c in plan_event(ev.ctx).pending if "beta" in c.target]
    ev.up()
    assert refused(ev, "ac_beta") and not refused(ev, "ac_alpha")
    logins = {x.name: x for x in run_status(ev.ctx).tables["logins"]}
    assert logins["beta"].access == "locked" and logins["alpha"].access == "open"
    # the check knows: beta runs only the probes proving it is refused; alpha all of the usual ones
    report = run_check(ev.ctx)
    got = outcomes(report)
    assert got[("beta", "locked.db.login")] == "pass"
    assert not any(team == "beta" and probe.startswith("db.") for team, probe in got)
    assert got[("alpha", "db.login.tls")] == "pass"
    assert report.go, [r.as_dict() for r in report.failures]
    # the mentor's login for the locked team still reads it (organizers look at a locked team's work)
    with connect(ev, "ac_mentor_ana__beta") as c:
        assert c.execute("SELECT current_user").fetchone() == ("ac_mentor_ana__beta",)
    other.close()
    # unlock: the same password works again; locking a team twice or naming a stranger is clear
    assert run_access(ev.ctx, ["beta"], lock=False).recorded == ["beta"]
    assert not refused(ev, "ac_beta")
    assert run_access(ev.ctx, ["beta"], lock=False).recorded == []
    with pytest.raises(ConfigError, match="no team named zeta"):
        run_access(ev.ctx, ["zeta"], lock=True)
    assert access.locked(ev.ctx.state) == {}


def test_a_manual_lock_on_the_server_is_undone_only_when_the_team_is_not_locked_in_state(ev):
    with ev.server.connect(autocommit=True) as c:
        c.execute('ALTER ROLE "ac_alpha" NOLOGIN')
    assert [c.reason for c in plan_event(ev.ctx).pending] == ["reset attributes (nologin)"]
    ev.up()
    assert not refused(ev, "ac_alpha")


def test_rotate_changes_the_password_everywhere_and_the_old_one_is_refused_at_once(ev):
    old = ev.password("ac_alpha")
    held = connect(ev, "ac_alpha")
    result = run_rotate(ev.ctx, ["alpha"])
    new = ev.password("ac_alpha")
    assert new != old and [r.name for r in result.rotated] == ["alpha"]
    assert refused(ev, "ac_alpha", old) and not refused(ev, "ac_alpha", new)
    with pytest.raises(psycopg.OperationalError):
        held.execute("SELECT 1")  # a session opened with the leaked password does not outlive it
    handouts = ev.ctx.state.handouts_dir
    assert new in (handouts / "team-alpha.md").read_text() and old not in (handouts / "team-alpha.md").read_text()
    assert new in (handouts / "roster.csv").read_text()
    assert not list(ev.ctx.state.secrets_dir.glob("*.pending")) and access.rotations(ev.ctx.state) == {}
    assert plan_event(ev.ctx).pending == []  # nothing left for `up`
    report = run_check(ev.ctx, only=["alpha"])
    assert outcomes(report)[("alpha", "db.login.retired_password")] == "pass"
    assert report.go, [r.as_dict() for r in report.failures]


def test_rotate_a_mentor_changes_its_login_for_every_team(ev):
    roles = ["ac_mentor_ana", "ac_mentor_ana__alpha", "ac_mentor_ana__beta"]
    old = {r: ev.password(r) for r in roles}
    (rotated,) = run_rotate(ev.ctx, ["mentor_ana"]).rotated
    assert rotated.logins == roles and rotated.handout == "mentor-mentor_ana.html"
    for r in roles:
        assert refused(ev, r, old[r]) and not refused(ev, r)
    with pytest.raises(ConfigError, match="--all"):
        run_rotate(ev.ctx, [])


def test_a_deleted_secret_and_up_change_the_database_role_too(ev):
    """How organizers rotated before `rotate` existed: the role kept the leaked password."""
    old = ev.password("ac_beta")
    ev.ctx.state.secret_path("ac_beta").unlink()
    ev.up()
    assert refused(ev, "ac_beta", old) and not refused(ev, "ac_beta")
    # and a password changed on the server behind datathon's back is found and set back
    with connect(ev, "ac_beta") as c:
        c.execute("ALTER ROLE CURRENT_USER PASSWORD 'chosen-by-the-team'")
    assert [c.reason for c in plan_event(ev.ctx).pending] == [
        "password changed on the server: set back to its handout's"]
    ev.up()
    assert refused(ev, "ac_beta", "chosen-by-the-team") and not refused(ev, "ac_beta")


def test_adding_a_team_and_a_mentor_restarts_nothing_and_removing_a_team_refuses_it_at_once(ev):
    held = connect(ev, "ac_alpha")
    pid = held.execute("SELECT pg_backend_pid()").fetchone()[0]
    started = held.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    ev.rewrite(yaml_for(ev.port, [*TEAMS, {"name": "gamma"}],
                        mentors=[{"name": "mentor_ana"}, {"name": "mentor_bo"}]))
    plan = plan_event(ev.ctx)
    assert not [c for c in plan.pending if c.action == "restart" or c.destructive]
    ev.up()
    assert held.execute("SELECT pg_backend_pid(), pg_postmaster_start_time()").fetchone() == (pid, started)
    assert not refused(ev, "ac_gamma") and not refused(ev, "ac_mentor_bo__gamma")
    # gamma leaves with a table in its schema: refused at once, its sheet gone, its data kept and listed
    with connect(ev, "ac_gamma") as c:
        c.execute("CREATE TABLE work (x int)")
    gamma = connect(ev, "ac_gamma")
    ev.rewrite(yaml_for(ev.port, TEAMS, mentors=[{"name": "mentor_ana"}, {"name": "mentor_bo"}]))
    ev.up()
    assert refused(ev, "ac_gamma", ev.password("ac_gamma"))
    with pytest.raises(psycopg.OperationalError):
        gamma.execute("SELECT 1")
    assert not list(ev.ctx.state.handouts_dir.glob("team-gamma*"))
    assert (ev.ctx.state.handouts_dir / "team-alpha.md").exists()
    removed = next(c for c in run_status(ev.ctx).components if c.name == "removed teams")
    assert "gamma: acdb.gamma (1 tables)" in removed.detail
    assert held.execute("SELECT pg_backend_pid()").fetchone() == (pid,)
    held.close()
    ev.up(drop_team_data=True)
    ev.rewrite(yaml_for(ev.port, TEAMS))
    ev.up()


# -- crash safety ------------------------------------------------------------------------------------------------

def cli(ev, *args: str, die_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATATHON_DIE_AT"}
    if die_at:
        env["DATATHON_DIE_AT"] = die_at
    return subprocess.run([sys.executable, "-m", "datathon.cli", *args, "-c", str(ev.ctx.loaded.path)],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("step", ["rotate.pending", "rotate.applied.data", "rotate.committed", "rotate.refreshed",
                                  "rotate.handouts"])
def test_rotate_killed_at_any_step_is_finished_by_running_it_again(ev, step):
    state = ev.ctx.state
    old = ev.password("ac_alpha")
    killed = cli(ev, "rotate", "alpha", die_at=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert access.rotations(state)  # it knows a rotation is under way
    pending = access.pending(state, "ac_alpha")
    again = cli(ev, "rotate", "alpha", "--json")
    assert again.returncode == 0, again.stderr
    new = ev.password("ac_alpha")
    # exactly one rotation: the password the crashed run had made (and maybe applied) is the one that stays
    assert new != old and (pending is None or new == pending)
    assert access.retired(state, "ac_alpha") == old
    assert refused(ev, "ac_alpha", old) and not refused(ev, "ac_alpha", new)
    assert new in (state.handouts_dir / "team-alpha.md").read_text()
    assert access.rotations(state) == {} and not list(state.secrets_dir.glob("*.pending"))
    (done,) = json.loads(again.stdout)["rotated"]  # one rotation, finished, not a second one
    assert done["name"] == "alpha" and done["resumed"]
    assert old not in again.stdout and new not in again.stdout  # never a password on the screen
    assert plan_event(ev.ctx).pending == []


def test_up_killed_after_a_rotation_was_killed_finishes_both(ev):
    old = ev.password("ac_beta")
    assert cli(ev, "rotate", "beta", die_at="rotate.applied.data").returncode == -signal.SIGKILL
    # the role has the pending password now; `up` must not set it back to the old one and stop there
    killed = cli(ev, "up", "--yes", die_at="up.handouts")
    assert killed.returncode == -signal.SIGKILL
    assert cli(ev, "up", "--yes").returncode == 0
    new = ev.password("ac_beta")
    assert new != old and refused(ev, "ac_beta", old) and not refused(ev, "ac_beta", new)
    assert access.rotations(ev.ctx.state) == {}


@pytest.mark.parametrize("step", ["apply.change@3", "up.data"])
def test_up_killed_while_adding_a_team_is_finished_by_the_next(ev, step):
    ev.rewrite(yaml_for(ev.port, [*TEAMS, {"name": "delta"}]))
    killed = cli(ev, "up", "--yes", die_at=step)
    assert killed.returncode == -signal.SIGKILL
    assert cli(ev, "up", "--yes").returncode == 0
    assert plan_event(ev.ctx).pending == []
    assert not refused(ev, "ac_delta") and (ev.ctx.state.handouts_dir / "team-delta.md").exists()
    with connect(ev, "ac_delta") as c:
        assert c.execute("SELECT current_schema()").fetchone() == ("delta",)
    ev.rewrite(yaml_for(ev.port, TEAMS))
    assert cli(ev, "up", "--yes").returncode == 0


def test_lock_killed_after_recording_is_finished_by_running_it_again(ev):
    assert cli(ev, "lock", "beta", die_at="lock.recorded").returncode == -signal.SIGKILL
    assert "beta" in access.locked(ev.ctx.state) and not refused(ev, "ac_beta")  # recorded, not yet applied
    again = cli(ev, "lock", "beta", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["recorded"] == []  # nothing recorded twice
    assert refused(ev, "ac_beta")
    assert cli(ev, "unlock", "beta").returncode == 0 and not refused(ev, "ac_beta")


def test_a_shared_team_environment_names_the_other_events_that_use_it(tmp_path):
    from datathon.config.workspaces import Workspaces
    from datathon.workspaces.environment import TeamEnvironment

    env = TeamEnvironment(Workspaces(env_root=tmp_path / "envs"))
    mine, other, gone = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    for path in (mine, other):
        path.write_text("event: x\n")
    env.register("tagmine", mine)
    env.register("tagother", other)
    env.register("taggone", gone)  # an event whose file was deleted no longer counts
    assert env.uses("tagmine") and env.other_users("tagmine") == [str(other)]
    assert TeamEnvironment.recorded_uses(tmp_path / "envs", "tagmine") == [env.events_dir / "tagmine"]
