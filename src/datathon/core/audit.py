"""One line of the event's audit trail, whichever part kept it (the database server's log, the hub's)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class AuditEvent:
    time: str  # ISO 8601, UTC
    source: str  # "database" or "hub"
    event: str  # connect, disconnect, refused, login, login failed, server start, server stop
    login: str  # the database login or hub user
    database: str = ""
    client: str = ""  # address[:port]
    tls: str = ""  # e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384", "no" for a socket, "" unknown
    seconds: float | None = None  # a session's length, on disconnect
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)
