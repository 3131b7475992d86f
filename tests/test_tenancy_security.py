"""Acceptance: what every team can and cannot do, as the team, over TLS, against the real managed cluster."""

from __future__ import annotations

import psycopg
import pytest

from datathon.commands.up import run_up

TEAMS = ["alpha", "beta", "gamma"]
SHARED_TABLES = ["patients", "admissions", "labevents", "lab_summary"]


def connect(ev, name: str, *, db: str | None = None, password: str | None = None, sslmode: str = "require",
            autocommit: bool = True) -> psycopg.Connection:
    role = f"acc_{name}"
    ep = ev.server.endpoint()
    return psycopg.connect(host=ep.host, port=ep.port, dbname=db or "accdb", user=role,
                           password=password if password is not None else ev.password(role),
                           sslmode=sslmode, autocommit=autocommit, connect_timeout=5)


def refused(conn: psycopg.Connection, statement: str) -> str:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
        conn.execute(statement)
    return str(err.value)


@pytest.mark.parametrize("team", TEAMS)
def test_team_logs_in_over_tls_and_reads_every_shared_table(three_teams, team):
    with connect(three_teams, team) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
        assert conn.execute("SELECT current_user").fetchone() == (f"acc_{team}",)
        for table in SHARED_TABLES:
            (n,) = conn.execute(f"SELECT count(*) FROM mimiciv_demo.{table}").fetchone()
            assert n > 0, table
        # the search path: own schema first, then the shared data
        assert conn.execute("SELECT current_schemas(false)").fetchone() == ([team, "mimiciv_demo"],)
        assert conn.execute("SELECT count(*) FROM patients").fetchone()[0] == 50


@pytest.mark.parametrize("team", TEAMS)
def test_team_creates_writes_and_drops_tables_in_its_own_schema(three_teams, team):
    with connect(three_teams, team) as conn:
        conn.execute("CREATE TABLE cohort AS"
                     " SELECT subject_id, anchor_age FROM mimiciv_demo.patients WHERE anchor_age > 60")
        assert conn.execute(f"SELECT count(*) FROM {team}.cohort").fetchone()[0] > 0
        conn.execute("INSERT INTO cohort VALUES (1, 99)")
        conn.execute("UPDATE cohort SET anchor_age = 100 WHERE subject_id = 1")
        conn.execute("DELETE FROM cohort WHERE subject_id = 1")
        conn.execute("CREATE INDEX ON cohort (subject_id)")
        conn.execute("DROP TABLE cohort")


def test_team_cannot_change_shared_data(three_teams):
    with connect(three_teams, "alpha") as conn:
        assert "permission denied" in refused(conn, "INSERT INTO mimiciv_demo.patients VALUES (1, 'F', 30, 2150, NULL)")
        refused(conn, "UPDATE mimiciv_demo.patients SET anchor_age = 1")
        refused(conn, "DELETE FROM mimiciv_demo.labevents")
        refused(conn, "TRUNCATE mimiciv_demo.labevents")
        refused(conn, "CREATE TABLE mimiciv_demo.mine (x int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE mimiciv_demo.patients")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER TABLE mimiciv_demo.patients ADD COLUMN x int")


def test_team_cannot_touch_another_teams_schema(three_teams):
    with connect(three_teams, "beta") as beta:
        beta.execute("CREATE TABLE IF NOT EXISTS secret_work (x int)")
        beta.execute("INSERT INTO secret_work VALUES (42)")
    with connect(three_teams, "alpha") as alpha:
        refused(alpha, "SELECT * FROM beta.secret_work")
        refused(alpha, "INSERT INTO beta.secret_work VALUES (1)")
        refused(alpha, "CREATE TABLE beta.intruder (x int)")
        refused(alpha, "DROP TABLE beta.secret_work")
        refused(alpha, "SET ROLE acc_beta")
        refused(alpha, "ALTER SCHEMA beta RENAME TO stolen")


