"""Unix accounts on this machine: small idempotent helpers (check before acting), shared by every part."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess

from datathon.errors import ProvisionError


def tool(name: str) -> str:
    """useradd, groupadd and friends live in /usr/sbin, which a non-login PATH may lack."""
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") or name


def run(args: list[str], *, what: str, stdin: str | None = None) -> None:
    """Run an account tool (useradd, chpasswd, ...); `stdin` may hold a password, so it is never logged."""
    try:
        proc = subprocess.run([tool(args[0]), *args[1:]], input=stdin, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise ProvisionError(f"{what}: {args[0]} is not installed", hint="install the `passwd` package") from None
    except subprocess.TimeoutExpired:
        raise ProvisionError(f"{what}: {args[0]} did not finish in 60 s", hint="try again") from None
    if proc.returncode != 0:
        raise ProvisionError(f"{what} failed: {(proc.stderr or proc.stdout).strip()}",
                             hint="datathon must run as root to manage Unix groups")


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def group_gid(name: str) -> int:
    return grp.getgrnam(name).gr_gid


def group_members(name: str) -> list[str]:
    """Users in the group: listed members and users whose primary group it is."""
    g = grp.getgrnam(name)
    primary = [p.pw_name for p in pwd.getpwall() if p.pw_gid == g.gr_gid]
    return sorted(set(g.gr_mem) | set(primary))


def ensure_group(name: str) -> bool:
    """Create a system group unless it exists; True when it was created now."""
    if group_exists(name):
        return False
    run(["groupadd", "--system", name], what=f"creating group {name}")
    return True


def remove_group(name: str) -> bool:
    """Delete the group if it exists; True when it was deleted now."""
    if not group_exists(name):
        return False
    run(["groupdel", name], what=f"removing group {name}")
    return True
