"""provider aws against a moto server (boto3 over HTTP through AWS_ENDPOINT_URL): plan on an empty account, up,
a second up with no mutating call, an up killed midway, stop/start, state recover, down leaving nothing tagged,
and the clear messages of a missing credential, a wrong region and a quota shortfall."""

from __future__ import annotations

import base64
import gzip
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from aws_event import aws, aws_data, context, down, moto_url, provider, up  # noqa: F401 (fixtures)
from moto_server import CREDENTIALS

from datathon.aws import names
from datathon.aws.account import AccountFacts, TypeInfo
from datathon.aws.quotas import QuotaFacts, quota_for
from datathon.aws.tagged import remaining
from datathon.core.roster import people
from datathon.engine import apply_up, plan_up
from datathon.errors import ProvisionError
from datathon.storage.policies import read_policy

REPO = Path(__file__).resolve().parents[1]


def unique(prefix: str = "aw") -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def ec2():
    return boto3.client("ec2", region_name="us-east-1")


def instances(event: str) -> list[dict]:
    res = ec2().describe_instances(Filters=[{"Name": f"tag:{names.EVENT_TAG}", "Values": [event]},
                                            {"Name": "instance-state-name", "Values": ["pending", "running",
                                                                                      "stopping", "stopped"]}])
    return [i for r in res["Reservations"] for i in r["Instances"]]


def tags(x: dict) -> dict:
    return names.tag_dict(x.get("Tags"))


def test_plan_on_an_empty_account_lists_every_resource_and_the_cost(aws, tmp_path):
    event = unique()
    ctx = context(tmp_path, aws_data(event, dates={"start": "2026-05-02", "end": "2026-05-04"},
                                     storage={"backend": "s3", "bucket": f"{event}-imaging"}))
    p = provider(ctx)
    plan = plan_up(p.aws_parts())
    pending = [(str(c.component), c.target.split(" ")[0], c.action) for c in plan.pending]
    assert pending == [
        ("security group", f"datathon-{event}-workspaces", "create"),
        ("security group", f"datathon-{event}-database", "create"),
        ("endpoint", "com.amazonaws.us-east-1.s3", "create"),
        ("iam role", f"datathon-{event}-machines", "create"),
        ("policy", f"datathon-{event}-machines/datathon-{event}-read-datasets", "create"),
        ("policy", f"datathon-{event}-machines/AmazonSSMManagedInstanceCore", "create"),
        ("instance profile", f"datathon-{event}-machines", "create"),
        *[("key pair", f"datathon-{event}-{t}", "create") for t in ("alpha", "beta", "gamma")],
        *[("machine", f"datathon-{event}-{t}", "create") for t in ("alpha", "beta", "gamma")],
    ]
    by_target = {c.target: c for c in plan.changes}
    assert "g4dn.12xlarge (gpu), 200 GB gp3 encrypted, IMDSv2" in by_target[f"datathon-{event}-alpha"].reason
    assert "m5.8xlarge (cpu)" in by_target[f"datathon-{event}-beta"].reason
    # moto has no EC2 quotas: said so, with the code and the console page, not guessed
    quota = [c for c in plan.changes if str(c.component) == "quota"]
    assert {c.target.split()[0] for c in quota} == {"L-DB2E81BA", "L-1216C47A"}
    assert all(c.reason.startswith("unknown: check by hand") and "servicequotas" in c.reason for c in quota)
    assert "48 vCPUs, 4 GPU(s), 900 GB NVMe" in by_target["profile gpu: g4dn.12xlarge"].reason
    # the cost: 2 x m5.8xlarge + 1 x g4dn.12xlarge + 600 GB gp3, us-east-1 prices of the shipped table
    hour = 2 * 1.536 + 3.912 + 600 * 0.08 / 730
    assert plan.notes[0].startswith(f"cost estimate: ${hour:,.2f}/hour, ${hour * 24:,.2f}/day, "
                                    f"${hour * 72:,.2f} for the event's 3 day(s)")
    assert any(n.startswith("quota L-DB2E81BA") and "unknown: check by hand" in n for n in plan.notes)  # shown
    assert p.session.mutating_calls == {}  # planning changed nothing
    assert not ctx.state.root.exists()


