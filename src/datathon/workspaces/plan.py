"""Plan the workspaces from observed facts: packages, the team environment, Unix users and their homes, the hub.

`plan(ctx, facts)` is pure: it reads only the event file and the facts (observe.py), and makes no secret, folder
or state; the work is in the changes' `run=` callables (actions.py), which run when the plan is applied. Every
change is complete on its own (an interrupted `up` resumes at the first one not done), and each carries the reason
it is there; `keep` entries say why nothing needs doing.
"""

from __future__ import annotations

import dataclasses

from datathon.core import unix
from datathon.core.context import Context
from datathon.core.endpoint import Endpoint
from datathon.core.plan import Change
from datathon.workspaces import accounts, actions, gpus
from datathon.workspaces.accounts import Account
from datathon.workspaces.environment import TeamEnvironment, install_apt
from datathon.workspaces.facts import StaleFile, WorkspaceFacts
from datathon.workspaces.hub import hub_for, stop_processes
from datathon.workspaces.observe import observe
from datathon.workspaces.teardown import teardown_plan


def plan_workspaces(ctx: Context, endpoint: Endpoint) -> list[Change]:
    """Observe, then plan (what `datathon plan` shows for the workspaces)."""
    return plan(ctx, observe(ctx, endpoint))


def plan(ctx: Context, facts: WorkspaceFacts, *, drop_team_data: bool = False) -> list[Change]:
    config, ws = ctx.config, ctx.config.workspaces
    if ws is None:
        # With no `workspaces:` section, what an earlier one made goes (asked first: homes go with their users).
        # The teams' group stays: a local dataset store may still give teams' files to it; `down` removes it.
        return [c for c in teardown_plan(ctx, facts.leftovers) if c.component != "unix group"]
    if not facts.root:
        return [Change("workspaces", "Unix users and the hub", "blocked",
                       "need root (useradd, PAM logins, servers run as each team); run datathon as root")]
    for what, folder, why in facts.untrusted:
        return [Change("workspaces", what, "blocked", f"{folder}: {why}; choose a folder only root can "
                                                      "change, e.g. /opt/datathon/envs or /home")]
    inventory = facts.gpus
    assert inventory is not None  # observed whenever the section is there
    try:
        assigned = gpus.assign(config, inventory.count)
    except gpus.GpuRequestError as exc:
        return [Change("gpu", "GPUs", "blocked", f"{exc} ({inventory.summary})")]
    accts = accounts.wanted_accounts(config, assigned)
    console = ctx.console
    changes: list[Change] = []
    if assigned:
        changes.append(Change("gpu", "GPUs", "keep", "; ".join(f"{t}: {','.join(map(str, d))}"
                                                              for t, d in assigned.items())))

    missing = list(facts.apt_missing)
    if missing:
        changes.append(Change("package", f"apt: {' '.join(missing)}", "create", "Debian packages the teams need",
                              run=lambda: install_apt(missing, console)))
    else:
        changes.append(Change("package", "apt packages", "keep", f"{facts.apt_count} installed"))

    env = TeamEnvironment(ws)  # its methods run at apply time; what it is now is in the facts
    if facts.env_built:
        changes.append(Change("environment", str(facts.env_prefix), "keep", "built for this package list"))
        if not facts.env_registered:
            tag, path = ctx.state.tag, ctx.loaded.path
            changes.append(Change("environment", f"{facts.env_prefix} users", "update",
                                  "record that this event uses it (no other event's `down` offers it for deletion)",
                                  run=lambda: env.register(tag, path)))
        if not facts.cli_current:
            changes.append(Change("environment", "datathon command", "update",
                                  "teams run `datathon data pull` in their terminal: copy this version",
                                  run=env.install_cli))
    elif facts.env_base is not None:
        base, added = facts.env_base
        changes.append(Change("environment", str(facts.env_prefix), "create",
                              f"a copy of {base.name} plus only {', '.join(added)} (running team servers stay on "
                              "the old one until `datathon restart`)", run=lambda: env.build(console)))
    else:
        changes.append(Change("environment", str(facts.env_prefix), "create",
                              f"JupyterLab, Python and R kernels, {facts.pip_count} pip packages (takes a minute "
                              "or two)", run=lambda: (env.build(console), env.register(ctx.state.tag,
                                                                                        ctx.loaded.path))))

    for group in sorted({a.group for a in accts} | {g for a in accts for g in a.extra_groups}):
        if group in facts.groups:
            changes.append(Change("unix group", group, "keep", "exists"))
        else:
            changes.append(Change("unix group", group, "create", "primary group of the event's users",
                                  run=lambda g=group: unix.ensure_group(g)))

    for a in accts:
        changes += _account_changes(ctx, facts, a)

    wanted = {a.user for a in accts}
    for entry in facts.leftovers.users:
        if entry.name not in wanted:
            changes += _departed_changes(ctx, facts, entry.name, drop_team_data=drop_team_data)

    changes += _hub_changes(ctx, facts, accts)
    return changes


def _access_changes(ctx: Context, facts: WorkspaceFacts, user: str, *, why: str) -> list[Change]:
    """A user whose access must end (locked, or removed from the file): password locked, server stopped, hub
    sessions and processes ended. Nothing of its files is touched."""
    if user not in facts.locked:
        return [Change("unix user", f"{user} access", "update", f"{why}: password logins refused (hub too), server "
                       "stopped, its hub sessions and processes ended; its home stays",
                       run=lambda: actions.lock_account(ctx, user))]
    if user in facts.busy:
        return [Change("unix user", f"{user} access", "update", f"{why}: its processes ended (its password is "
                       "locked)", run=lambda: (actions.end_hub_access(ctx, user), actions.end_processes(user)))]
    return []


