"""The watcher's database planner, table-driven: observed facts (role settings, sessions, sizes) in, steps out.
Pure: no server. The real thing (as the teams, on a real cluster) is tests/test_watcher.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from datathon.config.models import Policy
from datathon.database.activity import Session
from datathon.database.facts import RoleFact
from datathon.database.guard import GuardFacts, plan_guard, usage
from datathon.database.tenancy import Login, role_settings

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
TEAM = Policy(statement_timeout="3s", idle_in_transaction_session_timeout="1min", disk_quota="1MB")
MENTOR = Policy(statement_timeout="1h", idle_in_transaction_session_timeout="1h")
LOGINS = [Login("e_alpha", "alpha", "team", "e_teams", TEAM, ("alpha",)),
          Login("e_beta", "beta", "team", "e_teams", TEAM, ("beta",)),
          Login("e_ana__alpha", "ana", "mentor_team", "e_mentors", MENTOR, ("alpha",), team="alpha")]
OWNERS = {x.role: x.name for x in LOGINS}


def role(login: Login, **changed) -> RoleFact:
    config = {**role_settings(login), **{k: v for k, v in changed.items() if k != "db"}}
    return RoleFact(login.role, True, False, False, False, False, False, True, 4, config, None,
                    db_config=changed.get("db", {}))


def session(pid, login, state, ago, query="SELECT pg_sleep(100)") -> Session:
    at = NOW - timedelta(seconds=ago)
    return Session(pid, login, "db", state, at, at, at, query)


def facts(roles=None, sessions=(), sizes=None, temp=None) -> GuardFacts:
    return GuardFacts(NOW, roles if roles is not None else {x.role: role(x) for x in LOGINS}, list(sessions),
                      temp, sizes)


CASES = {
    "all as wanted": (facts(), set(), []),
    "statement_timeout lifted on the role": (
        facts({"e_alpha": role(LOGINS[0], statement_timeout="0")}), set(),
        [("alpha", "setting restored", "e_alpha: policy: statement_timeout (it had statement_timeout=0)")]),
    "a setting in one database": (
        facts({"e_beta": role(LOGINS[1], db={"dbx": {"work_mem": "2GB"}})}), set(),
        [("beta", "setting restored", "e_beta: remove its own settings in database dbx (work_mem) "
                                      "(it had in dbx: work_mem=2GB)")]),
    "a setting it was not given": (
        facts({"e_beta": role(LOGINS[1], role="e_alpha")}), set(),
        [("beta", "setting restored", "e_beta: remove settings it was not given: role (it had role=e_alpha)")]),
    "a statement past the limit": (
        facts(sessions=[session(7, "e_alpha", "active", 10)]), set(),
        [("alpha", "statement cancelled", "e_alpha session 7: ran 10s, past statement_timeout 3s: "
                                          "SELECT pg_sleep(100)")]),
    "a statement within the limit, an idle session": (
        facts(sessions=[session(7, "e_alpha", "active", 2), session(8, "e_alpha", "idle", 9999)]), set(), []),
    "idle in a transaction past its limit, aborted too": (
        facts(sessions=[session(9, "e_beta", "idle in transaction (aborted)", 61)]), set(),
        [("beta", "session ended", "e_beta session 9: idle in transaction (aborted) for 61s, past "
                                   "idle_in_transaction_session_timeout 1min")]),
    "a mentor's statement: the mentor's policy": (
        facts(sessions=[session(10, "e_ana__alpha", "active", 60)]), set(), []),
    "a login not of the event": (facts(sessions=[session(11, "postgres", "active", 9999)]), set(), []),
    "over quota: flagged": (
        facts(sizes={"alpha": 2 * 2**20, "beta": 10}), set(),
        [("alpha", "over disk quota", "schema 2.0 MiB, over policy.disk_quota 1.0 MiB (flagged, not enforced)")]),
    "over quota in temporary files": (
        facts(sizes={}, temp={"e_beta": 3 * 2**20}), set(),
        [("beta", "over disk quota", "temporary files 3.0 MiB, over policy.disk_quota 1.0 MiB (flagged, "
                                     "not enforced)")]),
    "over quota, flagged already": (facts(sizes={"alpha": 2 * 2**20}), {"alpha"}, []),
}


@pytest.mark.parametrize("name", CASES)
def test_plan_guard(name):
    given, flagged, expected = CASES[name]
    steps, _ = plan_guard(LOGINS, OWNERS, given, quota=2**20, flagged=flagged)
    assert [(s.member, s.action, s.detail) for s in steps] == expected
    for s in steps:
        assert bool(s.statements) == s.enforced  # a flag changes nothing


def test_flags_are_remembered_while_over_and_forgotten_once_under():
    _, over = plan_guard(LOGINS, OWNERS, facts(sizes={"alpha": 2 * 2**20}), quota=2**20, flagged=set())
    assert over == {"alpha"}
    _, over = plan_guard(LOGINS, OWNERS, facts(sizes=None), quota=2**20, flagged=over)  # not measured: kept
    assert over == {"alpha"}
    _, over = plan_guard(LOGINS, OWNERS, facts(sizes={"alpha": 10}), quota=2**20, flagged=over)
    assert over == set()


def test_a_cancel_rechecks_the_same_statement_of_the_same_login():
    steps, _ = plan_guard(LOGINS, OWNERS, facts(sessions=[session(7, "e_alpha", "active", 10)]), quota=None,
                          flagged=set())
    text = steps[0].statements[0].as_string(None)
    assert '"pg_catalog"."pg_cancel_backend"' in text and "a.pid = 7" in text and "a.usename = 'e_alpha'" in text
    assert "a.query_start = '2026-12-02 09:59:50+00:00'::timestamptz" in text


def test_usage_counts_a_mentors_logins_as_the_mentors():
    got = usage(LOGINS, OWNERS, facts(sessions=[session(1, "e_ana__alpha", "idle", 1),
                                                session(2, "e_alpha", "idle", 1)], sizes={"alpha": 5}, temp={}))
    assert got == {"alpha": {"sessions": 1, "temp_bytes": 0, "schema_bytes": 5},
                   "beta": {"sessions": 0, "temp_bytes": 0, "schema_bytes": 0},
                   "ana": {"sessions": 1, "temp_bytes": 0}}
