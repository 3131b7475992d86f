"""Status and teardown of the workspaces: what runs, and proof that nothing of it is left after `down`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from datathon import unix
from datathon.database.server import ComponentStatus
from datathon.plan import Change
from datathon.providers.base import Context
from datathon.workspaces import accounts, gpus, names, procs
from datathon.workspaces.hub import HubApiError, hub_processes, stop_processes
from datathon.workspaces.plan import hub_for


@dataclass
class ServerStatus:
    user: str
    kind: str
    unix_user: bool
    server: str  # running, pending, stopped, unknown
    last_activity: str
    idle: str

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _ago(stamp: str | None) -> str:
    if not stamp:
        return "-"
    try:
        then = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    secs = int((dt.datetime.now(dt.UTC) - then).total_seconds())
    return f"{secs}s ago" if secs < 120 else f"{secs // 60}min ago" if secs < 7200 else f"{secs // 3600}h ago"


def cgroups_note() -> str:
    """Why per-team memory/CPU limits are or are not enforced on this machine (said plainly, never faked)."""
    controllers = Path("/sys/fs/cgroup/cgroup.controllers")
    if not controllers.exists():
        return "no cgroups v2 here"
    have = controllers.read_text().split()
    if "memory" not in have or "cpu" not in have:
        return f"cgroups v2 without memory/cpu controllers ({' '.join(have) or 'none'})"
    if not Path("/run/systemd/system").exists():
        return "cgroups v2 present, but no systemd to place team servers in their own slices"
    return "cgroups v2 and systemd present, but datathon's local spawner does not use them yet"


def workspace_status(ctx: Context) -> tuple[list[ComponentStatus], list[ServerStatus]]:
    ws = ctx.config.workspaces
    if ws is None:
        return [], []
    hub = hub_for(ctx)
    comps: list[ComponentStatus] = []
    env = hub.env
    comps.append(ComponentStatus("workspaces", "team environment", "built" if env.is_built() else "missing",
                                 str(env.prefix), healthy=env.is_built()))
    servers: list[ServerStatus] = []
    hub_users: dict[str, dict] = {}
    if ws.hub:
        pid = hub.pid()
        if pid is None:
            comps.append(ComponentStatus("workspaces", "JupyterHub", "stopped", "run `datathon up`", healthy=False))
        else:
            try:
                hub_users = hub.users()
                comps.append(ComponentStatus("workspaces", "JupyterHub", "running",
                                             f"{hub.public_url} (pid {pid}, log {hub.log_file})"))
            except (OSError, HubApiError) as exc:
                comps.append(ComponentStatus("workspaces", "JupyterHub", "error", f"pid {pid}, API: {exc}",
                                             healthy=False))
    limits = ws.limits
    if limits.memory or limits.cpus:
        asked = ", ".join(x for x in (f"memory {limits.memory}" if limits.memory else "",
                                      f"{limits.cpus:g} CPUs" if limits.cpus else "") if x)
        comps.append(ComponentStatus("workspaces", "per-team memory/CPU limits", "not enforced",
                                     f"asked: {asked}; {cgroups_note()}: teams share this machine's memory and CPUs "
                                     "(idle culling still frees idle servers)"))
    else:
        comps.append(ComponentStatus("workspaces", "per-team memory/CPU limits", "none",
                                     f"none asked in the event file; {cgroups_note()}"))
    comps.append(ComponentStatus("workspaces", "idle culling",
                                 f"after {ws.idle_timeout}" if ws.idle_seconds else "off",
                                 "jupyterhub-idle-culler stops idle servers" if ws.idle_seconds else ""))
    want_gpus = sum(t.gpu_count for t in ctx.config.team_list)
    inv = gpus.detect()
    comps.append(ComponentStatus("workspaces", "GPUs", f"{want_gpus} asked",
                                 inv.summary + ("; assigned per team by CUDA_VISIBLE_DEVICES (advisory: device files "
                                                "are shared, not walled off)" if want_gpus else ""),
                                 healthy=want_gpus <= inv.count))
    for a in accounts.wanted_accounts(ctx.config):
        info = hub_users.get(a.user, {})
        server = (info.get("servers") or {}).get("")
        state = "unknown" if not hub_users else "stopped" if not server else \
            "running" if server.get("ready") else "pending"
        last = (server or {}).get("last_activity") or info.get("last_activity")
        servers.append(ServerStatus(a.user, a.kind, accounts.lookup(a.user) is not None, state,
                                    _ago(last), _ago(last) if state == "running" else "-"))
    return comps, servers


def teardown_changes(ctx: Context) -> list[Change]:
    ws = ctx.config.workspaces
    event = ctx.config.event
    hub = hub_for(ctx) if ws else None
    out: list[Change] = []
    if hub is not None and hub.is_running():
        def stop_hub() -> None:
            try:
                for user, info in hub.users().items():
                    if (info.get("servers") or {}).get(""):
                        hub.stop_server(user)
            except (OSError, HubApiError):
                pass  # the users' processes are ended with the users below
            hub.stop()

        out.append(Change("hub", hub.public_url, "drop", "stop the team servers, the hub and its proxy", run=stop_hub,
                          destructive=True))
    elif pids := hub_processes(ctx.state):
        out.append(Change("hub", "processes", "drop", f"a hub of this event still runs (pids {pids})",
                          run=lambda: stop_processes(pids), destructive=True))
    owner = names.owner(ctx.state)
    for entry in accounts.event_users(owner):
        out.append(Change("unix user", entry.pw_name, "drop", "its processes, home and files",
                          run=lambda u=entry.pw_name: accounts.remove_user(u, owner), destructive=True))
    for group in (names.teams_group(event), names.mentors_group(event)):
        if unix.group_exists(group):
            def drop(g=group) -> None:
                if not unix.group_members(g):  # a member datathon did not make keeps its group
                    unix.remove_group(g)

            out.append(Change("unix group", group, "drop", "the event's group, once its users are gone",
                              run=drop, destructive=True))
    return out


def leftovers(ctx: Context) -> list[str]:
    ws = ctx.config.workspaces
    event = ctx.config.event
    left = [f"Unix user {e.pw_name}" for e in accounts.event_users(names.owner(ctx.state))]
    left += [f"Unix group {g}" for g in (names.teams_group(event), names.mentors_group(event))
             if unix.group_exists(g)]
    left += [f"hub process {pid}" for pid in hub_processes(ctx.state)]
    if ws is not None:
        left += [f"port {p} still listens" for p in hub_for(ctx).ports if procs.port_in_use(p)]
    return left