def test_up_creates_by_tag_and_a_second_up_makes_no_mutating_call_and_down_leaves_nothing(aws, tmp_path):
    event = unique()
    ctx = context(tmp_path, aws_data(event, storage={"backend": "s3", "bucket": f"{event}-imaging"}))
    p, applied, _ = up(ctx)
    assert applied > 0
    made = instances(event)
    assert sorted(tags(i)[names.TEAM_TAG] for i in made) == ["alpha", "beta", "gamma"]
    assert p.session.calls["ec2.RunInstances"] == 3  # one per profile and user data; the bootstrap is per team
    sg = {g["GroupName"]: g for g in ec2().describe_security_groups(
        Filters=[{"Name": f"tag:{names.EVENT_TAG}", "Values": [event]}])["SecurityGroups"]}
    ws, db = sg[f"datathon-{event}-workspaces"], sg[f"datathon-{event}-database"]
    assert [(r["FromPort"], [x["CidrIp"] for x in r["IpRanges"]]) for r in ws["IpPermissions"]] == [
        (22, ["203.0.113.0/24"])]
    assert [(r["FromPort"], [g["GroupId"] for g in r["UserIdGroupPairs"]], r["IpRanges"])
            for r in db["IpPermissions"]] == [(5432, [ws["GroupId"]], [])]
    for i in made:
        team = tags(i)[names.TEAM_TAG]
        assert tags(i)["Name"] == f"datathon-{event}-{team}" and i["KeyName"] == f"datathon-{event}-{team}"
        assert i["MetadataOptions"]["HttpTokens"] == "required"
        assert [g["GroupId"] for g in i["NetworkInterfaces"][0]["Groups"]] == [ws["GroupId"]]
        assert i["PublicIpAddress"]
        assert i["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/datathon-{event}-machines")
        vol = ec2().describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [i["InstanceId"]]}])[
            "Volumes"][0]
        assert (vol["Size"], vol["VolumeType"], vol["Encrypted"]) == (200, "gp3", True)
        # the user data is the workspace bootstrap of this team (moto does not run it: the bootstrap tests do)
        raw = ec2().describe_instance_attribute(InstanceId=i["InstanceId"], Attribute="userData")["UserData"]["Value"]
        script = gzip.decompress(base64.b64decode(raw)).decode()
        assert script.startswith("#!/bin/bash") and f"DT_TEAM={team}\n" in script
        assert "DT_EVENT=" + event in script
        key = ctx.state.secret_path(f"aws-key-{team}.pem")
        assert stat.S_IMODE(key.stat().st_mode) == 0o600 and b"OPENSSH PRIVATE KEY" in key.read_bytes()
        assert ctx.state.load()["resources"][f"machine/{team}"]["attrs"]["instance"] == i["InstanceId"]
    # the role: the bucket's read policy and SSM, nothing account-wide
    iam = boto3.client("iam", region_name="us-east-1")
    role = f"datathon-{event}-machines"
    assert [a["PolicyName"] for a in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]] == [
        "AmazonSSMManagedInstanceCore"]
    doc = iam.get_role_policy(RoleName=role, PolicyName=f"datathon-{event}-read-datasets")["PolicyDocument"]
    assert doc == read_policy(f"{event}-imaging")
    ep = ec2().describe_vpc_endpoints(Filters=[{"Name": f"tag:{names.EVENT_TAG}", "Values": [event]}])["VpcEndpoints"]
    assert len(ep) == 1 and ep[0]["VpcEndpointType"] == "Gateway" and ep[0]["RouteTableIds"]

    again, applied, ran = up(ctx)  # a fresh provider: a fresh session and call counter
    assert applied == 0 and again.session.mutating_calls == {}
    assert all(c.action == "keep" for c in ran.changes)
    assert sum(again.session.calls.values()) < 60  # reads only, and not one per team per kind

    # someone widens the workspace group and attaches an account-wide policy by hand: up puts both back
    ec2().authorize_security_group_ingress(GroupId=ws["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8888, "ToPort": 8888, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    iam.attach_role_policy(RoleName=role, PolicyArn="arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
    fixed, applied, ran = up(ctx)
    assert sorted((str(c.component), c.action) for c in ran.pending) == [("policy", "drop"),
                                                                        ("security group", "update")]
    assert up(ctx)[1] == 0

    _, removed, left = down(ctx)
    assert left == [] and removed > 0
    assert instances(event) == []
    assert remaining(provider(ctx).session, event, keep_images=False) == ([], [])


def test_handout_has_address_ssh_tunnel_ssm_database_and_the_key_for_that_team_only(aws, tmp_path):
    event = unique()
    ctx = context(tmp_path, aws_data(event))
    p, _, _ = up(ctx)
    try:
        machines = {x.name: x for x in p.aws_parts()}["aws machines"]
        members = {m.name: m for m in people(ctx.config)}
        alpha = [i for i in instances(event) if tags(i)[names.TEAM_TAG] == "alpha"][0]
        section = machines.handout(members["alpha"], lambda s: "")[0]
        text = "\n".join([i.value for i in section.items] + [s.code for s in section.snippets])
        ip = alpha["PublicIpAddress"]
        assert f"ssh -i team-alpha-ssh-key.pem ubuntu@{ip}" in text
        assert f"-L 8888:localhost:8888 -L 15432:db.example.org:5432 ubuntu@{ip}" in text
        assert f"aws ssm start-session --region us-east-1 --target {alpha['InstanceId']}" in text
        assert "AWS-StartPortForwardingSessionToRemoteHost" in text and "port=15432" in text
        files = machines.files(members["alpha"])
        assert files["ssh-key.pem"] == ctx.state.secret_path("aws-key-alpha.pem").read_text()
        servers = json.loads(files["pgadmin-ssh-servers.json"])["Servers"]["1"]
        assert (servers["UseSSHTunnel"], servers["TunnelHost"], servers["TunnelIdentityFile"], servers["Host"]) == (
            1, ip, "team-alpha-ssh-key.pem", "db.example.org")
        assert files["ssh-key.pem"] not in json.dumps(machines.files(members["beta"]))
    finally:
        down(ctx)


def test_up_killed_midway_converges_without_duplicates(aws, tmp_path):
    """Killed after a private key was written and before its key pair was imported, then after one RunInstances
    launched a batch and before its machines carried their teams, then while the next `up` gave them their teams
    (after the second): each next `up` finishes the work, and no team ends up with two machines or none."""
    event = unique()
    ctx = context(tmp_path, aws_data(event, teams={"count": 4, "prefix": "t"}))
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    for die in ("aws.key_written@2", "aws.launched", "aws.tagged@2"):
        run = subprocess.run([sys.executable, str(REPO / "tests" / "aws_event.py"), "up", str(tmp_path),
                              "--same-user-data"], env={**env, "DATATHON_DIE_AT": die}, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == -9, (die, run.stdout, run.stderr)  # SIGKILL at the named step
    made = instances(event)
    assert len(made) == 4 and sum(1 for i in made if names.TEAM_TAG in tags(i)) == 2  # one batch, two adopted
    p, applied, ran = up(ctx, same_user_data=True)
    assert sorted(c.action for c in ran.pending if str(c.component) == "machine") == ["update"] * 2
    made = instances(event)
    assert sorted(tags(i).get(names.TEAM_TAG) for i in made) == ["t01", "t02", "t03", "t04"]
    assert p.session.calls["ec2.RunInstances"] == 0
    assert up(ctx, same_user_data=True)[0].session.mutating_calls == {}
    down(ctx)
    assert instances(event) == []


def test_stop_start_status_and_state_recover(aws, tmp_path):
    from datathon.commands.machines import run_start, run_stop
    from datathon.commands.state import run_recover
    from datathon.engine import event_status

    event = unique()
    ctx = context(tmp_path, aws_data(event, teams=[{"name": "alpha"}, {"name": "beta"}]))
    up(ctx)
    try:
        st = event_status(event, provider(ctx).aws_parts())
        rows = {r.team: r for r in st.tables["machines"]}
        assert rows["alpha"].state == "running" and rows["alpha"].type == "m5.8xlarge"
        assert rows["alpha"].uptime.endswith(" h") and rows["alpha"].cost.startswith("$")
        assert [(r.team, r.state) for r in run_stop(ctx, "alpha", yes=True)] == [("alpha", "stopped")]
        assert "erases /scratch" in ctx.console.file.getvalue()
        st = event_status(event, provider(ctx).aws_parts())
        assert not st.healthy and {r.team: r.state for r in st.tables["machines"]} == {"alpha": "stopped",
                                                                                      "beta": "running"}
        assert {c.target: c.action for c in plan_up(provider(ctx).aws_parts()).changes}[
            f"datathon-{event}-alpha"] == "keep"  # up does not undo a night's stop
        started = {r.team: r for r in run_start(ctx, None)}
        assert {t: r.state for t, r in started.items()} == {"alpha": "running", "beta": "running"}
        # a started machine's address is on its handout at once
        assert f"ubuntu@{started['alpha'].address}" in (ctx.state.handouts_dir / "team-alpha.md").read_text()
        with pytest.raises(ProvisionError, match="team nobody has no machine"):
            run_stop(ctx, "nobody", yes=True)
        # the state folder lost: rebuilt from the tags; the private keys only this machine had are named
        keys = {t: ctx.state.secret_path(f"aws-key-{t}.pem").read_bytes() for t in ("alpha", "beta")}
        import shutil
        shutil.rmtree(ctx.state.root)
        rows = dict(run_recover(ctx))
        assert rows["machine alpha"].startswith("i-")
        assert "private key missing" in rows[f"key pair datathon-{event}-beta"]
        assert set(ctx.state.load()["resources"]) >= {"machine/alpha", "machine/beta",
                                                      f"iam role/datathon-{event}-machines"}
        for t, k in keys.items():  # put back, so the test's down is the normal one
            ctx.state.secret_path(f"aws-key-{t}.pem").write_bytes(k)
    finally:
        down(ctx)


def test_a_vpc_made_by_datathon_goes_with_down(aws, tmp_path):
    event = unique()
    ctx = context(tmp_path, aws_data(event, teams=[{"name": "alpha"}], aws={"vpc": "create",
                                                                            "vpc_cidr": "10.77.0.0/16"}))
    p, _, _ = up(ctx)
    vpcs = ec2().describe_vpcs(Filters=[{"Name": f"tag:{names.EVENT_TAG}", "Values": [event]}])["Vpcs"]
    assert len(vpcs) == 1 and vpcs[0]["CidrBlock"] == "10.77.0.0/16"
    subnets = ec2().describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpcs[0]["VpcId"]]}])["Subnets"]
    assert len(subnets) >= 2 and all(s["MapPublicIpOnLaunch"] for s in subnets)
    assert instances(event)[0]["SubnetId"] in {s["SubnetId"] for s in subnets}
    assert up(ctx)[0].session.mutating_calls == {}
    _, _, left = down(ctx)
    assert left == []
    assert ec2().describe_vpcs(Filters=[{"Name": f"tag:{names.EVENT_TAG}", "Values": [event]}])["Vpcs"] == []


