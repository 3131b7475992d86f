"""The `aws:` part of the event file (provider: aws): region, network, who may reach the machines by SSH, and the
machine profiles teams get (each team one machine of its profile)."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from datathon.config.common import DURATION_RE, Strict, duration_seconds

REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
AMI_ID_RE = re.compile(r"^ami-[0-9a-f]{8,17}$")
INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
PROFILE_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")
# The Deep Learning AMI the hand-built events used, by name (Amazon publishes a new one every few weeks; the
# newest match is taken). Checked against the AWS DLAMI release notes, 2026-12.
DEFAULT_IMAGE = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"


class RootVolume(Strict):
    size_gb: int = Field(default=200, ge=8, le=16384, description="the image takes ~100 GB of it")
    type: Literal["gp3", "gp2", "io1", "io2"] = "gp3"


class MachineProfile(Strict):
    """What one kind of team machine is: its instance type, image and root volume."""

    instance_type: str
    image: str = Field(default=DEFAULT_IMAGE, description="an AMI id (ami-...) or a name pattern (newest match)")
    image_owners: list[str] = Field(default=["amazon"], description="who may own an image found by name")
    root_volume: RootVolume = RootVolume()
    gpu: bool = Field(default=False, description="a GPU machine: teams with `gpus:` get a GPU profile")
    spot: bool = Field(default=False, description="spot instances (cheaper; AWS may take them back)")

    @field_validator("instance_type")
    @classmethod
    def _type(cls, v: str) -> str:
        if not INSTANCE_TYPE_RE.match(v):
            raise ValueError(f"{v!r} is not an EC2 instance type (e.g. m5.8xlarge, g4dn.12xlarge)")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        v = v.strip()
        if v.startswith("ami-") and not AMI_ID_RE.match(v):
            raise ValueError(f"{v!r} is not an AMI id (ami- and 8 or 17 hex digits)")
        if not v:
            raise ValueError("image must be an AMI id or a name pattern")
        return v

    @property
    def image_id(self) -> str | None:
        return self.image if AMI_ID_RE.match(self.image) else None


def _default_profiles() -> dict[str, MachineProfile]:
    return {"cpu": MachineProfile(instance_type="m5.8xlarge"),
            "gpu": MachineProfile(instance_type="g4dn.12xlarge", gpu=True)}


class AwsConfig(Strict):
    region: str = "us-east-1"
    profile: str | None = Field(default=None, description="a named profile of ~/.aws/config (default: boto3's "
                                                          "chain: environment, AWS_PROFILE, instance role)")
    vpc: Literal["default", "create"] = Field(default="default", description="the region's default VPC, or one "
                                              "datathon creates with a public subnet per availability zone")
    vpc_cidr: str = Field(default="10.42.0.0/16", description="vpc: create: its address range")
    ssh_from: list[str] = Field(default=[], description="networks (CIDR) allowed to reach the machines by SSH")
    ssh_from_anywhere: bool = Field(default=False, description="allow 0.0.0.0/0 in ssh_from (not recommended)")
    profiles: dict[str, MachineProfile] = Field(default_factory=_default_profiles)
    cpu_profile: str = Field(default="cpu", description="the profile of teams without gpus:")
    gpu_profile: str = Field(default="gpu", description="the profile of teams with gpus:")
    team_profiles: dict[str, str] = Field(default={}, description="team name -> profile, over the defaults")
    boot_timeout: str = Field(default="20min", description="how long `up` waits for machines to pass status checks")
    ssh_user: str = Field(default="ubuntu", description="the image's login user (ubuntu on Ubuntu images)")

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not REGION_RE.match(v):
            raise ValueError(f"region {v!r} is not an AWS region name (e.g. us-east-1, ap-southeast-1)")
        return v

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            net = ipaddress.IPv4Network(v, strict=True)
        except ValueError:
            raise ValueError(f"vpc_cidr {v!r} is not an IPv4 network (e.g. 10.42.0.0/16)") from None
        if not 16 <= net.prefixlen <= 24:
            raise ValueError(f"vpc_cidr {v!r}: AWS allows /16 to /28; datathon needs room for a /20 per zone: "
                             "use /16 to /24")
        return v

    @field_validator("ssh_from")
    @classmethod
    def _ssh_from(cls, v: list[str]) -> list[str]:
        out = []
        for n in v:
            try:
                out.append(str(ipaddress.ip_network(n, strict=False)))
            except ValueError:
                raise ValueError(f"ssh_from: {n!r} is not a network; write e.g. 203.0.113.0/24") from None
        return out

    @field_validator("profiles")
    @classmethod
    def _profiles(cls, v: dict[str, MachineProfile]) -> dict[str, MachineProfile]:
        for name in v:
            if not PROFILE_NAME_RE.match(name):
                raise ValueError(f"profile name {name!r} must start with a-z and hold only a-z, 0-9, _ and -")
        if not v:
            raise ValueError("at least one machine profile is needed")
        return v

    @field_validator("boot_timeout")
    @classmethod
    def _timeout(cls, v: str) -> str:
        v = str(v).strip().replace(" ", "")
        if not DURATION_RE.match(v) or duration_seconds(v) < 60:
            raise ValueError(f"boot_timeout {v!r} must be a duration of at least a minute, e.g. 20min")
        return v

    @field_validator("ssh_user")
    @classmethod
    def _user(cls, v: str) -> str:
        if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", v):
            raise ValueError(f"ssh_user {v!r} is not a Unix user name")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> AwsConfig:
        wide = [n for n in self.ssh_from if ipaddress.ip_network(n).prefixlen == 0]
        if wide and not self.ssh_from_anywhere:
            raise ValueError(f"ssh_from {wide[0]} lets the whole internet try SSH on every team machine: list your "
                             "networks instead, or set ssh_from_anywhere: true if you mean it")
        for key in ("cpu_profile", "gpu_profile"):
            name = getattr(self, key)
            if name not in self.profiles:
                raise ValueError(f"{key} {name!r} is not one of the profiles: {', '.join(sorted(self.profiles))}")
        bad = {t: p for t, p in self.team_profiles.items() if p not in self.profiles}
        if bad:
            t, p = next(iter(bad.items()))
            raise ValueError(f"team_profiles: team {t!r} has profile {p!r}, which is not one of the profiles: "
                             f"{', '.join(sorted(self.profiles))}")
        if not self.profiles[self.gpu_profile].gpu:
            raise ValueError(f"gpu_profile {self.gpu_profile!r} is not a GPU profile (gpu: true)")
        return self

    @property
    def boot_timeout_seconds(self) -> int:
        return duration_seconds(self.boot_timeout)

    def profile_of(self, team: str, gpus: int) -> str:
        """The profile name of a team: named in team_profiles, else by whether it asks for GPUs."""
        return self.team_profiles.get(team) or (self.gpu_profile if gpus else self.cpu_profile)
