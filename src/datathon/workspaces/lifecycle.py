"""Status and teardown of the workspaces: what runs, and proof that nothing of it is left after `down`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from datathon.core import procs, unix
from datathon.core.context import Context
from datathon.core.status import ComponentStatus
from datathon.errors import ConfigError, ProvisionError
from datathon.workspaces import accounts, names, remnants, sandbox
from datathon.workspaces.facts import Serving, WorkspaceFacts
from datathon.workspaces.hub import hub_for, hub_processes
from datathon.workspaces.observe import cgroups_note
from datathon.workspaces.teardown import TeardownReport

__all__ = ["ServerStatus", "TeardownReport", "cgroups_note", "leftovers", "workspace_status"]


@dataclass
class ServerStatus:
    user: str
    kind: str
    unix_user: bool
    server: str  # running, pending, stopped, unknown
    last_activity: str
    idle: str
    environment: str = "-"  # a running server's team environment: "current", or the older one it still runs

    @property
    def outdated(self) -> bool:
        return self.environment not in ("-", "current")

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


def _sandbox_status(ctx: Context, serving: Serving) -> ComponentStatus:
    """Process and data limits, umask and TMPDIR, as seen in the team servers that run (not from the file)."""
    want = sandbox.rlimits(ctx.config.workspaces)
    asked = f"processes {want.nproc} per team, data {want.data >> 20} MiB per process, umask 0077, private TMPDIR"
    seen = [user for user, _ in serving.limits_seen]
    bad = [f"{user}: {', '.join(problems)}" for user, problems in serving.limits_seen if problems]
    name = "per-process limits, umask, TMPDIR"
    if bad:
        return ComponentStatus("workspaces", name, "not enforced",
                               f"seen in running servers: {'; '.join(bad)} (started before these settings? stop "
                               "and start that server)", healthy=False)
    if not seen:
        return ComponentStatus("workspaces", name, "not observed",
                               f"no team server runs to read them from; the spawner sets {asked}")
    return ComponentStatus("workspaces", name, "enforced",
                           f"seen in the running servers of {', '.join(sorted(set(seen)))}: {asked}")


def _quota_status(ctx: Context, serving: Serving) -> ComponentStatus:
    ws = ctx.config.workspaces
    if not serving.quota_ok:
        state = "not enforced" if ws.limits.disk else "none"
        return ComponentStatus("workspaces", "per-team disk quota", state,
                               f"{serving.quota_detail}: homes, /tmp and the database share one disk"
                               + (f" (asked: {ws.limits.disk})" if ws.limits.disk else ""))
    if not ws.limits.disk:
        return ComponentStatus("workspaces", "per-team disk quota", "none",
                               f"{serving.quota_detail}; none asked (limits.disk)")
    missing = sorted(u for u, v in serving.quotas if v is None)
    if missing:
        return ComponentStatus("workspaces", "per-team disk quota", "not enforced",
                               f"{serving.quota_detail}; no quota set for {', '.join(missing)} (run `datathon up`)",
                               healthy=False)
    return ComponentStatus("workspaces", "per-team disk quota", "enforced",
                           f"{serving.quota_detail}: {ws.limits.disk} per team")


def workspace_status(ctx: Context, facts: WorkspaceFacts) -> tuple[list[ComponentStatus], list[ServerStatus]]:
    """Computed from the observed facts (observe.py), never from the event file alone."""
    ws = ctx.config.workspaces
    if ws is None or not facts.configured:
        return [], []
    serving = facts.serving
    public_url = hub_for(ctx).public_url
    comps: list[ComponentStatus] = []
    comps.append(ComponentStatus("workspaces", "team environment", "built" if facts.env_built else "missing",
                                 str(facts.env_prefix), healthy=facts.env_built))
    if ws.hub:
        pid = serving.hub_pid
        if pid is None:
            comps.append(ComponentStatus("workspaces", "JupyterHub", "stopped", "run `datathon up`", healthy=False))
        elif serving.hub_error is not None:
            comps.append(ComponentStatus("workspaces", "JupyterHub", "error", f"pid {pid}, API: {serving.hub_error}",
                                         healthy=False))
        else:
            comps.append(ComponentStatus("workspaces", "JupyterHub", "running",
                                         f"{public_url} (pid {pid}, log {hub_for(ctx).log_file})"))
    limits = ws.limits
    if limits.memory or limits.cpus:
        asked = ", ".join(x for x in (f"memory {limits.memory}" if limits.memory else "",
                                      f"{limits.cpus:g} CPUs" if limits.cpus else "") if x)
        comps.append(ComponentStatus("workspaces", "per-team memory/CPU limits", "not enforced",
                                     f"asked: {asked}; {serving.cgroups}: teams share this machine's memory and CPUs "
                                     "(idle culling still frees idle servers; each process has the data limit below)"))
    else:
        comps.append(ComponentStatus("workspaces", "per-team memory/CPU limits", "none",
                                     f"none asked in the event file; {serving.cgroups}"))
    comps.append(_sandbox_status(ctx, serving))
    comps.append(_environment_status(facts))
    comps.append(_quota_status(ctx, serving))
    comps.append(ComponentStatus("workspaces", "idle culling",
                                 f"after {ws.idle_timeout}" if ws.idle_seconds else "off",
                                 "jupyterhub-idle-culler stops idle servers" if ws.idle_seconds else ""))
    want_gpus = sum(t.gpu_count for t in ctx.config.team_list)
    inv = facts.gpus
    assert inv is not None  # observed whenever the section is there
    comps.append(ComponentStatus("workspaces", "GPUs", f"{want_gpus} asked",
                                 inv.summary + ("; assigned per team by CUDA_VISIBLE_DEVICES (advisory: device files "
                                                "are shared, not walled off)" if want_gpus else ""),
                                 healthy=want_gpus <= inv.count))
    wanted = {a.user for a in accounts.wanted_accounts(ctx.config)}
    departed = [e for e in facts.leftovers.users if e.name not in wanted]
    if departed:
        comps.append(ComponentStatus("workspaces", "removed members", "homes kept",
                                     "left the event file, password locked: " + ", ".join(
                                         f"{e.name} ({e.home})" for e in departed)
                                     + " (`datathon up --drop-team-data` removes them; archive them first)"))
    servers: list[ServerStatus] = []
    hub_users = serving.hub_users or {}
    envs = dict(serving.server_envs)
    for a in accounts.wanted_accounts(ctx.config):
        state, last = hub_users.get(a.user, ("stopped", None)) if hub_users else ("unknown", None)
        env = envs.get(a.user)
        servers.append(ServerStatus(a.user, a.kind, a.user in serving.present, state,
                                    _ago(last), _ago(last) if state == "running" else "-",
                                    "-" if env is None else "current" if env == facts.env_prefix else env.name))
    return comps, servers


@dataclass
class Restarted:
    user: str
    result: str  # "moved from env-...", "restarted", "not running: ..."
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def restart_servers(ctx: Context, facts: WorkspaceFacts, names_: list[str] | None) -> list[Restarted]:
    """Stop and start team servers through the hub's API, so they run the current environment. `names_`: teams
    or mentors as in the event file (default: every server on an older environment)."""
    import time

    ws = ctx.config.workspaces
    hub = hub_for(ctx)
    if ws is None or not ws.hub or facts.serving.hub_pid is None:
        raise ProvisionError("no hub runs for this event", hint="run `datathon up` first")
    by_name = {a.name: a.user for a in accounts.wanted_accounts(ctx.config)}
    if names_:
        unknown = [n for n in names_ if n not in by_name and n not in by_name.values()]
        if unknown:
            raise ConfigError(f"not a team or mentor of this event: {', '.join(unknown)}",
                              hint=f"the names are: {', '.join(by_name)}")
        users = [by_name.get(n, n) for n in names_]
    else:
        users = outdated_servers(facts)
    envs = dict(facts.serving.server_envs)
    out = []
    for user in users:
        if user not in envs:
            out.append(Restarted(user, "not running: it starts on the current environment when opened"))
            continue
        started = time.monotonic()
        hub.stop_server(user)
        hub.start_server(user)
        before = envs[user]
        out.append(Restarted(user, f"moved from {before.name}" if before != facts.env_prefix else "restarted",
                             time.monotonic() - started))
    return out


def outdated_servers(facts: WorkspaceFacts) -> list[str]:
    """The users whose running server runs from another team environment than the current one."""
    return sorted({user for user, env in facts.serving.server_envs if env != facts.env_prefix})


def _environment_status(facts: WorkspaceFacts) -> ComponentStatus:
    old = outdated_servers(facts)
    name = "team servers on the current environment"
    if old:
        return ComponentStatus("workspaces", name, "restart needed",
                               f"{', '.join(old)} still run an older environment (packages added since are missing "
                               f"there): `datathon restart {' '.join(old)}`", healthy=False)
    running = len(facts.serving.server_envs)
    return ComponentStatus("workspaces", name, "all current" if running else "none running",
                           f"{running} running on {facts.env_prefix.name if facts.env_prefix else '-'}")


def leftovers(ctx: Context, report: TeardownReport | None = None) -> list[str]:
    ws = ctx.config.workspaces
    event = ctx.config.event
    left = [f"Unix user {e.pw_name}" for e in accounts.event_users(ctx.state)]
    left += [f"Unix group {g}" for g in (names.teams_group(event), names.mentors_group(event))
             if unix.group_exists(g)]
    left += [f"hub process {pid}" for pid in hub_processes(ctx.state)]
    if ws is not None:
        left += [f"port {p} still listens" for p in hub_for(ctx).ports if procs.port_in_use(p)]
    if sandbox.tmp_root(ctx.state).exists():
        left.append(f"folder {sandbox.tmp_root(ctx.state)}")
    uids = {u for u in (report.uids if report else set()) if not _uid_taken(u)}
    for uid in sorted(uids):
        if pids := accounts.processes_of(uid):
            left.append(f"processes of uid {uid}: {pids}")
    left += [f"{remnants.IPC[k][2]} {i} of uid {u}" for k, i, u in remnants.ipc_objects(uids)]
    if files := remnants.files_of(uids):
        left.append(f"files of uids {sorted(uids)}: {remnants.summary(files)}")
    return left


def _uid_taken(uid: int) -> bool:
    import pwd

    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False
