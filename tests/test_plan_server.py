"""The managed cluster's planner as a pure function: faked facts in, changes out (no initdb, no server)."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from conftest import make_context
from datathon.database.cluster import ClusterFacts, ManagedCluster

MEMORY = 8 << 30


@pytest.fixture
def cluster(tmp_path) -> ManagedCluster:
    text = yaml.safe_dump({"event": "srv", "teams": {"count": 2}, "mentors": [{"name": "mia"}],
                           "database": {"server": "managed", "port": 55432}, "databases": [{"name": "srvdb"}]})
    return ManagedCluster(make_context(tmp_path, text))


def converged(cluster: ManagedCluster) -> ClusterFacts:
    return ClusterFacts(initialised=True, tls_present=True, settings_text=cluster.settings_text(MEMORY),
                        hba_text=cluster.hba_text(), pid=4242, memory_bytes=MEMORY, version="15")


def pending(changes):
    return [(c.action, c.target, c.reason) for c in changes if c.action != "keep"]


def test_a_new_cluster_is_made_configured_and_started(cluster):
    facts = dataclasses.replace(converged(cluster), initialised=False, pid=None, settings_text=None, hba_text=None)
    assert [(c.action, c.target) for c in cluster.plan(facts)] == [
        ("create", "managed cluster"), ("update", "settings"), ("start", "managed cluster")]


def test_a_converged_cluster_needs_nothing_and_says_why(cluster):
    changes = cluster.plan(converged(cluster))
    assert pending(changes) == []
    assert [c.reason for c in changes] == ["datathon.conf and pg_hba.conf up to date",
                                           "running (pid 4242, port 55432)"]


@pytest.mark.parametrize("drift, expected", [
    (dict(pid=None), ("start", "managed cluster", "stopped; data in {pgdata}")),
    (dict(tls_present=False), ("create", "TLS certificate", "certificate missing")),
    (dict(hba_text="local all all trust\n"), ("update", "settings", "changed: pg_hba.conf")),
])
def test_each_drift_is_found_and_only_it(cluster, drift, expected):
    facts = dataclasses.replace(converged(cluster), **drift)
    action, target, reason = expected
    assert pending(cluster.plan(facts)) == [(action, target, reason.format(pgdata=cluster.pgdata))]


def test_a_setting_read_only_at_start_plans_a_restart_that_says_what_it_cuts_and_asks(cluster):
    # more memory on the machine: the memory settings follow; shared_buffers needs a restart, which is its own
    # change, destructive (so `up` shows it and asks), naming the sessions it will end
    facts = dataclasses.replace(converged(cluster), memory_bytes=64 << 30, sessions=7)
    changes = [c for c in cluster.plan(facts) if c.action != "keep"]
    assert pending(changes) == [
        ("update", "settings", "changed: effective_cache_size, maintenance_work_mem, shared_buffers"),
        ("restart", "managed cluster", "shared_buffers take effect only on a restart, which ends the 7 open "
                                       "session(s) of teams and mentors")]
    assert [c.destructive for c in changes] == [False, True]
    # a setting the server itself says waits for a restart (e.g. a custom one from `database.settings`)
    facts = dataclasses.replace(converged(cluster), pending_restart=frozenset({"max_locks_per_transaction"}))
    assert pending(cluster.plan(facts)) == [
        ("restart", "managed cluster", "max_locks_per_transaction take effect only on a restart, which ends the 0 "
                                       "open session(s) of teams and mentors")]


@pytest.mark.parametrize("needed, current, expected", [
    (20, None, 50), (92, None, 150), (104, 150, 150), (150, 150, 150), (151, 150, 200),
    (30, 150, 150),  # never shrunk: that would be a restart for nothing
])
def test_max_connections_has_room_and_grows_in_steps(needed, current, expected):
    from datathon.database.cluster import sized_max_connections

    assert sized_max_connections(needed, current) == expected


def test_a_new_team_changes_the_connection_budget(cluster, tmp_path):
    facts = converged(cluster)
    text = yaml.safe_dump({"event": "srv", "teams": {"count": 3}, "mentors": [{"name": "mia"}],
                           "database": {"server": "managed", "port": 55432}, "databases": [{"name": "srvdb"}]})
    grown = ManagedCluster(make_context(tmp_path, text))
    # the room the cluster was made with takes the new team: nothing changes, nothing restarts
    assert pending(grown.plan(facts)) == []
    # past the room: more connections, which needs a restart (said, and asked for)
    text = yaml.safe_dump({"event": "srv", "teams": {"count": 30}, "mentors": [{"name": "mia"}],
                           "database": {"server": "managed", "port": 55432}, "databases": [{"name": "srvdb"}]})
    big = ManagedCluster(make_context(tmp_path, text))
    assert [a for a, *_ in pending(big.plan(facts))] == ["update", "restart"]
    assert "max_connections" in pending(big.plan(facts))[1][2]
