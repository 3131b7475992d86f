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
    ca_cert: Path | None = None  # what signs the server's certificate, for sslmode=verify-ca/verify-full
    # Connect to this address instead of resolving `host`, still checking the certificate against `host`
    # (libpq's hostaddr): the local end of a tunnel to a server whose certificate names its real host.
    hostaddr: str | None = None

    def connect_kwargs(self) -> dict[str, str | int]:
        """libpq keywords that reach this endpoint (no user, database or password)."""
        kw: dict[str, str | int] = {"host": self.host, "port": self.port, "sslmode": self.sslmode}
        if self.hostaddr:
            kw["hostaddr"] = self.hostaddr
        if self.ca_cert:
            kw["sslrootcert"] = str(self.ca_cert)
        return kw
