"""A plan is a list of changes computed from observed facts; applying it runs only what was planned.

Every change carries the reason it is there; `keep` entries say why nothing needs doing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from psycopg import sql


class Component(StrEnum):
    """What a change acts on. A StrEnum: it compares and prints as its word ("role"), and an unknown word is a
    bug caught when the change is made, not a typo that silently never matches."""

    CLUSTER = "cluster"
    SERVER = "server"
    DATABASE = "database"
    ROLE = "role"
    SCHEMA = "schema"
    GRANT = "grant"
    SOURCE = "source"
    STORAGE = "storage"
    POLICY = "policy"
    DATASET = "dataset"
    GROUP = "group"
    FOLDER = "folder"
    PACKAGE = "package"
    ENVIRONMENT = "environment"
    GPU = "gpu"
    WORKSPACES = "workspaces"
    HUB = "hub"
    UNIX_USER = "unix user"
    UNIX_GROUP = "unix group"
    MACHINE = "machine"  # a machine per team (AWS)
    BUCKET = "bucket"
    ACCOUNT = "account"  # the AWS account and region a plan runs in
    QUOTA = "quota"  # a Service Quota the machines need
    NETWORK = "network"  # a VPC, its subnets, gateway and route table
    SECURITY_GROUP = "security group"
    ENDPOINT = "endpoint"  # the S3 gateway VPC endpoint
    IAM_ROLE = "iam role"
    INSTANCE_PROFILE = "instance profile"
    KEY_PAIR = "key pair"
    IMAGE = "image"
    VOLUME = "volume"


Action = Literal["create", "update", "drop", "start", "restart", "load", "keep", "blocked"]
# Actions that change something. `blocked` is a change we refuse to make without an explicit flag.
MUTATING: frozenset[str] = frozenset({"create", "update", "drop", "start", "restart", "load"})


@dataclass
class Change:
    component: Component  # a Component, or its word
    target: str  # what it acts on, e.g. "role demo_team01" or "demo.team01"
    action: Action
    reason: str
    database: str | None = None  # where the statements run; None = cluster-wide (admin database)
    statements: list[sql.Composable] = field(default_factory=list)
    autocommit: bool = False  # CREATE DATABASE cannot run in a transaction
    run: Callable[[], None] | None = None  # non-SQL work (initdb, pg_ctl, loading a file)
    destructive: bool = False

    def __post_init__(self) -> None:
        self.component = Component(self.component)

    @property
    def mutating(self) -> bool:
        return self.action in MUTATING

    def as_dict(self) -> dict:
        return {
            "component": str(self.component),
            "target": self.target,
            "action": self.action,
            "reason": self.reason,
            "database": self.database,
            "destructive": self.destructive,
        }


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def extend(self, changes: list[Change]) -> None:
        self.changes.extend(changes)

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.mutating]

    @property
    def destructive(self) -> list[Change]:
        return [c for c in self.pending if c.destructive]

    @property
    def blocked(self) -> list[Change]:
        return [c for c in self.changes if c.action == "blocked"]
