"""The workspaces planner as a pure function: the event file + faked facts -> expected changes (no root, no hub, no
Unix user). And observing + planning a fresh event on this machine writes nothing."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from datathon.config import load_config
from datathon.core.context import Context
from datathon.core.endpoint import Endpoint
from datathon.core.state import StateStore
from datathon.workspaces import accounts, names, sandbox
from datathon.workspaces.facts import (
    AccountFacts,
    HomeFacts,
    HubFacts,
    Leftovers,
    StaleFile,
    UnixEntry,
    WorkspaceFacts,
)
from datathon.workspaces.gpus import GpuInventory
from datathon.workspaces.hub import hub_for
from datathon.workspaces.observe import observe
from datathon.workspaces.part import WorkspacesPart
from datathon.workspaces.plan import plan

EVENT = {"event": "ev", "teams": [{"name": "alpha"}, {"name": "beta"}], "mentors": [{"name": "mia"}],
         "databases": [{"name": "db"}], "workspaces": {"port": 18000}}
NO_GPU = GpuInventory(0, [], "nvidia-smi not found")
ENDPOINT = Endpoint("127.0.0.1", 5432, "require")
PREFIX = Path("/opt/datathon/envs/env-0123456789ab")


def make_ctx(folder: Path, data: dict) -> Context:
    path = folder / "datathon.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    loaded = load_config(path)
    return Context(loaded=loaded, state=StateStore(loaded.base_dir, loaded.config.event),
                   console=Console(file=io.StringIO(), width=200))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Context:
    return make_ctx(tmp_path_factory.mktemp("plan_ws"), EVENT)


def entry(user: str, uid: int, gecos: str) -> UnixEntry:
    return UnixEntry(user, uid, 5000, gecos, Path("/home") / user)


def converged(ctx: Context) -> WorkspaceFacts:
    """This machine right after a successful `up` of EVENT."""
    mark = names.MARK.format(owner=ctx.state.owner)
    users = [a.user for a in accounts.wanted_accounts(ctx.config)]
    entries = tuple(entry(u, 2000 + i, mark) for i, u in enumerate(users))
    url = hub_for(ctx).public_url
    return WorkspaceFacts(
        configured=True,
        leftovers=Leftovers(hub_url=url, hub_running=True, hub_pids=(101, 102), users=entries,
                            tmp_root=sandbox.tmp_root(ctx.state), tmp_root_exists=True,
                            groups=("ev_teams", "ev_mentors")),
        gpus=NO_GPU, endpoint=ENDPOINT, apt_count=5, env_prefix=PREFIX, env_built=True, cli_current=True,
        pip_count=20, groups=frozenset({"ev_teams", "ev_mentors"}), mark=mark,
        accounts=tuple(AccountFacts(e.name, e, ours=True, recorded=True, password="current", home=HomeFacts(True))
                       for e in entries),
        hub=HubFacts(url, config_exists=True, running=True, proxy_current=True, config_applied=True,
                     ports=(18000, 700, 701)))


def fresh(ctx: Context) -> WorkspaceFacts:
    """A machine this event never ran on."""
    return WorkspaceFacts(configured=True, gpus=NO_GPU, endpoint=ENDPOINT, apt_missing=("r-base-core",), apt_count=5,
                          env_prefix=PREFIX, pip_count=20, mark=names.MARK.format(owner=ctx.state.owner),
                          hub=HubFacts(hub_for(ctx).public_url, stale=("jupyterhub_config.py", "user-env.json"),
                                       ports=(18000, 700, 701)))


def rows(changes, *, keep: bool = False):
    return [(c.action, c.component, c.target, c.reason) for c in changes if keep or c.action != "keep"]


def with_account(facts: WorkspaceFacts, user: str, **kw) -> WorkspaceFacts:
    accts = tuple(dataclasses.replace(a, **kw) if a.user == user else a for a in facts.accounts)
    return dataclasses.replace(facts, accounts=accts)


def test_converged_needs_nothing_and_every_keep_says_why(ctx):
    changes = plan(ctx, converged(ctx))
    url = hub_for(ctx).public_url
    assert rows(changes, keep=True) == [
        ("keep", "package", "apt packages", "5 installed"),
        ("keep", "environment", str(PREFIX), "built for this package list"),
        ("keep", "unix group", "ev_mentors", "exists"),
        ("keep", "unix group", "ev_teams", "exists"),
        ("keep", "unix user", "ev_alpha", "team alpha: password, home and files as wanted"),
        ("keep", "unix user", "ev_beta", "team beta: password, home and files as wanted"),
        ("keep", "unix user", "ev_mia", "mentor mia: password, home and files as wanted"),
        ("keep", "hub", url, "running with the current configuration"),
    ]
    assert all(c.reason for c in changes)


def test_a_fresh_machine_gets_everything_in_order(ctx):
    changes = plan(ctx, fresh(ctx))
    assert [(c.action, c.component, c.target) for c in changes] == [
        ("create", "package", "apt: r-base-core"),
        ("create", "environment", str(PREFIX)),
        ("create", "unix group", "ev_mentors"),
        ("create", "unix group", "ev_teams"),
        ("create", "unix user", "ev_alpha"),
        ("create", "unix user", "ev_beta"),
        ("create", "unix user", "ev_mia"),
        ("create", "hub", "configuration"),
        ("start", "hub", hub_for(ctx).public_url),
    ]
    assert all(c.run is not None and not c.destructive for c in changes)
    assert changes[4].reason == "team alpha: home /home/ev_alpha (0700), password, .pgpass, example notebooks"


def _hub(**kw):
    return lambda f: dataclasses.replace(f, hub=dataclasses.replace(f.hub, **kw))


def _acct(user, **kw):
    return lambda f: with_account(f, user, **kw)


def _home(user, **kw):
    return lambda f: with_account(f, user, home=dataclasses.replace(f.account(user).home, **kw))


def _entry(user, **kw):
    return lambda f: with_account(f, user, entry=dataclasses.replace(f.account(user).entry, **kw))


URL = "http://127.0.0.1:18000"


@pytest.mark.parametrize("breakage, expected", [
    # someone ran passwd (or the secret changed): set back
    (_acct("ev_beta", password="differs"),
     [("update", "unix user", "ev_beta password", "differs from the team's secret")]),
    (_acct("ev_beta", password="no secret"),
     [("update", "unix user", "ev_beta password", "its secret file is missing: a new one is made and set")]),
    # a team that ran chfn stays ours: its mark is put back, nothing is blocked
    (_entry("ev_alpha", gecos="42"), [("update", "unix user", "ev_alpha home", "comment changed to '42'")]),
    # a folder the team made where .pgpass goes is moved aside, and the plan says so
    (_home("ev_beta", stale=(StaleFile(".pgpass", "folder"), StaleFile(".postgresql/root.crt", "socket"),
                            StaleFile("examples/02-r-sql.ipynb", "missing"))),
     [("update", "unix user", "ev_beta home", ".pgpass (a folder is there: it is moved aside); .postgresql/root.crt "
                                              "(a socket is there: it is moved aside); examples/02-r-sql.ipynb")]),
    (_home("ev_alpha", open_to_others=True), [("update", "unix user", "ev_alpha home", "home is readable by others")]),
    (_home("ev_alpha", is_dir=False, stale=(StaleFile(".pgpass", "missing"),)),
     [("update", "unix user", "ev_alpha home", ".pgpass; home /home/ev_alpha is missing")]),
    (_home("ev_alpha", datasets="missing"), [("update", "unix user", "ev_alpha home", "~/datasets")]),
    (_home("ev_alpha", datasets="other"), []),  # the team's own ~/datasets stays
    (_acct("ev_alpha", group_ok=False), [("update", "unix user", "ev_alpha home", "groups are not ev_teams")]),
    (_acct("ev_mia", tmpdir_problem="private TMPDIR /x is missing"),
     [("update", "unix user", "ev_mia home", "private TMPDIR /x is missing")]),
    (_acct("ev_mia", recorded=False), [("update", "unix user", "ev_mia home", "record of the user incomplete")]),
    (_hub(running=False, proxy_current=False), [("start", "hub", URL, "JupyterHub is not running")]),
    (_hub(running=False), [("start", "hub", URL, "JupyterHub is not running (its proxy holds the public port)")]),
    (_hub(running=False, proxy_current=False, holders=((18000, ("pid 7 (python3) of user ev_beta (uid 2001)",)),)),
     [("start", "hub", URL, "JupyterHub is not running; port 18000 is held by pid 7 (python3) of user ev_beta "
                            "(uid 2001)")]),
    (_hub(proxy_current=False),
     [("restart", "hub", URL, "its proxy is not running as configured (team servers keep running)")]),
    (_hub(config_applied=False), [("restart", "hub", URL, "its configuration changed (team servers keep running)")]),
    (_hub(stale=("jupyterhub_config.py",)),
     [("update", "hub", "configuration", "jupyterhub_config.py from the event file"),
      ("restart", "hub", URL, "its configuration changed (team servers keep running)")]),
    (lambda f: dataclasses.replace(f, apt_missing=("r-cran-dbi",)),
     [("create", "package", "apt: r-cran-dbi", "Debian packages the teams need")]),
    (lambda f: dataclasses.replace(f, cli_current=False),
     [("update", "environment", "datathon command",
       "teams run `datathon data pull` in their terminal: copy this version")]),
    (lambda f: dataclasses.replace(f, groups=frozenset({"ev_teams"})),
     [("create", "unix group", "ev_mentors", "primary group of the event's users")]),
])
def test_each_drift_is_found_and_only_it(ctx, breakage, expected):
    assert rows(plan(ctx, breakage(converged(ctx)))) == expected


def test_a_user_datathon_did_not_make_is_blocked(ctx):
    facts = with_account(converged(ctx), "ev_beta", ours=False)
    assert rows(plan(ctx, facts)) == [
        ("blocked", "unix user", "ev_beta", f"a Unix user ev_beta exists that datathon did not make for this event "
                                            f"file (no record of it in {ctx.state.state_file}); rename the team, or "
                                            "remove that user")]


def test_a_user_that_left_the_file_is_locked_at_once_and_dropped_with_its_home_only_when_asked(ctx):
    f = converged(ctx)
    gone = entry("ev_gamma", 2099, f.mark)
    facts = dataclasses.replace(f, leftovers=dataclasses.replace(f.leftovers, users=(*f.leftovers.users, gone)))
    lock = ("update", "unix user", "ev_gamma access", "left the event file: password logins refused (hub too), "
            "server stopped, its hub sessions and processes ended; its home stays")
    changes = plan(ctx, facts)
    assert rows([c for c in changes if c.action != "keep"]) == [lock]
    assert not any(c.destructive for c in changes)
    assert [c.reason for c in changes if c.target == "ev_gamma"] == [
        "no longer in the event file: kept with its home (its work); `datathon up --drop-team-data` removes it "
        "(archive it first)"]
    changes = [c for c in plan(ctx, facts, drop_team_data=True) if c.action != "keep"]
    assert rows(changes) == [lock, ("drop", "unix user", "ev_gamma", "no longer in the event file; its home goes too")]
    assert [c.destructive for c in changes] == [False, True]
    # locked already, no process left: nothing but the kept home; a process that survived is ended
    facts = dataclasses.replace(facts, locked=frozenset({"ev_gamma"}))
    assert rows([c for c in plan(ctx, facts) if c.action != "keep"]) == []
    facts = dataclasses.replace(facts, busy=frozenset({"ev_gamma"}))
    assert rows([c for c in plan(ctx, facts) if c.action != "keep"]) == [
        ("update", "unix user", "ev_gamma access", "left the event file: its processes ended (its password is locked)")]


def test_a_locked_team_stays_locked_and_an_unlocked_one_is_let_in(ctx):
    f = converged(ctx)
    facts = dataclasses.replace(f, want_locked=frozenset({"ev_beta"}))
    assert rows([c for c in plan(ctx, facts) if c.action != "keep"]) == [
        ("update", "unix user", "ev_beta access", "locked by the organizers (`datathon unlock` lets it in): password "
         "logins refused (hub too), server stopped, its hub sessions and processes ended; its home stays")]
    # `up` after the lock: nothing undoes it (today's bug: the password was set again, which unlocked it)
    facts = dataclasses.replace(facts, locked=frozenset({"ev_beta"}))
    changes = plan(ctx, facts)
    assert rows([c for c in changes if c.action != "keep"]) == []
    assert "locked (password logins refused, no process)" in next(c.reason for c in changes if c.target == "ev_beta")
    # the lock recorded in state is gone (unlock): the password is unlocked again
    facts = dataclasses.replace(facts, want_locked=frozenset())
    assert [(a, t) for a, _, t, _ in rows([c for c in plan(ctx, facts) if c.action != "keep"])] == [
        ("update", "ev_beta access")]


@pytest.mark.parametrize("facts, expected", [
    (lambda f: dataclasses.replace(f, root=False),
     ("blocked", "workspaces", "Unix users and the hub",
      "need root (useradd, PAM logins, servers run as each team); run datathon as root")),
    (lambda f: dataclasses.replace(f, untrusted=(("workspaces.home_root", Path("/srv/h"), "/srv is writable by other "
                                                                                        "users"),)),
     ("blocked", "workspaces", "workspaces.home_root", "/srv/h: /srv is writable by other users; choose a folder "
                                                     "only root can change, e.g. /opt/datathon/envs or /home")),
])
def test_what_stops_everything(ctx, facts, expected):
    assert rows(plan(ctx, facts(converged(ctx))), keep=True) == [expected]


def test_gpus_asked_beyond_the_machine_are_refused(tmp_path):
    data = {**EVENT, "teams": [{"name": "alpha", "gpus": 1}, {"name": "beta"}]}
    gctx = make_ctx(tmp_path, data)
    assert rows(plan(gctx, converged(gctx)), keep=True) == [
        ("blocked", "gpu", "GPUs", "the teams ask for 1 GPU(s) and this machine has 0 (no GPU (nvidia-smi not found))")]
    two = dataclasses.replace(converged(gctx), gpus=GpuInventory(2, ["H200", "H200"], "nvidia-smi"))
    assert ("keep", "gpu", "GPUs", "alpha: 0") in rows(plan(gctx, two), keep=True)


def test_hub_false_stops_a_hub_that_runs(tmp_path):
    hctx = make_ctx(tmp_path, {**EVENT, "workspaces": {"port": 18000, "hub": False}})
    facts = dataclasses.replace(converged(hctx), hub=None)
    changes = [c for c in plan(hctx, facts) if c.component == "hub"]
    assert rows(changes) == [("drop", "hub", URL, "hub: false in the event file (team servers stop too)")]
    assert changes[0].destructive
    left = dataclasses.replace(facts.leftovers, hub_pids=())
    assert [c for c in plan(hctx, dataclasses.replace(facts, leftovers=left)) if c.component == "hub"] == []


def test_a_removed_workspaces_section_tears_down_what_an_earlier_file_made_but_the_groups(tmp_path):
    data = {k: v for k, v in EVENT.items() if k != "workspaces"}
    nctx = make_ctx(tmp_path, data)
    made = converged(make_ctx(tmp_path, EVENT)).leftovers
    nctx = make_ctx(tmp_path, data)
    left = dataclasses.replace(made, hub_url=None, hub_running=False, gone=(("ev_old", 2050),))
    changes = plan(nctx, WorkspaceFacts(configured=False, leftovers=left))
    assert [(c.action, c.component, c.target) for c in changes] == [
        ("drop", "hub", "processes"),
        ("drop", "unix user", "files of the event's users"),  # first, while every user still holds its uid
        ("drop", "unix user", "ev_alpha"), ("drop", "unix user", "ev_beta"), ("drop", "unix user", "ev_mia"),
        ("drop", "folder", str(sandbox.tmp_root(nctx.state))),
    ]  # the teams' group stays: a local dataset store may still give files to it (`down` removes it)
    assert all(c.destructive for c in changes)
    assert changes[0].reason == "a hub of this event still runs (pids [101, 102])"
    assert plan(nctx, WorkspaceFacts(configured=False)) == []


def test_planning_is_pure_and_quick(ctx):
    import time

    start = time.monotonic()
    for _ in range(50):
        plan(ctx, converged(ctx))
        plan(ctx, fresh(ctx))
    assert time.monotonic() - start < 0.5
    assert not ctx.state.root.exists() and not ctx.state.root.parent.exists()


def test_observe_and_plan_of_a_fresh_event_write_nothing(tmp_path):
    """`datathon plan` (and `status`) on a fresh event file: no state folder, no secret, no Unix user, no folder."""
    fctx = make_ctx(tmp_path, {**EVENT, "event": "wsplanfresh", "storage": {"backend": "local"}})
    before = sorted(p.name for p in tmp_path.iterdir())
    part = WorkspacesPart(fctx, lambda: ENDPOINT)
    facts = part.observe()
    changes = part.plan(facts)
    part.status(part.observe("status"))
    assert part.teardown(part.observe("teardown")) == []
    again = plan(fctx, observe(fctx, ENDPOINT))  # the module's functions, as the part calls them
    assert [(c.action, c.target) for c in changes] == [(c.action, c.target) for c in again]
    assert changes  # something to do (or, not as root, the reason it cannot be done)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no .datathon: no state, no secret
    assert not fctx.state.root.exists() and not fctx.state.secrets_dir.exists()
    assert not sandbox.tmp_root(fctx.state).exists()
    assert not fctx.config.storage.local_root(fctx.config.event).exists()
    for a in accounts.wanted_accounts(fctx.config):
        assert accounts.lookup(a.user) is None and not a.home.exists()
    if os.geteuid() == 0:
        assert {c.target for c in changes if c.action == "create" and c.component == "unix user"} == {
            "wsplanfresh_alpha", "wsplanfresh_beta", "wsplanfresh_mia"}


def test_status_is_computed_from_the_facts(ctx):
    from datathon.workspaces.facts import Serving
    from datathon.workspaces.lifecycle import workspace_status

    serving = Serving(hub_pid=4242, hub_users={"ev_alpha": ("running", None), "ev_beta": ("stopped", None)},
                      present=frozenset({"ev_alpha", "ev_beta"}),
                      limits_seen=(("ev_alpha", ("umask 0022",)),),
                      quota_detail="/ (ext4) is mounted without user quotas (usrquota)", cgroups="no cgroups v2 here")
    comps, servers = workspace_status(ctx, dataclasses.replace(converged(ctx), serving=serving))
    by = {c.name: c for c in comps}
    assert by["JupyterHub"].state == "running" and "pid 4242" in by["JupyterHub"].detail
    assert by["per-process limits, umask, TMPDIR"].state == "not enforced"
    assert "ev_alpha: umask 0022" in by["per-process limits, umask, TMPDIR"].detail
    assert by["team environment"].state == "built" and by["GPUs"].healthy
    assert [(s.user, s.unix_user, s.server) for s in servers] == [
        ("ev_alpha", True, "running"), ("ev_beta", True, "stopped"), ("ev_mia", False, "stopped")]
    stopped = dataclasses.replace(converged(ctx), env_built=False)
    comps, servers = workspace_status(ctx, stopped)
    by = {c.name: c for c in comps}
    assert by["JupyterHub"].state == "stopped" and by["team environment"].state == "missing"
    assert {s.server for s in servers} == {"unknown"}


def test_an_added_package_extends_a_copy_and_status_names_the_servers_on_the_old_one(ctx):
    from datathon.workspaces.facts import Serving
    from datathon.workspaces.lifecycle import outdated_servers, workspace_status

    old = PREFIX.parent / "env-0ld"
    facts = dataclasses.replace(converged(ctx), env_built=False, env_base=(old, ("tabulate",)))
    (env,) = [c for c in plan(ctx, facts) if c.component == "environment"]
    assert env.action == "create" and env.reason.startswith("a copy of env-0ld plus only tabulate")
    serving = Serving(hub_pid=1, hub_users={"ev_alpha": ("running", None), "ev_beta": ("running", None)},
                      server_envs=(("ev_alpha", old), ("ev_beta", PREFIX)))
    facts = dataclasses.replace(converged(ctx), serving=serving)
    assert outdated_servers(facts) == ["ev_alpha"]
    comps, servers = workspace_status(ctx, facts)
    by = {c.name: c for c in comps}
    envs = by["team servers on the current environment"]
    assert envs.state == "restart needed" and not envs.healthy and "`datathon restart ev_alpha`" in envs.detail
    assert [(s.user, s.environment, s.outdated) for s in servers] == [
        ("ev_alpha", "env-0ld", True), ("ev_beta", "current", False), ("ev_mia", "-", False)]
    facts = dataclasses.replace(facts, serving=dataclasses.replace(serving, server_envs=(("ev_beta", PREFIX),)))
    assert {c.name: c for c in workspace_status(ctx, facts)[0]}["team servers on the current environment"].healthy
