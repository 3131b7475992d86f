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
    # more memory on the machine: the memory settings follow
    (dict(memory_bytes=64 << 30), ("update", "settings",
                                   "changed: effective_cache_size, maintenance_work_mem, shared_buffers")),
])
def test_each_drift_is_found_and_only_it(cluster, drift, expected):
    facts = dataclasses.replace(converged(cluster), **drift)
    action, target, reason = expected
    assert pending(cluster.plan(facts)) == [(action, target, reason.format(pgdata=cluster.pgdata))]


def test_a_new_team_changes_the_connection_budget(cluster, tmp_path):
    facts = converged(cluster)
    text = yaml.safe_dump({"event": "srv", "teams": {"count": 3}, "mentors": [{"name": "mia"}],
                           "database": {"server": "managed", "port": 55432}, "databases": [{"name": "srvdb"}]})
    grown = ManagedCluster(make_context(tmp_path, text))
    assert pending(grown.plan(facts)) == [("update", "settings", "changed: max_connections")]
