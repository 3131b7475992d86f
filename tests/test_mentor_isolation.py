"""Issue 11, hole 1: a team's code runs with the rights of whoever looks at its schema. Reproduced as a team on a
real managed cluster: a view over a team function, a row security policy and an overloaded built-in, run by the
mentor, try to read another team, signal out, make the mentor's session writable and change its password."""

from __future__ import annotations

import psycopg
import pytest

from datathon.check.runner import run_check
from datathon.commands.status import run_status

TEAMS = [{"name": "alpha"}, {"name": "beta"}, {"name": "gamma"}]

# What a hostile team plants: a function that, run by anyone, tries to read beta's secret, leak it four ways
# (NOTIFY, an advisory lock, a setting, a read-write session) and take over the caller's password.
ATTACK = r"""
CREATE TABLE loot (who text, what text);
GRANT INSERT ON loot TO PUBLIC;
CREATE FUNCTION steal() RETURNS boolean LANGUAGE plpgsql AS $f$
DECLARE secret text;
BEGIN
  BEGIN
    SELECT s INTO secret FROM beta.secret LIMIT 1;
  EXCEPTION WHEN insufficient_privilege THEN
    secret := 'denied';
  END;
  PERFORM pg_notify('loot', current_user || ':' || secret);
  PERFORM pg_advisory_lock(hashtext(secret));
  PERFORM set_config('application_name', left(secret, 60), false);
  PERFORM set_config('default_transaction_read_only', 'off', false);
  BEGIN
    EXECUTE format('ALTER ROLE %I PASSWORD %L', current_user, 'owned-by-alpha');
  EXCEPTION WHEN others THEN NULL;
  END;
  BEGIN  -- older releases let a session user grant membership in its own role
    EXECUTE format('GRANT %I TO mti_alpha', current_user);
  EXCEPTION WHEN others THEN NULL;
  END;
  RETURN true;
END $f$;
CREATE VIEW innocent AS SELECT x FROM generate_series(1, 3) x WHERE steal();
CREATE TABLE results (x int);
INSERT INTO results VALUES (1), (2);
ALTER TABLE results ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON results USING (steal());
CREATE FUNCTION lower(varchar) RETURNS text LANGUAGE sql
  AS $f$ SELECT CASE WHEN steal() THEN pg_catalog.lower($1::text) END $f$;
"""


def connect(ev, role: str, *, db: str | None = None, password: str | None = None) -> psycopg.Connection:
    ep = ev.server.endpoint()
    return psycopg.connect(host=ep.host, port=ep.port, dbname=db or ev.ctx.config.databases[0].name, user=role,
                           password=password or ev.password(role), sslmode="require", autocommit=True,
                           connect_timeout=5)


@pytest.fixture
def attacked(make_event):
    ev = make_event(event="mti", teams=TEAMS)
    ev.up()
    with connect(ev, "mti_beta") as beta:
        beta.execute("CREATE TABLE secret (s text)")
        beta.execute("INSERT INTO secret VALUES ('beta-secret-result')")
    with connect(ev, "mti_alpha") as alpha:
        alpha.execute(ATTACK)
    return ev


def test_team_code_run_by_a_mentor_reaches_no_other_team(attacked):
    ev = attacked
    with connect(ev, "mti_alpha") as alpha:
        alpha.execute("LISTEN loot")
        with connect(ev, "mti_mentor_ana__alpha") as mentor:
            # the ordinary things a mentor does: read the team's view and table, lower-case a column
            assert mentor.execute("SELECT count(*) FROM alpha.innocent").fetchone() == (3,)
            assert mentor.execute("SELECT count(*) FROM alpha.results").fetchone() == (2,)
            mentor.execute("SET search_path = alpha, public")
            mentor.execute("SELECT lower('ABC'::varchar)").fetchone()
            (app,) = mentor.execute("SHOW application_name").fetchone()
            locks = alpha.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]
            # the mentor's session was made writable, but the login has nowhere to write
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                mentor.execute("INSERT INTO beta.secret VALUES ('x')")
        notes = [n.payload for n in alpha.notifies(timeout=1, stop_after=10)]
    assert notes and all(n == "mti_mentor_ana__alpha:denied" for n in notes), notes
    assert "beta-secret" not in app and locks >= 1  # the lock leaked only the word 'denied'
    # The planted ALTER ROLE worked (any role may change its own password) on the login for alpha, and only it:
    with connect(ev, "mti_mentor_ana__alpha", password="owned-by-alpha") as stolen:
        # ... which reads nothing alpha cannot read
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            stolen.execute("SELECT * FROM beta.secret")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            stolen.execute("SELECT * FROM gamma.anything")
    with connect(ev, "mti_alpha") as alpha:  # the planted GRANT was refused (and would give alpha nothing)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            alpha.execute("SET ROLE mti_mentor_ana__alpha")
    with connect(ev, "mti_mentor_ana") as own:  # the mentor's own login is untouched and reads no team schema
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            own.execute("SELECT count(*) FROM alpha.innocent")
    with connect(ev, "mti_mentor_ana__beta") as mentor_beta:  # the mentor still reads beta, with beta's login
        assert mentor_beta.execute("SELECT s FROM beta.secret").fetchone() == ("beta-secret-result",)


