"""The tenancy planner as a pure function: wanted state + faked facts -> expected changes (no server)."""

from __future__ import annotations

import pytest

from datathon.config.models import EventConfig
from datathon.database.facts import DatabaseFact, Facts, RoleFact, SchemaFact
from datathon.database.tenancy import MARK, plan_tenancy, role_settings, wanted_logins

CONFIG = EventConfig.model_validate({
    "event": "ev",
    "teams": [{"name": "alpha"}, {"name": "beta"}],
    "mentors": [{"name": "mia"}],
    "databases": [{"name": "db", "shared_schemas": ["shared"]}],
})
MARKED = MARK.format(event="ev")


def role(name, *, login=True, comment=MARKED, **kw) -> RoleFact:
    base = dict(login=login, superuser=False, createdb=False, createrole=False, replication=False,
                bypassrls=False, inherit=True, connlimit=CONFIG.policy.connection_limit, config={}, comment=comment)
    base.update(kw)
    return RoleFact(name=name, **base)


def converged_facts() -> Facts:
    """What the server looks like right after a successful `up` of CONFIG."""
    facts = Facts(admin="datathon", admin_superuser=True)
    for g in ("ev_teams", "ev_mentors", "ev_data"):
        facts.roles[g] = role(g, login=False)
    for login in wanted_logins(CONFIG):
        facts.roles[login.role] = role(login.role, config=role_settings(login), connlimit=login.policy.connection_limit)
        facts.memberships.add((login.role, login.group))
    readers = {("ev_teams", "USAGE"), ("ev_mentors", "USAGE")}
    schemas = {
        "public": SchemaFact("pg_database_owner", {("pg_database_owner", "USAGE"), ("pg_database_owner", "CREATE"),
                                                   ("PUBLIC", "USAGE")}, 0),
        "shared": SchemaFact("ev_data", {("ev_data", "USAGE"), ("ev_data", "CREATE"), *readers}, 3),
        "alpha": SchemaFact("ev_alpha", {("ev_alpha", "USAGE"), ("ev_alpha", "CREATE"), ("ev_mia__alpha", "USAGE")},
                            1),
        "beta": SchemaFact("ev_beta", {("ev_beta", "USAGE"), ("ev_beta", "CREATE"), ("ev_mia__beta", "USAGE")}, 0),
    }
    default_acls = {("ev_data", "shared", "ev_teams", "SELECT"), ("ev_data", "shared", "ev_mentors", "SELECT"),
                    ("ev_alpha", "alpha", "ev_mia__alpha", "SELECT"), ("ev_beta", "beta", "ev_mia__beta", "SELECT")}
    grants = {("datathon", "CONNECT"), ("datathon", "CREATE"), ("datathon", "TEMPORARY")}
    grants |= {(g, p) for g in ("ev_teams", "ev_mentors") for p in ("CONNECT", "TEMPORARY")}
    facts.databases["db"] = DatabaseFact(comment=MARKED, grants=grants, schemas=schemas, default_acls=default_acls,
                                         missing_select={}, loaded_sources={})
    return facts


def plan(facts, **kw):
    stored = {w.role for w in wanted_logins(CONFIG)}
    return plan_tenancy(CONFIG, facts, secret_for=lambda r: "pw", stored_secrets=kw.pop("stored", stored), **kw)


def pending(changes):
    return [(c.action, c.component, c.target, c.reason) for c in changes if c.action != "keep"]


def test_converged_server_needs_nothing():
    assert pending(plan(converged_facts())) == []


def test_empty_server_creates_everything_in_dependency_order():
    changes = [c for c in plan(Facts(admin="datathon", admin_superuser=True)) if c.action != "keep"]
    order = [(c.component, c.target) for c in changes]
    assert order.index(("role", "ev_teams")) < order.index(("role", "ev_alpha"))
    assert order.index(("database", "db")) < order.index(("schema", "db.alpha"))
    assert order.index(("role", "ev_alpha")) < order.index(("schema", "db.alpha"))
    assert {c.target for c in changes if c.component == "role"} == {
        "ev_teams", "ev_mentors", "ev_data", "ev_alpha", "ev_beta", "ev_mia", "ev_mia__alpha", "ev_mia__beta"}


