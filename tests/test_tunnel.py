"""A server that plays RDS: reached only through an SSH jump host (a real sshd here), TLS checked against its CA
(sslmode=verify-full), administered by a master role that is not a superuser but has what `rds_superuser` has.
Tenancy, a dataset load and `check` all go through the tunnel; every probe passes."""

from __future__ import annotations

import os
import shutil

import psycopg
import pytest
import yaml

from conftest import event_data, free_port, make_context
from datathon.check.runner import run_check
from datathon.commands.down import run_down
from datathon.commands.status import run_status
from datathon.commands.up import run_up
from datathon.datasets.synth import synthesize
from datathon.errors import ProvisionError
from datathon.providers import get_provider
from sshd_server import sshd

MASTER_PW = "rt-master-pw"


@pytest.fixture(scope="module")
def jump():
    with sshd("rtjump") as s:
        yield s


@pytest.fixture
def rds_like(make_event, tmp_path_factory, jump):
    """A managed cluster standing in for RDS: TCP with TLS only for the master and the event's logins."""
    host = make_event(event="rthost", teams=[{"name": "ops"}])
    host.up()
    server = host.server
    with server.connect(autocommit=True) as c:
        # what RDS gives its master user: rds_superuser's roles, CREATEROLE/CREATEDB, no superuser
        c.execute("CREATE ROLE rt_rds_superuser NOLOGIN CREATEROLE CREATEDB")
        c.execute("GRANT pg_monitor, pg_signal_backend, pg_checkpoint TO rt_rds_superuser WITH ADMIN OPTION")
        c.execute("GRANT SET ON PARAMETER temp_file_limit TO rt_rds_superuser")
        c.execute(f"CREATE ROLE rtmaster LOGIN CREATEROLE CREATEDB IN ROLE rt_rds_superuser PASSWORD '{MASTER_PW}'")
    hba = server.pgdata / "pg_hba.conf"
    hba.write_text(hba.read_text() + "hostssl all rtmaster 127.0.0.1/32 scram-sha-256\n"
                   "hostssl rtextdb,rtextextra +rtext_teams,+rtext_mentors 127.0.0.1/32 scram-sha-256\n")
    server._as_server_user(["pg_ctl", "reload", "-D", str(server.pgdata), "-s"])
    folder = tmp_path_factory.mktemp("rtext")
    shutil.copy(host.folder / "demo-data.sql", folder / "demo-data.sql")
    shutil.copy(server.ca_cert, folder / "rds-ca.pem")  # plays the region's CA bundle
    (folder / "master.pw").write_text(MASTER_PW + "\n")
    os.chmod(folder / "master.pw", 0o600)
    synthesize("mimic-iv-ed", folder / "ed", patients=30, seed=5)
    data = event_data(event="rtext", port=0, teams=[{"name": "alpha"}, {"name": "beta"}])
    data["databases"][0]["sources"].append({"dataset": "mimic-iv-ed", "path": "ed"})
    data["databases"][0]["shared_schemas"].append("mimiciv_ed")
    data["database"] = {
        "server": "external",
        # "localhost" as the jump host sees it; the certificate names localhost, so verify-full holds
        "admin_dsn": f"host=localhost port={host.ctx.config.database.port} user=rtmaster dbname=postgres",
        "admin_password_file": "master.pw",
        "sslmode": "verify-full",
        "ca_file": "rds-ca.pem",
        "tunnel": {"ssh": jump.target, "identity_file": str(jump.key)},
    }
    ctx = make_context(folder, yaml.safe_dump(data, sort_keys=False))
    yield ctx, host
    if ctx.state.root.exists():
        run_down(ctx, yes=True, no_archive=True)
    get_provider(ctx).database_server().close()


