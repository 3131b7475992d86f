"""The dashboard's server buttons on an event with workspaces: a real hub, real Unix users. The organizer starts
and stops a team's server from the teams table; a team restarts its own server from its portal and cannot touch
another team's. Runs under the workspace-tests flock like the other hub tests."""

from __future__ import annotations

import os
import shutil
import time

import httpx
import pytest
import yaml
from test_workspaces import ws_yaml

from conftest import DEMO_SQL, Event, free_port
from datathon.core import journal
from datathon.workspaces.hub import hub_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="workspaces make Unix users: needs root")


@pytest.fixture(scope="module")
def ev(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dashws")
    shutil.copy(DEMO_SQL, folder / "demo-data.sql")
    port = free_port()
    data = yaml.safe_load(ws_yaml("dws", [{"name": "alpha"}, {"name": "beta"}]))
    data["dashboard"] = {"port": port, "watch_every": "2s"}
    event = Event(folder, yaml.safe_dump(data, sort_keys=False))
    event.url = f"http://127.0.0.1:{port}"
    try:
        event.up()
        yield event
    finally:
        event.close()


def client(ev: Event, team: str | None = None) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=ev.url, timeout=180)
    if team is None:
        form = {"who": "organizer", "password": ev.ctx.state.secret("dashboard-organizer", create=False)}
    else:
        form = {"who": "team", "team": team, "password": ev.password(f"dws_{team}")}
    assert c.post("/login", data=form).status_code == 303
    page = c.get("/organizer" if team is None else f"/team/{team}").text
    csrf = page.split('"X-CSRF-Token": "')[1].split('"')[0]
    return c, csrf


def server_state(ev: Event, team: str) -> str:
    got = hub_for(ev.ctx).server(f"dws_{team}")
    return "stopped" if got is None else "running" if got.get("ready") else "pending"


def test_organizer_starts_and_stops_a_team_server(ev):
    c, csrf = client(ev)
    try:
        r = c.post("/organizer/teams/alpha/start", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and 'id="flash" class="ok"' in r.text, r.text[:400]
        assert server_state(ev, "alpha") == "running"
        assert server_state(ev, "beta") == "stopped"  # only the team asked for
        # the answer's own table shows it running
        assert "running" in r.text.split('id="team-alpha"')[1].split("</tr>")[0]
        r = c.post("/organizer/teams/alpha/stop", headers={"X-CSRF-Token": csrf})
        assert 'id="flash" class="ok"' in r.text and server_state(ev, "alpha") == "stopped"
    finally:
        c.close()
    acts = [e.action for e in journal.read(ev.ctx.state, member="alpha") if e.who == "organizer"]
    assert acts[-2:] == ["start", "stop"]


def test_team_restarts_its_own_server_only(ev):
    c, csrf = client(ev, "beta")
    try:
        r = c.post("/team/beta/restart", headers={"X-CSRF-Token": csrf})
        assert 'id="flash" class="ok"' in r.text, r.text[:400]
        assert server_state(ev, "beta") == "running"
        assert c.post("/team/alpha/restart", headers={"X-CSRF-Token": csrf}).status_code == 403
        assert c.post("/organizer/teams/alpha/start", headers={"X-CSRF-Token": csrf}).status_code == 403
        assert server_state(ev, "alpha") == "stopped"
        # the portal shows its server running, refreshed from the board
        deadline = time.monotonic() + 15
        while "running" not in c.get("/team/beta/live").text and time.monotonic() < deadline:
            time.sleep(1)
        assert "running" in c.get("/team/beta/live").text
    finally:
        c.close()


def test_organizer_starts_every_server_before_the_doors_open(ev):
    c, csrf = client(ev)
    try:
        r = c.post("/organizer/servers/start", headers={"X-CSRF-Token": csrf})
        assert 'id="flash" class="ok"' in r.text, r.text[:400]
        assert {server_state(ev, t) for t in ("alpha", "beta")} == {"running"}
        r = c.post("/organizer/servers/stop", headers={"X-CSRF-Token": csrf})
        assert 'id="flash" class="ok"' in r.text and server_state(ev, "alpha") == "stopped"
    finally:
        c.close()
    assert [e.action for e in journal.read(ev.ctx.state) if e.who == "organizer"][-2:] == [
        "start every server", "stop every server"]
