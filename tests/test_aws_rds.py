"""provider aws with `database.server: rds` against a moto server: the plan on an empty account has the instance
and its price next to the machines; `up` makes the network first and puts the instance in the database security
group on the network's subnets; a second `up` makes no mutating call; `down` leaves nothing tagged."""

from __future__ import annotations

import base64
import gzip
import re
import uuid

import boto3
import pytest
from aws_event import aws, aws_data, context, moto_url, provider  # noqa: F401 (fixtures)

from datathon.aws import names
from datathon.engine import apply_down, apply_up, plan_down, plan_up


def rds_event(tmp_path):
    event = f"ar{uuid.uuid4().hex[:6]}"
    data = aws_data(event, teams=[{"name": "alpha"}, {"name": "beta"}])
    data["database"] = {"server": "rds", "ca_file": "rds-ca.pem", "sslmode": "verify-full",
                        "tunnel": {"ssh": "ubuntu@10.0.0.5", "identity_file": "jump.key"},
                        "rds": {"instance_class": "db.r6g.large", "storage_gb": 200}}
    return event, context(tmp_path / event, data)


def parts(ctx, *, same_user_data: bool = True, **options):
    p = provider(ctx, same_user_data=same_user_data)
    # the provider's own order (the instance before the machines); what runs inside the instance (tenancy,
    # loads) needs a PostgreSQL behind it, which moto has not: tested against the cluster that plays RDS
    return p, [x for x in p.parts(**options) if x.name not in ("data", "storage")]


def test_rds_with_the_machines_from_one_file(aws, tmp_path):
    event, ctx = rds_event(tmp_path)
    p, all_parts = parts(ctx, same_user_data=False)
    plan = plan_up(all_parts)
    rds = [c for c in plan.changes if c.target == f"rds datathon-{event}"]
    assert rds and rds[0].action == "create" and "db.r6g.large" in rds[0].reason and "~$5/day" in rds[0].reason
    assert any("RDS db.r6g.large" in n for n in plan.notes)  # in the event's cost estimate too

    applied, _ = apply_up(ctx, plan, approve=lambda changes, q: True)
    assert applied > 0
    client = boto3.client("rds", region_name="us-east-1")
    d = client.describe_db_instances(DBInstanceIdentifier=f"datathon-{event}")["DBInstances"][0]
    ec2 = boto3.client("ec2", region_name="us-east-1")
    group = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [names.database_sg(event)]}])
    db_group = group["SecurityGroups"][0]
    assert [g["VpcSecurityGroupId"] for g in d["VpcSecurityGroups"]] == [db_group["GroupId"]]
    assert d["PubliclyAccessible"] is False and len(d["DBSubnetGroup"]["Subnets"]) >= 2
    # the machines were launched after the instance, with its address in their bootstrap (not the placeholder)
    machine = ec2.describe_instances(Filters=[{"Name": f"tag:{names.TEAM_TAG}", "Values": ["alpha"]},
                                              {"Name": f"tag:{names.EVENT_TAG}", "Values": [event]}])
    instance_id = machine["Reservations"][0]["Instances"][0]["InstanceId"]
    data = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
    script = gzip.decompress(base64.b64decode(data)).decode()
    line = re.search(r"\.datathon/env\.sh \d+ \d ([A-Za-z0-9+/=]+)", script)  # DT_FILES: path mode over base64
    env_sh = base64.b64decode(line.group(1)).decode()
    assert f"PGHOST={d['Endpoint']['Address']}" in env_sh.replace("'", "").replace('"', "")
    assert "not-made-yet" not in env_sh
    # 5432 only from the workspaces' group: nothing else may reach the instance
    perms = db_group["IpPermissions"]
    assert [(x["FromPort"], [g["GroupId"] for g in x["UserIdGroupPairs"]], x["IpRanges"]) for x in perms] == [
        (5432, [ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [
            names.workspace_sg(event)]}])["SecurityGroups"][0]["GroupId"]], [])]

    p2, again = parts(ctx)
    applied, _ = apply_up(ctx, plan_up(again), approve=lambda changes, q: True)
    assert applied == 0 and p2.session.mutating_calls == {}

    p3, gone = parts(ctx, final_snapshot=False)  # `down --no-final-snapshot`, over the file's default
    down = plan_down(gone)
    assert any(c.target == f"rds datathon-{event}" and "no final snapshot" in c.reason for c in down.changes)
    removed, left, _ = apply_down(ctx, down)
    assert left == [] and client.describe_db_instances()["DBInstances"] == []
    assert not client.describe_db_parameter_groups(
        Filters=[])["DBParameterGroups"] or all(g["DBParameterGroupName"] != f"datathon-{event}" for g in
                                                 client.describe_db_parameter_groups()["DBParameterGroups"])
