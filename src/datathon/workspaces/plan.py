"""Observe -> plan for the workspaces: packages, the team environment, Unix users and their homes, the hub.

Every change is complete on its own (an interrupted `up` resumes at the first one not done), and each carries
the reason it is there; `keep` entries say why nothing needs doing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pwd
from pathlib import Path

from datathon.core import unix
from datathon.core.context import Context
from datathon.core.endpoint import Endpoint
from datathon.core.fsutil import untrusted_ancestor
from datathon.core.plan import Change
from datathon.core.roster import members
from datathon.workspaces import accounts, gpus, home, names, quota, record, sandbox
from datathon.workspaces.accounts import Account
from datathon.workspaces.environment import TeamEnvironment, install_apt, missing_apt
from datathon.workspaces.hub import Hub, datasets_folder, hub_for, hub_processes, stop_processes

log = logging.getLogger("datathon")


def user_environment(ctx: Context, accts: list[Account], endpoint: Endpoint) -> dict[str, dict[str, str]]:
    env = {}
    for a in accts:
        e = home.pg_environment(ctx.config, a, endpoint)
        # No GPU unless assigned: an empty CUDA_VISIBLE_DEVICES hides every device from that team.
        e["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in a.gpus)
        e["TMPDIR"] = str(sandbox.tmpdir(ctx.state, a.user))  # private: /tmp is shared by every team
        env[a.user] = e
    return env


def _passwords(ctx: Context) -> dict[str, str]:
    return dict(ctx.state.load().get("workspaces", {}).get("passwords", {}))


def _record_password(ctx: Context, user: str, fingerprint: str | None) -> None:
    state = ctx.state.load()
    ws = state.setdefault("workspaces", {})
    ws.setdefault("passwords", {})[user] = fingerprint
    ctx.state.save(state)


def _leftover_changes(ctx: Context) -> list[Change]:
    """With no `workspaces:` section: what an earlier one made goes (asked first: homes go with their users)."""
    from datathon.workspaces.lifecycle import teardown_changes

    # The teams' group stays: a local dataset store may still give teams' files to it; `down` removes it.
    return [c for c in teardown_changes(ctx) if c.component != "unix group"]


def plan_workspaces(ctx: Context, endpoint: Endpoint) -> list[Change]:
    config, ws = ctx.config, ctx.config.workspaces
    if ws is None:
        return _leftover_changes(ctx)
    console = ctx.console
    changes: list[Change] = []
    env = TeamEnvironment(ws)

    if os.geteuid() != 0:
        return [Change("workspaces", "Unix users and the hub", "blocked",
                       "need root (useradd, PAM logins, servers run as each team); run datathon as root")]
    for what, folder in (("workspaces.env_root", ws.env_root), ("workspaces.home_root", ws.home_root)):
        why = untrusted_ancestor(folder)
        if why:
            return [Change("workspaces", what, "blocked", f"{folder}: {why}; choose a folder only root can "
                                                          "change, e.g. /opt/datathon/envs or /home")]
    inventory = gpus.detect()
    try:
        assigned = gpus.assign(config, inventory.count)
    except gpus.GpuRequestError as exc:
        return [Change("gpu", "GPUs", "blocked", f"{exc} ({inventory.summary})")]
    accts = accounts.wanted_accounts(config, assigned)
    if assigned:
        changes.append(Change("gpu", "GPUs", "keep", "; ".join(f"{t}: {','.join(map(str, d))}"
                                                              for t, d in assigned.items())))

    missing = missing_apt(env.apt)
    if missing:
        changes.append(Change("package", f"apt: {' '.join(missing)}", "create", "Debian packages the teams need",
                              run=lambda: install_apt(missing, console)))
    else:
        changes.append(Change("package", "apt packages", "keep", f"{len(env.apt)} installed"))

    if env.is_built():
        changes.append(Change("environment", str(env.prefix), "keep", "built for this package list"))
        if not env.cli_current():
            changes.append(Change("environment", "datathon command", "update",
                                  "teams run `datathon data pull` in their terminal: copy this version",
                                  run=env.install_cli))
    else:
        changes.append(Change("environment", str(env.prefix), "create",
                              f"JupyterLab, Python and R kernels, {len(env.pip)} pip packages (takes a minute or two)",
                              run=lambda: env.build(console)))

    for group in sorted({a.group for a in accts}):
        if unix.group_exists(group):
            changes.append(Change("unix group", group, "keep", "exists"))
        else:
            changes.append(Change("unix group", group, "create", "primary group of the event's users",
                                  run=lambda g=group: unix.ensure_group(g)))

    folder = datasets_folder(ctx)
    recorded = _passwords(ctx)
    for a in accts:
        changes += _account_changes(ctx, a, endpoint, folder, recorded)

    wanted = {a.user for a in accts}
    hub = hub_for(ctx)
    for entry in accounts.event_users(ctx.state):
        if entry.pw_name not in wanted:
            def drop(user=entry.pw_name):
                if hub.is_running():
                    hub.stop_server(user)
                for line in accounts.remove_user(user, ctx.state):
                    ctx.console.print(f"  {user}: removed {line}")

            changes.append(Change("unix user", entry.pw_name, "drop", "no longer in the event file; its home goes too",
                                  run=drop, destructive=True))

    changes += _hub_changes(hub, accts, user_environment(ctx, accts, endpoint))
    return changes


def _account_changes(ctx: Context, a: Account, endpoint: Endpoint, folder: Path | None,
                     recorded: dict[str, str]) -> list[Change]:
    password = ctx.state.secret(a.user)
    team_logins = [(m.team, m.login, ctx.state.secret(m.login)) for m in members(ctx.config)
                   if m.kind == "mentor_team" and m.name == a.name] if a.kind == "mentor" else []
    files = home.home_files(ctx.config, a, endpoint, password, team_logins)
    entry = accounts.lookup(a.user)

    def finish(stale: list[home.HomeFile], link: bool) -> None:
        pw = pwd.getpwnam(a.user)
        moved = home.write_files(dataclasses.replace(a, home=Path(pw.pw_dir)), stale, pw.pw_uid, pw.pw_gid)
        if link and folder is not None:
            home.link_datasets(a, folder, pw.pw_uid, pw.pw_gid)
        if aside := sandbox.ensure_tmpdir(ctx.state, a.user, pw.pw_uid, pw.pw_gid):
            moved.append(f"{sandbox.tmpdir(ctx.state, a.user)}: {aside}")
        quota.apply(ctx.config.workspaces, a.user, Path(pw.pw_dir))
        for line in moved:  # what the team planted where datathon writes: kept, renamed, and said
            log.warning("%s: %s", a.user, line)
            ctx.console.print(f"  [yellow]{a.user}[/]: {line}")

    if entry is None:
        def create() -> None:
            accounts.create_user(a, ctx.state)
            accounts.set_password(a.user, password)
            _record_password(ctx, a.user, accounts.password_fingerprint(a.user, password))
            finish(files, True)

        return [Change("unix user", a.user, "create", f"{a.kind} {a.name}: home {a.home} (0700), password, "
                                                      ".pgpass, example notebooks", run=create)]
    if not accounts.is_ours(entry, ctx.state):
        return [Change("unix user", a.user, "blocked",
                       f"a Unix user {a.user} exists that datathon did not make for this event file (no record of "
                       f"it in {ctx.state.state_file}); rename the {a.kind}, or remove that user")]
    out: list[Change] = []
    others: list[str] = []
    if recorded.get(a.user) != accounts.password_fingerprint(a.user, password):
        def repass() -> None:
            accounts.set_password(a.user, password)
            _record_password(ctx, a.user, accounts.password_fingerprint(a.user, password))

        out.append(Change("unix user", f"{a.user} password", "update", "differs from the team's secret", run=repass))
    problems = []
    a = dataclasses.replace(a, home=Path(entry.pw_dir))  # the home the user has, wherever it is
    if not a.home.is_dir() or a.home.is_symlink():
        problems.append(f"home {a.home} is missing")
        stale, link = files, folder is not None
    else:
        stale = home.stale_files(a, files)
        link = folder is not None and home.datasets_link(a, folder) == "missing"
        if a.home.stat().st_mode & 0o077:
            problems.append("home is readable by others")
    if not unix.group_exists(a.group) or entry.pw_gid != unix.group_gid(a.group):
        problems.append(f"primary group is not {a.group}")
    if entry.pw_gecos != names.MARK.format(owner=names.owner(ctx.state)):
        problems.append(f"comment changed to {entry.pw_gecos!r}")  # chfn: harmless, the record decides; put back
    if tmp := sandbox.tmpdir_problem(ctx.state, a.user, entry.pw_uid):
        others.append(tmp)
    if not [m for m in record.made(ctx.state) if m.user == a.user and m.uid == entry.pw_uid]:
        others.append("record of the user incomplete")  # useradd was interrupted: recorded now
    if stale or link or problems or others:
        what = [home.describe(a, f) for f in stale] + (["~/datasets"] if link else []) + problems + others

        def repair() -> None:
            if problems:
                accounts.repair_user(a, ctx.state)
            record.created(ctx.state, a.user, entry.pw_uid)
            finish(stale, link)

        out.append(Change("unix user", f"{a.user} home", "update", "; ".join(what), run=repair))
    if not out:
        out.append(Change("unix user", a.user, "keep", f"{a.kind} {a.name}: password, home and files as wanted"))
    return out


def _hub_changes(hub: Hub, accts: list[Account], user_env: dict[str, dict[str, str]]) -> list[Change]:
    if not hub.ws.hub:
        pids = hub_processes(hub.state)
        return [Change("hub", hub.public_url, "drop", "hub: false in the event file (team servers stop too)",
                       run=lambda: stop_processes(pids), destructive=True)] if pids else []
    out = []
    stale = hub.stale_files(accts, user_env)
    if stale:
        out.append(Change("hub", "configuration", "update" if hub.config_file.exists() else "create",
                          f"{', '.join(p.name for p in stale)} from the event file",
                          run=lambda: hub.write(accts, user_env)))
    hub_up, proxy_up = hub.is_running(), hub.proxy_current()
    if not hub_up:
        why = "JupyterHub is not running" + (" (its proxy holds the public port)" if proxy_up else "")
        out.append(Change("hub", hub.public_url, "start", why, run=hub.start))
    elif not proxy_up:
        def restart_all() -> None:
            hub.stop()
            hub.start()

        out.append(Change("hub", hub.public_url, "restart", "its proxy is not running as configured (team servers "
                                                            "keep running)", run=restart_all))
    elif stale or hub.config_digest_running() != hub.config_digest():
        def restart() -> None:
            hub.stop_hub()  # the proxy keeps the public port and the routes to team servers
            hub.start()

        out.append(Change("hub", hub.public_url, "restart", "its configuration changed (team servers keep running)",
                          run=restart))
    else:
        out.append(Change("hub", hub.public_url, "keep", "running with the current configuration"))
    return out