def test_team_cannot_create_in_public_nor_make_roles_or_databases(three_teams):
    with connect(three_teams, "gamma") as conn:
        refused(conn, "CREATE TABLE public.t (x int)")
        refused(conn, "CREATE ROLE sneaky LOGIN")
        refused(conn, "CREATE DATABASE sneaky")
        refused(conn, "CREATE SCHEMA sneaky")
        refused(conn, "ALTER ROLE acc_gamma CONNECTION LIMIT 100")
        refused(conn, "SET temp_file_limit = '100GB'")  # a superuser-only limit: the team cannot lift it


def test_policy_is_in_force_for_each_team(three_teams):
    with connect(three_teams, "alpha") as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("5min",)
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("2min",)
        assert conn.execute("SHOW temp_file_limit").fetchone() == ("1GB",)
        assert conn.execute("SHOW work_mem").fetchone() == ("16MB",)
        (limit,) = conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user").fetchone()
        assert limit == 4


def test_connection_limit_refuses_the_fifth_connection(three_teams):
    conns = [connect(three_teams, "gamma") for _ in range(4)]
    try:
        with pytest.raises(psycopg.OperationalError, match="too many connections"):
            connect(three_teams, "gamma")
    finally:
        for c in conns:
            c.close()


def test_logins_need_tls_the_right_password_and_an_event_database(three_teams):
    with pytest.raises(psycopg.OperationalError):
        connect(three_teams, "alpha", sslmode="disable")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(three_teams, "alpha", password="not-the-password")
    with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry"):
        connect(three_teams, "alpha", db="postgres")
    with connect(three_teams, "alpha", db="accextra") as conn:  # every event database has the team schema
        assert conn.execute("SELECT current_schema()").fetchone() == ("alpha",)


def test_mentor_reads_team_tables_created_after_the_grants_but_cannot_write(three_teams):
    with connect(three_teams, "alpha") as alpha:
        alpha.execute("CREATE TABLE later_result AS SELECT 1 AS x")
    with connect(three_teams, "mentor_ana__alpha") as mentor:
        assert mentor.execute("SELECT x FROM alpha.later_result").fetchone() == (1,)
        assert mentor.execute("SELECT count(*) FROM mimiciv_demo.patients").fetchone()[0] == 50
        # a mentor's session is read-only (a guard against a mentor's slip) ...
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            mentor.execute("INSERT INTO alpha.later_result VALUES (2)")
        # ... and under that, a mentor has no write privilege anyway
        mentor.execute("SET default_transaction_read_only = off")
        refused(mentor, "INSERT INTO alpha.later_result VALUES (2)")
        refused(mentor, "CREATE TABLE alpha.from_mentor (x int)")
        refused(mentor, "INSERT INTO mimiciv_demo.patients VALUES (2, 'F', 30, 2150, NULL)")
        # the login for team alpha reads alpha only
        refused(mentor, "SELECT * FROM beta.anything")
    with connect(three_teams, "mentor_ana") as mentor:  # the mentor's own login: shared data, no team schema
        assert mentor.execute("SELECT count(*) FROM mimiciv_demo.patients").fetchone()[0] == 50
        refused(mentor, "SELECT x FROM alpha.later_result")


def test_a_second_up_reports_no_changes(three_teams):
    result = run_up(three_teams.ctx, yes=True)
    assert result.applied == 0
    assert not result.plan.pending
    assert all(c.action == "keep" for c in result.plan.changes)


def test_shared_tables_loaded_later_are_readable_by_teams(three_teams):
    """Default privileges: a table the data owner adds after `up` needs no new grant."""
    server = three_teams.server
    with server.connect("accdb", autocommit=True) as admin:
        admin.execute("SET ROLE acc_data")
        admin.execute("CREATE TABLE mimiciv_demo.added_later AS SELECT 7 AS x")
    with connect(three_teams, "beta") as conn:
        assert conn.execute("SELECT x FROM mimiciv_demo.added_later").fetchone() == (7,)
