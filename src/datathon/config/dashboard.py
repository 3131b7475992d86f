"""The `dashboard:` part of the event file: `datathon serve`, the organizer's live view, the team portal and the
watcher that keeps the per-team limits in force."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from datathon.config.common import DURATION_RE, Strict, duration_seconds


class Dashboard(Strict):
    listen: str = Field(default="127.0.0.1", description="address the dashboard listens on")
    port: int = Field(default=8090, ge=1024, le=65000)
    certificate: Path | None = Field(default=None, description="TLS certificate (PEM); with `key`, serve HTTPS")
    key: Path | None = Field(default=None, description="the certificate's private key (PEM)")
    watch_every: str = Field(default="5s", description="how often the watcher looks at sessions and settings")
    start: bool = Field(default=True, description="`datathon up` starts it (false: run `datathon serve` by hand)")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address; write e.g. 127.0.0.1 or 0.0.0.0") from None
        return v

    @field_validator("watch_every", mode="before")
    @classmethod
    def _every(cls, v: object) -> str:
        v = str(v).strip()
        if not DURATION_RE.match(v) or duration_seconds(v) < 1:
            raise ValueError(f"{v!r} is not a duration of a second or more; write e.g. 5s or 1min")
        return v

    @model_validator(mode="after")
    def _tls(self) -> Dashboard:
        if (self.certificate is None) != (self.key is None):
            raise ValueError("give both `certificate` and `key` (HTTPS), or neither (HTTP)")
        return self

    @property
    def watch_seconds(self) -> int:
        return duration_seconds(self.watch_every)

    @property
    def tls(self) -> bool:
        return self.certificate is not None