def test_down_fails_while_something_tagged_with_the_event_is_left(aws, tmp_path):
    from datathon.engine import apply_down, plan_down

    event = unique()
    ctx = context(tmp_path, aws_data(event, teams=[{"name": "alpha"}]))
    up(ctx)
    # made by hand and tagged with the event: an unattached volume (billable: the machines part deletes the
    # event's with the machines) and a security group no part knows
    vol = ec2().create_volume(AvailabilityZone="us-east-1a", Size=10, TagSpecifications=names.spec(
        "volume", event, "volume"))["VolumeId"]
    sg = ec2().create_security_group(GroupName=f"{event}-stray", Description="by hand",
                                     TagSpecifications=names.spec("security-group", event, "sg"))["GroupId"]
    _, left, _ = apply_down(ctx, plan_down(provider(ctx).aws_parts()))
    assert left == [f"security group {sg}"]
    assert ec2().describe_volumes(Filters=[{"Name": "volume-id", "Values": [vol]}])["Volumes"] == []
    ec2().delete_security_group(GroupId=sg)
    assert remaining(provider(ctx).session, event, keep_images=False) == ([], [])


def _public_key() -> bytes:
    from datathon.aws.keys import new_private_key, public_of

    return public_of(new_private_key(), "stray")


# -- clear messages, no traceback ---------------------------------------------------------------------------------

