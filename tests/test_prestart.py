"""Doors open: team servers started before the teams arrive (`datathon workspaces start`, `prestart_at`), left
alone by the idle culler until each team's first visit; on a real hub with real Unix users and a short
idle_timeout (20 s: the culler looks every 10 s)."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from test_workspaces import ws_yaml

from conftest import DEMO_SQL, Event
from datathon.commands.access import run_access
from datathon.commands.workspaces import run_workspaces_start, run_workspaces_stop
from datathon.engine import guard_cycle
from datathon.errors import ConfigError
from datathon.providers import get_provider
from datathon.workspaces.client import BrowserSession
from datathon.workspaces.hub import PRESTART_MARK, hub_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="workspaces make Unix users: needs root")

IDLE = 20  # seconds; the culler looks every 10 s
CULLED_WITHIN = IDLE + 10 + 15  # its timeout, one cull period, and slack for a busy machine
TEAMS = [{"name": "alpha"}, {"name": "beta"}, {"name": "gamma"}]


def _with(ev: Event, **workspaces) -> str:
    """The event's file with these `workspaces:` settings added (same ports, same everything else)."""
    data = yaml.safe_load(ev.ctx.loaded.path.read_text())
    data["workspaces"].update(workspaces)
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture(scope="module")
def doors(tmp_path_factory) -> Event:
    folder = tmp_path_factory.mktemp("doors")
    shutil.copy(DEMO_SQL, folder / "demo-data.sql")
    data = yaml.safe_load(ws_yaml("s6p", TEAMS, workspaces={"idle_timeout": f"{IDLE}s"}))
    data["timezone"] = "Asia/Singapore"
    ev = Event(folder, yaml.safe_dump(data, sort_keys=False))
    try:
        ev.up()
        run_access(ev.ctx, ["gamma"], lock=True)
        yield ev
    finally:
        ev.close()


def _part(ev: Event):
    return next(p for p in get_provider(ev.ctx).parts() if p.name == "workspaces")


def _server(ev: Event, team: str) -> dict | None:
    return hub_for(ev.ctx).server(f"s6p_{team}")


def _running(ev: Event, team: str) -> bool:
    server = _server(ev, team)
    return bool(server and server.get("ready"))


def _wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(1)
    return pred()


def _visit(ev: Event, team: str) -> None:
    """The team opens its JupyterLab in a browser: the login form, then its server (the OAuth round trip)."""
    user = f"s6p_{team}"
    browser = BrowserSession(hub_for(ev.ctx).local_url)
    assert browser.login(user, ev.password(user))
    status, final, _ = browser.request(f"/user/{user}/lab")
    assert status == 200 and final.endswith(f"/user/{user}/lab"), (status, final)


def test_an_unknown_team_is_refused_and_nothing_starts(doors):
    with pytest.raises(ConfigError, match="no team named delta"):
        run_workspaces_start(doors.ctx, ["alpha", "delta"], quiet=True)
    assert _server(doors, "alpha") is None


def test_start_starts_the_servers_but_not_a_locked_teams(doors):
    rows = {r.team: r for r in run_workspaces_start(doors.ctx, [], quiet=True)}
    assert rows["alpha"].result == "started" and rows["beta"].result == "started", rows
    assert rows["gamma"].result.startswith("locked: not started"), rows
    assert _running(doors, "alpha") and _running(doors, "beta") and _server(doors, "gamma") is None
    assert PRESTART_MARK in _server(doors, "alpha")["user_options"]
    again = {r.team: r.result for r in run_workspaces_start(doors.ctx, ["alpha"], quiet=True)}
    assert again == {"alpha": "already running"}
    # what the dashboard shows: each running server, its address, the time since its last activity
    acts = {a.member: a for a in _part(doors).activity()}
    assert set(acts) == {"alpha", "beta"} and acts["alpha"].kind == "server"
    assert acts["alpha"].state == "running, pre-started" and acts["alpha"].detail.endswith("/user/s6p_alpha/")
    assert json.dumps(rows["alpha"].as_dict())


