"""The `workspaces:` part of the event file: JupyterHub on this server, one Unix user per team."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, tzinfo
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from datathon.config.common import DURATION_RE, Strict, duration_seconds

PIP_REQ_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-\[\],]*\s*([<>=!~]=?\s*[A-Za-z0-9.*+!\-]+\s*,?\s*)*$")
APT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.\-]+(=[A-Za-z0-9.+:~\-]+)?$")
SIZE_RE = re.compile(r"^\d+(\.\d+)?\s*[KMGT]?$")


class Packages(Strict):
    """Extra packages for every team's environment, on top of the standard data stack."""

    pip: list[str] = Field(default=[], description="pip requirement specifiers, e.g. lifelines>=0.27")
    apt: list[str] = Field(default=[], description="Debian packages, e.g. r-cran-ggplot2")

    @field_validator("pip")
    @classmethod
    def _pip(cls, v: list[str]) -> list[str]:
        for req in v:
            if not PIP_REQ_RE.match(req.strip()):
                raise ValueError(f"{req!r} is not a pip requirement; write e.g. lifelines or lifelines>=0.27,<1")
        return [r.strip() for r in v]

    @field_validator("apt")
    @classmethod
    def _apt(cls, v: list[str]) -> list[str]:
        for name in v:
            if not APT_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a Debian package name (e.g. r-cran-ggplot2)")
        return v


class Limits(Strict):
    """Per-team limits for a team's server. `memory` is a data-size limit on every process a team's server
    starts (its kernels, its terminals) and `processes` a limit on the team's processes and threads, both set by
    the spawner on any machine; a per-team memory/CPU total needs cgroups v2 with systemd, and `disk` needs
    filesystem quotas: `status` says plainly what is enforced."""

    memory: str | None = Field(default=None, description="e.g. 16G; per process (default: 3/4 of the machine)")
    cpus: float | None = Field(default=None, gt=0, le=1024)
    processes: int | None = Field(default=None, ge=64, le=1_000_000,
                                  description="processes and threads per team (default: 32 per CPU, at least 512)")
    disk: str | None = Field(default=None, description="per-team disk quota, e.g. 50G (where quotas are enabled)")

    @field_validator("memory", "disk")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        if v is not None and not SIZE_RE.match(v.strip()):
            raise ValueError(f"{v!r} is not a size; write e.g. 8G or 512M")
        return v


class Workspaces(Strict):
    hub: bool = Field(default=True, description="run JupyterHub (false: teams get only the database)")
    listen: str = Field(default="127.0.0.1", description="address the hub listens on")
    port: int = Field(default=8000, ge=1024, le=65000,
                      description="the hub's public port (its proxy); the internal ones are privileged, on loopback")
    public_url: str | None = Field(default=None, description="address teams open, for the handouts")
    insecure_http: bool = Field(default=False, description="allow plain HTTP beyond this machine (closed networks)")
    mentors_are_admins: bool = Field(default=False, description="mentors can open every team's server")
    idle_timeout: str = Field(default="1h", description="stop servers idle this long (0: never)")
    prestart_at: datetime | None = Field(
        default=None, description="start every unlocked team's server at this time (in the event's `timezone` "
                                  "unless it names its own), before the doors open; the watcher does it, once per "
                                  "team; the idle culler leaves a pre-started server alone until its team's first "
                                  "visit")
    light_start: bool = Field(default=True, description="start team servers without what a datathon does not use "
                                                        "(language-server scan, notebook shim, PyPI extension "
                                                        "manager, a slow import): about half the CPU per start")
    packages: Packages = Packages()
    limits: Limits = Limits()
    env_root: Path = Field(default=Path("/opt/datathon/envs"), description="where team environments are built")
    home_root: Path = Field(default=Path("/home"), description="where team home folders are made")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address; use 127.0.0.1 (this machine only) or 0.0.0.0") from None
        return v

    @field_validator("idle_timeout", mode="before")
    @classmethod
    def _duration(cls, v: object) -> str:
        v = str(v).strip()
        if not DURATION_RE.match(v):
            raise ValueError(f"{v!r} is not a duration; write e.g. 30min, 2h (0 turns culling off)")
        return v.replace(" ", "")

    @field_validator("env_root", "home_root")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        if not v.is_absolute():
            raise ValueError(f"{v} must be an absolute path (other Unix users must reach it)")
        if v == Path("/root") or Path("/root") in v.parents:
            raise ValueError(f"{v} is under /root, which team users cannot read")
        return v

    @model_validator(mode="after")
    def _plain_http(self) -> Workspaces:
        if not ipaddress.ip_address(self.listen).is_loopback and not self.insecure_http:
            raise ValueError(
                f"listen: {self.listen} would serve the hub's login page over plain HTTP beyond this machine, "
                "sending team passwords in clear; keep listen: 127.0.0.1 behind a TLS reverse proxy (and set "
                "public_url: https://...), or set insecure_http: true for a closed network"
            )
        return self

    @property
    def idle_seconds(self) -> int:
        return duration_seconds(self.idle_timeout)

    def prestart_time(self, zone: tzinfo) -> datetime | None:
        """`prestart_at` as an aware time: a time without its own offset is read in the event's time zone."""
        if self.prestart_at is None:
            return None
        return self.prestart_at if self.prestart_at.tzinfo else self.prestart_at.replace(tzinfo=zone)
