"""The board: one snapshot of the event for every viewer. It is built by the serve process's own loop (one
observer, however many people look), from `event_status`, the parts' activity, `check`'s last verdicts, the
journal and the watcher's usage history; pages only render it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from datathon.core import journal
from datathon.core.activity import Activity, WatchReport
from datathon.core.context import Context
from datathon.core.part import Part
from datathon.core.roster import login_role
from datathon.core.status import ComponentStatus
from datathon.engine import EventStatus, event_activity, event_status

RECENT_JOURNAL = 200


@dataclass
class TeamRow:
    name: str
    title: str
    login: str
    access: str = "open"  # open, locked, or what is wrong
    server: str = "-"  # the team's server (JupyterLab) or machine: running, stopped, pending, ...
    last_activity: str = "-"
    sessions: int = 0
    longest: Activity | None = None  # the team's longest running statement
    queries: list[Activity] = field(default_factory=list)  # the team's database sessions, longest first
    schema_bytes: int | None = None
    temp_bytes: int | None = None
    over_quota: bool = False
    check: dict | None = None  # {"verdict": "GO"|"NO-GO", "time": ..., "failures": [...]}
    cost: str = ""  # on AWS, the machine's cost so far
    watcher: list[journal.Entry] = field(default_factory=list)  # what the watcher did about this team lately

    @property
    def healthy(self) -> bool:
        return self.access in ("open", "locked") and not self.over_quota and (
            self.check is None or self.check.get("verdict") == "GO")

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("longest", "queries", "watcher")}
        d["longest"] = self.longest.as_dict() if self.longest else None
        d["queries"] = [q.as_dict() for q in self.queries]
        d["watcher"] = [e.as_dict() for e in self.watcher]
        return d


@dataclass
class Board:
    event: str
    title: str
    built: datetime
    components: list[ComponentStatus] = field(default_factory=list)
    teams: list[TeamRow] = field(default_factory=list)
    journal: list[journal.Entry] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)  # the watcher's usage samples, oldest first
    problems: list[str] = field(default_factory=list)  # what could not be observed in this snapshot
    watch: WatchReport | None = None  # the watcher's last cycle
    servers: bool = False  # teams have servers (workspaces, or machines on AWS): the server buttons apply
    aws: bool = False  # machines per team (their start/stop is per team: `datathon start|stop TEAM`)

    @property
    def healthy(self) -> bool:
        return all(c.healthy for c in self.components) and not self.problems

    def team(self, name: str) -> TeamRow | None:
        return next((t for t in self.teams if t.name == name), None)

    def as_dict(self) -> dict:
        return {"event": self.event, "title": self.title, "built": self.built.isoformat(timespec="seconds"),
                "healthy": self.healthy, "components": [c.as_dict() for c in self.components],
                "teams": [t.as_dict() for t in self.teams], "problems": self.problems}


def build_board(ctx: Context, parts: list[Part], *, verdicts: dict[str, dict], history: list[dict],
                watch: WatchReport | None = None) -> Board:
    config = ctx.config
    board = Board(config.event, config.title or config.event, datetime.now(UTC), watch=watch, history=history,
                  servers=config.workspaces is not None or config.provider == "aws", aws=config.provider == "aws")
    try:
        status = event_status(config.event, parts)
    except Exception as exc:  # noqa: BLE001 (shown on the board: the page must still load)
        status = EventStatus(config.event)
        board.problems.append(f"status: {exc}")
    try:
        activity = event_activity(parts)
    except Exception as exc:  # noqa: BLE001
        activity = []
        board.problems.append(f"activity: {exc}")
    board.components = status.components
    logins = {x.name: x for x in status.tables.get("logins", []) if x.kind == "team"}
    servers = {w.user: w for w in status.tables.get("workspaces", [])}
    machines = {m.team: m for m in status.tables.get("machines", [])}
    recent = journal.read(ctx.state, last=RECENT_JOURNAL)
    board.journal = list(reversed(recent))
    for t in config.team_list:
        row = TeamRow(t.name, t.title or "", login_role(config.event, t.name))
        if (x := logins.get(t.name)) is not None:
            row.access, row.sessions = x.access, x.connections
            row.schema_bytes, row.temp_bytes, row.over_quota = x.schema_bytes, x.temp_bytes, x.over_quota
        if (w := servers.get(row.login)) is not None:
            row.server, row.last_activity = w.server, w.last_activity
        if (m := machines.get(t.name)) is not None:
            row.server, row.cost = m.state, m.cost
        row.queries = sorted((a for a in activity if a.member == t.name and a.kind == "session"),
                             key=lambda a: -a.seconds)
        running = [a for a in row.queries if a.state == "active"]
        row.longest = running[0] if running else None
        row.check = verdicts.get(t.name)
        row.watcher = [e for e in board.journal if e.member == t.name and e.who == "watcher"][:5]
        board.teams.append(row)
    return board
