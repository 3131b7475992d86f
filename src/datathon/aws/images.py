"""The event's machine images (made by `datathon image build`, tagged with the event): `down` keeps them unless
asked (`--delete-images`: an image takes an hour to build and costs cents a day), then deregisters each and deletes
its snapshots."""

from __future__ import annotations

from dataclasses import dataclass

from datathon.aws.base import AwsPart
from datathon.aws.session import AwsSession
from datathon.core.part import PartStatus, Purpose
from datathon.core.plan import Change, Component
from datathon.core.status import ComponentStatus


@dataclass(frozen=True)
class ImageFacts:
    images: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (id, name, snapshot ids)


class ImagesPart(AwsPart):
    name = "aws images"
    after = ("aws account",)

    def __init__(self, session: AwsSession, event: str, *, delete: bool = False) -> None:
        super().__init__(session, event)
        self.delete = delete

    def observe(self, purpose: Purpose = "plan") -> ImageFacts:
        got = self.call("listing the event's images", lambda: self.ec2.describe_images(
            Owners=["self"], Filters=self.event_filter())["Images"])
        return ImageFacts(tuple(sorted((i["ImageId"], i.get("Name", ""), tuple(
            b["Ebs"]["SnapshotId"] for b in i.get("BlockDeviceMappings", []) if b.get("Ebs", {}).get("SnapshotId")))
            for i in got)))

    def plan(self, f: ImageFacts) -> list[Change]:
        return [Change(Component.IMAGE, f"{iid} {name}", "keep", "the event's image (`datathon image build`)")
                for iid, name, _ in f.images]

    def status(self, f: ImageFacts) -> PartStatus:
        return PartStatus([ComponentStatus("image", f"{iid}", "ok", name) for iid, name, _ in f.images])

    def teardown(self, f: ImageFacts) -> list[Change]:
        if not self.delete:
            return [Change(Component.IMAGE, f"{iid} {name}", "keep", "kept: `datathon down --delete-images` "
                           "removes it") for iid, name, _ in f.images]
        return [Change(Component.IMAGE, f"{iid} {name}", "drop", "--delete-images", destructive=True,
                       run=lambda i=iid, s=snaps: self._delete(i, s)) for iid, name, snaps in f.images]

    def _delete(self, image: str, snapshots: tuple[str, ...]) -> None:
        self.call(f"deregistering image {image}", lambda: self.ec2.deregister_image(ImageId=image))
        for s in snapshots:
            self.call(f"deleting snapshot {s}", lambda s=s: self.ec2.delete_snapshot(SnapshotId=s))

    def leftovers(self) -> list[str]:
        return []  # the account part lists what is still tagged (images kept on purpose are said apart)