def _departed_changes(ctx: Context, facts: WorkspaceFacts, user: str, *, drop_team_data: bool) -> list[Change]:
    """A member that left the file: its access ends at once; its home (the team's work) is deleted only with
    --drop-team-data, and then as a destructive change that `up` asks about."""
    out = _access_changes(ctx, facts, user, why="left the event file")
    if drop_team_data:
        # ARCHIVE-FIRST: the archive verb (issue 16) puts its "archive home" change before this drop
        out.append(Change("unix user", user, "drop", "no longer in the event file; its home goes too",
                          run=lambda: actions.drop_departed(ctx, user), destructive=True))
    else:
        out.append(Change("unix user", user, "keep", "no longer in the event file: kept with its home (its work); "
                                                     "`datathon up --drop-team-data` removes it (archive it first)"))
    return out


def describe(f: StaleFile) -> str:
    """A stale file for the plan, saying what the team put in its place when that is not a plain file."""
    return f.path if f.kind in ("missing", "file") else f"{f.path} (a {f.kind} is there: it is moved aside)"


def _account_changes(ctx: Context, facts: WorkspaceFacts, a: Account) -> list[Change]:
    af = facts.account(a.user)
    endpoint, folder = facts.endpoint, facts.dataset_folder
    assert endpoint is not None
    if af.entry is None:
        return [Change("unix user", a.user, "create", f"{a.kind} {a.name}: home {a.home} (0700), password, "
                                                      ".pgpass, example notebooks",
                       run=lambda: actions.create_account(ctx, a, endpoint, folder))]
    if not af.ours:
        return [Change("unix user", a.user, "blocked",
                       f"a Unix user {a.user} exists that datathon did not make for this event file (no record of "
                       f"it in {ctx.state.state_file}); rename the {a.kind}, or remove that user")]
    out: list[Change] = []
    locked = a.user in facts.want_locked
    if af.password != "current":
        why = "differs from the team's secret" if af.password == "differs" else \
            "its secret file is missing: a new one is made and set"
        out.append(Change("unix user", f"{a.user} password", "update", why,
                          run=lambda: actions.set_password(ctx, a.user, locked=locked)))
    if locked:
        out += _access_changes(ctx, facts, a.user, why="locked by the organizers (`datathon unlock` lets it in)")
    elif a.user in facts.locked:
        out.append(Change("unix user", f"{a.user} access", "update", "its password is locked and the team is not: "
                          "unlocked (`datathon lock` keeps a team out)", run=lambda: actions.unlock_account(ctx, a.user)))
    entry, h = af.entry, af.home
    assert h is not None  # observed for every user of ours
    a = dataclasses.replace(a, home=entry.home)  # the home the user has, wherever it is
    problems: list[str] = []
    others: list[str] = []
    if not h.is_dir:
        problems.append(f"home {a.home} is missing")
    elif h.open_to_others:
        problems.append("home is readable by others")
    link = h.datasets == "missing"
    if not af.group_ok:
        problems.append(f"groups are not {', '.join([a.group, *a.extra_groups])}")
    if entry.gecos != facts.mark:
        problems.append(f"comment changed to {entry.gecos!r}")  # chfn: harmless, the record decides; put back
    if af.tmpdir_problem:
        others.append(af.tmpdir_problem)
    if not af.recorded:
        others.append("record of the user incomplete")  # useradd was interrupted: recorded now
    stale = list(h.stale)
    if stale or link or problems or others:
        what = [describe(f) for f in stale] + (["~/datasets"] if link else []) + problems + others
        paths = [f.path for f in stale]
        out.append(Change("unix user", f"{a.user} home", "update", "; ".join(what),
                          run=lambda: actions.repair_account(ctx, a, entry.uid, endpoint, folder, paths, link,
                                                             bool(problems))))
    if not out:
        out.append(Change("unix user", a.user, "keep", f"{a.kind} {a.name}: " + (
            "locked (password logins refused, no process), home and files kept" if locked else
            "password, home and files as wanted")))
    return out


def _hub_changes(ctx: Context, facts: WorkspaceFacts, accts: list[Account]) -> list[Change]:
    ws = ctx.config.workspaces
    hub = hub_for(ctx)  # its methods run at apply time; what it is now is in the facts
    if not ws.hub:
        pids = list(facts.leftovers.hub_pids)
        return [Change("hub", hub.public_url, "drop", "hub: false in the event file (team servers stop too)",
                       run=lambda: stop_processes(pids), destructive=True)] if pids else []
    h = facts.hub
    assert h is not None and facts.endpoint is not None
    endpoint = facts.endpoint
    out = []
    if h.stale:
        out.append(Change("hub", "configuration", "update" if h.config_exists else "create",
                          f"{', '.join(h.stale)} from the event file",
                          run=lambda: actions.write_hub(ctx, accts, endpoint)))
    if not h.running:
        why = "JupyterHub is not running" + (" (its proxy holds the public port)" if h.proxy_current else "")
        if h.holders:  # the start stops there, naming them: said before anything runs
            why += "; " + "; ".join(f"port {p} is held by {', '.join(who)}" for p, who in h.holders)
        out.append(Change("hub", h.public_url, "start", why, run=hub.start))
    elif not h.proxy_current:
        def restart_all() -> None:
            hub.stop()
            hub.start()

        out.append(Change("hub", h.public_url, "restart", "its proxy is not running as configured (team servers "
                                                          "keep running)", run=restart_all))
    elif h.stale or not h.config_applied:
        def restart() -> None:
            hub.stop_hub()  # the proxy keeps the public port and the routes to team servers
            hub.start()

        out.append(Change("hub", h.public_url, "restart", "its configuration changed (team servers keep running)",
                          run=restart))
    else:
        out.append(Change("hub", h.public_url, "keep", "running with the current configuration"))
    return out
