"""`datathon check`: every probe passes on a healthy event; breaking one thing on purpose fails exactly the
probe and team that should fail, and the command exits non-zero."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from datathon.check.runner import run_check

TEAMS = [{"name": "alpha"}, {"name": "beta"}, {"name": "gamma"}]


@pytest.fixture
def event(make_event):
    ev = make_event(event="chk", teams=TEAMS, policy={"disk_quota": "1GB"})
    ev.up()
    return ev


def failing(report) -> set[tuple[str, str]]:
    return {(r.probe, r.subject) for r in report.results if r.outcome == "fail"}


def admin(ev, db="chkdb"):
    return ev.server.connect(db, autocommit=True)


def test_healthy_event_is_go_with_at_least_20_probes_per_team(event, tmp_path):
    cli = [sys.executable, "-m", "datathon.cli", "check", "-c", str(event.ctx.loaded.path),
           "--json", str(tmp_path / "check.json"), "--html", str(tmp_path / "check.html")]
    proc = subprocess.run(cli, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GO" in proc.stdout and "NO-GO" not in proc.stdout
    data = json.loads((tmp_path / "check.json").read_text())
    assert data["verdict"] == "GO" and data["teams"] == ["alpha", "beta", "gamma"]
    per_team = {t: [r for r in data["results"] if r["team"] == t] for t in data["teams"]}
    for team, records in per_team.items():
        # a password never rotated has no retired one to refuse: that probe does not apply (test_access.py runs it)
        retired = [r for r in records if r["probe"].endswith("retired_password")]
        assert {r["outcome"] for r in retired} == {"skip"}, retired
        db = [r for r in records if not r["probe"].startswith("ws.") and r not in retired]
        assert len(db) >= 20, team
        assert all(r["outcome"] == "pass" for r in db), [r for r in db if r["outcome"] != "pass"]
        assert all(r["evidence"] for r in db)
        # no hub in this event: its probes say so rather than pass
        assert {r["outcome"] for r in records if r["probe"].startswith("ws.")} == {"skip"}
    assert len({r["probe"] for r in data["results"]}) == len(data["probes"])
    html = (tmp_path / "check.html").read_text()
    assert data["config_sha256"] in html and "db.shared.write" in html and "GO" in html
    # the probes leave nothing behind in the teams' schemas
    with admin(event) as c:
        left = c.execute("SELECT relname FROM pg_class WHERE relname LIKE 'datathon_probe%'").fetchall()
    assert left == []


def test_a_team_allowed_to_write_shared_data_fails_exactly_that_probe(event):
    with admin(event) as c:
        c.execute("GRANT INSERT, DELETE ON mimiciv_demo.patients TO chk_alpha")
    report = run_check(event.ctx)
    assert failing(report) == {("db.shared.write", "alpha")}
    with admin(event) as c:  # and the probe changed nothing while it was allowed
        assert c.execute("SELECT count(*) FROM mimiciv_demo.patients").fetchone() == (50,)
    proc = subprocess.run([sys.executable, "-m", "datathon.cli", "check", "-c", str(event.ctx.loaded.path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "FAIL db.shared.write as team alpha" in proc.stdout


def test_a_team_given_usage_on_another_teams_schema_fails_the_cross_team_probe(event):
    with admin(event) as c:
        c.execute("GRANT USAGE ON SCHEMA gamma TO chk_alpha")  # gamma is not alpha's neighbour: the sweep finds it
    report = run_check(event.ctx)
    assert failing(report) == {("db.other_team.read", "alpha")}
    detail = next(r.detail for r in report.results if r.outcome == "fail")
    assert "gamma" in detail


def test_lifted_limits_fail_the_policy_probes_of_that_team(event):
    with admin(event) as c:
        c.execute("ALTER ROLE chk_beta CONNECTION LIMIT -1")
        c.execute("ALTER ROLE chk_gamma SET statement_timeout = 0")
    report = run_check(event.ctx)
    assert failing(report) == {("db.policy", "beta"), ("db.connection_limit", "beta"),
                               ("db.policy", "gamma"), ("db.statement_timeout", "gamma")}
    event.up()  # `up` repairs the drift ...
    assert run_check(event.ctx).go  # ... and the event is GO again


def test_check_one_team_and_unknown_team(event):
    report = run_check(event.ctx, only=["beta"])
    assert report.teams == ["beta"] and report.go
    with pytest.raises(Exception, match="no team named delta"):
        run_check(event.ctx, only=["delta"])


def test_policy_values_the_server_writes_differently_still_pass(make_event):
    """120s is shown as 2min, 1024MB as 1GB: the check compares what the server means, not the spelling."""
    ev = make_event(event="units", teams=[{"name": "alpha"}, {"name": "beta"}],
                    policy={"statement_timeout": "120s", "work_mem": "1024MB",
                            "idle_in_transaction_session_timeout": "90000ms"})
    ev.up()
    report = run_check(ev.ctx)
    assert report.go, [(r.probe, r.detail) for r in report.failures]
