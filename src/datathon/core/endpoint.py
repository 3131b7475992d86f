"""Where teams connect to a database server: what goes on handouts, into homes and into the check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Endpoint:
    """Where teams connect (what goes on the handouts)."""

    host: str
    port: int
    sslmode: str
    ca_cert: Path | None = None  # the server's certificate, for sslmode=verify-ca
