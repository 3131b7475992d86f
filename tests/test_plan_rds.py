"""The RDS planner, table-driven: wanted settings + faked facts -> expected changes. No AWS, no moto."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from datathon.config.rds import RdsSettings
from datathon.database.rds_plan import (
    PARAMETERS,
    InstanceFacts,
    NetworkRef,
    Override,
    RdsFacts,
    leftovers_rds,
    plan_rds,
    teardown_rds,
    wanted_class,
)

NET = NetworkRef(security_group_ids=("sg-db",), subnet_ids=("subnet-a", "subnet-b"))
PRICES = {"db.t4g.medium": 0.073, "db.r6g.xlarge": 0.52, "db.r6g.2xlarge": 1.04}


class Runner:
    def __getattr__(self, name):
        return lambda *a, **k: None


def instance(**kw) -> InstanceFacts:
    base = dict(identifier="datathon-x", status="available", instance_class="db.t4g.medium", engine_version="16.4",
                storage_gb=100, max_storage_gb=None, storage_type="gp3", encrypted=True, publicly_accessible=False,
                backup_retention_days=7, maintenance_window="sun:20:00-sun:20:30", backup_window="18:00-19:00",
                deletion_protection=True, parameter_group="datathon-x", subnet_group="datathon-x",
                security_group_ids=("sg-db",), address="x.rds.amazonaws.com", port=5432)
    return InstanceFacts(**{**base, **kw})


def facts(inst=None, *, today=date(2026, 12, 1), params=dict(PARAMETERS), subnets=("subnet-a", "subnet-b"),
          override=None) -> RdsFacts:
    return RdsFacts(identifier="datathon-x", parameter_group_name="datathon-x", subnet_group_name="datathon-x",
                    today=today, instance=inst, parameters=params, subnet_group=subnets, network=NET,
                    override=override)


def plan(want: RdsSettings, f: RdsFacts):
    return [(c.target, c.action, c.reason, c.destructive) for c in plan_rds(want, f, Runner(), PRICES.get)]


STEP = [{"at": "2026-12-05", "instance_class": "db.r6g.xlarge"}]


@pytest.mark.parametrize(("today", "override", "expected", "why"), [
    (date(2026, 12, 1), None, "db.t4g.medium", "instance_class in the file"),
    (date(2026, 12, 5), None, "db.r6g.xlarge", "scale step of 2026-12-05"),
    # `datathon scale` after the step was reached wins; a step reached after the command wins over it
    (date(2026, 12, 6), Override(at=datetime(2026, 12, 6, 9, tzinfo=UTC), instance_class="db.r6g.2xlarge"),
     "db.r6g.2xlarge", "`datathon scale` at 2026-12-06 09:00 UTC"),
    (date(2026, 12, 6), Override(at=datetime(2026, 12, 2, 9, tzinfo=UTC), instance_class="db.r6g.2xlarge"),
     "db.r6g.xlarge", "scale step of 2026-12-05"),
    (date(2026, 12, 1), Override(at=datetime(2026, 12, 1, 9, tzinfo=UTC), storage_gb=500),
     "db.t4g.medium", "instance_class in the file"),
])
def test_the_most_recent_instruction_sets_the_class(today, override, expected, why):
    want = RdsSettings(scale=STEP)
    assert wanted_class(want, facts(today=today, override=override)) == (expected, why)


def test_an_empty_account_creates_groups_then_the_instance_with_its_price():
    got = plan(RdsSettings(), facts(None, params=None, subnets=None))
    assert [(t, a) for t, a, _, _ in got] == [("parameter group datathon-x", "create"),
                                              ("subnet group datathon-x", "create"), ("rds datathon-x", "create")]
    assert "db.t4g.medium" in got[2][2] and "~$2/day" in got[2][2] and "not public" in got[2][2]


def test_as_wanted_everything_is_kept_with_a_reason():
    got = plan(RdsSettings(), facts(instance()))
    assert {a for _, a, _, _ in got} == {"keep"} and all(r for _, _, r, _ in got)


@pytest.mark.parametrize(("inst", "want", "reason"), [
    (instance(publicly_accessible=True), {}, "publicly accessible: made private"),
    (instance(backup_retention_days=1), {}, "backups (days) 1 -> 7"),
    (instance(deletion_protection=False), {}, "deletion protection False -> True"),
    (instance(maintenance_window="mon:03:00-mon:03:30"), {}, "maintenance window mon:03:00-mon:03:30 -> sun:20"),
    (instance(security_group_ids=("sg-open",)), {}, "only the database group"),
    (instance(), {"storage_gb": 200}, "storage 100 -> 200 GB"),
    (instance(), {"max_storage_gb": 400}, "autoscaling limit off -> 400 GB"),
])
def test_drift_is_one_update_naming_each_difference(inst, want, reason):
    got = [x for x in plan(RdsSettings(**want), facts(inst)) if x[1] == "update"]
    assert len(got) == 1 and reason in got[0][2] and not got[0][3]


def test_a_class_change_is_an_outage_asked_first_with_the_price_difference():
    got = [x for x in plan(RdsSettings(scale=STEP), facts(instance(), today=date(2026, 12, 5))) if x[1] == "update"]
    assert got == [("rds datathon-x", "update", "class db.t4g.medium -> db.r6g.xlarge (scale step of 2026-12-05): a "
                    "few minutes' outage while it switches; +$11/day (~$12/day)", True)]
    pending = plan(RdsSettings(scale=STEP), facts(instance(pending_class="db.r6g.xlarge"), today=date(2026, 12, 5)))
    assert not [x for x in pending if x[1] == "update"]  # already asked for: not again


def test_storage_never_shrinks_and_a_deleting_instance_blocks():
    got = plan(RdsSettings(storage_gb=50), facts(instance()))
    assert any("storage cannot shrink" in r for _, _, r, _ in got) and {a for _, a, _, _ in got} == {"keep"}
    assert [a for _, a, _, _ in plan(RdsSettings(), facts(instance(status="deleting")))][-1] == "blocked"


def test_teardown_snapshot_first_and_leftovers():
    f = facts(instance())
    down = teardown_rds(f, Runner(), final_snapshot=True)
    assert [(c.target, c.action) for c in down] == [("rds datathon-x", "drop"), ("parameter group datathon-x", "drop"),
                                                    ("subnet group datathon-x", "drop")]
    assert "final snapshot datathon-x-final-20261201" in down[0].reason and down[0].destructive
    assert "gone for good" in teardown_rds(f, Runner(), final_snapshot=False)[0].reason
    assert leftovers_rds(facts(None, params=None, subnets=None)) == []
    assert leftovers_rds(f) == ["RDS instance datathon-x (available)", "RDS parameter group datathon-x",
                                "RDS subnet group datathon-x"]
