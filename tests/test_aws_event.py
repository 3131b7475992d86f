"""The whole aws provider through the real commands: the AWS parts on a moto server and the tenancy on an external
PostgreSQL server (a managed cluster standing in for RDS, as in test_external_server), then the handouts with
each team's key beside its sheet only, status with the machines, a second up with nothing to do, and down."""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from aws_event import PROFILES
from moto_server import CREDENTIALS, moto_server

from conftest import make_context
from datathon.commands.down import run_down
from datathon.commands.status import run_status
from datathon.commands.up import run_up

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def aws_on_moto(monkeypatch):
    with moto_server(env={"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}) as url:
        for k, v in CREDENTIALS.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        yield url


def test_the_aws_provider_through_the_commands(aws_on_moto, make_event, tmp_path_factory):
    host = make_event(event="awhost", teams=[{"name": "ops"}])
    host.up()
    server = host.server
    with server.connect(autocommit=True) as c:
        c.execute("CREATE ROLE awadmin LOGIN CREATEROLE CREATEDB PASSWORD 'aw-admin-pw'")
        c.execute("GRANT SET ON PARAMETER temp_file_limit TO awadmin")
    hba = server.pgdata / "pg_hba.conf"
    hba.write_text(hba.read_text() + "local all awadmin scram-sha-256\n")
    server._as_server_user(["pg_ctl", "reload", "-D", str(server.pgdata), "-s"])
    folder = tmp_path_factory.mktemp("aws_event")
    (folder / "admin.pw").write_text("aw-admin-pw\n")
    data = {"event": "awev", "provider": "aws", "teams": [{"name": "alpha", "gpus": 1}, {"name": "beta"}],
            "mentors": [{"name": "mia"}],
            "database": {"server": "external", "admin_password_file": "admin.pw", "public_host": "db.internal",
                         "admin_dsn": f"host={server.socket_dir} port={host.ctx.config.database.port} "
                                      "user=awadmin dbname=postgres"},
            "databases": [{"name": "awevdb"}], "dates": {"start": "2026-05-02", "end": "2026-05-03"},
            "aws": {"ssh_from": ["198.51.100.0/24"], "profiles": PROFILES, "boot_timeout": "2min"}}
    ctx = make_context(folder, yaml.safe_dump(data, sort_keys=False))
    try:
        result = run_up(ctx, yes=True)
        assert result.applied > 0
        out = ctx.state.handouts_dir
        key = out / "team-alpha-ssh-key.pem"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_bytes() == ctx.state.secret_path("aws-key-alpha.pem").read_bytes()
        assert sorted(p.name for p in out.glob("*ssh-key.pem")) == ["team-alpha-ssh-key.pem", "team-beta-ssh-key.pem"]
        sheet = (out / "team-alpha.md").read_text()
        assert "ssh -i team-alpha-ssh-key.pem ubuntu@" in sheet and "-L 15432:db.internal:" in sheet
        assert "awev_alpha" in sheet  # the database section of the same sheet
        assert "ssh-key" not in (out / "mentor-mia.md").read_text()
        with open(result.roster) as fh:
            rows = {r["name"]: r for r in csv.DictReader(fh)}
        assert rows["alpha"]["machine"].startswith("i-") and rows["alpha"]["address"]
        st = run_status(ctx)
        assert [(m.team, m.state) for m in st.tables["machines"]] == [("alpha", "running"), ("beta", "running")]
        assert {m.team: m.type for m in st.tables["machines"]} == {"alpha": "g4dn.12xlarge", "beta": "m5.8xlarge"}
        assert run_up(ctx, yes=True).applied == 0
        # the same through the CLI, as an organizer sees it
        cli = [str(REPO / ".venv" / "bin" / "datathon")]
        plan = subprocess.run([*cli, "plan", "-c", str(folder / "datathon.yaml")], capture_output=True, text=True,
                              timeout=300, env=dict(os.environ, COLUMNS="200"))
        assert plan.returncode == 0, plan.stderr
        text = " ".join(plan.stdout.split())
        assert "note: cost estimate: $" in text and "for the event's 2 day(s)" in text
        assert "quota L-DB2E81BA" in text and "unknown: check by hand" in text and "Plan: " in text
        status = subprocess.run([*cli, "status", "--json", "-c", str(folder / "datathon.yaml")], capture_output=True,
                                text=True, timeout=300)
        machines = json.loads(status.stdout)["machines"]
        assert status.returncode == 0 and [(m["team"], m["state"]) for m in machines] == [("alpha", "running"),
                                                                                          ("beta", "running")]
        assert all(m["cost"].startswith("$") and m["address"] for m in machines)
        down = run_down(ctx, yes=True, no_archive=True)
        assert not ctx.state.root.exists()
        assert any(what.startswith("machine 2 machine(s)") for what, _ in down.checked)
    finally:
        if ctx.state.root.exists():
            run_down(ctx, yes=True, no_archive=True)
