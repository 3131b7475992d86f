"""The `aws` provider: a machine per team in one AWS region, with its network, key pair and role, found by tags.

The database is an RDS instance datathon makes (`database.server: rds`, reached through an SSH tunnel) or a server
that exists (`external`), the imaging store is the storage part on S3, and the team workspaces are the
machines (JupyterLab on each, reached through an SSH or SSM tunnel). This module composes the AWS parts and hands
each what it needs from elsewhere: the bucket's read policy for the machines' role, the user data a machine boots
with (the workspace bootstrap), the database's address for the handouts."""

from __future__ import annotations

import difflib
import hashlib
from functools import cached_property

from datathon.aws.session import AwsSession
from datathon.core.part import Part
from datathon.core.roster import login_role
from datathon.database.parts import DataPart, ServerPart
from datathon.database.server import DatabaseServer
from datathon.providers.base import Provider


def golden_digest(config, base_image: str) -> str:
    """A golden image's identity: what the bootstrap installs (workspaces.bootstrap.image_digest) and the base
    image it starts from. `image build` tags its image with it; `up` launches team machines from the image that
    carries the digest of their own base."""
    from datathon.workspaces.bootstrap import image_digest

    return hashlib.sha256(f"{image_digest(config)}\0{base_image}".encode()).hexdigest()[:16]