def test_a_team_cannot_mark_its_own_server_as_pre_started(doors):
    """Only datathon's service may exempt a server from the culler: a team that starts its own server through the
    hub's API with the mark in its options gets it removed, and its server is culled as usual."""
    hub = hub_for(doors.ctx)
    hub.stop_server("s6p_beta")
    made = hub.api("POST", "/hub/api/users/s6p_beta/tokens", {"scopes": ["servers!user=s6p_beta"], "expires_in": 600})
    req = urllib.request.Request(f"{hub.local_url}/hub/api/users/s6p_beta/server", method="POST",
                                 data=json.dumps({"user_options": {PRESTART_MARK: "2999-01-01T00:00:00+00:00"}})
                                 .encode(), headers={"Authorization": f"token {made['token']}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status in (201, 202)
    assert _wait(lambda: _running(doors, "beta"), 120)
    assert PRESTART_MARK not in (_server(doors, "beta")["user_options"] or {})
    assert _wait(lambda: _server(doors, "beta") is None, CULLED_WITHIN), "a team's own start was not culled"


def test_a_pre_started_server_outlives_the_idle_timeout_until_its_team_visits(doors):
    assert _running(doors, "alpha")  # pre-started by the test above, never visited
    started = datetime.fromisoformat(_server(doors, "alpha")["started"].replace("Z", "+00:00"))
    time.sleep(max(0.0, CULLED_WITHIN - (datetime.now(UTC) - started).total_seconds()))
    assert _running(doors, "alpha"), "culled before its team came"
    # datathon's own probe (a user token without a browser session) is no visit
    with hub_for(doors.ctx).user_token("s6p_alpha"):
        pass
    _visit(doors, "alpha")
    visited = time.monotonic()
    assert _wait(lambda: _server(doors, "alpha") is None, CULLED_WITHIN), "not culled after its team's visit"
    assert time.monotonic() - visited >= IDLE - 2, "culled at once instead of after the idle timeout"


def test_prestart_at_in_the_past_starts_the_servers_in_one_guard_cycle_once(doors):
    run_workspaces_stop(doors.ctx, [], quiet=True)
    zone = doors.ctx.config.zone
    at = (datetime.now(zone) - timedelta(seconds=5)).replace(tzinfo=None, microsecond=0)  # read in Asia/Singapore
    doors.rewrite(_with(doors, prestart_at=at.isoformat(sep=" ")))
    parts = get_provider(doors.ctx).parts()
    now = datetime.now(UTC)
    # before its time, and after its window: nothing
    assert not guard_cycle(parts, now - timedelta(seconds=60)).actions
    assert not guard_cycle(parts, now + timedelta(seconds=IDLE + 10)).actions
    report = guard_cycle(parts, now)
    assert sorted((g.member, g.action) for g in report.actions) == [("alpha", "server started"),
                                                                    ("beta", "server started")], report
    assert not report.problems
    assert _wait(lambda: _running(doors, "alpha") and _running(doors, "beta"), 180)
    assert _server(doors, "gamma") is None  # locked
    assert PRESTART_MARK in _server(doors, "beta")["user_options"]
    # once per team: a server stopped afterwards (by its team, or culled) is not started again
    run_workspaces_stop(doors.ctx, ["beta"], quiet=True)
    assert not guard_cycle(parts, datetime.now(UTC)).actions
    assert _server(doors, "beta") is None
    run_workspaces_stop(doors.ctx, [], quiet=True)


def test_check_finds_a_hub_or_culler_without_datathons_rule(doors):
    """`check`'s probe: the culler runs with datathon's rule and the hub with the configuration that removes a
    team's own pre-start mark; a changed rule (a team's server never culled, or pre-started ones culled early) fails."""
    from types import SimpleNamespace

    from datathon.check.model import ProbeFailed
    from datathon.check.workspace_guard_probes import culler_rule
    from datathon.workspaces.hub import CULLER_CONFIG

    hub = hub_for(doors.ctx)
    notes: dict[str, str] = {}
    session = SimpleNamespace(env=SimpleNamespace(hub=hub), note=notes.__setitem__)
    culler_rule(session)
    assert notes["idle culler processes with datathon's rule"] != "none"
    rule = hub.dir / CULLER_CONFIG
    kept = rule.read_text()
    try:
        rule.write_text(kept + "c.IdleCuller.cull_arbiter_hook = lambda **kw: False\n")
        with pytest.raises(ProbeFailed, match="configuration datathon generated"):
            culler_rule(session)
    finally:
        rule.write_text(kept)
    culler_rule(session)


def test_a_server_activity_is_cancelled_by_stopping_it_and_only_its_own(doors):
    from datathon.core.roster import members
    from datathon.errors import ProvisionError

    run_workspaces_start(doors.ctx, ["alpha"], quiet=True)
    part = _part(doors)
    by_name = {m.name: m for m in members(doors.ctx.config) if m.kind == "team"}
    with pytest.raises(ProvisionError, match="not the server of team beta"):
        part.cancel(by_name["beta"], "s6p_alpha")
    assert _running(doors, "alpha")
    assert "stopped" in part.cancel(by_name["alpha"], "s6p_alpha")
    assert _server(doors, "alpha") is None


def test_the_cli_verbs_print_a_table_or_json_and_refuse_an_unknown_team(doors):
    from typer.testing import CliRunner

    from datathon.cli import app

    cfg = str(doors.ctx.loaded.path)
    runner = CliRunner()
    res = runner.invoke(app, ["workspaces", "start", "delta", "-c", cfg])
    assert res.exit_code == 1 and "no team named delta" in res.output, res.output
    res = runner.invoke(app, ["workspaces", "start", "beta", "gamma", "-c", cfg, "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["team"]: r["result"] for r in json.loads(res.stdout)["started"]}
    assert rows["beta"] == "started" and rows["gamma"].startswith("locked"), rows
    res = runner.invoke(app, ["workspaces", "stop", "-c", cfg])
    assert res.exit_code == 0 and "stopped" in res.output and "s6p_beta" in res.output, res.output
    assert _server(doors, "beta") is None
