"""A `pg_server:` source: schemas copied from another PostgreSQL server (pg_dump -Fd -j, pg_restore -j)."""

from __future__ import annotations

import os

import psycopg
import pytest

from datathon.errors import ProvisionError

PW = "rs-dump-pw"


@pytest.fixture
def source_server(make_event):
    """The organizer's own server that already holds the data: a cluster with the demo schema."""
    src = make_event(event="rssrc", teams=[{"name": "ops"}])
    src.up()
    server = src.server
    with server.connect(autocommit=True) as c:
        c.execute(f"CREATE ROLE rsdumper LOGIN PASSWORD '{PW}' IN ROLE pg_read_all_data")
        c.execute("GRANT CONNECT ON DATABASE rssrcdb TO rsdumper")  # datathon's databases admit only the event
    hba = server.pgdata / "pg_hba.conf"
    hba.write_text(hba.read_text() + "hostssl rssrcdb rsdumper 127.0.0.1/32 scram-sha-256\n")
    server._as_server_user(["pg_ctl", "reload", "-D", str(server.pgdata), "-s"])
    return src, f"host=127.0.0.1 port={src.ctx.config.database.port} dbname=rssrcdb user=rsdumper sslmode=require"


def target(make_event, dsn: str, password_file: str = "source.pw"):
    return make_event(event="rstgt", teams=[{"name": "alpha"}], databases=[{
        "name": "rstgtdb", "shared_schemas": ["mimiciv_demo"],
        "sources": [{"pg_server": dsn, "schemas": ["mimiciv_demo"], "password_file": password_file, "jobs": 2}],
    }])


def test_schemas_are_copied_from_another_server(source_server, make_event, event_dir):
    src, dsn = source_server
    (event_dir / "source.pw").write_text(PW + "\n")
    os.chmod(event_dir / "source.pw", 0o600)
    ev = target(make_event, dsn)
    result = ev.up()
    assert result.applied > 0
    with src.server.connect("rssrcdb", autocommit=True) as c:
        want = c.execute("SELECT count(*), sum(hashtext(p::text)) FROM mimiciv_demo.patients p").fetchone()
    port = ev.ctx.config.database.port
    with psycopg.connect(host="127.0.0.1", port=port, dbname="rstgtdb", user="rstgt_alpha", sslmode="require",
                         password=ev.password("rstgt_alpha"), autocommit=True) as a:
        got = a.execute("SELECT count(*), sum(hashtext(p::text)) FROM mimiciv_demo.patients p").fetchone()
        assert got == want and got[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # shared data is read-only here too
            a.execute("DELETE FROM mimiciv_demo.patients")
    assert not (ev.ctx.state.root / "dumps").exists() or not any((ev.ctx.state.root / "dumps").iterdir())
    assert ev.up().applied == 0  # recorded as loaded: not dumped again


def test_a_wrong_password_is_a_clear_error_and_loads_nothing(source_server, make_event, event_dir):
    _, dsn = source_server
    (event_dir / "source.pw").write_text("not-it\n")
    ev = target(make_event, dsn)
    with pytest.raises(ProvisionError, match="pg_dump of 127.0.0.1:.*/rssrcdb failed") as err:
        ev.up()
    assert "password" in err.value.hint and "not-it" not in str(err.value)
    assert not any((ev.ctx.state.root / "dumps").glob("*"))
    with ev.server.connect("rstgtdb", autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'mimiciv_demo'").fetchone() == (0,)


def test_the_source_is_checked_before_anything_runs(make_event, event_dir):
    from datathon.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        target(make_event, "host=db.example.org user=x password=secret dbname=m")
    assert any("holds a password" in p for p in err.value.problems)
