"""Team machines start from the event's golden image (`datathon image build`) when one was made for what the
bootstrap installs on their profile's base image; else from the base image. Against a moto server."""

from __future__ import annotations

import uuid

import boto3
import pytest
from aws_event import aws, aws_data, context, moto_url, provider, up  # noqa: F401 (fixtures)

from datathon.aws import names
from datathon.aws.builder import IMAGE_TAG
from datathon.providers.aws import golden_digest


def images_of(event: str) -> dict[str, str]:
    """team -> the image its machine was launched from."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    res = ec2.describe_instances(Filters=[{"Name": f"tag:{names.EVENT_TAG}", "Values": [event]},
                                          {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    return {names.tag_dict(i.get("Tags")).get(names.TEAM_TAG): i["ImageId"]
            for r in res["Reservations"] for i in r["Instances"]}


def golden(event: str, digest: str, base: str) -> str:
    """What `image build` leaves: an image of the event tagged with the digest of what it holds."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    builder = ec2.run_instances(ImageId=base, InstanceType="m5.large", MinCount=1, MaxCount=1)["Instances"][0]
    image = ec2.create_image(InstanceId=builder["InstanceId"], Name=f"datathon-{event}-golden", TagSpecifications=[
        {"ResourceType": "image", "Tags": [{"Key": names.EVENT_TAG, "Value": event},
                                           {"Key": IMAGE_TAG, "Value": digest}]}])["ImageId"]
    ec2.terminate_instances(InstanceIds=[builder["InstanceId"]])
    return image


def test_machines_start_from_the_golden_image_of_their_base(aws, tmp_path):
    event = f"gi{uuid.uuid4().hex[:6]}"
    ctx = context(tmp_path / "one", aws_data(event, teams=[{"name": "alpha"}]))
    p = provider(ctx, same_user_data=True)
    machines = p._by_name(p.aws_parts())["aws machines"]
    base = machines.find_base_image(ctx.config.aws.profiles["cpu"])
    assert machines.find_image(ctx.config.aws.profiles["cpu"]).id == base.id  # no golden image yet

    other = golden(event, "0" * 16, base.id)  # an image of something else: never taken
    made = golden(event, golden_digest(ctx.config, base.id), base.id)
    up(ctx, same_user_data=True)
    assert images_of(event) == {"alpha": made} and made != other

    later = f"gj{uuid.uuid4().hex[:6]}"  # another event: the image is this event's alone
    ctx2 = context(tmp_path / "two", aws_data(later, teams=[{"name": "beta"}]))
    up(ctx2, same_user_data=True)
    assert images_of(later) == {"beta": base.id}
