"""The AWS parts' pure logic, table-driven with faked facts (no moto, no network): quotas, the price table, the
network's, keys' and machines' plans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from datathon.aws import pricing
from datathon.aws.keys import KeyFacts, KeysPart
from datathon.aws.machines import Image, Instance, MachineFacts, MachinesPart
from datathon.aws.network import Group, NetworkFacts, NetworkPart, Rule, subnet_cidrs
from datathon.aws.quotas import QuotaFacts, needs, plan_quotas, quota_for
from datathon.aws.session import AwsSession, mutating
from datathon.config.aws import MachineProfile

S = AwsSession(region="us-east-1")


@pytest.mark.parametrize("itype, spot, code", [
    ("g4dn.12xlarge", False, "L-DB2E81BA"), ("g5.xlarge", False, "L-DB2E81BA"), ("vt1.3xlarge", False, "L-DB2E81BA"),
    ("g4dn.xlarge", True, "L-3819A6DF"), ("m5.8xlarge", False, "L-1216C47A"), ("t3.medium", False, "L-1216C47A"),
    ("m5.8xlarge", True, "L-34B43A08"), ("p3.2xlarge", False, "L-417A185B"), ("inf2.xlarge", False, "L-1945791B"),
    ("i3.large", False, "L-1216C47A"), ("x2idn.16xlarge", False, "L-7295265B"), ("dl1.24xlarge", False, "L-6E869C2A"),
])
def test_each_type_counts_against_its_familys_quota(itype, spot, code):
    assert quota_for(itype, spot=spot).code == code


G, STD = quota_for("g4dn.12xlarge"), quota_for("m5.8xlarge")


@pytest.mark.parametrize("value, others, action, words", [
    (192, 0, "keep", "192 vCPUs >= 192 for the event"),
    (200, 8, "keep", "+ 8 in use"),
    (0, 0, "blocked", "the quota is 0 vCPUs and the event needs 192: request 192"),
    (192, 4, "blocked", "(+ 4 in use by other machines): request 196"),
    (None, 0, "keep", "unknown: check by hand"),
])
def test_quota_plan(value, others, action, words):
    need = needs([("g4dn.12xlarge", False, 48)] * 4)
    assert need == {G: 192}
    [c] = plan_quotas(need, {G.code: QuotaFacts(G, value, others)}, "us-east-1")
    assert (c.action, c.target.split()[0]) == (action, "L-DB2E81BA") and words in c.reason


def test_cost_of_a_20_team_event_with_4_gpu_teams():
    """The README's figure: 16 x m5.8xlarge, 4 x g4dn.12xlarge, 200 GB gp3 each, 500 GB of imaging data."""
    machines = [pricing.Machine("m5.8xlarge", 200)] * 16 + [pricing.Machine("g4dn.12xlarge", 200)] * 4
    e = pricing.estimate(machines, region="us-east-1", storage_gb=500)
    ec2 = 16 * 1.536 + 4 * 3.912
    ebs = 20 * 200 * 0.08 / 730
    s3 = 500 * 0.023 / 730
    assert e.per_hour == pytest.approx(ec2 + ebs + s3)
    assert round(e.per_day, 2) == round((ec2 + ebs + s3) * 24, 2) == 976.27
    assert e.unknown == [] and e.prices_read == pricing.table().read
    text = pricing.describe(e, 3)
    assert text.startswith("cost estimate: $40.68/hour, $976.27/day, $2,928.82 for the event's 3 day(s)")


@pytest.mark.parametrize("region, machines, unknown", [
    ("eu-north-1", [pricing.Machine("m5.large", 8)], ["every price: the table"]),
    ("us-east-1", [pricing.Machine("z1d.large", 8)], ["1 x z1d.large (no price in the table"]),
    ("ap-southeast-1", [pricing.Machine("g4dn.12xlarge", 100)], []),
])
def test_what_the_table_lacks_is_named_never_guessed(region, machines, unknown):
    e = pricing.estimate(machines, region=region)
    assert [u for u in e.unknown if not any(u.startswith(w) for w in unknown)] == []
    assert len(e.unknown) == len(unknown)


def test_cost_so_far():
    assert pricing.cost_so_far("g4dn.12xlarge", 10, region="us-east-1") == 39.12
    assert pricing.cost_so_far("nope.large", 10, region="us-east-1") is None