class AwsProvider(Provider):
    name = "aws"

    @property
    def aws(self):
        return self.ctx.config.aws

    @cached_property
    def session(self) -> AwsSession:
        """One session per command: every part's calls go through it (and are counted)."""
        return AwsSession(region=self.aws.region, profile=self.aws.profile)

    @cached_property
    def _database_server(self) -> DatabaseServer:
        if self.ctx.config.database.server == "rds":
            return self._rds()
        from datathon.database.external import ExternalServer

        return ExternalServer(self.ctx)  # the config allows `rds` or `external` under provider aws

    def _rds_size(self) -> tuple[str, int] | None:
        """The RDS instance's class today and its storage, for the cost estimate (None: no RDS)."""
        db = self.ctx.config.database
        if db.server != "rds":
            return None
        from datetime import UTC, datetime

        from datathon.config.rds import RdsSettings

        rds = db.rds or RdsSettings()
        return rds.class_on(datetime.now(UTC).date()), rds.storage_gb

    def _rds(self) -> DatabaseServer:
        """The RDS instance, handed the network part's database group and subnets and the price table."""
        from datathon.aws import names, pricing
        from datathon.aws.network import NetworkPart
        from datathon.database.rds import RdsServer
        from datathon.database.rds_plan import NetworkRef

        cfg, event = self.aws, self.ctx.config.event
        network = NetworkPart(self.session, event, vpc=cfg.vpc, vpc_cidr=cfg.vpc_cidr, ssh_from=cfg.ssh_from)

        def where() -> NetworkRef | None:
            f = network.observe("status")
            group = f.groups.get(names.database_sg(event))
            if group is None or not group.id or len(f.subnets) < 2:  # RDS wants subnets in two zones
                return None
            return NetworkRef(security_group_ids=(group.id,), subnet_ids=tuple(sorted(f.subnets.values())))

        def price(instance_class: str) -> float | None:
            region = pricing.table().region(cfg.region) or {}
            return region.get("rds_postgres_hour", {}).get(instance_class)

        return RdsServer(self.ctx, client=self.session.client, network=where, price=price,
                         tags=names.tags(event, "rds"))

    def database_server(self) -> DatabaseServer:
        return self._database_server

    def object_store(self):
        if self.ctx.config.storage is None:
            return None
        from datathon.storage import get_store

        return get_store(self.ctx)

    def user_data(self, team: str) -> bytes:
        """What a team's machine runs at first boot: the same workspace bootstrap the local provider uses (gzipped:
        EC2 takes 16 KB), with the database where this provider says it is."""
        from datathon.workspaces.bootstrap import render_user_data, user_data_bytes

        script = render_user_data(self.ctx.config, team, endpoint=self.database_server().endpoint())
        return user_data_bytes(script)

    def check_credentials(self) -> tuple[bool, str]:
        """Before any part is planned, without a call: credentials found, and a region EC2 has (botocore's own
        list). Refused credentials and a region not enabled for the account are the account part's blocked
        changes (they need a call)."""
        from botocore.exceptions import ProfileNotFound

        from datathon.core.aws import partition

        try:
            found = self.session.has_credentials()
            known = self.session.boto.get_available_regions("ec2", partition_name=partition(self.aws.region))
        except ProfileNotFound as exc:
            return False, f"{exc}: check aws.profile (or AWS_PROFILE) against ~/.aws/config"
        if not found:
            return False, ("no AWS credentials were found: set AWS_PROFILE (or aws.profile in the event file), or "
                           "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on a machine with an instance role")
        if known and self.aws.region not in known:
            near = difflib.get_close_matches(self.aws.region, known, n=1)
            return False, (f"aws.region {self.aws.region!r} is not an EC2 region"
                           + (f"; did you mean {near[0]!r}?" if near else "") + " (fix it in the event file)")
        return True, ""

    # -- the AWS parts ------------------------------------------------------------------------------------------
    def wanted(self) -> list[tuple[str, str, object]]:
        """(team, profile name, profile) for every team."""
        out = []
        for t in self.ctx.config.team_list:
            p = self.aws.profile_of(t.name, t.gpu_count)
            out.append((t.name, p, self.aws.profiles[p]))
        return out

    def _read_policies(self) -> dict[str, dict]:
        storage = self.ctx.config.storage
        if storage is None or storage.backend != "s3":
            return {}
        from datathon.storage.policies import read_policy, read_policy_name

        return {read_policy_name(self.ctx.config.event): read_policy(storage.bucket, storage.prefix,
                                                                     region=storage.region)}

    def aws_parts(self, *, delete_images: bool = False) -> list[Part]:
        from datathon.aws import pricing
        from datathon.aws.account import AccountPart
        from datathon.aws.iam import IamPart
        from datathon.aws.images import ImagesPart
        from datathon.aws.keys import KeysPart, public_of
        from datathon.aws.machines import MachinesPart
        from datathon.aws.names import key_name
        from datathon.aws.network import NetworkPart

        cfg, s, event = self.aws, self.session, self.ctx.config.event
        wanted = self.wanted()
        dates = self.ctx.config.dates
        account = AccountPart(s, event, wanted=wanted, days=dates.days if dates else None,
                              rds=self._rds_size(), delete_images=delete_images)
        network = NetworkPart(s, event, vpc=cfg.vpc, vpc_cidr=cfg.vpc_cidr, ssh_from=cfg.ssh_from)
        iam = IamPart(s, event, inline=self._read_policies())
        keys = KeysPart(s, event, teams=[t for t, *_ in wanted], keys_dir=self.ctx.state.secrets_dir)
        machines = MachinesPart(s, event, wanted=wanted, user_data=self.user_data,
                                boot_timeout=cfg.boot_timeout_seconds, record=self.ctx.state.record,
                                price=lambda t, h: pricing.cost_so_far(t, h, region=cfg.region))

        def public_key(team: str) -> str | None:
            pem = keys.private_key(team)
            return public_of(pem, key_name(event, team)).decode() if pem else None

        machines.public_key, machines.private_key, machines.ssh_user = public_key, keys.private_key, cfg.ssh_user
        self._prefer_golden_image(machines)
        endpoint = self.database_server().endpoint()
        def database() -> tuple[str | None, int, tuple[str, ...], str]:
            endpoint = self.database_server().endpoint()
            return (endpoint.host, endpoint.port, tuple(d.name for d in self.ctx.config.databases),
                    self.ctx.config.database.sslmode)

        machines.database = database
        return [account, network, iam, keys, machines, ImagesPart(s, event, delete=delete_images)]

    def parts(self, *, drop_team_data: bool = False, delete_images: bool = False,
              final_snapshot: bool = True) -> list[Part]:
        from datathon.dashboard.part import DashboardPart
        from datathon.storage.part import StoragePart

        server = self.database_server()
        aws = self.aws_parts(delete_images=delete_images)
        if self.ctx.config.database.server == "rds":
            if not final_snapshot:
                server.final_snapshot = False  # `down --no-final-snapshot`: over the file's rds.final_snapshot
            # The instance before the machines: their bootstrap carries its address, known once it exists; the
            # machines are planned again once it was made (the engine does that for a part named in `after`).
            machines = self._by_name(aws)["aws machines"]
            machines.after = (*machines.after, "database server")
            at = aws.index(machines)
            aws = [*aws[:at], ServerPart(server), *aws[at:]]
        else:
            aws = [*aws, ServerPart(server)]
        return [*aws, DataPart(self.ctx, server, drop_team_data=drop_team_data),
                StoragePart(self.ctx, self.object_store()), DashboardPart(self.ctx)]

    def machines(self):
        return self._by_name(self.aws_parts())["aws machines"]

    def _prefer_golden_image(self, machines) -> None:
        """Team machines start from the event's own image when `datathon image build` made one for what the
        bootstrap installs on that base image (minutes instead of a bootstrap each); else from the base image."""
        from datathon.aws.builder import ImageBuilder
        from datathon.aws.machines import Image

        base_find = machines.find_image
        builder = ImageBuilder(self.session, self.ctx.config.event, timeout=self.aws.boot_timeout_seconds)

        def find_image(spec):
            base = base_find(spec)
            if base is None:
                return None
            golden = builder.image(golden_digest(self.ctx.config, base.id))
            if golden is None or golden.state != "available":
                return base
            return Image(golden.id, golden.name, base.root_device)  # made from the base: the same root device

        machines.find_base_image, machines.find_image = base_find, find_image

    def golden_image(self, profile: str | None = None):
        """The image builder of `datathon image build`, on the machines' network, role and keys; before it, every
        part `up` brings up but the machines (and the images themselves)."""
        from datathon.aws.builder import ImageBuilder, ImageKit
        from datathon.aws.names import key_name, role_name
        from datathon.errors import ConfigError

        name = profile or self.aws.cpu_profile
        if name not in self.aws.profiles:
            raise ConfigError(f"no machine profile {name!r}", hint=f"profiles: {', '.join(sorted(self.aws.profiles))}")
        parts = self.parts()
        by = self._by_name(parts)
        machines, keys = by["aws machines"], by["aws keys"]
        event = self.ctx.config.event

        def network() -> tuple[str | None, str | None]:
            subnets, group = machines._network()
            return (subnets[0] if subnets else None), group

        return ImageKit(
            builder=ImageBuilder(self.session, event, timeout=self.aws.boot_timeout_seconds),
            prerequisites=[p for p in parts if p.name not in ("aws machines", "aws images")],
            profile_name=name, profile=self.aws.profiles[name], find_base=machines.find_base_image, network=network,
            endpoint=self.database_server().endpoint(), public_key=machines.public_key, key_file=keys.key_file,
            key_name=lambda team: key_name(event, team), ssh_user=self.aws.ssh_user,
            instance_profile=role_name(event))

    @staticmethod
    def _by_name(parts: list[Part]) -> dict[str, Part]:
        return {p.name: p for p in parts}

    def recover(self) -> list[tuple[str, str]]:
        """What the tags say the event has, written into state.json; what only this machine held (a team's
        private key) is named as missing: `up` makes a new key pair for that team."""
        from datathon.aws.names import database_sg, key_name, workspace_sg

        parts = self._by_name(self.aws_parts())
        state, rows = self.ctx.state, []
        account = parts["aws account"].observe("status")
        if account.identity_error or not account.region_known:
            from datathon.errors import ProvisionError

            raise ProvisionError(f"cannot read the account: {account.identity_error or account.region_error}",
                                 hint="check the credentials and aws.region")
        net = parts["aws network"].observe("status")
        if net.vpc_id:
            state.record("vpc", net.vpc_id, created=net.vpc_made, region=self.aws.region)
            rows.append((f"vpc {net.vpc_id}", "made by datathon" if net.vpc_made else "default VPC"))
        for name in (workspace_sg(self.ctx.config.event), database_sg(self.ctx.config.event)):
            g = net.groups.get(name)
            if g and g.ours:
                state.record("security group", name, created=True, id=g.id)
                rows.append((f"security group {name}", g.id))
        if net.endpoint:
            state.record("endpoint", net.endpoint[0], created=True)
            rows.append((f"S3 endpoint {net.endpoint[0]}", "tagged"))
        iam = parts["aws iam"].observe("status")
        if iam.role and iam.ours:
            state.record("iam role", parts["aws iam"].role, created=True, instance_profile=iam.profile)
            rows.append((f"iam role {parts['aws iam'].role}", "tagged"))
        keys = parts["aws keys"].observe("status")
        for team, *_ in self.wanted():
            name = key_name(self.ctx.config.event, team)
            if name in keys.in_aws:
                state.record("key pair", name, created=True, team=team)
                rows.append((f"key pair {name}", "private key in the state folder" if team in keys.local else
                             "private key missing: `datathon up` replaces the key pair"))
        for i in parts["aws machines"].instances():
            if i.team:
                state.record("machine", i.team, created=True, instance=i.id, type=i.type, public_ip=i.public_ip,
                             private_ip=i.private_ip, region=self.aws.region)
                rows.append((f"machine {i.team}", f"{i.id} {i.state} {i.public_ip or ''}".strip()))
        state.record("event", self.ctx.config.event, created=True, provider=self.name,
                     config=str(self.ctx.loaded.path))
        return rows

    def login(self, team: str) -> str:
        return login_role(self.ctx.config.event, team)