def mutate(fn):
    facts = converged_facts()
    fn(facts)
    return facts


@pytest.mark.parametrize("breakage, expected", [
    (lambda f: setattr(f.roles["ev_alpha"], "createdb", True),
     ("update", "role", "ev_alpha", "reset attributes (createdb)")),
    (lambda f: setattr(f.roles["ev_beta"], "connlimit", -1),
     ("update", "role", "ev_beta", "reset attributes (connection limit -1)")),
    (lambda f: f.memberships.discard(("ev_alpha", "ev_teams")),
     ("update", "role", "ev_alpha", "add to ev_teams")),
    (lambda f: f.roles["ev_alpha"].config.update(statement_timeout="0"),
     ("update", "role", "ev_alpha", "policy: statement_timeout")),
    (lambda f: setattr(f.roles["ev_alpha"], "comment", None),
     ("blocked", "role", "ev_alpha",
      "a role of that name exists and was not made by datathon for this event; rename the team or drop that role")),
    (lambda f: f.databases["db"].grants.add(("PUBLIC", "CONNECT")),
     ("update", "grant", "database db", "only the event's teams and mentors may connect")),
    (lambda f: f.databases["db"].schemas["public"].grants.add(("PUBLIC", "CREATE")),
     ("update", "grant", "db.public", "nobody but the owner creates in public")),
    (lambda f: f.databases["db"].schemas["alpha"].grants.add(("ev_beta", "USAGE")),
     ("update", "grant", "db.alpha", "its mentors' logins for it read it (also tables made later); others revoked")),
    (lambda f: f.databases["db"].schemas["shared"].grants.add(("PUBLIC", "USAGE")),
     ("update", "grant", "db.shared", "teams and mentors read it (also tables made later); others revoked")),
    (lambda f: f.databases["db"].missing_select.update({("shared", "ev_teams"): 2}),
     ("update", "grant", "db.shared", "teams and mentors read it (also tables made later)")),
    (lambda f: f.databases["db"].default_acls.discard(("ev_alpha", "alpha", "ev_mia__alpha", "SELECT")),
     ("update", "grant", "db.alpha", "its mentors' logins for it read it (also tables made later)")),
    (lambda f: f.roles["ev_alpha"].db_config.update(db={"statement_timeout": "0"}),
     ("update", "role", "ev_alpha", "remove its own settings in database db (statement_timeout)")),
    (lambda f: f.roles["ev_mia__beta"].config.update(default_transaction_read_only="off"),
     ("update", "role", "ev_mia__beta", "policy: default_transaction_read_only")),
    (lambda f: setattr(f.databases["db"].schemas["beta"], "owner", "ev_alpha"),
     ("update", "schema", "db.beta", "owner is ev_alpha, should be ev_beta")),
])
def test_each_drift_is_found_and_only_it(breakage, expected):
    assert pending(plan(mutate(breakage))) == [expected]


def test_missing_secret_resets_only_that_password():
    stored = {w.role for w in wanted_logins(CONFIG)} - {"ev_beta"}
    assert pending(plan(converged_facts(), stored=stored)) == [
        ("update", "role", "ev_beta", "password reset: its secret file is missing")]


def test_a_removed_team_with_data_is_blocked_without_the_flag():
    facts = converged_facts()
    facts.roles["ev_gone"] = role("ev_gone")
    facts.memberships.add(("ev_gone", "ev_teams"))
    facts.databases["db"].schemas["gone"] = SchemaFact("ev_gone", set(), 4)
    # its logins are refused at once (not destructive: nothing is deleted), its data waits for the flag
    refuse, blocked = pending(plan(facts))
    assert refuse == ("update", "role", "ev_gone", "team gone left the file: logins refused, its sessions ended")
    assert blocked[0] == "blocked" and "db.gone (4 tables)" in blocked[3]
    dropped = pending(plan(facts, drop_team_data=True))
    assert [(a, c, t) for a, c, t, _ in dropped] == [("update", "role", "ev_gone"), ("drop", "schema", "db.gone"),
                                                    ("drop", "role", "ev_gone")]
    assert all(c.destructive for c in plan(facts, drop_team_data=True) if c.action == "drop")
    # once refused, with no session left: only the blocked data is said again
    facts.roles["ev_gone"].login = False
    assert [a for a, *_ in pending(plan(facts))] == ["blocked"]
    # a session that got in before: ended
    facts.sessions["ev_gone"] = 2
    assert [a for a, *_ in pending(plan(facts))] == ["update", "blocked"]


