"""The work behind the workspaces' changes, run only when an approved plan is applied.

Here, and only here, a team's password is made (its secret) and set, the home files that carry it are computed and
written, and state.json records what was done.
"""

from __future__ import annotations

import dataclasses
import logging
import pwd
from pathlib import Path

from datathon.core.context import Context
from datathon.core.endpoint import Endpoint
from datathon.workspaces import accounts, home, quota, record, sandbox
from datathon.workspaces.accounts import Account
from datathon.workspaces.hub import hub_for
from datathon.workspaces.observe import team_logins

log = logging.getLogger("datathon")


def record_password(ctx: Context, user: str, fingerprint: str | None) -> None:
    state = ctx.state.load()
    ws = state.setdefault("workspaces", {})
    ws.setdefault("passwords", {})[user] = fingerprint
    ctx.state.save(state)


def set_password(ctx: Context, user: str, *, locked: bool = False, password: str | None = None) -> None:
    """Set the Unix password from the team's secret (made now when there is none yet), or from `password` (a
    rotation's pending one). A locked user stays locked (chpasswd alone would let it in again)."""
    password = password if password is not None else ctx.state.secret(user)
    accounts.set_password(user, password)
    if locked:
        accounts.lock_password(user)
    record_password(ctx, user, accounts.password_fingerprint(user, password))


def end_hub_access(ctx: Context, user: str) -> None:
    """Stop the user's server and forget it in the hub: its cookies and tokens stop working at once."""
    hub = hub_for(ctx)
    if ctx.config.workspaces is not None and ctx.config.workspaces.hub and hub.is_running():
        hub.stop_server(user)
        hub.forget_user(user)


def lock_account(ctx: Context, user: str) -> None:
    """End a user's access without deleting anything: password logins refused (PAM, so the hub), its server
    stopped, its hub sessions and tokens gone, every process of it ended. Its home and files stay."""
    accounts.lock_password(user)
    end_hub_access(ctx, user)
    end_processes(user)


def end_processes(user: str) -> None:
    entry = accounts.lookup(user)
    if entry is not None and (n := accounts.kill_processes(entry.pw_uid, entry.pw_gid)):
        log.info("%s: ended %d process(es)", user, n)


def unlock_account(ctx: Context, user: str) -> None:
    accounts.unlock_password(user)
    restore_hub_user(ctx, user)


def restore_hub_user(ctx: Context, user: str) -> None:
    """Let the hub know the user again (forgetting it also took it off the hub's allowed users)."""
    hub = hub_for(ctx)
    if ctx.config.workspaces is not None and ctx.config.workspaces.hub and hub.is_running():
        admin = any(a.admin for a in accounts.wanted_accounts(ctx.config) if a.user == user)  # mentors_are_admins
        hub.restore_user(user, admin=admin)


def finish(ctx: Context, a: Account, endpoint: Endpoint, folder: Path | None, paths: list[str] | None,
           link: bool) -> None:
    """Write the home files (`paths`, or all when None) with the secrets as they are now, link ~/datasets, make
    the private TMPDIR and set the disk quota."""
    pw = pwd.getpwnam(a.user)
    a = dataclasses.replace(a, home=Path(pw.pw_dir))
    logins = team_logins(ctx, a, ctx.state.secret)
    files = home.home_files(ctx.config, a, endpoint, ctx.state.secret(a.user), logins)
    files = [f for f in files if paths is None or f.path in paths]
    moved = home.write_files(a, files, pw.pw_uid, pw.pw_gid)
    if link and folder is not None:
        home.link_datasets(a, folder, pw.pw_uid, pw.pw_gid)
    if aside := sandbox.ensure_tmpdir(ctx.state, a.user, pw.pw_uid, pw.pw_gid):
        moved.append(f"{sandbox.tmpdir(ctx.state, a.user)}: {aside}")
    quota.apply(ctx.config.workspaces, a.user, Path(pw.pw_dir))
    for line in moved:  # what the team planted where datathon writes: kept, renamed, and said
        log.warning("%s: %s", a.user, line)
        ctx.console.print(f"  [yellow]{a.user}[/]: {line}")


def create_account(ctx: Context, a: Account, endpoint: Endpoint, folder: Path | None) -> None:
    accounts.create_user(a, ctx.state)
    set_password(ctx, a.user)
    finish(ctx, a, endpoint, folder, None, True)


def repair_account(ctx: Context, a: Account, uid: int, endpoint: Endpoint, folder: Path | None, paths: list[str],
                   link: bool, user_problems: bool) -> None:
    if user_problems:  # group, comment, a missing or open home
        accounts.repair_user(a, ctx.state)
    record.created(ctx.state, a.user, uid)
    finish(ctx, a, endpoint, folder, paths, link)


LOGIN_FILES = [".pgpass", ".pg_service.conf"]  # the home files that carry passwords


def refresh_logins(ctx: Context, user: str, endpoint: Endpoint, *, restart: bool, locked: bool) -> None:
    """After a rotation: the home files that carry the passwords written again, the hub's sessions of the user
    ended (a cookie made with the old password), and its server started again when it ran, so that what the
    team runs next has the new password."""
    a = next(x for x in accounts.wanted_accounts(ctx.config) if x.user == user)
    finish(ctx, a, endpoint, hub_folder(ctx), LOGIN_FILES, False)
    end_hub_access(ctx, user)
    if locked:  # a locked team's rotation: it stays out
        return
    restore_hub_user(ctx, user)
    hub = hub_for(ctx)
    if restart and hub.is_running():
        hub.start_server(user)


def hub_folder(ctx: Context) -> Path | None:
    from datathon.workspaces.hub import datasets_folder

    return datasets_folder(ctx)


def drop_departed(ctx: Context, user: str) -> None:
    """A user no longer in the event file: its server stops, the user and its home go.
    ARCHIVE-FIRST: the archive verb (issue 16) runs its "archive home" change before this one."""
    hub = hub_for(ctx)
    if hub.is_running():
        hub.stop_server(user)
    for line in accounts.remove_user(user, ctx.state):
        ctx.console.print(f"  {user}: removed {line}")


def write_hub(ctx: Context, accts: list[Account], endpoint: Endpoint) -> None:
    hub_for(ctx).write(accts, home.user_environment(ctx.config, ctx.state, accts, endpoint))
