"""Per-team disk quotas, where the filesystem of the homes has them: user quotas turned on at mount time
(usrquota, usrjquota, quota, uquota) and the quota tools installed. Elsewhere `status` says plainly that teams
share the disk (on these machines: no quota mount option, no setquota)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from datathon.config.workspaces import Workspaces
from datathon.errors import ProvisionError

QUOTA_OPTIONS = {"usrquota", "usrjquota", "quota", "uquota", "uqnoenforce"}


@dataclass(frozen=True)
class Support:
    ok: bool
    mount: Path
    detail: str


def _mount_of(path: Path) -> tuple[Path, str, set[str]]:
    best: tuple[Path, str, set[str]] = (Path("/"), "unknown", set())
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return best
    target = path.resolve() if path.exists() else path
    for line in lines:
        f = line.split()
        if len(f) < 4:
            continue
        mount = Path(f[1])
        if (mount == target or mount in target.parents) and len(mount.parts) >= len(best[0].parts):
            best = (mount, f[2], set(f[3].split(",")))
    return best


def support(path: Path) -> Support:
    mount, fstype, options = _mount_of(path)
    if not options & QUOTA_OPTIONS:
        return Support(False, mount, f"{mount} ({fstype}) is mounted without user quotas (usrquota)")
    if shutil.which("setquota", path="/usr/sbin:/sbin:/usr/bin:/bin") is None:
        return Support(False, mount, f"{mount} has user quotas but setquota is not installed (apt-get install quota)")
    return Support(True, mount, f"user quotas on {mount} ({fstype})")


def kib(text: str) -> int:
    from datathon.workspaces.sandbox import size_bytes

    return size_bytes(text) // 1024


def apply(ws: Workspaces | None, user: str, home: Path) -> bool:
    """Set the team's block quota (soft = hard = limits.disk) where the filesystem allows; True when set."""
    if ws is None or not ws.limits.disk:
        return False
    s = support(home)
    if not s.ok:
        return False
    limit = str(kib(ws.limits.disk))
    res = subprocess.run([shutil.which("setquota", path="/usr/sbin:/sbin") or "setquota", "-u", user, limit, limit,
                          "0", "0", str(s.mount)], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise ProvisionError(f"setting the disk quota of {user} failed: {(res.stderr or res.stdout).strip()}",
                             hint="check that quotas are on (quotaon -p), or remove workspaces.limits.disk")
    return True


def observed(user: str, home: Path) -> str | None:
    """The block limit the filesystem has for `user` (KiB), as `quota` reports it; None when there is none."""
    s = support(home)
    if not s.ok:
        return None
    tool = shutil.which("quota", path="/usr/bin:/usr/sbin:/bin:/sbin")
    if tool is None:
        return None
    res = subprocess.run([tool, "-w", "-u", user], capture_output=True, text=True, timeout=30)
    for line in res.stdout.splitlines():
        f = line.split()  # filesystem, blocks, quota, limit, ...
        if len(f) > 3 and f[0].startswith("/") and f[3].rstrip("*") not in ("0", ""):
            return f[3]
    return None