def test_a_locked_team_is_kept_nologin_its_sessions_ended_and_up_keeps_it():
    facts = converged_facts()
    (lock,) = [c for c in plan(facts, locked=frozenset({"ev_alpha"})) if c.action != "keep"]
    assert (lock.action, lock.target) == ("update", "ev_alpha") and "locked" in lock.reason
    assert statements(lock) == ['ALTER ROLE "ev_alpha" NOLOGIN',
                                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'ev_alpha' "
                                "AND pid <> pg_backend_pid()"]
    # locked on the server: nothing to do, and the keep says why; without the lock in state `up` lets it in again
    facts.roles["ev_alpha"].login = False
    changes = plan(facts, locked=frozenset({"ev_alpha"}))
    assert pending(changes) == []
    assert [c.reason for c in changes if c.target == "ev_alpha"] == ["locked (logins refused)"]
    assert pending(plan(facts)) == [("update", "role", "ev_alpha", "reset attributes (nologin)")]
    # the mentors' logins for the locked team are not touched (see plan_tenancy)
    assert facts.roles["ev_mia__alpha"].login


def test_a_password_changed_on_the_server_or_a_new_secret_is_set_on_the_role():
    """A rotation (or a lost secret) changes the database role too: the old password must stop working."""
    facts = converged_facts()
    facts.changed_passwords = {"ev_alpha", "ev_mia__beta"}
    assert [(c.target, c.reason) for c in plan(facts) if c.action != "keep"] == [
        ("ev_alpha", "password changed on the server: set back to its handout's"),
        ("ev_mia__beta", "password changed on the server: set back to its handout's")]


def statements(change) -> list[str]:
    return [s.as_string(None) for s in change.statements if not callable(s)]


def test_a_non_superuser_admin_grants_itself_what_it_needs():
    """Like RDS's master user: it must be a member of a role to create its schema or default privileges."""
    changes = {c.target: c for c in plan(Facts(admin="rdsadmin", admin_superuser=False))}
    assert 'GRANT "ev_alpha" TO CURRENT_USER' in statements(changes["ev_alpha"])
    assert 'GRANT "ev_data" TO CURRENT_USER' in statements(changes["ev_data"])
    superuser = {c.target: c for c in plan(Facts(admin="datathon", admin_superuser=True))}
    assert not any("CURRENT_USER" in s for s in statements(superuser["ev_alpha"]))


def test_every_statement_is_composed_with_psycopg_sql():
    from psycopg import sql

    for c in plan(Facts(admin="datathon", admin_superuser=True)):
        for s in c.statements:
            assert callable(s) or isinstance(s, sql.Composable), (c.target, s)


def test_roles_datathon_did_not_make_are_never_dropped():
    """A DBA's own role that someone granted the teams group is not a removed team."""
    facts = converged_facts()
    facts.roles["ev_dba"] = role("ev_dba", comment=None)
    facts.memberships.add(("ev_dba", "ev_teams"))
    facts.memberships.add(("ev_dba", "ev_mentors"))
    assert pending(plan(facts, drop_team_data=True)) == []


def test_mentor_sessions_are_read_only_by_default():
    mentor = next(w for w in wanted_logins(CONFIG) if w.kind == "mentor")
    team = next(w for w in wanted_logins(CONFIG) if w.kind == "team")
    assert role_settings(mentor)["default_transaction_read_only"] == "on"
    assert "default_transaction_read_only" not in role_settings(team)