def test_tenancy_load_and_check_through_the_tunnel(rds_like, jump):
    ctx, host = rds_like
    before = jump.forwards()
    result = run_up(ctx, yes=True)
    assert result.applied > 0
    assert jump.forwards() > before  # the admin's connections went through the jump host

    report = run_check(ctx)
    assert report.go, [(r.probe, r.subject, r.detail) for r in report.failures]
    assert len(report.results) > 20 and {r.outcome for r in report.results} <= {"pass", "skip"}

    # as a team through the tunnel, the certificate checked against the server's name
    ep = get_provider(ctx).database_server().reach()
    assert ep.hostaddr == "127.0.0.1" and ep.host == "localhost" and ep.sslmode == "verify-full"
    with psycopg.connect(**ep.connect_kwargs(), dbname="rtextdb", user="rtext_alpha",
                         password=ctx.state.secret("rtext_alpha", create=False), autocommit=True) as a:
        assert a.execute("SELECT count(*) > 0 FROM mimiciv_ed.edstays").fetchone() == (True,)
        assert a.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
    # the master is no superuser: what it made, it made with rds_superuser's rights
    with host.server.connect(autocommit=True) as c:
        assert c.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'rtmaster'").fetchone() == (False,)
        assert c.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'rtext\\_%'").fetchone()[0] >= 2

    assert run_up(ctx, yes=True).applied == 0  # idempotent through the tunnel too


def test_a_certificate_for_another_name_is_refused(rds_like):
    ctx, _ = rds_like
    data = yaml.safe_load(ctx.loaded.path.read_text())
    data["database"]["admin_dsn"] = data["database"]["admin_dsn"].replace("host=localhost", "host=127.0.0.1.nip.io")
    ctx = make_context(ctx.loaded.base_dir, yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ProvisionError, match="cannot connect to the database server"):
        run_up(ctx, yes=True)


def test_a_key_the_jump_host_refuses_is_a_clear_error(rds_like, tmp_path):
    ctx, _ = rds_like
    import subprocess

    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    data = yaml.safe_load(ctx.loaded.path.read_text())
    data["database"]["tunnel"]["identity_file"] = str(other)
    ctx = make_context(ctx.loaded.base_dir, yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ProvisionError, match="cannot open the SSH tunnel") as err:
        run_up(ctx, yes=True)
    assert "refused the key" in err.value.hint
    assert not ctx.state.root.joinpath("secrets").exists() or not any(ctx.state.root.joinpath("secrets").iterdir())

    os.chmod(other, 0o644)
    with pytest.raises(ProvisionError, match="readable by others"):
        run_up(ctx, yes=True)


def test_status_says_unreachable_when_the_jump_host_does_not_answer(rds_like, jump):
    ctx, _ = rds_like
    run_up(ctx, yes=True)
    data = yaml.safe_load(ctx.loaded.path.read_text())
    data["database"]["tunnel"]["ssh"] = f"{jump.user}@127.0.0.1:{free_port()}"  # nothing listens there
    status = run_status(make_context(ctx.loaded.base_dir, yaml.safe_dump(data, sort_keys=False)))
    assert not status.healthy
    server = [c for c in status.components if c.component == "database"]
    assert server and "cannot open the SSH tunnel" in server[0].detail


def test_the_audit_reads_rds_log_lines(rds_like, jump):
    """RDS writes its log with a prefix of its own (`%t:%r:%u@%d:[%p]:`, not changeable there): a real server
    set to it, a team's session through the tunnel, and the audit finds the connection, its TLS and its end."""
    import time

    from datathon.database.audit import parse_file

    ctx, host = rds_like
    run_up(ctx, yes=True)
    with host.server.connect(autocommit=True) as c:
        c.execute("ALTER SYSTEM SET log_line_prefix = '%t:%r:%u@%d:[%p]:'")
        c.execute("SELECT pg_reload_conf()")
    try:
        ep = get_provider(ctx).database_server().reach()
        with psycopg.connect(**ep.connect_kwargs(), dbname="rtextdb", user="rtext_beta",
                             password=ctx.state.secret("rtext_beta", create=False)) as b:
            b.execute("SELECT 1")
        deadline = time.monotonic() + 10
        events = []
        while time.monotonic() < deadline:
            events = [e for f in host.server.log_files() for e in parse_file(f, None) if e.login == "rtext_beta"]
            if any(e.event == "disconnect" for e in events):
                break
            time.sleep(0.2)
        assert [e.event for e in events][-2:] == ["connect", "disconnect"]
        connect = events[-2]
        assert connect.database == "rtextdb" and connect.client.startswith("127.0.0.1:") and connect.tls.startswith("TLS")
    finally:
        with host.server.connect(autocommit=True) as c:
            c.execute("ALTER SYSTEM RESET log_line_prefix")
            c.execute("SELECT pg_reload_conf()")
