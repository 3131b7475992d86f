"""What tenancy, loading and handouts need from a PostgreSQL server, whoever runs it."""

from __future__ import annotations

import contextlib
import pwd
from collections.abc import Callable, Iterator
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import psycopg

from datathon.core.endpoint import Endpoint
from datathon.core.plan import Change
from datathon.core.status import ComponentStatus


@dataclass(frozen=True)
class ServerTraits:
    """What a server lets datathon assume, stated by the server instead of probed for."""

    removed_with_event: bool  # `down` deletes the server, and every role and database with it
    controls_hba: bool  # datathon writes its access rules (logins only into the event's databases)
    os_user: pwd.struct_passwd | None = None  # its processes run on this machine as this user (CPU priority)
    memory_bytes: int | None = None  # the memory its sorts may be sized from (None: unknown, e.g. RDS)
    bin_dir: Path | None = None  # its own client programs (pg_restore, psql), the same version as the server


class DatabaseServer(ABC):
    """A PostgreSQL server datathon administers: a cluster it runs itself, or one that exists already."""

    kind: str

    @property
    @abstractmethod
    def traits(self) -> ServerTraits: ...

    def preflight(self) -> list[str]:
        """What on this machine would stop the server from starting (see Part.preflight)."""
        return []

    @abstractmethod
    def observe(self) -> object:
        """What the server looks like now, read-only (the facts `plan` works from)."""

    @abstractmethod
    def plan(self, facts: object) -> list[Change]:
        """What `up` must do to make the server exist and run: pure, from `observe()`'s facts."""

    @abstractmethod
    def exists(self) -> bool:
        """True when the server has been made (it may be stopped)."""

    @abstractmethod
    def is_reachable(self) -> bool:
        """True when an admin connection can be opened now (tenancy facts can be observed)."""

    @abstractmethod
    def connect(self, dbname: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
        """An administrator's connection to `dbname` (the maintenance database when None)."""

    @abstractmethod
    def endpoint(self) -> Endpoint:
        """Where teams connect from their workspaces (what the handouts say)."""

    def reach(self) -> Endpoint:
        """Where this machine connects as a team (`check`): the same as the teams' unless the server is reached
        through a tunnel."""
        return self.endpoint()

    def close(self) -> None:
        """Let go of what reaching the server needed (a tunnel); the server itself is untouched."""

    def scale(self, *, instance_class: str | None = None, storage_gb: int | None = None) -> Callable[[], None]:
        """Record a new size for the next plan (`datathon scale database`); returns what undoes the record."""
        from datathon.errors import ProvisionError

        raise ProvisionError(f"datathon does not size this server ({self.kind}): it is sized where it runs",
                             hint="managed cluster: it takes the machine's memory; database.settings for more; "
                                  "RDS: database.server: rds under provider aws")

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """Server-wide settings for a bulk load, for its duration only (a managed cluster is sized for loads
        from the start; an RDS instance gets them from its parameter group and gives them back after)."""
        yield

    @abstractmethod
    def cli_env(self, dbname: str) -> dict[str, str]:
        """PG* variables for client programs (psql, pg_restore) connecting as the administrator."""

    @abstractmethod
    def status(self) -> list[ComponentStatus]: ...

    @abstractmethod
    def teardown(self) -> list[Change]:
        """Changes that remove the server itself (empty when datathon only adopted it)."""

    def log_files(self) -> list[Path]:
        """The server's own log files on this machine, oldest first (empty: not on this machine)."""
        return []

    @abstractmethod
    def leftovers(self) -> list[str]:
        """What of the server is still there after teardown (empty means proven gone)."""
