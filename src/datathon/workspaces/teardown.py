"""The workspaces' teardown, planned from what was observed (facts.Leftovers): the hub and its processes, the
event's Unix users with their processes, IPC objects and files anywhere, the private TMPDIRs, the groups.

Pure like the plan: the changes carry `run=` callables that do the work when the teardown is applied.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from datathon.core import unix
from datathon.core.context import Context
from datathon.core.plan import Change
from datathon.workspaces import accounts, record, remnants
from datathon.workspaces.facts import Leftovers
from datathon.workspaces.hub import HubApiError, hub_for, stop_processes


@dataclass
class TeardownReport:
    """What the workspace teardown removed (lines for `down`'s report) and the uids whose traces must be gone."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    uids: set[int] = field(default_factory=set)
    per_user: dict[str, list[str]] = field(default_factory=dict)  # what ended before the sweep, per user


def teardown_plan(ctx: Context, left: Leftovers, report: TeardownReport | None = None) -> list[Change]:
    report = report if report is not None else TeardownReport()
    out: list[Change] = []
    if left.hub_running and left.hub_url is not None:
        def stop_hub() -> None:
            hub = hub_for(ctx)
            try:
                for user, info in hub.users().items():
                    if (info.get("servers") or {}).get(""):
                        hub.stop_server(user)
            except (OSError, HubApiError):
                pass  # the users' processes are ended with the users below
            hub.stop()

        out.append(Change("hub", left.hub_url, "drop", "stop the team servers, the hub and its proxy", run=stop_hub,
                          destructive=True))
    elif pids := list(left.hub_pids):
        out.append(Change("hub", "processes", "drop", f"a hub of this event still runs (pids {pids})",
                          run=lambda: stop_processes(pids), destructive=True))
    users, gone = list(left.users), list(left.gone)
    if users or gone:
        # Files first, while every user still holds its uid (a uid freed by userdel may go to a new user at once,
        # whose files a later sweep would take); its processes end first so that none writes more.
        def sweep() -> None:
            owners: dict[int, str | None] = {uid: None for _, uid in gone}
            for entry in users:
                what = []
                if n := accounts.kill_processes(entry.uid, entry.gid):
                    what.append(f"{n} process(es)")
                what += remnants.remove_ipc({entry.uid})
                report.per_user[entry.name] = what
                owners[entry.uid] = entry.name
            report.uids |= set(owners)
            done = accounts.sweep_files(owners, homes=tuple(e.home for e in users))  # homes: userdel removes them
            ipc = remnants.remove_ipc(set(owners))
            report.lines.append((f"files and IPC objects of uids {', '.join(map(str, sorted(owners)))}",
                                 "removed: " + ", ".join(done + ipc) if done or ipc else "none found"))
            for user, _ in gone:
                record.forget(ctx.state, user)

        out.append(Change("unix user", "files of the event's users", "drop",
                          "their processes ended, then their files on every local filesystem (/tmp, /var/tmp, "
                          "/dev/shm, /run/lock, ...)", run=sweep, destructive=True))
    for entry in users:
        def drop_user(u=entry.name, uid=entry.uid) -> None:
            report.uids.add(uid)
            done = report.per_user.get(u, []) + accounts.remove_user(u, ctx.state, files=False)  # files: swept above
            report.lines.append((f"unix user {u} (uid {uid})", "removed: " + ", ".join(done)))
            record.forget(ctx.state, u)

        out.append(Change("unix user", entry.name, "drop", "its processes, IPC objects, home and files anywhere",
                          run=drop_user, destructive=True))
    if left.tmp_root_exists and left.tmp_root is not None:
        tmp: Path = left.tmp_root
        out.append(Change("folder", str(tmp), "drop", "the teams' private TMPDIRs",
                          run=lambda: shutil.rmtree(tmp), destructive=True))
    for group in left.groups:
        def drop(g=group) -> None:
            if not unix.group_members(g):  # a member datathon did not make keeps its group
                unix.remove_group(g)

        out.append(Change("unix group", group, "drop", "the event's group, once its users are gone",
                          run=drop, destructive=True))
    return out
