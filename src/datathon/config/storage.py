"""The `storage:` part of the event file: where imaging datasets live, and which folders are pushed there."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from datathon.config.common import Strict, existing_path
from datathon.config.names import system_dir

DATASET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
ROLE_NAME_RE = re.compile(r"^[\w+=,.@-]{1,64}$")
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]*$")


def check_bucket_name(v: str) -> str:
    """The S3 bucket naming rules (general purpose buckets), each broken rule with its own message."""
    if not 3 <= len(v) <= 63:
        raise ValueError(f"bucket name {v!r} must be 3 to 63 characters long")
    if not BUCKET_RE.match(v):
        raise ValueError(f"bucket name {v!r} may hold only a-z, 0-9, '.' and '-', and must start and end with a "
                         f"letter or digit")
    if ".." in v:
        raise ValueError(f"bucket name {v!r} must not hold two dots in a row")
    try:
        ipaddress.IPv4Address(v)
    except ValueError:
        pass
    else:
        raise ValueError(f"bucket name {v!r} must not look like an IP address")
    for bad in ("xn--", "sthree-", "amzn-s3-demo-"):
        if v.startswith(bad):
            raise ValueError(f"bucket name {v!r} must not start with {bad!r} (reserved by AWS)")
    for bad in ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"):
        if v.endswith(bad):
            raise ValueError(f"bucket name {v!r} must not end with {bad!r} (reserved by AWS)")
    return v


class StorageDataset(Strict):
    """A folder on the organizer's machine that is pushed into the store under its name."""

    name: str
    path: Path

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not DATASET_RE.match(v) or len(v) > 100:
            raise ValueError(f"dataset name {v!r} must start with a-z or 0-9 and hold only a-z, 0-9, '.', '_' and "
                             f"'-' (at most 100 characters)")
        return v

    @field_validator("path")
    @classmethod
    def _exists(cls, v: Path, info: ValidationInfo) -> Path:
        return existing_path(v, info, what="dataset folder", folder=True)


class StorageConfig(Strict):
    backend: Literal["local", "s3"] = "local"
    path: Path | None = Field(default=None, description="local: the store's folder (default under /var/lib/datathon)")
    bucket: str | None = Field(default=None, description="s3: the bucket (names are global: pick a unique one)")
    region: str = "us-east-1"
    endpoint_url: str | None = Field(default=None, description="s3: an S3-compatible store (MinIO, Ceph)")
    prefix: str = Field(default="", description="s3: key prefix inside the bucket")
    concurrency: int = Field(default=16, ge=1, le=256, description="parallel transfers")
    part_size_mb: int = Field(default=64, ge=5, le=5120, description="files this big go in parts of this size")
    organizer_role_arn: str | None = Field(default=None, description="s3: the only principal allowed to write")
    workspace_role_name: str | None = Field(default=None, description="s3: IAM role that gets the read policy")
    datasets: list[StorageDataset] = []

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not re.match(r"^[a-z]{2}(-[a-z]+)+-\d$", v):
            raise ValueError(f"region {v!r} is not an AWS region name (e.g. us-east-1, eu-west-2)")
        return v

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str | None) -> str | None:
        return None if v is None else check_bucket_name(v)

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", v):
            raise ValueError(f"endpoint_url {v!r} must be an http:// or https:// URL, e.g. http://minio:9000")
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip("/")
        if not PREFIX_RE.match(v) or "//" in v or any(p in (".", "..") for p in v.split("/")):
            raise ValueError(f"prefix {v!r} may hold only letters, digits and !_.*'()/- (no empty, . or .. parts)")
        return f"{v}/" if v else ""

    @field_validator("organizer_role_arn")
    @classmethod
    def _arn(cls, v: str | None) -> str | None:
        if v is not None and not ROLE_ARN_RE.match(v):
            raise ValueError(f"organizer_role_arn {v!r} is not an IAM role ARN "
                             f"(arn:aws:iam::123456789012:role/organizers)")
        return v

    @field_validator("workspace_role_name")
    @classmethod
    def _role(cls, v: str | None) -> str | None:
        if v is not None and not ROLE_NAME_RE.match(v):
            raise ValueError(f"workspace_role_name {v!r} is not an IAM role name (1-64 of letters, digits, +=,.@_-)")
        return v

    @model_validator(mode="after")
    def _backend_fields(self, info: ValidationInfo) -> StorageConfig:
        if self.backend == "s3":
            if not self.bucket:
                raise ValueError("backend s3 needs bucket: (bucket names are global, e.g. sg2026-datathon-imaging)")
            if self.path is not None:
                raise ValueError("path is only for backend local; an s3 store is named by bucket (and prefix)")
        else:
            only_s3 = {"bucket": self.bucket, "endpoint_url": self.endpoint_url, "prefix": self.prefix,
                       "organizer_role_arn": self.organizer_role_arn, "workspace_role_name": self.workspace_role_name}
            given = [k for k, v in only_s3.items() if v]
            if given:
                raise ValueError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} only for backend s3; "
                                 f"the local backend keeps datasets in path:")
            if self.path is not None and self.path.resolve() == Path("/"):
                raise ValueError("path must not be the root folder")
        names = [d.name for d in self.datasets]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"dataset {', '.join(twice)} is listed twice")
        base = (info.context or {}).get("base_dir")
        if base is not None:
            self._base_dir = Path(base)
        if self.backend == "local" and self.path is not None:
            root = (self._base_dir / self.path).resolve()

            def overlap(other: Path) -> bool:
                return root == other or root in other.parents or other in root.parents

            # `down` deletes the store: it must hold nothing but what `up` put there.
            event_dir = self._base_dir.resolve()
            if root == event_dir or root in event_dir.parents:
                raise ValueError(f"path {self.path} holds the event file's folder; the store needs a folder of its own "
                                 "(down deletes it), e.g. /srv/datathon/<event>-datasets")
            clash = [d.name for d in self.datasets if overlap(Path(d.path).resolve())]
            if clash:
                raise ValueError(f"path {self.path} overlaps the folder of dataset {', '.join(clash)}; the store "
                                 "needs a folder of its own (down deletes it)")
        return self

    def local_root(self, event: str) -> Path:
        """The local store's folder: `path` (relative to the event file), or /var/lib/datathon/<event>-<tag>-datasets"""
        if self.path is not None:
            return (self._base_dir / self.path).resolve()
        return system_dir(self._base_dir, event, "-datasets")

    def location(self, event: str) -> str:
        """Where the datasets are, as `datathon data pull --from` takes it."""
        if self.backend == "s3":
            return f"s3://{self.bucket}/{self.prefix}"
        return str(self.local_root(event))