def test_check_finds_the_changed_password_and_up_sets_it_back(attacked):
    ev = attacked
    with connect(ev, "mti_mentor_ana__alpha") as mentor:
        mentor.execute("SELECT count(*) FROM alpha.innocent")  # turns the session read-write ...
        mentor.execute("SELECT count(*) FROM alpha.innocent")  # ... so the planted ALTER ROLE now works
    report = run_check(ev.ctx, only=["alpha"])
    failed = {r.probe for r in report.failures}
    assert "mentor.logins" in failed and not report.go
    # a login handed to another (which servers that let a session grant its own role allow) is found too
    with ev.server.connect(autocommit=True) as admin:
        admin.execute("GRANT mti_beta TO mti_gamma")
    assert "db.memberships" in {r.probe for r in run_check(ev.ctx, only=["gamma"]).failures}
    plan = ev.up()
    reasons = [(c.target, c.reason) for c in plan.plan.pending]
    assert ("mti_mentor_ana__alpha", "password changed on the server: set back to its handout's") in reasons
    assert ("mti_beta", "revoke its membership granted to mti_gamma") in reasons
    with connect(ev, "mti_mentor_ana__alpha") as mentor:
        assert mentor.execute("SELECT current_user").fetchone() == ("mti_mentor_ana__alpha",)
    assert ev.up().applied == 0
    # GO again, with the probe that plants the same attack: run by the mentor, alpha's code reaches no one else
    report = run_check(ev.ctx, only=["alpha"])
    assert report.go, [(r.detail, r.evidence[-4:]) for r in report.failures]
    assert "mentor.team_code" in {r.probe for r in report.results if r.outcome == "pass"}


def test_limits_a_team_lifts_show_in_status_and_up_restores_them(attacked):
    ev = attacked
    with connect(ev, "mti_gamma") as gamma:
        gamma.execute("ALTER ROLE CURRENT_USER IN DATABASE mtidb SET statement_timeout = 0")
        gamma.execute("ALTER ROLE CURRENT_USER SET work_mem = '1GB'")
    with connect(ev, "mti_gamma") as gamma:  # a new session: the lifted limits apply
        assert gamma.execute("SHOW statement_timeout").fetchone() == ("0",)
    st = run_status(ev.ctx)
    [row] = [x for x in st.tables["logins"] if x.name == "gamma"]
    assert sorted(row.drift) == ["statement_timeout in mtidb", "work_mem"]
    assert not st.healthy
    limits = next(c for c in st.components if c.name == "per-team limits")
    assert limits.state == "drifted" and "gamma" in limits.detail
    report = run_check(ev.ctx, only=["gamma"])
    assert "db.policy" in {r.probe for r in report.failures}
    result = ev.up()
    reasons = [c.reason for c in result.plan.pending if c.target == "mti_gamma"]
    assert "remove its own settings in database mtidb (statement_timeout)" in reasons
    assert "policy: work_mem" in reasons
    with connect(ev, "mti_gamma") as gamma:
        assert gamma.execute("SHOW statement_timeout").fetchone() == ("5min",)
    assert run_status(ev.ctx).healthy


def test_status_shows_each_teams_size_and_check_flags_a_team_over_its_quota(make_event):
    ev = make_event(event="mtq", teams=[{"name": "alpha"}, {"name": "beta"}], policy={"disk_quota": "1MB"})
    ev.up()
    with connect(ev, "mtq_alpha") as alpha:
        alpha.execute("CREATE TABLE big AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g")
    st = run_status(ev.ctx)
    sizes = {x.name: x for x in st.tables["logins"] if x.kind == "team"}
    assert sizes["alpha"].schema_bytes > 2**20 and sizes["alpha"].over_quota
    assert sizes["beta"].schema_bytes == 0 and not sizes["beta"].over_quota
    assert sizes["alpha"].temp_bytes == 0  # visible to the managed cluster's superuser; none held now
    with connect(ev, "mtq_beta") as beta:  # a cursor held past its transaction spills to temporary files
        beta.autocommit = False
        beta.execute("SET work_mem = '64kB'")
        beta.execute("DECLARE c CURSOR WITH HOLD FOR SELECT g, repeat('y', 100) FROM generate_series(1, 100000) g")
        beta.commit()
        held = {x.name: x.temp_bytes for x in run_status(ev.ctx).tables["logins"]}
    assert held["beta"] > 5 * 2**20 and held["alpha"] == 0
    quota = next(c for c in st.components if c.name == "team disk quota")
    assert quota.state == "exceeded" and "alpha" in quota.detail and not st.healthy
    report = run_check(ev.ctx)
    assert {(r.probe, r.subject) for r in report.failures} == {("db.disk_quota", "alpha")}