def test_per_database_settings_are_reset_for_that_database():
    facts = mutate(lambda f: f.roles["ev_beta"].db_config.update(db={"work_mem": "1TB", "statement_timeout": "0"}))
    [change] = [c for c in plan(facts) if c.action != "keep"]
    assert [str(s.as_string(None)) for s in change.statements] == ['ALTER ROLE "ev_beta" IN DATABASE "db" RESET ALL']


def test_mentor_logins_read_one_team_each():
    logins = {x.role: x for x in wanted_logins(CONFIG)}
    assert logins["ev_mia__alpha"].team == "alpha" and logins["ev_mia__alpha"].search_path == ("alpha", "shared")
    assert not logins["ev_mia__alpha"].person and logins["ev_mia"].person
    assert logins["ev_mia__alpha"].policy.connection_limit <= 2
    empty = plan(Facts(admin="datathon", admin_superuser=True))
    [alpha] = [c for c in empty if c.target == "db.alpha" and c.component == "grant"]
    text = " ".join(s.as_string(None) for s in alpha.statements)
    assert '"ev_mia__alpha"' in text and '"ev_mia__beta"' not in text and '"ev_mentors"' not in text


def test_all_mentors_reading_a_team_schema_is_revoked():
    """An event made before per-team mentor logins: the whole mentors group reads every team schema."""
    def old_model(f):
        f.databases["db"].schemas["alpha"].grants.add(("ev_mentors", "USAGE"))
        f.databases["db"].default_acls.add(("ev_alpha", "alpha", "ev_mentors", "SELECT"))
    [change] = [c for c in plan(mutate(old_model)) if c.action != "keep"]
    text = [s.as_string(None) for s in change.statements]
    assert 'REVOKE ALL ON SCHEMA "alpha" FROM "ev_mentors"' in text
    assert ('ALTER DEFAULT PRIVILEGES FOR ROLE "ev_alpha" IN SCHEMA "alpha" REVOKE ALL ON TABLES FROM "ev_mentors"'
            in text)
    assert 'REVOKE ALL ON ALL TABLES IN SCHEMA "alpha" FROM "ev_mentors"' in text


def test_a_removed_mentor_loses_its_team_logins():
    facts = converged_facts()
    facts.roles["ev_old"] = role("ev_old")
    facts.roles["ev_old__alpha"] = role("ev_old__alpha")
    facts.memberships |= {("ev_old", "ev_mentors"), ("ev_old__alpha", "ev_mentors")}
    drops = [(c.component, c.target, c.reason) for c in plan(facts) if c.action == "drop"]
    assert ("role", "ev_old__alpha", "the login of mentor old for team alpha left the event file") in drops
    assert ("role", "ev_old", "mentor old left the event file") in drops


def test_a_password_changed_on_the_server_is_set_back():
    facts = converged_facts()
    for r in facts.roles.values():
        r.verifier = "SCRAM-SHA-256$4096:c2FsdA==$x:y"
    facts.changed_passwords = {"ev_mia__alpha"}
    changed = plan(facts)
    assert pending(changed) == [("update", "role", "ev_mia__alpha",
                                 "password changed on the server: set back to its handout's")]
    facts.changed_passwords = set()
    assert pending(plan(facts)) == []


def test_a_verifier_that_is_not_scram_never_matches():
    """(That real verifiers match is shown on a real server: a second `up` changes no password.)"""
    from datathon.database.facts import scram_matches

    assert not scram_matches("md5abc", "s3cret") and not scram_matches("garbage", "s3cret")
    assert not scram_matches("SCRAM-SHA-256$x:y$z:w", "s3cret")


def test_a_login_granted_to_another_is_revoked_and_foreign_settings_removed():
    facts = converged_facts()
    facts.memberships.add(("ev_alpha", "ev_mia__alpha"))  # planted by alpha's code, run by the mentor
    facts.roles["ev_mia__alpha"].config["role"] = "ev_alpha"
    assert pending(plan(facts)) == [
        ("update", "role", "ev_mia__alpha", "remove settings it was not given: role"),
        ("update", "role", "ev_mia__alpha", "revoke its membership granted to ev_alpha"),
    ]
