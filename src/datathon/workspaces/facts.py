"""What the workspaces look like on this machine, as observed (observe.py) and planned from (plan.py).

Plain frozen records: no secret in them (a password's state is "current", "differs" or "no secret"), nothing that
reads or writes when used, so the planner is a pure function of these and the event file, and its tests fake them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from datathon.core.endpoint import Endpoint
from datathon.workspaces.gpus import GpuInventory


@dataclass(frozen=True)
class UnixEntry:
    """A Unix user as the password database has it."""

    name: str
    uid: int
    gid: int
    gecos: str
    home: Path


@dataclass(frozen=True)
class StaleFile:
    """A file of a home that must be written: missing, not as datathon writes it, or with something else there."""

    path: str  # relative to the home
    kind: str  # what is there now: missing, file, folder, link, FIFO, socket, device node, ...


@dataclass(frozen=True)
class HomeFacts:
    is_dir: bool  # a plain folder (not a link, not missing)
    open_to_others: bool = False  # group or others have any permission on it
    stale: tuple[StaleFile, ...] = ()
    datasets: str | None = None  # ~/datasets: ok, missing, other (the team's own); None: no dataset folder here


# A password's state: "current" (set from the secret, unchanged since), "differs" (someone ran passwd, or the
# secret changed), "no secret" (its secret file is missing: one is made and set when the plan runs).
PasswordState = str


@dataclass(frozen=True)
class AccountFacts:
    user: str
    entry: UnixEntry | None = None  # None: no such Unix user
    ours: bool = False  # datathon's record names it with this uid (or made it while useradd ran)
    recorded: bool = False  # the record is complete (uid written after useradd)
    password: PasswordState = "no secret"
    group_ok: bool = True  # its primary group is the event's group for it
    home: HomeFacts | None = None
    tmpdir_problem: str | None = None


@dataclass(frozen=True)
class HubFacts:
    public_url: str
    config_exists: bool = False
    stale: tuple[str, ...] = ()  # names of the generated files that differ from the event file
    running: bool = False
    proxy_current: bool = False  # our proxy runs as configured and holds its ports
    config_applied: bool = False  # the running hub started with the files as they are now
    ports: tuple[int, int, int] | None = None  # public, hub, proxy API
    holders: tuple[tuple[int, tuple[str, ...]], ...] = ()  # a port of the hub's held by another process: who


@dataclass(frozen=True)
class Serving:
    """What runs for the teams now, read from the machine (for `status`, never from the event file)."""

    hub_pid: int | None = None
    hub_error: str | None = None  # the hub runs but its API did not answer
    # user -> (its server: running, pending or stopped; last activity); None: the hub was not asked
    hub_users: dict[str, tuple[str, str | None]] | None = None
    present: frozenset[str] = frozenset()  # the wanted users that exist as Unix users
    limits_seen: tuple[tuple[str, tuple[str, ...]], ...] = ()  # per running team server: (user, what is not set)
    quota_ok: bool = False  # the homes' filesystem has user quotas and setquota
    quota_detail: str = ""
    quotas: tuple[tuple[str, str | None], ...] = ()  # per event user: its block limit (KiB), None: none set
    cgroups: str = ""  # why per-team memory/CPU limits are or are not enforced here
    # per running team server: (user, the team environment it runs from); another than env_prefix: restart it
    server_envs: tuple[tuple[str, Path], ...] = ()


@dataclass(frozen=True)
class Leftovers:
    """What this event file's workspaces made that is there now, whatever the file says (for teardown)."""

    hub_url: str | None = None  # the hub's address, when the file still has a `workspaces:` section
    hub_running: bool = False
    hub_pids: tuple[int, ...] = ()  # this event's hub, proxy and services that run
    users: tuple[UnixEntry, ...] = ()  # the event's Unix users, from datathon's record
    gone: tuple[tuple[str, int], ...] = ()  # recorded users whose Unix user is gone: (name, uid) to sweep after
    tmp_root: Path | None = None
    tmp_root_exists: bool = False
    groups: tuple[str, ...] = ()  # the event's Unix groups that exist


@dataclass(frozen=True)
class WorkspaceFacts:
    configured: bool  # the event file has a `workspaces:` section
    leftovers: Leftovers = field(default_factory=Leftovers)
    root: bool = True
    untrusted: tuple[tuple[str, Path, str], ...] = ()  # (setting, folder, why root must not use it)
    gpus: GpuInventory | None = None
    endpoint: Endpoint | None = None
    apt_missing: tuple[str, ...] = ()
    apt_count: int = 0
    env_prefix: Path | None = None
    env_built: bool = False
    # not built yet, but a built one differs only by fewer pip packages: (its prefix, the packages to add)
    env_base: tuple[Path, tuple[str, ...]] | None = None
    env_registered: bool = True  # this event is recorded as one of the environment's users
    cli_current: bool = False
    pip_count: int = 0
    groups: frozenset[str] = frozenset()  # the event's groups that exist
    mark: str = ""  # what datathon writes in its users' comment (GECOS) field
    accounts: tuple[AccountFacts, ...] = ()
    hub: HubFacts | None = None  # None: hub: false, or not observed (the plan stops before it)
    dataset_folder: Path | None = None
    serving: Serving = field(default_factory=Serving)
    # access (core.access): the users an organizer locked out; the event's users whose password is locked now
    # ("!" before the hash); and those to be locked (locked teams, removed members) that still run processes
    want_locked: frozenset[str] = frozenset()
    locked: frozenset[str] = frozenset()
    busy: frozenset[str] = frozenset()

    def account(self, user: str) -> AccountFacts:
        return next((a for a in self.accounts if a.user == user), AccountFacts(user))
