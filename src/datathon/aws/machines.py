"""A machine per team: found by its tags (datathon:event, datathon:team), launched in batches (one RunInstances per
profile and user data, MinCount = MaxCount = the teams missing one), with IMDSv2 required, an encrypted root
volume sized from the profile, the team's key pair, the machines' role and the workspace security group.

A batch is tagged with the event, the profile and its user data's hash at launch (in the same call), then each
instance gets its team. An `up` killed in between leaves instances of the event without a team: the next `up`
gives them to the teams of the same profile and user data that lack a machine, so nothing is launched twice."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from botocore.exceptions import ClientError, WaiterError

from datathon.aws import names
from datathon.aws.base import GONE, AwsPart
from datathon.aws.handout import Access, machine_section, pgadmin_json
from datathon.aws.session import AwsSession
from datathon.config.aws import MachineProfile
from datathon.core import faults
from datathon.core.aws import error_code
from datathon.core.handout import Section
from datathon.core.part import PartStatus, Purpose
from datathon.core.plan import Change, Component
from datathon.core.status import ComponentStatus
from datathon.errors import ProvisionError


KEY_SUFFIX = "ssh-key.pem"


@dataclass
class Instance:
    id: str
    team: str | None
    profile: str | None
    batch: str | None
    state: str
    type: str
    public_ip: str | None
    private_ip: str | None
    launched: datetime | None
    index: int = 0
    status_ok: bool | None = None  # the status checks (None: not asked)
    kind: str = "machine"  # datathon:kind; another kind of the event's instances (the image builder) is not a team's


@dataclass
class Image:
    id: str
    name: str
    root_device: str


@dataclass
class MachineFacts:
    instances: list[Instance] = field(default_factory=list)
    images: dict[str, Image | None] = field(default_factory=dict)  # profile -> the image it launches from
    subnets: list[str] = field(default_factory=list)
    security_group: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def of_team(self, team: str) -> list[Instance]:
        return [i for i in self.instances if i.team == team]


@dataclass(frozen=True)
class Wanted:
    team: str
    profile: str
    spec: MachineProfile
    user_data: str | bytes

    @property
    def batch(self) -> str:
        """Teams that may share one RunInstances: the same profile and the same user data."""
        data = self.user_data.encode() if isinstance(self.user_data, str) else self.user_data
        return hashlib.sha256(self.profile.encode() + b"\0" + data).hexdigest()[:16]


@dataclass
class MachineRow:
    team: str
    instance: str
    state: str
    address: str
    type: str
    uptime: str
    cost: str

    @property
    def healthy(self) -> bool:
        return self.state == "running"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def uptime_hours(i: Instance, now: datetime) -> float:
    if i.state != "running" or i.launched is None:
        return 0.0
    return max(0.0, (now - i.launched).total_seconds() / 3600)


class MachinesPart(AwsPart):
    name = "aws machines"
    after = ("aws network", "aws iam", "aws keys")

    def __init__(self, session: AwsSession, event: str, *, wanted: list[tuple[str, str, MachineProfile]],
                 user_data: Callable[[str], str | bytes], boot_timeout: int, record: Callable[..., object],
                 price: Callable[[str, float], float | None]) -> None:
        super().__init__(session, event)
        self._wanted = wanted
        self._user_data = user_data  # team -> the script the machine runs at first boot
        self.boot_timeout = boot_timeout
        self.record = record  # state.record
        self.price = price  # (instance type, hours) -> USD, None when unknown
        self.public_key: Callable[[str], str | None] = lambda team: None  # team -> its OpenSSH public key
        self.private_key: Callable[[str], bytes | None] = lambda team: None  # team -> its private key (0600)
        self.ssh_user = "ubuntu"
        # (host, port, databases, sslmode) for the handouts, asked when they are written: an RDS instance made
        # in the same run has its address only then
        self.database: Callable[[], tuple[str | None, int, tuple[str, ...], str]] = lambda: (None, 5432, (), "require")
        self._seen: dict[str, Instance] | None = None
        self.find_base_image = self.find_image  # the profile's own image (the provider may prefer a golden one)
        self._launch_cache: dict[str, object] = {}
        self._pending: list[str] = []  # launched (or adopted) by this run, not waited for yet

    @cached_property
    def wanted(self) -> list[Wanted]:
        return [Wanted(t, p, spec, self._user_data(t)) for t, p, spec in self._wanted]

    # -- observe ------------------------------------------------------------------------------------------------
    def observe(self, purpose: Purpose = "plan") -> MachineFacts:
        self.__dict__.pop("wanted", None)  # the user data anew: what it carries (the database's address) may be new
        f = MachineFacts()
        f.instances = self.instances()
        if purpose == "status":
            live = [i.id for i in f.instances if i.state == "running"]
            if live:
                st = self.call("reading status checks", lambda: self.ec2.describe_instance_status(
                    InstanceIds=live)["InstanceStatuses"])
                ok = {s["InstanceId"] for s in st if s.get("InstanceStatus", {}).get("Status") == "ok"
                      and s.get("SystemStatus", {}).get("Status") == "ok"}
                for i in f.instances:
                    i.status_ok = i.id in ok if i.state == "running" else None
        if purpose != "plan":
            return f
        teams_of = {t for t, *_ in self._wanted}
        if any(not f.of_team(t) for t in teams_of):  # something to launch: find images and the network
            profiles = {p: spec for _, p, spec in self._wanted}
            for p, spec in sorted(profiles.items()):
                f.images[p] = self.find_image(spec)
            f.subnets, f.security_group = self._network()
        return f

    def instances(self, ids: list[str] | None = None) -> list[Instance]:
        """The event's machines that are not terminated (or only those of `ids`)."""
        extra = {"InstanceIds": ids} if ids else {}
        reservations = self.pages(self.ec2, "describe_instances", "Reservations", "listing the event's machines",
                                  Filters=self.event_filter(), **extra)
        out = []
        for r in reservations:
            for i in r["Instances"]:
                if i["State"]["Name"] in GONE:
                    continue
                tags = names.tag_dict(i.get("Tags"))
                out.append(Instance(i["InstanceId"], tags.get(names.TEAM_TAG), tags.get(names.PROFILE_TAG),
                                    tags.get(names.BATCH_TAG), i["State"]["Name"], i["InstanceType"],
                                    i.get("PublicIpAddress"), i.get("PrivateIpAddress"), i.get("LaunchTime"),
                                    i.get("AmiLaunchIndex", 0), kind=tags.get(names.KIND_TAG, "machine")))
        return sorted(out, key=lambda i: (i.team or "~", i.launched or datetime.min.replace(tzinfo=UTC), i.index))

    def find_image(self, spec: MachineProfile) -> Image | None:
        ec2 = self.ec2
        if spec.image_id:
            got = self.maybe(lambda: ec2.describe_images(ImageIds=[spec.image_id])["Images"],
                             "InvalidAMIID.NotFound", "InvalidAMIID.Malformed") or []
        else:
            got = self.call(f"finding image {spec.image!r}", lambda: ec2.describe_images(
                Owners=spec.image_owners, Filters=[{"Name": "name", "Values": [spec.image]},
                                                   {"Name": "state", "Values": ["available"]}])["Images"])
        if not got:
            return None
        newest = max(got, key=lambda i: i.get("CreationDate", ""))
        return Image(newest["ImageId"], newest.get("Name", ""), newest.get("RootDeviceName", "/dev/sda1"))

    def _network(self) -> tuple[list[str], str | None]:
        ec2 = self.ec2
        groups = self.call("finding the workspace security group", lambda: ec2.describe_security_groups(
            Filters=[*self.event_filter(), {"Name": "group-name", "Values": [names.workspace_sg(self.event)]}])[
            "SecurityGroups"])
        if not groups:
            return [], None
        vpc = groups[0]["VpcId"]
        subnets = self.call("listing subnets", lambda: ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"])
        ours = [s for s in subnets if names.tag_dict(s.get("Tags")).get(names.EVENT_TAG) == self.event]
        use = ours or [s for s in subnets if s.get("DefaultForAz")] or subnets
        return [s["SubnetId"] for s in sorted(use, key=lambda s: s["AvailabilityZone"])], groups[0]["GroupId"]

    # -- plan (pure) ---------------------------------------------------------------------------------------------
    def plan(self, f: MachineFacts) -> list[Change]:
        out: list[Change] = []
        wanted = self.wanted
        by_batch: dict[str, list[Wanted]] = {}
        f = MachineFacts([i for i in f.instances if i.kind == "machine"], f.images, f.subnets, f.security_group, f.now)
        spare = [i for i in f.instances if i.team is None]  # launched by an `up` killed before it tagged them
        for w in wanted:
            mine = f.of_team(w.team)
            name = names.machine_name(self.event, w.team)
            if mine:
                i = mine[0]
                why = f"{i.state}, {i.type}" + (f" at {i.public_ip}" if i.public_ip else "")
                if i.state == "stopped":
                    why += " (`datathon start` starts it)"
                if i.type != w.spec.instance_type:
                    why += f"; the profile now says {w.spec.instance_type}: terminate it and run up to relaunch"
                out.append(Change(Component.MACHINE, name, "keep", why))
                for extra in mine[1:]:
                    out.append(Change(Component.MACHINE, f"{name} {extra.id}", "drop", "a second machine of the team",
                                      destructive=True, run=lambda x=extra.id: self._terminate([x])))
                continue
            twin = next((i for i in spare if i.batch == w.batch), None)
            if twin is not None:
                spare.remove(twin)
                out.append(Change(Component.MACHINE, name, "update", f"{twin.id} was launched for the event by an "
                                  "interrupted up: it becomes this team's",
                                  run=lambda i=twin, t=w.team: self._adopt(i, t)))
                continue
            by_batch.setdefault(w.batch, []).append(w)
        for batch, ws in by_batch.items():
            spec = ws[0].spec
            image = f.images.get(ws[0].profile)
            if ws[0].profile in f.images and image is None:
                out += [Change(Component.MACHINE, names.machine_name(self.event, w.team), "blocked",
                               f"no image matches {spec.image!r} (owners {', '.join(spec.image_owners)}) in the region")
                        for w in ws]
                continue
            launch = _Launch(self, ws)
            for w in ws:
                out.append(Change(Component.MACHINE, names.machine_name(self.event, w.team), "create",
                                  f"{spec.instance_type} ({w.profile}), {spec.root_volume.size_gb} GB "
                                  f"{spec.root_volume.type} encrypted, IMDSv2" + (", spot" if spec.spot else "")
                                  + (f", from {image.id}" if image else "") + f"; {len(ws)} in one launch",
                                  run=launch.run))
        # Every launch of the run goes first; the last one then waits for all of them together (status checks
        # take minutes: waiting launch by launch would take that much per team).
        made = [c for c in out if c.action in ("create", "update") and c.run is not None]
        if made:
            last = made[-1].run
            made[-1].run = lambda: (last(), self._wait_pending())
        teams = {w.team for w in wanted}
        for i in f.instances:
            if i.team is not None and i.team not in teams:
                out.append(Change(Component.MACHINE, f"{names.machine_name(self.event, i.team)} {i.id}", "drop",
                                  "its team left the event file (its disks go with it)", destructive=True,
                                  run=lambda x=i.id: self._terminate([x])))
        for i in spare:
            out.append(Change(Component.MACHINE, i.id, "drop", "launched by an interrupted up and not needed",
                              destructive=True, run=lambda x=i.id: self._terminate([x])))
        return out

    # -- apply -----------------------------------------------------------------------------------------------
    def _adopt(self, i: Instance, team: str) -> None:
        self._tag_team(i.id, team)
        self._pending.append(i.id)

    def _wait_pending(self) -> None:
        ids, self._pending = self._pending, []
        if ids:
            self._wait(ids)

    def _tag_team(self, iid: str, team: str) -> None:
        tags = [{"Key": names.TEAM_TAG, "Value": team}, {"Key": "Name", "Value": names.machine_name(self.event, team)}]
        key = self.public_key(team)
        if key:  # a batch boots without an EC2 key: the bootstrap installs this one (read from the tags)
            tags.append({"Key": names.SSH_KEY_TAG, "Value": key})
        self.call(f"tagging {iid} for team {team}", lambda: self.ec2.create_tags(Resources=[iid], Tags=tags))
        faults.point("aws.tagged")

    def launch(self, ws: list[Wanted]) -> list[str]:
        """One RunInstances for teams of one profile and user data; then each instance gets its team."""
        f = MachineFacts()
        # the network and images are looked up once per run at apply time (the parts before this one are done)
        if "network" not in self._launch_cache:
            self._launch_cache["network"] = self._network()
        f.subnets, f.security_group = self._launch_cache["network"]
        if ws[0].profile not in self._launch_cache:
            self._launch_cache[ws[0].profile] = self.find_image(ws[0].spec)
        image = self._launch_cache[ws[0].profile]
        if image is None or not f.subnets or f.security_group is None:
            raise ProvisionError(f"cannot launch the machines of profile {ws[0].profile}: "
                                 + ("no image" if image is None else "the network is not there"),
                                 hint="run `datathon plan` to see what is missing")
        spec = ws[0].spec
        tags = {names.PROFILE_TAG: ws[0].profile, names.BATCH_TAG: ws[0].batch}
        if len(ws) == 1:  # a batch of one carries its team from the start
            tags |= {names.TEAM_TAG: ws[0].team, "Name": names.machine_name(self.event, ws[0].team)}
        args = dict(
            ImageId=image.id, InstanceType=spec.instance_type, MinCount=len(ws), MaxCount=len(ws),
            KeyName=names.key_name(self.event, ws[0].team) if len(ws) == 1 else None,
            UserData=ws[0].user_data,
            IamInstanceProfile={"Name": names.role_name(self.event)},
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled", "InstanceMetadataTags": "enabled"},
            BlockDeviceMappings=[{"DeviceName": image.root_device, "Ebs": {
                "VolumeSize": spec.root_volume.size_gb, "VolumeType": spec.root_volume.type, "Encrypted": True,
                "DeleteOnTermination": True}}],
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": f.subnets[0], "Groups": [f.security_group],
                                "AssociatePublicIpAddress": True, "DeleteOnTermination": True}],
            TagSpecifications=[*names.spec("instance", self.event, "machine", **tags),
                               *names.spec("volume", self.event, "volume", **tags)],
        )
        if args["KeyName"] is None:
            # One key per team but one launch per batch: the batch boots with no EC2 key; the user data installs
            # each team's public key from the instance's tags (see workspaces.bootstrap).
            del args["KeyName"]
        if spec.spot:
            args["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
                "SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"}}
        got = self._run_instances(args, ws)
        ids = [i["InstanceId"] for i in sorted(got, key=lambda i: i.get("AmiLaunchIndex", 0))]
        faults.point("aws.launched")
        if len(ws) > 1:
            for iid, w in zip(ids, ws, strict=True):
                self._tag_team(iid, w.team)
        self._pending += ids
        return ids

    def _run_instances(self, args: dict, ws: list[Wanted]) -> list[dict]:
        # A role's instance profile takes a few seconds to be usable after it is made (IAM is eventually
        # consistent): that one error is waited out, within a bound; any other is reported.
        deadline = time.monotonic() + 60
        while True:
            try:
                return self.call(f"launching {len(ws)} machine(s) of profile {ws[0].profile}",
                                 lambda: self.ec2.run_instances(**args)["Instances"])
            except ProvisionError as exc:
                cause = exc.__cause__
                if (isinstance(cause, ClientError) and error_code(cause) == "InvalidParameterValue"
                        and "instance profile" in str(cause).lower() and time.monotonic() < deadline):
                    time.sleep(5)
                    continue
                raise

    def _wait(self, ids: list[str]) -> None:
        """Running, then status checks ok, within boot_timeout; then the addresses are recorded."""
        delay = 1 if _local_endpoint() else 15
        attempts = max(1, self.boot_timeout // delay)
        try:
            for waiter in ("instance_running", "instance_status_ok"):
                self.ec2.get_waiter(waiter).wait(InstanceIds=ids, WaiterConfig={"Delay": delay,
                                                                               "MaxAttempts": attempts})
        except WaiterError as exc:
            raise ProvisionError(f"the machines {', '.join(ids)} did not pass their status checks within "
                                 f"{self.boot_timeout // 60} min: {exc}",
                                 hint="see the EC2 console (system log) for them; `datathon up` again waits "
                                      "anew, `datathon down` removes them") from None
        for i in self.instances(ids):
            if i.team:
                self.record("machine", i.team, created=True, instance=i.id, type=i.type, public_ip=i.public_ip,
                            private_ip=i.private_ip, region=self.session.region)

    def _terminate(self, ids: list[str]) -> None:
        if not ids:
            return
        self.call(f"terminating {', '.join(ids)}", lambda: self.ec2.terminate_instances(InstanceIds=ids))
        try:
            self.ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig={
                "Delay": 2 if _local_endpoint() else 10, "MaxAttempts": 90})
        except WaiterError as exc:
            raise ProvisionError(f"{', '.join(ids)} did not terminate: {exc}", hint="run the command again") from None

    # -- stop / start ------------------------------------------------------------------------------------------
    def select(self, team: str | None) -> list[Instance]:
        got = [i for i in self.instances() if i.team and (team is None or i.team == team)]
        if team is not None and not got:
            raise ProvisionError(f"team {team} has no machine", hint="`datathon status` lists the machines")
        return got

    def stop(self, team: str | None) -> list[Instance]:
        todo = [i for i in self.select(team) if i.state in ("running", "pending")]
        if todo:
            ids = [i.id for i in todo]
            self.call("stopping machines", lambda: self.ec2.stop_instances(InstanceIds=ids))
            self.ec2.get_waiter("instance_stopped").wait(InstanceIds=ids, WaiterConfig={
                "Delay": 2 if _local_endpoint() else 15, "MaxAttempts": max(1, self.boot_timeout // 15)})
        return self.select(team)

    def start(self, team: str | None) -> list[Instance]:
        todo = [i for i in self.select(team) if i.state in ("stopped", "stopping")]
        if todo:
            ids = [i.id for i in todo]
            self.call("starting machines", lambda: self.ec2.start_instances(InstanceIds=ids))
            self._wait(ids)  # a started machine has a new public address: recorded
        return self.select(team)

    # -- status, teardown -----------------------------------------------------------------------------------------
    def rows(self, f: MachineFacts) -> list[MachineRow]:
        rows = []
        for w in self._wanted:
            team = w[0]
            mine = f.of_team(team)
            if not mine:
                rows.append(MachineRow(team, "", "missing", "", w[2].instance_type, "", ""))
                continue
            i = mine[0]
            hours = uptime_hours(i, f.now)
            cost = self.price(i.type, hours)
            state = i.state if i.status_ok is not False else "running (checks not ok)"
            rows.append(MachineRow(team, i.id, state, i.public_ip or i.private_ip or "", i.type,
                                   f"{hours:.1f} h" if i.state == "running" else "",
                                   f"${cost:,.2f}" if cost is not None else "unknown"))
        return rows

    def status(self, f: MachineFacts) -> PartStatus:
        rows = self.rows(f)
        running = sum(r.state == "running" for r in rows)
        return PartStatus([ComponentStatus("machines", "team machines", f"{running}/{len(rows)} running",
                                           healthy=running == len(rows))], {"machines": rows})

    def teardown(self, f: MachineFacts) -> list[Change]:
        live = [i for i in f.instances]
        if not live:
            return []
        what = ", ".join(f"{i.team or 'untagged'} {i.id}" for i in live)
        return [Change(Component.MACHINE, f"{len(live)} machine(s)", "drop", f"the event ends: {what}",
                       destructive=True, run=lambda: self._teardown([i.id for i in live]))]

    def _teardown(self, ids: list[str]) -> None:
        self._terminate(ids)
        # root volumes go with their machine; one kept by mistake (DeleteOnTermination off) is the event's too
        vols = self.call("listing the event's volumes", lambda: self.ec2.describe_volumes(
            Filters=[*self.event_filter(), {"Name": "status", "Values": ["available"]}])["Volumes"])
        for v in vols:
            self.call(f"deleting volume {v['VolumeId']}", lambda v=v: self.ec2.delete_volume(VolumeId=v["VolumeId"]))

    def leftovers(self) -> list[str]:
        return [f"machine {i.id} ({i.team or 'no team'}, {i.state})" for i in self.instances()]

    def handout(self, member, secret) -> list[Section]:
        a = _access(self, member)
        return [machine_section(a)] if a else []

    def roster(self, member, secret) -> dict[str, str]:
        a = _access(self, member)
        return {"machine": a.instance, "address": a.address or ""} if a else {}

    def files(self, member) -> dict[str, str]:
        """The team's private key (0600, this team's folder only) and pgAdmin's servers.json with the tunnel."""
        a = _access(self, member)
        if a is None:
            return {}
        out = {}
        key = self.private_key(member.name)
        if key:
            out[KEY_SUFFIX] = key.decode()
        if a.db_host:
            out["pgadmin-ssh-servers.json"] = pgadmin_json(a)
        return out


# -- handouts ----------------------------------------------------------------------------------------------------
def _access(part: MachinesPart, member) -> Access | None:
    if member.kind != "team" or member.name not in {t for t, *_ in part._wanted}:
        return None
    if part._seen is None:  # one read for every handout of the run
        part._seen = {i.team: i for i in part.instances() if i.team}
    i = part._seen.get(member.name)
    host, port, dbs, sslmode = part.database()
    return Access(team=member.name, login=member.login, instance=i.id if i else "(not launched yet)",
                  address=i.public_ip if i else None, key_file=f"team-{member.name}-{KEY_SUFFIX}",
                  ssh_user=part.ssh_user, region=part.session.region, db_host=host, db_port=port, databases=dbs,
                  sslmode=sslmode)


class _Launch:
    """The teams of one batch: the first of their changes launches all of them, the others find it done."""

    def __init__(self, part: MachinesPart, ws: list[Wanted]) -> None:
        self.part, self.ws, self.ids = part, ws, None

    def run(self) -> None:
        if self.ids is None:
            self.ids = self.part.launch(self.ws)


def _local_endpoint() -> bool:
    """A moto server or LocalStack (AWS_ENDPOINT_URL on this machine): poll fast."""
    import os

    url = os.environ.get("AWS_ENDPOINT_URL", "")
    return "127.0.0.1" in url or "localhost" in url
