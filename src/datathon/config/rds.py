"""`database.rds:` — the event's PostgreSQL on Amazon RDS (provider aws, `database.server: rds`)."""

from __future__ import annotations

import re
from datetime import date

from pydantic import Field, field_validator, model_validator

from datathon.config.common import Strict

CLASS_RE = re.compile(r"^db\.[a-z0-9]+\.[a-z0-9]+$")
VERSION_RE = re.compile(r"^\d{2}(\.\d+)?$")
WEEKLY_RE = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun):([01]\d|2[0-3]):[0-5]\d-(mon|tue|wed|thu|fri|sat|sun):"
                       r"([01]\d|2[0-3]):[0-5]\d$")
DAILY_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")


def _instance_class(v: str) -> str:
    if not CLASS_RE.match(v):
        raise ValueError(f"{v!r} is not an RDS instance class (e.g. db.t4g.medium, db.r6g.2xlarge)")
    return v


class ScaleStep(Strict):
    """From `at` on (the first `up` on or after that day), the instance has this class."""

    at: date
    instance_class: str

    @field_validator("instance_class")
    @classmethod
    def _class(cls, v: str) -> str:
        return _instance_class(v)


class RdsSettings(Strict):
    identifier: str | None = Field(default=None, description="the instance's name (default: datathon-<event>)")
    instance_class: str = Field(default="db.t4g.medium", description="start small; scale before the event")
    engine_version: str = Field(default="16", description="PostgreSQL major (or major.minor)")
    storage_gb: int = Field(default=100, ge=20, le=65536)
    max_storage_gb: int | None = Field(default=None, description="storage autoscaling up to this (default: off)")
    storage_type: str = Field(default="gp3", pattern=r"^(gp3|gp2|io1|io2)$")
    encrypted: bool = True
    backup_retention_days: int = Field(default=7, ge=0, le=35)
    # 04:00-04:30 in Singapore is 20:00-20:30 UTC: maintenance while nobody works
    maintenance_window: str = Field(default="sun:20:00-sun:20:30", description="UTC, ddd:hh:mm-ddd:hh:mm")
    backup_window: str = Field(default="18:00-19:00", description="UTC, hh:mm-hh:mm; must not overlap maintenance")
    deletion_protection: bool = Field(default=True, description="on while the event runs; `down` lifts it")
    final_snapshot: bool = Field(default=True, description="`down` keeps a final snapshot (--no-final-snapshot)")
    master_user: str = Field(default="datathon_admin", pattern=r"^[a-z][a-z0-9_]{0,15}$")
    scale: list[ScaleStep] = Field(default=[], description="class changes by date, e.g. a bigger one 3 days "
                                   "before the event")

    @field_validator("instance_class")
    @classmethod
    def _class(cls, v: str) -> str:
        return _instance_class(v)

    @field_validator("engine_version")
    @classmethod
    def _version(cls, v: object) -> str:
        v = str(v)
        if not VERSION_RE.match(v) or int(v.split(".")[0]) < 13:
            raise ValueError(f"{v!r} is not a supported PostgreSQL version (13 or later, e.g. 16 or 16.4)")
        return v

    @field_validator("maintenance_window")
    @classmethod
    def _weekly(cls, v: str) -> str:
        if not WEEKLY_RE.match(v):
            raise ValueError(f"{v!r} is not a weekly window: write e.g. sun:20:00-sun:20:30 (UTC)")
        return v

    @field_validator("backup_window")
    @classmethod
    def _daily(cls, v: str) -> str:
        if not DAILY_RE.match(v):
            raise ValueError(f"{v!r} is not a daily window: write e.g. 18:00-19:00 (UTC)")
        return v

    @model_validator(mode="after")
    def _storage(self) -> RdsSettings:
        if self.max_storage_gb is not None and self.max_storage_gb <= self.storage_gb:
            raise ValueError(f"max_storage_gb ({self.max_storage_gb}) must be more than storage_gb "
                             f"({self.storage_gb}) for autoscaling, or left out")
        days = [s.at for s in self.scale]
        if days != sorted(days) or len(set(days)) != len(days):
            raise ValueError("scale steps must be in date order, one per day")
        return self

    @property
    def family(self) -> str:
        return f"postgres{self.engine_version.split('.')[0]}"

    def class_on(self, day: date) -> str:
        """The class the instance should have on `day`: the last scale step reached, else instance_class."""
        wanted = self.instance_class
        for step in self.scale:
            if step.at <= day:
                wanted = step.instance_class
        return wanted