def _cli(folder: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / ".venv" / "bin" / "datathon"), *args, "-c", str(folder / "datathon.yaml")],
                          env=env, capture_output=True, text=True, timeout=120)


def test_a_missing_credential_is_one_clear_message(aws, tmp_path):
    context(tmp_path, aws_data(unique()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": aws}
    run = _cli(tmp_path, "plan", env=env)
    assert run.returncode == 1 and "Traceback" not in run.stderr + run.stdout
    assert "no AWS credentials were found" in run.stderr and "AWS_PROFILE" in run.stderr


def test_a_wrong_region_or_profile_is_one_clear_message(aws, tmp_path):
    context(tmp_path, aws_data(unique(), aws={"region": "us-east-7"}))
    run = _cli(tmp_path, "plan", env=dict(os.environ))
    assert run.returncode == 1 and "Traceback" not in run.stderr + run.stdout
    assert "aws.region 'us-east-7' is not an EC2 region; did you mean 'us-east-" in " ".join(run.stderr.split())
    context(tmp_path, aws_data(unique(), aws={"profile": "nosuch"}))
    run = _cli(tmp_path, "plan", env={**os.environ, "AWS_CONFIG_FILE": str(tmp_path / "none")})
    assert run.returncode == 1 and "Traceback" not in run.stderr + run.stdout
    assert "nosuch" in run.stderr and "aws.profile" in run.stderr


def test_a_wrong_region_and_refused_credentials_are_blocked_before_anything(aws, tmp_path):
    event = unique()
    ctx = context(tmp_path, aws_data(event, aws={"region": "us-east-9"}))
    p = provider(ctx)
    plan = plan_up(p.aws_parts())
    assert [(str(c.component), c.action) for c in plan.changes] == [("account", "blocked")]
    assert "us-east-9 is not an EC2 region" in plan.changes[0].reason and "fix aws.region" in plan.changes[0].reason
    with pytest.raises(ProvisionError, match="us-east-9 is not an EC2 region") as exc:
        apply_up(ctx, plan, approve=lambda c, q: True)
    assert "nothing was changed" in str(exc.value)
    assert p.session.mutating_calls == {}


def test_a_quota_shortfall_is_blocked_with_the_code_and_the_number_to_request(aws, tmp_path):
    event = unique()
    ctx = context(tmp_path, aws_data(event, teams={"count": 20, "prefix": "t"},
                                     aws={"team_profiles": {f"t{i:02d}": "gpu" for i in range(1, 5)}}))
    account = provider(ctx).aws_parts()[0]
    facts = AccountFacts(account="123456789012", arn="arn:aws:iam::123456789012:user/x",
                         types={"g4dn.12xlarge": TypeInfo(48, 4, 900), "m5.8xlarge": TypeInfo(32, 0, 0)},
                         running=[("g4dn.xlarge", False)])
    g, std = quota_for("g4dn.12xlarge"), quota_for("m5.8xlarge")
    facts.quotas = {g.code: QuotaFacts(g, 8.0, 4), std.code: QuotaFacts(std, 640.0, 0)}
    changes = {c.target.split()[0]: c for c in account.plan(facts) if str(c.component) == "quota"}
    assert changes["L-DB2E81BA"].action == "blocked"
    assert "the quota is 8 vCPUs and the event needs 192 (+ 4 in use by other machines): request 196" in \
        changes["L-DB2E81BA"].reason
    assert "--quota-code L-DB2E81BA --desired-value 196" in changes["L-DB2E81BA"].reason
    assert changes["L-1216C47A"].action == "keep" and "640 vCPUs >= 512" in changes["L-1216C47A"].reason


def test_images_are_kept_by_down_unless_asked(aws, tmp_path):
    event = unique()
    ctx = context(tmp_path, aws_data(event, teams=[{"name": "alpha"}]))
    up(ctx)
    iid = instances(event)[0]["InstanceId"]
    image = ec2().create_image(InstanceId=iid, Name=f"datathon-{event}-golden", TagSpecifications=names.spec(
        "image", event, "image"))["ImageId"]
    _, _, left = down(ctx)
    assert left == []
    p = provider(ctx)
    left, kept = remaining(p.session, event, keep_images=True)
    assert left == [] and kept == [f"image {image} (datathon-{event}-golden)"]
    plan = plan_up(p.aws_parts())  # the next up sees the image as the event's
    assert [c.action for c in plan.changes if str(c.component) == "image"] == ["keep"]
    _, removed, left = down(ctx, delete_images=True)
    assert left == [] and removed == 1
    assert ec2().describe_images(Owners=["self"], Filters=[{"Name": f"tag:{names.EVENT_TAG}",
                                                             "Values": [event]}])["Images"] == []


def test_a_team_that_leaves_the_file_loses_its_machine_and_key(aws, tmp_path):
    event = unique()
    ctx = context(tmp_path, aws_data(event, teams=[{"name": "alpha"}, {"name": "beta"}]))
    up(ctx)
    ctx = context(tmp_path, aws_data(event, teams=[{"name": "alpha"}]))
    try:
        _, _, ran = up(ctx)
        assert sorted((str(c.component), c.target.split()[0], c.action) for c in ran.pending) == [
            ("key pair", f"datathon-{event}-beta", "drop"), ("machine", f"datathon-{event}-beta", "drop")]
        assert [tags(i)[names.TEAM_TAG] for i in instances(event)] == ["alpha"]
        assert not ctx.state.secret_path("aws-key-beta.pem").exists()
        assert ctx.state.secret_path("aws-key-alpha.pem").exists()
    finally:
        down(ctx)


def test_stop_start_and_recover_on_the_local_provider_say_why_not(tmp_path):
    from datathon.commands.machines import run_stop
    from datathon.commands.state import run_recover

    data = aws_data(unique())
    data.update(provider="local", database={"server": "managed"}, teams=[{"name": "alpha"}])
    del data["aws"]
    ctx = context(tmp_path, data)
    with pytest.raises(ProvisionError, match="runs no machine per team"):
        run_stop(ctx, None, yes=True)
    with pytest.raises(ProvisionError, match="keeps nothing outside this machine"):
        run_recover(ctx)
