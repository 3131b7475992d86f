"""What the storage part observed, as frozen dataclasses: the planner, `status` and `down` read only these.

Nothing here does I/O; `storage/observe.py` fills them in, the table-driven tests fake them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

EMPTY: Mapping = MappingProxyType({})


@dataclass(frozen=True)
class StoreFacts:
    """The bucket or folder itself."""

    kind: str  # "local" or "s3"
    location: str  # as `datathon data pull --from` takes it
    exists: bool
    name: str = ""  # what it is, for `down`'s report: "bucket sg-imaging", "folder /var/lib/..."
    ours: bool = False  # tagged for this event (s3) / carries this event file's mark (local)
    made_by_datathon: bool = False  # created by datathon (s3: its managed-by tag; local: its mark): `down` removes it
    blocked: str = ""  # why datathon must not touch it (not ours, an unsafe parent folder); "" when it may
    drift: tuple[str, ...] = ()  # settings that are not what they must be
    settings: str = ""  # what they must be, in words
    create: str = ""  # what making it does, in words
    describe: str = ""  # one line for `status`
    error: str = ""  # it could not be observed (credentials, network, permissions)


@dataclass(frozen=True)
class PolicyFacts:
    """The read-only policies of an S3 store, as observed."""

    bucket: str
    organizer_arn: str | None  # None: no bucket policy is wanted (IAM alone decides who writes)
    workspace_role: str | None  # None: no read policy is wanted
    read_policy_name: str
    bucket_policy: str  # "in place", "missing", "differs", "not wanted" (no organizer role), "unknown"
    read_policy: str  # "in place", "missing", "differs", "not wanted" (no workspace role), "unknown"
    error: str = ""  # they could not be read (IAM permissions, network)


@dataclass(frozen=True)
class DatasetFacts:
    """One dataset of the event file: its folder here against what the store holds."""

    name: str
    files: int = 0  # in the folder's manifest
    bytes: int = 0
    todo_files: int = 0  # files the store lacks or holds with another size or sha256
    todo_bytes: int = 0
    manifest_current: bool = False  # the store's manifest is the folder's
    folder_error: str = ""  # the folder could not be read (gone, not a folder): nothing to push from
    stored_files: int | None = None  # files the store's manifest names (None: no manifest there)
    stored_bytes: int = 0
    present: int = 0  # of those, objects there with the manifest's size
    stored_error: str = ""  # the store's manifest could not be read
    keys: tuple[str, ...] = ()  # key prefixes of this dataset in the store (its folder, its manifest)
    # The hashes observed (relative path -> [size, mtime_ns, sha256]): the push reuses those of files unchanged
    # since, so a dataset is not hashed twice in one `up`. Not part of what was observed for comparison.
    hashes: Mapping[str, list] = field(default_factory=lambda: EMPTY, compare=False, repr=False)


@dataclass(frozen=True)
class GroupFacts:
    """The Unix group that reads a local store."""

    name: str
    exists: bool
    made_by_datathon: bool  # recorded when datathon made it
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class StorageFacts:
    store: StoreFacts
    policies: PolicyFacts | None = None  # S3 only
    datasets: tuple[DatasetFacts, ...] = ()
    group: GroupFacts | None = None  # local only
