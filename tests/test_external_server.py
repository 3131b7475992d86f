"""Tenancy is provider-independent: the same `up` against a server datathon did not make, as an admin that is
not a superuser (like RDS's master user), gives the same guarantees; `down` removes only the event's part."""

from __future__ import annotations

import psycopg
import pytest
import yaml

from conftest import event_data, make_context
from datathon.commands.down import run_down
from datathon.commands.up import run_up
from datathon.errors import ProvisionError


@pytest.fixture
def rds_like(make_event, tmp_path_factory):
    """A managed cluster standing in for someone else's server, with an RDS-like admin role."""
    host = make_event(event="hostsrv", teams=[{"name": "ops"}])
    host.up()
    server = host.server
    with server.connect(autocommit=True) as c:
        c.execute("CREATE ROLE rdsadmin LOGIN CREATEROLE CREATEDB PASSWORD 'rds-admin-pw'")
        c.execute("GRANT SET ON PARAMETER temp_file_limit TO rdsadmin")  # as rds_superuser may
    # the other server's own access rules: the admin over the socket, the new event's logins over TLS
    hba = server.pgdata / "pg_hba.conf"
    hba.write_text(hba.read_text() + "local all rdsadmin scram-sha-256\n"
                   "hostssl extdb,extextra +ext_teams,+ext_mentors 127.0.0.1/32 scram-sha-256\n")
    server._as_server_user(["pg_ctl", "reload", "-D", str(server.pgdata), "-s"])
    folder = tmp_path_factory.mktemp("external")
    (folder / "demo-data.sql").write_text((host.folder / "demo-data.sql").read_text())
    (folder / "admin.pw").write_text("rds-admin-pw\n")
    data = event_data(event="ext", port=0, teams=[{"name": "alpha"}, {"name": "beta"}])
    data["database"] = {
        "server": "external",
        "admin_dsn": f"host={server.socket_dir} port={host.ctx.config.database.port} user=rdsadmin dbname=postgres",
        "admin_password_file": "admin.pw",
        "public_host": "127.0.0.1",
    }
    ctx = make_context(folder, yaml.safe_dump(data, sort_keys=False))
    yield ctx, host
    if ctx.state.root.exists():
        run_down(ctx, yes=True, no_archive=True)


def team(ctx, name, db="extdb"):
    role = f"ext_{name}"
    ep = ctx.config.database
    port = int(ep.admin_dsn.split("port=")[1].split()[0])
    return psycopg.connect(host="127.0.0.1", port=port, dbname=db, user=role,
                           password=ctx.state.secret(role, create=False), sslmode="require", autocommit=True)


def test_up_on_an_external_server_as_a_non_superuser(rds_like):
    ctx, host = rds_like
    result = run_up(ctx, yes=True)
    assert result.applied > 0
    with team(ctx, "alpha") as a:
        assert a.execute("SELECT count(*) FROM mimiciv_demo.patients").fetchone() == (50,)
        a.execute("CREATE TABLE mine AS SELECT 1 AS x")
        assert a.execute("SHOW temp_file_limit").fetchone() == ("1GB",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            a.execute("INSERT INTO mimiciv_demo.patients VALUES (1, 'F', 30, 2150, NULL)")
    with team(ctx, "beta") as b:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            b.execute("SELECT * FROM alpha.mine")
    assert run_up(ctx, yes=True).applied == 0  # idempotent here too

    run_down(ctx, yes=True, no_archive=True)
    with host.server.connect(autocommit=True) as c:  # only the event's part is gone; the server and others stay
        assert c.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'ext\\_%'").fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM pg_database WHERE datname IN ('extdb', 'extextra')").fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'hostsrv_ops'").fetchone() == (1,)
    assert host.server.running()


def test_an_admin_without_createrole_is_refused_before_any_change(rds_like):
    ctx, host = rds_like
    with host.server.connect(autocommit=True) as c:
        c.execute("ALTER ROLE rdsadmin NOCREATEROLE")
    with pytest.raises(ProvisionError, match="may not create roles"):
        run_up(ctx, yes=True)
    with host.server.connect(autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'ext\\_%'").fetchone() == (0,)
        c.execute("ALTER ROLE rdsadmin CREATEROLE")


def test_a_wrong_admin_password_is_a_clear_error(rds_like):
    ctx, _ = rds_like
    (ctx.loaded.base_dir / "admin.pw").write_text("wrong\n")
    with pytest.raises(ProvisionError, match="cannot connect to the database server") as err:
        run_up(ctx, yes=True)
    assert "wrong" not in str(err.value)
    (ctx.loaded.base_dir / "admin.pw").write_text("rds-admin-pw\n")