def test_subnets_one_per_zone():
    assert subnet_cidrs("10.42.0.0/16", ["us-east-1b", "us-east-1a"]) == {"us-east-1a": "10.42.0.0/20",
                                                                          "us-east-1b": "10.42.16.0/20"}


def test_read_calls_are_told_apart_from_mutating_ones():
    assert [mutating(o) for o in ("DescribeInstances", "GetCallerIdentity", "ListRoleTags", "RunInstances",
                                  "CreateTags", "AuthorizeSecurityGroupIngress", "PutRolePolicy")] == [
        False, False, False, True, True, True, True]


def net(ssh_from=("203.0.113.0/24",)):
    return NetworkPart(S, "ev", vpc="default", vpc_cidr="10.42.0.0/16", ssh_from=list(ssh_from))


@pytest.mark.parametrize("groups, ws_action, ws_words", [
    ({}, "create", "SSH only from ssh_from"),
    ({"datathon-ev-workspaces": Group("sg-1", "datathon-ev-workspaces", True, {Rule(22, "203.0.113.0/24")})},
     "keep", "SSH only"),
    ({"datathon-ev-workspaces": Group("sg-1", "datathon-ev-workspaces", True,
                                      {Rule(22, "203.0.113.0/24"), Rule(8888, "0.0.0.0/0")})},
     "update", "revoke 0.0.0.0/0 to 8888"),
    ({"datathon-ev-workspaces": Group("sg-1", "datathon-ev-workspaces", True, set(),
                                      [{"IpProtocol": "-1"}])}, "update", "allow 203.0.113.0/24 to 22; revoke 1 other"),
    ({"datathon-ev-workspaces": Group("sg-1", "datathon-ev-workspaces", False, set())}, "blocked", "not tagged"),
])
def test_workspace_group_plan(groups, ws_action, ws_words):
    f = NetworkFacts(vpc_id="vpc-1", subnets={"a": "subnet-1"}, route_tables=["rtb-1"], groups=groups,
                     endpoint=("vpce-1", {"rtb-1"}))
    changes = {c.target.split()[0]: c for c in net().plan(f)}
    ws = changes["datathon-ev-workspaces"]
    assert ws.action == ws_action and ws_words in ws.reason
    assert changes["vpce-1"].action == "keep"


def test_database_group_allows_5432_from_the_workspace_group_only():
    ws = Group("sg-ws", "datathon-ev-workspaces", True, {Rule(22, "203.0.113.0/24")})
    db = Group("sg-db", "datathon-ev-database", True, {Rule(5432, "sg-ws"), Rule(5432, "10.0.0.0/8")})
    f = NetworkFacts(vpc_id="vpc-1", route_tables=["rtb-1", "rtb-2"], endpoint=("vpce-1", {"rtb-1"}),
                     groups={ws.name: ws, db.name: db})
    changes = {c.target.split()[0]: c for c in net().plan(f)}
    assert changes["datathon-ev-database"].action == "update"
    assert changes["datathon-ev-database"].reason == "revoke 10.0.0.0/8 to 5432"
    assert (changes["vpce-1"].action, changes["vpce-1"].reason) == ("update", "add route table(s) rtb-2")


def test_no_default_vpc_is_blocked_with_the_fix():
    [c] = net().plan(NetworkFacts(problem="the region has no default VPC: set aws.vpc: create"))
    assert c.action == "blocked" and "aws.vpc: create" in c.reason


def keys(tmp_path: Path, teams=("alpha", "beta", "gamma")):
    return KeysPart(S, "ev", teams=list(teams), keys_dir=tmp_path)


def test_keys_plan(tmp_path):
    f = KeyFacts(in_aws={"datathon-ev-alpha": {"id": "k1", "team": "alpha", "ours": True},
                         "datathon-ev-beta": {"id": "k2", "team": "beta", "ours": True},
                         "datathon-ev-gone": {"id": "k3", "team": "gone", "ours": True},
                         "datathon-ev-gamma": {"id": "k4", "team": None, "ours": False}},
                 local={"alpha"})
    got = [(c.target, c.action) for c in keys(tmp_path).plan(f)]
    assert got == [("datathon-ev-alpha", "keep"), ("datathon-ev-beta", "update"), ("datathon-ev-gamma", "blocked"),
                   ("datathon-ev-gone", "drop")]
    f = KeyFacts(local={"alpha"})
    c = keys(tmp_path).plan(f)[0]
    assert (c.action, "made earlier is in the state folder" in c.reason) == ("create", True)


