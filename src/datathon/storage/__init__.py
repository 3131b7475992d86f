"""Imaging datasets in object storage that every team can read and none can change."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from datathon.core.roster import teams_group  # noqa: F401  (the local store's group: every team's)
from datathon.errors import ConfigError

if TYPE_CHECKING:
    from datathon.core.context import Context
    from datathon.storage.base import ObjectStore

MB = 2**20


def get_store(ctx: Context) -> ObjectStore:
    """The event's store, as the event file describes it."""
    cfg = ctx.config.storage
    if cfg is None:
        raise ConfigError("this event file has no storage: section",
                          hint="add storage: {backend: local, datasets: [{name: ..., path: ...}]} (see README)")
    if cfg.backend == "s3":
        from datathon.storage.s3 import S3Store

        return S3Store(bucket=cfg.bucket, prefix=cfg.prefix, region=cfg.region, endpoint_url=cfg.endpoint_url,
                       event=ctx.config.event, concurrency=cfg.concurrency, part_size=cfg.part_size_mb * MB)
    from datathon.storage.local import LocalStore

    return LocalStore(cfg.local_root(ctx.config.event), group=teams_group(ctx.config.event),
                      part_size=cfg.part_size_mb * MB, owner=ctx.state.owner)


def store_at(location: str, *, region: str = "us-east-1", endpoint_url: str | None = None,
             concurrency: int = 16) -> ObjectStore:
    """A read-only view of a store from its location (`s3://bucket/prefix` or a folder): what teams pull from."""
    if location.startswith("s3://"):
        from datathon.config.storage import check_bucket_name
        from datathon.storage.s3 import S3Store

        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        try:
            check_bucket_name(bucket)
        except ValueError as exc:
            raise ConfigError(f"--from {location}: {exc}") from None
        prefix = prefix.strip("/")
        return S3Store(bucket=bucket, prefix=f"{prefix}/" if prefix else "", region=region, endpoint_url=endpoint_url,
                       concurrency=concurrency)
    from datathon.storage.local import LocalStore

    path = Path(location).expanduser().resolve()  # a reader may reach the store through a link
    if not path.is_dir():
        raise ConfigError(f"--from {location}: no such folder", hint="give s3://bucket/prefix or the store's folder")
    return LocalStore(path, group=None)
