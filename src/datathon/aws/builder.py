"""The golden image's builder: one instance launched from a machine profile's base image with the workspace
bootstrap as user data, made into an AMI once its workspace passed the probes, then terminated.

Everything is found by tags, so an interrupted `image build` resumes: the image is named by the digest of what it
holds (datathon:image), an image with that digest is reused, and a builder of that digest still running is
adopted rather than launched again. What runs on the builder (waiting for the bootstrap, the probes, generalizing
it) is the command's: this module only makes the AWS calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import WaiterError

from datathon.aws import names
from datathon.aws.base import GONE
from datathon.aws.session import AwsSession
from datathon.config.aws import MachineProfile
from datathon.core.aws import call
from datathon.errors import ProvisionError

IMAGE_TAG = "datathon:image"  # the digest of what the image holds (workspaces.bootstrap.image_digest)
BUILDER_KIND = "image-builder"


@dataclass(frozen=True)
class EventImage:
    id: str
    name: str
    state: str  # pending, available, failed ...
    digest: str


@dataclass(frozen=True)
class Builder:
    id: str
    state: str
    public_ip: str | None


def image_name(event: str, digest: str) -> str:
    return f"{names.prefix(event)}-workspace-{digest}"


def _local_endpoint() -> bool:
    import os

    url = os.environ.get("AWS_ENDPOINT_URL", "")
    return "127.0.0.1" in url or "localhost" in url


class ImageBuilder:
    def __init__(self, session: AwsSession, event: str, *, timeout: int) -> None:
        self.session = session
        self.event = event
        self.timeout = timeout  # seconds, for each wait
        self.delay = 1 if _local_endpoint() else 15

    @property
    def ec2(self):
        return self.session.client("ec2")

    def _filter(self, **more: str) -> list[dict]:
        tags = {names.EVENT_TAG: self.event, **more}
        return [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]

    # -- finding ------------------------------------------------------------------------------------------------
    def image(self, digest: str) -> EventImage | None:
        """The event's image of this digest that is usable or on its way (a failed one is ignored)."""
        got = call("looking for the event's image", lambda: self.ec2.describe_images(
            Owners=["self"], Filters=self._filter(**{IMAGE_TAG: digest}))["Images"])
        live = [i for i in got if i.get("State") in ("available", "pending")]
        if not live:
            return None
        i = max(live, key=lambda i: i.get("CreationDate", ""))
        return EventImage(i["ImageId"], i.get("Name", ""), i["State"], digest)

    def builders(self, digest: str | None = None) -> list[Builder]:
        more = {names.KIND_TAG: BUILDER_KIND, **({IMAGE_TAG: digest} if digest else {})}
        res = call("looking for the image builder", lambda: self.ec2.describe_instances(
            Filters=self._filter(**more))["Reservations"])
        return [Builder(i["InstanceId"], i["State"]["Name"], i.get("PublicIpAddress"))
                for r in res for i in r["Instances"] if i["State"]["Name"] not in GONE]

    # -- launching ----------------------------------------------------------------------------------------------
    def launch(self, *, digest: str, spec: MachineProfile, image_id: str, root_device: str, user_data: bytes,
               subnet: str, security_group: str, instance_profile: str | None, key_name: str | None) -> Builder:
        tags = {IMAGE_TAG: digest, "Name": f"{names.prefix(self.event)}-image-builder"}
        args = dict(
            ImageId=image_id, InstanceType=spec.instance_type, MinCount=1, MaxCount=1, UserData=user_data,
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled", "InstanceMetadataTags": "enabled"},
            BlockDeviceMappings=[{"DeviceName": root_device, "Ebs": {
                "VolumeSize": spec.root_volume.size_gb, "VolumeType": spec.root_volume.type, "Encrypted": True,
                "DeleteOnTermination": True}}],
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet, "Groups": [security_group],
                                "AssociatePublicIpAddress": True, "DeleteOnTermination": True}],
            TagSpecifications=[*names.spec("instance", self.event, BUILDER_KIND, **tags),
                               *names.spec("volume", self.event, BUILDER_KIND, **tags)],
        )
        if instance_profile:
            args["IamInstanceProfile"] = {"Name": instance_profile}
        if key_name:
            args["KeyName"] = key_name
        got = call(f"launching the image builder ({spec.instance_type})",
                   lambda: self.ec2.run_instances(**args)["Instances"])
        return Builder(got[0]["InstanceId"], got[0]["State"]["Name"], got[0].get("PublicIpAddress"))

    def wait_running(self, builder: Builder) -> Builder:
        """Running and its status checks ok, within the timeout; returns it with its address."""
        try:
            for waiter in ("instance_running", "instance_status_ok"):
                self.ec2.get_waiter(waiter).wait(InstanceIds=[builder.id], WaiterConfig={
                    "Delay": self.delay, "MaxAttempts": max(1, self.timeout // self.delay)})
        except WaiterError as exc:
            raise ProvisionError(f"the image builder {builder.id} did not start within {self.timeout // 60} min: "
                                 f"{exc}", hint="see its system log in the EC2 console; `datathon image build` "
                                                "again waits anew") from None
        now = [b for b in self.builders() if b.id == builder.id]
        if not now or not now[0].public_ip:
            raise ProvisionError(f"the image builder {builder.id} has no public address",
                                 hint="the workspace subnet must give public addresses (aws.vpc)")
        return now[0]

    # -- the image ----------------------------------------------------------------------------------------------
    def create_image(self, builder: Builder, digest: str, *, description: str) -> EventImage:
        """The builder's disk as an AMI (the instance is stopped for a consistent snapshot), tagged in the same
        call; then wait until it is available."""
        name = image_name(self.event, digest)
        tags = {IMAGE_TAG: digest, "Name": name}
        iid = call(f"making image {name} from {builder.id}", lambda: self.ec2.create_image(
            InstanceId=builder.id, Name=name, Description=description[:255],
            TagSpecifications=names.spec("image", self.event, "image", **tags))["ImageId"])
        image = self.wait_available(EventImage(iid, name, "pending", digest))
        # Its snapshots carry the event too (tagged once they exist: `down` lists what is left by tag).
        got = call(f"reading image {iid}", lambda: self.ec2.describe_images(ImageIds=[iid])["Images"])
        snaps = [b["Ebs"]["SnapshotId"] for i in got for b in i.get("BlockDeviceMappings", [])
                 if b.get("Ebs", {}).get("SnapshotId")]
        if snaps:
            call(f"tagging the snapshots of {iid}", lambda: self.ec2.create_tags(
                Resources=snaps, Tags=names.tags(self.event, "image", **tags)))
        return image

    def wait_available(self, image: EventImage) -> EventImage:
        deadline = time.monotonic() + self.timeout
        while True:
            got = call(f"reading image {image.id}", lambda: self.ec2.describe_images(ImageIds=[image.id])["Images"])
            state = got[0]["State"] if got else "missing"
            if state == "available":
                return EventImage(image.id, image.name, state, image.digest)
            if state in ("failed", "deregistered", "missing", "invalid", "error") or time.monotonic() > deadline:
                raise ProvisionError(f"image {image.id} is {state}" + (" (timed out)" if state == "pending" else ""),
                                     hint="run `datathon image build` again (a failed image is ignored)")
            time.sleep(self.delay)

    def terminate(self, builder: Builder) -> None:
        call(f"terminating the image builder {builder.id}",
             lambda: self.ec2.terminate_instances(InstanceIds=[builder.id]))
        try:
            self.ec2.get_waiter("instance_terminated").wait(InstanceIds=[builder.id], WaiterConfig={
                "Delay": self.delay, "MaxAttempts": max(1, self.timeout // self.delay)})
        except WaiterError as exc:
            raise ProvisionError(f"the image builder {builder.id} did not terminate: {exc}",
                                 hint="run `datathon image build` again, or `datathon down`") from None


@dataclass
class ImageKit:
    """What `datathon image build` needs from the AWS provider, composed there."""

    builder: ImageBuilder
    prerequisites: list  # the parts `up` brings up, but the machines: applied before the builder launches
    profile_name: str
    profile: MachineProfile
    find_base: Callable[[MachineProfile], object]  # -> machines.Image | None
    network: Callable[[], tuple[str | None, str | None]]  # -> (a subnet, the workspace security group)
    endpoint: object  # core.endpoint.Endpoint of the database
    public_key: Callable[[str], str | None]  # team -> its OpenSSH public key
    key_file: Callable[[str], Path]  # team -> its private key in the state folder (0600)
    key_name: Callable[[str], str]  # team -> its EC2 key pair
    ssh_user: str  # the image's admin user (sudo), for generalizing
    instance_profile: str | None

    def base_image(self):
        got = self.find_base(self.profile)
        if got is None:
            raise ProvisionError(f"no image matches {self.profile.image!r} (owners "
                                 f"{', '.join(self.profile.image_owners)}) in region {self.builder.session.region}",
                                 hint=f"fix aws.profiles.{self.profile_name}.image")
        return got
