"""Doors open: team servers started before the teams arrive, and what runs now.

At the opening every team logs in within the same minute, and each waits for its own server start (seconds of
CPU each, one after another on a small machine). So the organizer starts them before (`datathon workspaces
start`, a dashboard button, or `workspaces.prestart_at`, which the watcher honours through `guard`).

A server started so carries a mark in its user_options (hub.PRESTART_MARK: when datathon asked); the idle
culler's rule (templates/idle_culler_config.py) leaves it alone until its team's first visit, then culls it as
any other. The hub keeps the mark only for starts datathon's own service asks for (the hub's pre_spawn_hook).

`prestart_at` starts each unlocked team's server once (recorded in prestart.json in the state folder, per
prestart_at), and only from that time until one idle timeout after it (an hour when culling is off): a server a
team stopped, or the culler stopped after the team's visit, is not started again, and a watcher started days later
does not start them all then.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from datathon.core import access
from datathon.core.activity import Activity, Guarded, WatchReport
from datathon.core.context import Context
from datathon.core.state import write_private
from datathon.errors import DatathonError, ProvisionError
from datathon.workspaces import names
from datathon.workspaces.hub import PRESTART_MARK, Hub, HubApiError, hub_for

log = logging.getLogger("datathon")

RECORD = "prestart.json"
START_TIMEOUT = 300.0  # per server, from its request: on a busy machine the servers queue for the CPU
WORKERS = 4  # servers starting at once: a start is CPU-bound; more at once only shares the same CPUs
NO_CULLING_WINDOW = 3600  # prestart_at's window when idle culling is off


@dataclass
class ServerAction:
    team: str
    user: str
    result: str  # "started", "already running", "locked: not started", "stopped", "not running", "failed: ..."
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.result.startswith("failed")

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _mark() -> dict:
    return {PRESTART_MARK: datetime.now(UTC).isoformat(timespec="seconds")}


def running_hub(ctx: Context) -> Hub:
    ws = ctx.config.workspaces
    if ws is None or not ws.hub:
        raise ProvisionError("this event runs no hub: there are no team servers",
                             hint="add a `workspaces:` section (hub: true) and run `datathon up`")
    hub = hub_for(ctx)
    if not hub.is_running():
        raise ProvisionError("the event's hub is not running", hint="run `datathon up` first")
    return hub


def _state(server: dict | None) -> str:
    if not server:
        return "stopped"
    if server.get("pending"):
        return {"spawn": "starting", "stop": "stopping"}.get(server["pending"], server["pending"])
    return "running" if server.get("ready") else "stopped"


def _each_server(ctx: Context, teams: list[str], act: Callable[[str, str], tuple[str, bool]], *, workers: int,
                 done: Callable[[ServerAction], None] | None) -> list[ServerAction]:
    """`act(team, user) -> (result, whether it acted)` for each team, `workers` at a time (a row's seconds count
    only what acted); a failure is that team's row ("failed: ..."), never the others'. Rows in the order given;
    `done` sees each as it ends."""

    def one(team: str) -> ServerAction:
        user = names.unix_user(ctx.config.event, team)
        started = time.monotonic()
        try:
            result, acted = act(team, user)
        except (DatathonError, OSError) as exc:
            result, acted = f"failed: {exc}", True
        row = ServerAction(team, user, result, time.monotonic() - started if acted else 0.0)
        if done is not None:
            done(row)
        return row

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, teams))


def start_servers(ctx: Context, teams: list[str], *, workers: int = WORKERS,
                  done: Callable[[ServerAction], None] | None = None) -> list[ServerAction]:
    """Start the teams' servers (in parallel, `workers` at a time), each marked as pre-started; a locked team's
    is never started. Returns one row per team, in the order given."""
    hub = running_hub(ctx)
    locked = access.locked(ctx.state)

    def start(team: str, user: str) -> tuple[str, bool]:
        if team in locked:
            return "locked: not started (`datathon unlock` first)", False
        if _state(hub.server(user)) == "running":
            return "already running", False
        hub.start_server(user, timeout=START_TIMEOUT, options=_mark())
        return "started", True

    return _each_server(ctx, teams, start, workers=workers, done=done)


def stop_servers(ctx: Context, teams: list[str], *, workers: int = WORKERS,
                 done: Callable[[ServerAction], None] | None = None) -> list[ServerAction]:
    hub = running_hub(ctx)

    def stop(team: str, user: str) -> tuple[str, bool]:
        if _state(hub.server(user)) == "stopped":
            return "not running", False
        hub.stop_server(user)
        return "stopped", True

    return _each_server(ctx, teams, stop, workers=workers, done=done)


# -- the watcher ---------------------------------------------------------------------------------------------------

def window(ctx: Context) -> tuple[datetime, datetime] | None:
    """When `prestart_at` acts: from it until one idle timeout after it (None: no prestart_at)."""
    ws = ctx.config.workspaces
    at = ws.prestart_time(ctx.config.zone) if ws is not None else None
    if at is None:
        return None
    return at, at + timedelta(seconds=ws.idle_seconds or NO_CULLING_WINDOW)


def _record(ctx: Context, at: datetime) -> dict:
    """The teams started for this prestart_at (a record for another prestart_at is no longer current)."""
    try:
        data = json.loads((ctx.state.root / RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        data = {}
    if data.get("prestart_at") != at.isoformat():
        data = {"prestart_at": at.isoformat(), "started": {}}
    return data


def guard(ctx: Context, now: datetime) -> WatchReport | None:
    """One watcher cycle: within prestart_at's window, ask the hub to start the servers of unlocked teams not
    started for it yet, at most WORKERS starting at once (no wait: the next cycles start the next ones)."""
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    span = window(ctx)
    ws = ctx.config.workspaces
    if span is None or ws is None or not ws.hub or not span[0] <= now < span[1]:
        return None
    hub = hub_for(ctx)
    if not hub.is_running():
        return WatchReport(problems=[f"workspaces: the pre-start at {span[0].isoformat()} waits for the hub "
                                     "(not running: `datathon up`)"])
    record = _record(ctx, span[0])
    done = record["started"]
    locked = access.locked(ctx.state)
    todo = [t.name for t in ctx.config.team_list if t.name not in done and t.name not in locked]
    if not todo:
        return None
    report = WatchReport()
    try:
        servers = {name: (info.get("servers") or {}).get("") for name, info in hub.users().items()}
    except (HubApiError, OSError) as exc:
        return WatchReport(problems=[f"workspaces: the pre-start could not read the hub's servers: {exc}"])
    starting = sum(1 for s in servers.values() if _state(s) == "starting")
    stamp = now.astimezone(UTC).isoformat(timespec="seconds")
    for team in todo:
        user = names.unix_user(ctx.config.event, team)
        state = _state(servers.get(user))
        if state in ("running", "starting"):
            done[team] = stamp  # up already (its team, or `workspaces start`): nothing to start for it
            continue
        if starting >= WORKERS:
            break
        try:
            hub.spawn(user, options=_mark())
        except (HubApiError, OSError) as exc:
            report.problems.append(f"workspaces: could not start the server of {team}: {exc}")
            continue
        starting += 1
        done[team] = stamp
        report.actions.append(Guarded(team, "server started",
                                      f"pre-start at {span[0].astimezone(ctx.config.zone).isoformat()}"))
    write_private(ctx.state.root / RECORD, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return report


def activity(ctx: Context) -> list[Activity]:
    """Each team's (and mentor's) server that runs or is starting, with the time since its last activity."""
    ws = ctx.config.workspaces
    if ws is None or not ws.hub:
        return []
    hub = hub_for(ctx)
    if not hub.is_running():
        return []
    from datathon.workspaces.accounts import wanted_accounts

    try:
        users = hub.users()
    except (HubApiError, OSError) as exc:  # a hub restarting: nothing to show this time, said in the log
        log.warning("workspaces activity: the hub's servers could not be read: %s", exc)
        return []
    now = datetime.now(UTC)
    out = []
    for a in wanted_accounts(ctx.config):
        server = (users.get(a.user, {}).get("servers") or {}).get("")
        state = _state(server)
        if state == "stopped":
            continue
        last = _parse(server.get("last_activity")) or _parse(server.get("started"))
        marked = PRESTART_MARK in (server.get("user_options") or {})
        out.append(Activity(a.name, "workspaces", a.user, "server", state + (", pre-started" if marked else ""),
                            (now - last).total_seconds() if last else 0.0,
                            started=server.get("started") or "", detail=hub.public_url + (server.get("url") or ""),
                            login=a.user))
    return out


def _parse(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        t = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)
