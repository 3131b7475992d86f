"""What tenancy, loading and handouts need from a PostgreSQL server, whoever runs it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from datathon.plan import Change


@dataclass(frozen=True)
class Endpoint:
    """Where teams connect (what goes on the handouts)."""

    host: str
    port: int
    sslmode: str
    ca_cert: Path | None = None  # the server's certificate, for sslmode=verify-ca


@dataclass
class ComponentStatus:
    component: str
    name: str
    state: str  # running, stopped, missing, ok, error, not enforced ...
    detail: str = ""
    healthy: bool = True
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "component": self.component,
            "name": self.name,
            "state": self.state,
            "detail": self.detail,
            "healthy": self.healthy,
            **({"extra": self.extra} if self.extra else {}),
        }


class DatabaseServer(ABC):
    """A PostgreSQL server datathon administers: a cluster it runs itself, or one that exists already."""

    kind: str

    @abstractmethod
    def plan(self) -> list[Change]:
        """What `up` must do to make the server exist and run, observed without changing anything."""

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
    def endpoint(self) -> Endpoint: ...

    @abstractmethod
    def cli_env(self, dbname: str) -> dict[str, str]:
        """PG* variables for client programs (psql, pg_restore) connecting as the administrator."""

    @abstractmethod
    def status(self) -> list[ComponentStatus]: ...

    @abstractmethod
    def teardown(self) -> list[Change]:
        """Changes that remove the server itself (empty when datathon only adopted it)."""

    @abstractmethod
    def leftovers(self) -> list[str]:
        """What of the server is still there after teardown (empty means proven gone)."""

    @property
    def owns_server(self) -> bool:
        """True when removing the server removes every role and database with it."""
        return False
