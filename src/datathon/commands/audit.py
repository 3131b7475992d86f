"""`datathon audit export`: who connected, from where, when, for how long; hub logins and servers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from datathon.archive.audit import LoginSummary, collect, render, summary
from datathon.core.audit import AuditEvent
from datathon.core.context import Context
from datathon.errors import ConfigError
from datathon.providers import get_provider


@dataclass
class AuditResult:
    events: list[AuditEvent]
    summary: list[LoginSummary]

    def render(self, fmt: str) -> str:
        return render(self.events, fmt)


def parse_since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {text!r} is not a time",
                          hint="give an ISO time, e.g. 2026-12-02 or 2026-12-02T09:30 (UTC unless it says)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def run_audit(ctx: Context, *, since: str | None = None) -> AuditResult:
    events = collect(get_provider(ctx).parts(), parse_since(since), ctx.state)
    return AuditResult(events, summary(ctx.config, events))
