"""Event day: what members run now (a database statement, a team's server) and what the watcher did about it.

Parts give these through their `activity` and `guard` hooks (core/part.py); the dashboard, `datathon watch` and
`audit export` read them, so a team's running query looks the same wherever it is shown."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Activity:
    member: str  # the team (or mentor) it belongs to
    part: str  # the part that reports it, e.g. "data"
    ident: str  # what `Part.cancel` takes: a backend pid for a database session
    kind: str  # "session" (database), "server" (a team's JupyterLab)
    state: str  # e.g. "active", "idle in transaction", "idle", "running"
    seconds: float  # how long it has been in that state (a statement: since it started)
    started: str = ""  # ISO 8601, UTC
    detail: str = ""  # the statement's text (cut short), or the server's address
    login: str = ""  # the database login or Unix user that runs it

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Guarded:
    """One thing the watcher did (or flagged) in one cycle."""

    member: str
    action: str  # "setting restored", "statement cancelled", "session ended", "over disk quota", "server started"
    detail: str = ""
    enforced: bool = True  # False: only flagged (nothing was changed)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class WatchReport:
    """One cycle of the watcher over every part."""

    actions: list[Guarded] = field(default_factory=list)
    # member -> figures for the dashboard's plots, e.g. {"sessions": 3, "schema_bytes": ..., "temp_bytes": ...}
    usage: dict[str, dict[str, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # a part that could not be watched this cycle, in words

    def merge(self, other: WatchReport) -> None:
        self.actions += other.actions
        for member, figures in other.usage.items():
            self.usage.setdefault(member, {}).update(figures)
        self.problems += other.problems
