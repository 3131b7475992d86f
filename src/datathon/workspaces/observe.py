"""Observe the workspaces: what is on this machine now, read-only.

Nothing here creates a secret, writes state.json or makes a folder: a password that has no secret yet is observed
as "no secret", and a home file that holds it counts as to be written. Whatever needs the secret is computed again
when the plan runs (actions.py).
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
from pathlib import Path

from datathon.core import access, procs, unix
from datathon.core.context import Context
from datathon.core.endpoint import Endpoint
from datathon.core.fsutil import kind_of, untrusted_ancestor
from datathon.core.part import Purpose
from datathon.core.roster import members
from datathon.workspaces import accounts, gpus, home, names, quota, record, sandbox
from datathon.workspaces.accounts import Account
from datathon.workspaces.environment import TeamEnvironment, missing_apt
from datathon.workspaces.facts import (
    AccountFacts,
    HomeFacts,
    HubFacts,
    Leftovers,
    Serving,
    StaleFile,
    UnixEntry,
    WorkspaceFacts,
)
from datathon.workspaces.hub import (
    LOOPBACK,
    ORGANIZER_SECRET,
    Hub,
    HubApiError,
    datasets_folder,
    hub_for,
    hub_processes,
)

PGPASS = ".pgpass"  # the one home file that holds passwords


def unix_entry(entry: pwd.struct_passwd) -> UnixEntry:
    return UnixEntry(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_gecos, Path(entry.pw_dir))


def observe_leftovers(ctx: Context) -> Leftovers:
    """What this event file's workspaces made and is still there (the record, the hub's pid files, groups)."""
    ws, state, event = ctx.config.workspaces, ctx.state, ctx.config.event
    hub = hub_for(ctx) if ws is not None else None
    tmp = sandbox.tmp_root(state)
    return Leftovers(
        hub_url=hub.public_url if hub else None,
        hub_running=hub.is_running() if hub else False,
        hub_pids=tuple(hub_processes(state)),
        users=tuple(unix_entry(e) for e in accounts.event_users(state)),
        gone=tuple((m.user, m.uid) for m in record.gone(state) if m.uid is not None),
        tmp_root=tmp, tmp_root_exists=tmp.exists(),
        groups=tuple(g for g in (names.teams_group(event), names.mentors_group(event)) if unix.group_exists(g)),
    )


def observe(ctx: Context, endpoint: Endpoint, purpose: Purpose = "plan") -> WorkspaceFacts:
    """`purpose`: "teardown" observes only what an earlier file made; "status" adds what runs (the hub's users,
    the servers' limits, quotas) and the environment, never the homes; "plan" everything but what runs."""
    config, ws = ctx.config, ctx.config.workspaces
    left = observe_leftovers(ctx)
    if ws is None or purpose == "teardown":
        return WorkspaceFacts(configured=ws is not None, leftovers=left)
    env = TeamEnvironment(ws)
    built = env.is_built()
    extend = None if built or purpose == "status" else env.base()
    base = WorkspaceFacts(configured=True, leftovers=left, root=os.geteuid() == 0, gpus=gpus.detect(),
                          endpoint=endpoint, env_prefix=env.prefix, env_built=built,
                          env_base=(extend[0], tuple(extend[1])) if extend else None,
                          env_registered=env.uses(ctx.state.tag),
                          cli_current=env.cli_current(), pip_count=len(env.pip), apt_count=len(env.apt))
    if purpose == "status":
        return dataclasses.replace(base, serving=observe_serving(ctx, left))
    if not base.root:  # the plan stops here: the rest (homes, /etc/shadow) is root's to read
        return base
    untrusted = tuple((what, folder, why) for what, folder in (("workspaces.env_root", ws.env_root),
                                                               ("workspaces.home_root", ws.home_root))
                      if (why := untrusted_ancestor(folder)))
    if untrusted:
        return dataclasses.replace(base, untrusted=untrusted)
    try:
        assigned = gpus.assign(config, base.gpus.count)
    except gpus.GpuRequestError:
        return base  # refused by the plan before anything else
    accts = accounts.wanted_accounts(config, assigned)
    folder = datasets_folder(ctx)
    mark = names.MARK.format(owner=names.owner(ctx.state))
    fingerprints = dict(ctx.state.load().get("workspaces", {}).get("passwords", {}))
    made = record.made(ctx.state)
    observed = tuple(_account(ctx, a, endpoint, folder, fingerprints, made) for a in accts)
    event = config.event
    teams = {t.name for t in config.team_list}
    want_locked = frozenset(names.unix_user(event, n) for n in access.locked(ctx.state) if n in teams)
    wanted = {a.user for a in accts}
    to_lock = [e for e in left.users if e.name in want_locked or e.name not in wanted]
    return dataclasses.replace(
        base, want_locked=want_locked, locked=frozenset(e.name for e in left.users if accounts.password_locked(e.name)),
        busy=frozenset(e.name for e in to_lock if accounts.processes_of(e.uid)),
        apt_missing=tuple(missing_apt(env.apt)), mark=mark, accounts=observed, dataset_folder=folder,
        groups=frozenset(g for g in (names.teams_group(event), names.mentors_group(event)) if unix.group_exists(g)),
        hub=_hub(ctx, hub_for(ctx), accts, endpoint, left) if ws.hub else None)


def team_logins(ctx: Context, a: Account, secret) -> list[tuple[str, str, str | None]]:
    """For a mentor: (team, login, its password) of its login for each team; `secret(name)` gives the password."""
    if a.kind != "mentor":
        return []
    return [(m.team, m.login, secret(m.login)) for m in members(ctx.config)
            if m.kind == "mentor_team" and m.name == a.name]


def _account(ctx: Context, a: Account, endpoint: Endpoint, folder: Path | None, fingerprints: dict[str, str],
             made: list[record.Made]) -> AccountFacts:
    found = accounts.lookup(a.user)
    if found is None:
        return AccountFacts(a.user)
    entry = unix_entry(found)
    if not accounts.is_ours(found, ctx.state):
        return AccountFacts(a.user, entry, ours=False)
    state = ctx.state

    def secret(name: str) -> str | None:
        return state.secret(name, create=False)  # read only: a missing one is made when the plan runs

    password = secret(a.user)
    if password is None:
        pw_state = "no secret"
    elif fingerprints.get(a.user) != accounts.password_fingerprint(a.user, password):
        pw_state = "differs"
    else:
        pw_state = "current"
    logins = team_logins(ctx, a, secret)
    complete = password is not None and all(pw is not None for _, _, pw in logins)
    files = home.home_files(ctx.config, a, endpoint, password or "",
                            [(t, login, pw or "") for t, login, pw in logins])
    a = dataclasses.replace(a, home=entry.home)  # the home the user has, wherever it is
    if not a.home.is_dir() or a.home.is_symlink():
        observed_home = HomeFacts(False, stale=tuple(StaleFile(f.path, kind_of(a.home / f.path)) for f in files),
                                  datasets="missing" if folder is not None else None)
    else:
        stale = home.stale_files(a, files)
        if not complete and not any(f.path == PGPASS for f in stale):  # written with the secret made then
            stale = [f for f in files if f.path == PGPASS] + stale
        observed_home = HomeFacts(True, open_to_others=bool(a.home.stat().st_mode & 0o077),
                                  stale=tuple(StaleFile(f.path, kind_of(a.home / f.path)) for f in stale),
                                  datasets=home.datasets_link(a, folder) if folder is not None else None)
    return AccountFacts(
        a.user, entry, ours=True, password=pw_state, home=observed_home,
        recorded=any(m.user == a.user and m.uid == entry.uid for m in made),
        group_ok=unix.group_exists(a.group) and entry.gid == unix.group_gid(a.group)
        and all(unix.group_exists(g) and a.user in grp.getgrnam(g).gr_mem for g in a.extra_groups),
        tmpdir_problem=sandbox.tmpdir_problem(state, a.user, entry.uid))


def _hub(ctx: Context, hub: Hub, accts: list[Account], endpoint: Endpoint, left: Leftovers) -> HubFacts:
    user_env = home.user_environment(ctx.config, ctx.state, accts, endpoint)
    running, proxy = hub.is_running(), hub.proxy_current()
    ports = hub.ports
    holders: list[tuple[int, tuple[str, ...]]] = []
    if not (running and proxy):  # what would stop the hub or its proxy from taking their ports
        ours = {f"pid {p} " for p in left.hub_pids}
        public, hub_port, api_port = ports
        for port, host in ((public, hub.ws.listen), (hub_port, LOOPBACK), (api_port, LOOPBACK)):
            if procs.port_in_use(port, host):
                who = tuple(w for w in procs.port_holders(port, host) if not any(w.startswith(o) for o in ours))
                if who:
                    holders.append((port, who))
    return HubFacts(
        public_url=hub.public_url, config_exists=hub.config_file.exists(),
        stale=tuple(p.name for p in hub.stale_files(accts, user_env)), running=running, proxy_current=proxy,
        config_applied=hub.config_digest_running() == hub.config_digest(), ports=ports,
        holders=tuple(holders))


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


def observe_serving(ctx: Context, left: Leftovers) -> Serving:
    """The hub and its users, the limits of the team servers that run (from /proc), the quotas (from the
    filesystem): what `status` reports."""
    ws = ctx.config.workspaces
    assert ws is not None
    hub = hub_for(ctx)
    pid = hub.pid() if ws.hub else None
    users: dict[str, tuple[str, str | None]] | None = None
    error = None
    if pid is not None and ctx.state.secret(ORGANIZER_SECRET, create=False) is not None:
        try:
            users = {}
            for name, info in hub.users().items():
                server = (info.get("servers") or {}).get("")
                state = "stopped" if not server else "running" if server.get("ready") else "pending"
                users[name] = (state, (server or {}).get("last_activity") or info.get("last_activity"))
        except (OSError, HubApiError) as exc:
            users, error = None, str(exc)
    elif pid is not None:
        error = "its organizer token is missing"
    want = sandbox.rlimits(ws)
    seen = []
    envs = []
    for entry in left.users:
        for spid in sandbox.server_pids(entry.uid):
            if (prefix := sandbox.server_environment(spid, ws.env_root)) is not None:
                envs.append((entry.name, prefix))
            obs = sandbox.observe(spid)
            if obs is not None:
                seen.append((entry.name, tuple(obs.problems(want, sandbox.tmpdir(ctx.state, entry.name)))))
    support = quota.support(ws.home_root)
    quotas = tuple((e.name, quota.observed(e.name, e.home)) for e in left.users) if support.ok and ws.limits.disk \
        else ()
    return Serving(hub_pid=pid, hub_error=error, hub_users=users,
                   present=frozenset(a.user for a in accounts.wanted_accounts(ctx.config) if accounts.lookup(a.user)),
                   limits_seen=tuple(seen), quota_ok=support.ok, quota_detail=support.detail, quotas=quotas,
                   cgroups=cgroups_note(), server_envs=tuple(envs))
