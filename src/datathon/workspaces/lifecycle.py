"""Status and teardown of the workspaces: what runs, and proof that nothing of it is left after `down`."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from datathon.core import procs, unix
from datathon.core.context import Context
from datathon.core.plan import Change
from datathon.core.status import ComponentStatus
from datathon.workspaces import accounts, gpus, names, quota, record, remnants, sandbox
from datathon.workspaces.hub import HubApiError, hub_for, hub_processes, stop_processes


@dataclass
class TeardownReport:
    """What the workspace teardown removed (lines for `down`'s report) and the uids whose traces must be gone."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    uids: set[int] = field(default_factory=set)
    per_user: dict[str, list[str]] = field(default_factory=dict)  # what ended before the sweep, per user


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


def _sandbox_status(ctx: Context) -> ComponentStatus:
    """Process and data limits, umask and TMPDIR, read from the team servers that run (not from the file)."""
    ws = ctx.config.workspaces
    want = sandbox.rlimits(ws)
    asked = f"processes {want.nproc} per team, data {want.data >> 20} MiB per process, umask 0077, private TMPDIR"
    seen, bad = [], []
    for entry in accounts.event_users(ctx.state):
        for pid in sandbox.server_pids(entry.pw_uid):
            obs = sandbox.observe(pid)
            if obs is None:
                continue
            seen.append(entry.pw_name)
            if problems := obs.problems(want, sandbox.tmpdir(ctx.state, entry.pw_name)):
                bad.append(f"{entry.pw_name}: {', '.join(problems)}")
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


def _quota_status(ctx: Context) -> ComponentStatus:
    ws = ctx.config.workspaces
    s = quota.support(ws.home_root)
    if not s.ok:
        state = "not enforced" if ws.limits.disk else "none"
        return ComponentStatus("workspaces", "per-team disk quota", state,
                               f"{s.detail}: homes, /tmp and the database share one disk"
                               + (f" (asked: {ws.limits.disk})" if ws.limits.disk else ""))
    if not ws.limits.disk:
        return ComponentStatus("workspaces", "per-team disk quota", "none", f"{s.detail}; none asked (limits.disk)")
    found = {e.pw_name: quota.observed(e.pw_name, Path(e.pw_dir)) for e in accounts.event_users(ctx.state)}
    missing = sorted(u for u, v in found.items() if v is None)
    if missing:
        return ComponentStatus("workspaces", "per-team disk quota", "not enforced",
                               f"{s.detail}; no quota set for {', '.join(missing)} (run `datathon up`)", healthy=False)
    return ComponentStatus("workspaces", "per-team disk quota", "enforced", f"{s.detail}: {ws.limits.disk} per team")


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
                                     "(idle culling still frees idle servers; each process has the data limit below)"))
    else:
        comps.append(ComponentStatus("workspaces", "per-team memory/CPU limits", "none",
                                     f"none asked in the event file; {cgroups_note()}"))
    comps.append(_sandbox_status(ctx))
    comps.append(_quota_status(ctx))
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


def teardown_changes(ctx: Context, report: TeardownReport | None = None) -> list[Change]:
    ws = ctx.config.workspaces
    event = ctx.config.event
    report = report if report is not None else TeardownReport()
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
    removed: list[str] = []
    users = accounts.event_users(ctx.state)
    gone = [m for m in record.gone(ctx.state) if m.uid is not None]
    if users or gone:
        # Files first, while every user still holds its uid (a uid freed by userdel may go to a new user at once,
        # whose files a later sweep would take); its processes end first so that none writes more.
        def sweep() -> None:
            owners: dict[int, str | None] = {m.uid: None for m in gone}
            for entry in users:
                what = []
                if n := accounts.kill_processes(entry.pw_uid, entry.pw_gid):
                    what.append(f"{n} process(es)")
                what += remnants.remove_ipc({entry.pw_uid})
                report.per_user[entry.pw_name] = what
                owners[entry.pw_uid] = entry.pw_name
            report.uids |= set(owners)
            done = accounts.sweep_files(owners, homes=tuple(Path(e.pw_dir) for e in users))
            ipc = remnants.remove_ipc(set(owners))
            report.lines.append((f"files and IPC objects of uids {', '.join(map(str, sorted(owners)))}",
                                 "removed: " + ", ".join(done + ipc) if done or ipc else "none found"))
            for m in gone:
                record.forget(ctx.state, m.user)

        out.append(Change("unix user", "files of the event's users", "drop",
                          "their processes ended, then their files on every local filesystem (/tmp, /var/tmp, "
                          "/dev/shm, /run/lock, ...)", run=sweep, destructive=True))
    for entry in users:
        def drop_user(u=entry.pw_name, uid=entry.pw_uid) -> None:
            report.uids.add(uid)
            done = report.per_user.get(u, []) + accounts.remove_user(u, ctx.state, files=False)  # files: swept above
            report.lines.append((f"unix user {u} (uid {uid})", "removed: " + ", ".join(done)))
            record.forget(ctx.state, u)
            removed.append(u)

        out.append(Change("unix user", entry.pw_name, "drop", "its processes, IPC objects, home and files anywhere",
                          run=drop_user, destructive=True))
    tmp = sandbox.tmp_root(ctx.state)
    if tmp.exists():
        out.append(Change("folder", str(tmp), "drop", "the teams' private TMPDIRs",
                          run=lambda: shutil.rmtree(tmp), destructive=True))
    for group in (names.teams_group(event), names.mentors_group(event)):
        if unix.group_exists(group):
            def drop(g=group) -> None:
                if not unix.group_members(g):  # a member datathon did not make keeps its group
                    unix.remove_group(g)

            out.append(Change("unix group", group, "drop", "the event's group, once its users are gone",
                              run=drop, destructive=True))
    return out


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
