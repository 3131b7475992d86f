"""Everything in the region (and IAM) still tagged with the event: what `down` must leave empty. The tagging API's
get_resources is asked first; then one describe per kind it may not cover (key pairs, security groups, VPC
pieces, endpoints, images, IAM). Terminated machines and deleted things are not counted."""

from __future__ import annotations

from botocore.exceptions import ClientError

from datathon.aws import names
from datathon.aws.session import AwsSession
from datathon.core.aws import call, error_code


def remaining(session: AwsSession, event: str, *, keep_images: bool) -> tuple[list[str], list[str]]:
    """(what is left and billable or in the way, images kept on purpose)."""
    ec2 = session.client("ec2")
    flt = [{"Name": f"tag:{names.EVENT_TAG}", "Values": [event]}]
    found: dict[str, str] = {}
    tagging = session.client("resourcegroupstaggingapi")
    pages = call("listing what is tagged with the event", lambda: list(
        tagging.get_paginator("get_resources").paginate(TagFilters=[{"Key": names.EVENT_TAG, "Values": [event]}])))
    for page in pages:
        for m in page.get("ResourceTagMappingList", []):
            arn = m["ResourceARN"]
            found[arn.rsplit("/", 1)[-1].rsplit(":", 1)[-1]] = arn
    live_instances = {i["InstanceId"] for r in call("listing the event's machines", lambda: ec2.describe_instances(
        Filters=flt)["Reservations"]) for i in r["Instances"] if i["State"]["Name"] not in ("terminated",)}
    for rid in [r for r in found if r.startswith("i-")]:
        if rid not in live_instances:
            del found[rid]  # terminated: no longer billed (the API lists them for an hour)
    checks = [
        ("volume", lambda: [v["VolumeId"] for v in ec2.describe_volumes(Filters=flt)["Volumes"]]),
        ("key pair", lambda: [k["KeyName"] for k in ec2.describe_key_pairs(Filters=flt)["KeyPairs"]]),
        ("security group", lambda: [g["GroupId"] for g in ec2.describe_security_groups(Filters=flt)["SecurityGroups"]]),
        ("endpoint", lambda: [e["VpcEndpointId"] for e in ec2.describe_vpc_endpoints(Filters=flt)["VpcEndpoints"]
                              if e.get("State", "").lower() not in ("deleted", "deleting")]),
        ("vpc", lambda: [v["VpcId"] for v in ec2.describe_vpcs(Filters=flt)["Vpcs"]]),
        ("subnet", lambda: [s["SubnetId"] for s in ec2.describe_subnets(Filters=flt)["Subnets"]]),
        ("internet gateway", lambda: [g["InternetGatewayId"] for g in ec2.describe_internet_gateways(
            Filters=flt)["InternetGateways"]]),
        ("route table", lambda: [t["RouteTableId"] for t in ec2.describe_route_tables(Filters=flt)["RouteTables"]]),
        ("machine", lambda: sorted(live_instances)),
    ]
    left: list[str] = []
    seen: set[str] = set()
    for kind, fn in checks:
        for rid in call(f"listing the event's {kind}s", fn):
            seen.add(rid)
            left.append(f"{kind} {rid}")
    images = call("listing the event's images", lambda: ec2.describe_images(Owners=["self"], Filters=flt)["Images"])
    kept = []
    for img in images:
        seen.add(img["ImageId"])
        for b in img.get("BlockDeviceMappings", []):
            if b.get("Ebs", {}).get("SnapshotId"):
                seen.add(b["Ebs"]["SnapshotId"])
        (kept if keep_images else left).append(f"image {img['ImageId']} ({img.get('Name', '')})")
    for rid, arn in sorted(found.items()):
        if rid not in seen and not arn.startswith("arn:aws:s3:::"):  # the bucket is the storage part's to prove
            left.append(f"{arn}")
    role = names.role_name(event)
    iam = session.client("iam")
    for what, fn in (("iam role", lambda: iam.get_role(RoleName=role)),
                     ("instance profile", lambda: iam.get_instance_profile(InstanceProfileName=role))):
        try:
            call(f"looking for {what} {role}", fn)
            left.append(f"{what} {role}")
        except Exception as exc:  # NoSuchEntity: gone, as it should be
            cause = exc.__cause__
            if not (isinstance(cause, ClientError) and error_code(cause) == "NoSuchEntity"):
                raise
    return left, kept