CPU = MachineProfile(instance_type="m5.8xlarge", image="ubuntu*")
GPU = MachineProfile(instance_type="g4dn.12xlarge", image="ubuntu*", gpu=True)


def machines(teams, user_data=lambda t: f"#!/bin/sh\n# {t}\n"):
    return MachinesPart(S, "ev", wanted=teams, user_data=user_data, boot_timeout=600, record=lambda *a, **k: None,
                        price=lambda t, h: None)


def inst(iid, team=None, batch=None, state="running", itype="m5.8xlarge", **kw):
    return Instance(iid, team, "cpu", batch, state, itype, "1.2.3.4", "10.0.0.1",
                    datetime(2026, 1, 1, tzinfo=UTC), **kw)


def test_machines_plan_batches_by_profile_and_user_data():
    same = machines([("a", "cpu", CPU), ("b", "cpu", CPU), ("c", "gpu", GPU), ("d", "cpu", CPU)],
                    user_data=lambda t: "#!/bin/sh\n")
    f = MachineFacts(images={"cpu": Image("ami-1", "u", "/dev/sda1"), "gpu": Image("ami-1", "u", "/dev/sda1")})
    changes = same.plan(f)
    assert [(c.target, c.action) for c in changes] == [(f"datathon-ev-{t}", "create") for t in "abdc"]
    assert "3 in one launch" in changes[0].reason and "1 in one launch" in changes[3].reason
    assert changes[0].run.__self__ is changes[1].run.__self__  # one launch object for the batch
    per_team = machines([("a", "cpu", CPU), ("b", "cpu", CPU), ("c", "cpu", CPU)]).plan(f)
    assert per_team[0].run.__self__ is not per_team[1].run.__self__
    assert not hasattr(per_team[2].run, "__self__")  # the last launch also waits for all of the run's machines


def test_machines_plan_adopts_untagged_twins_and_drops_what_is_not_wanted():
    part = machines([("a", "cpu", CPU), ("b", "cpu", CPU), ("c", "cpu", CPU)], user_data=lambda t: "#!/bin/sh\n")
    batch = part.wanted[0].batch
    f = MachineFacts(instances=[inst("i-a", "a"), inst("i-a2", "a"), inst("i-x", None, batch, index=0),
                                inst("i-y", None, "other"), inst("i-old", "left"),
                                inst("i-c", "c", state="stopped", itype="m5.large"),
                                inst("i-builder", None, "b", kind="image-builder")],  # `image build`'s: left alone
                     images={"cpu": Image("ami-1", "u", "/dev/sda1")})
    got = [(c.target, c.action) for c in part.plan(f)]
    assert got == [("datathon-ev-a", "keep"), ("datathon-ev-a i-a2", "drop"), ("datathon-ev-b", "update"),
                   ("datathon-ev-c", "keep"), ("datathon-ev-left i-old", "drop"), ("i-y", "drop")]
    reasons = {c.target: c.reason for c in part.plan(f)}
    assert "`datathon start` starts it" in reasons["datathon-ev-c"] and "terminate it" in reasons["datathon-ev-c"]


def test_no_image_blocks_the_teams_of_that_profile():
    part = machines([("a", "cpu", CPU), ("c", "gpu", GPU)])
    f = MachineFacts(images={"cpu": Image("ami-1", "u", "/dev/sda1"), "gpu": None})
    assert [(c.target, c.action) for c in part.plan(f)] == [("datathon-ev-a", "create"), ("datathon-ev-c", "blocked")]


def test_status_rows_show_uptime_and_cost():
    part = MachinesPart(S, "ev", wanted=[("a", "cpu", CPU), ("b", "cpu", CPU)], user_data=lambda t: "",
                        boot_timeout=600, record=lambda *a, **k: None,
                        price=lambda t, h: pricing.cost_so_far(t, h, region="us-east-1"))
    now = datetime(2026, 1, 1, 10, tzinfo=UTC)
    f = MachineFacts(instances=[inst("i-a", "a")], now=now)
    f.instances[0].launched = now - timedelta(hours=10)
    rows = part.rows(f)
    assert [(r.team, r.state, r.uptime, r.cost) for r in rows] == [("a", "running", "10.0 h", "$15.36"),
                                                                   ("b", "missing", "", "")]
