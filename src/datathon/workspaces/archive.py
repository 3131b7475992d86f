"""A team's home and environment, archived and restored.

tar runs as the team's own Unix user, not as root: whatever the team planted (a link out of the home, a link
swapped in for a folder while tar walks it) can then reach only what the team could read anyway. tar stores a
link as a link (it never follows one), stays on the home's filesystem, and skips datathon's own files, which hold
the team's password or this event's settings (.pgpass, .pg_service.conf, the database settings for login shells
and R: `up` writes them again, for the event the work is restored into) and what is no work: caches, the link to
the shared datasets. Extracting on restore runs as the team too (GNU tar refuses `..` and absolute names).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from datathon.errors import ProvisionError
from datathon.workspaces.accounts import Account

TAR_TIMEOUT = 6 * 3600
ENV_TIMEOUT = 180
# Relative to the home (tar's --exclude with --anchored). The datasets link only when it is the event's own.
EXCLUDED = ["./.cache", "./.pgpass", "./.pg_service.conf", "./.postgresql", "./.config/datathon", "./.bash_profile",
            "./.Renviron", "./.local/share/jupyter/runtime", "./.npm", "./.local/share/Trash"]
EXCLUDED_ANYWHERE = ["__pycache__"]


def compressor() -> tuple[str, str]:
    """(tar option, file suffix): zstd when this machine has it, else gzip."""
    return ("--zstd", "tar.zst") if shutil.which("zstd") else ("--gzip", "tar.gz")


def _as(uid: int, gid: int) -> dict:
    return {"user": uid, "group": gid, "extra_groups": []} if os.geteuid() == 0 else {}


@dataclass(frozen=True)
class HomeOwner:
    uid: int
    gid: int


def owner(acct: Account) -> HomeOwner:
    try:
        st = os.lstat(acct.home)
    except FileNotFoundError:
        raise ProvisionError(f"the home {acct.home} of {acct.user} does not exist",
                             hint="run `datathon up` to make it") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ProvisionError(f"{acct.home} is not a folder", hint="move it aside and run `datathon up`")
    return HomeOwner(st.st_uid, st.st_gid)


def excludes(skip_datasets_link: bool) -> list[str]:
    out = [f"--exclude={p}" for p in EXCLUDED]
    if skip_datasets_link:
        out.append("--exclude=./datasets")
    return ["--anchored", *out, "--no-anchored", *(f"--exclude={p}" for p in EXCLUDED_ANYWHERE)]


def archive_home(acct: Account, dest: Path, *, skip_datasets_link: bool) -> Path:
    """Write the home as `dest`.tar.zst (or .tar.gz); returns the file."""
    who = owner(acct)
    option, suffix = compressor()
    out = dest.with_name(f"{dest.name}.{suffix}")
    with open(out, "wb") as fh:
        try:
            proc = subprocess.run(
                ["tar", "--create", option, "--file=-", "--one-file-system", "--sparse", "--ignore-failed-read",
                 "--warning=no-file-changed", *excludes(skip_datasets_link), f"--directory={acct.home}", "."],
                stdout=fh, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=TAR_TIMEOUT, cwd="/",
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, **_as(who.uid, who.gid))
        except subprocess.TimeoutExpired:
            raise ProvisionError(f"archiving {acct.home} did not finish within {TAR_TIMEOUT}s",
                                 hint="run `datathon archive` again") from None
    if b"No space left on device" in proc.stderr:
        raise ProvisionError(f"the disk is full writing {out}",
                             hint="free space there (or choose another folder with --out), then run the same "
                                  "command again: what was complete is kept, nothing half-written was")
    if proc.returncode not in (0, 1):  # 1: a file changed while it was read (the team is still working)
        raise ProvisionError(f"archiving {acct.home} failed: {proc.stderr.decode(errors='replace').strip()[-500:]}",
                             hint="see the message; run `datathon archive` again")
    return out


def _decompressed(path: Path) -> subprocess.Popen:
    tool = ["zstd", "-dcq"] if path.name.endswith(".zst") else ["gzip", "-dc"]
    return subprocess.Popen([*tool, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)


def list_archive(path: Path) -> dict[str, dict]:
    """Every entry of a home archive: {path: {type, size, sha256 | target}}, read from the archive itself (so the
    listing is what restore gives back, and reading it proves the archive is whole)."""
    proc = _decompressed(path)
    out: dict[str, dict] = {}
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for m in tar:
                name = m.name.removeprefix("./") or "."
                if m.isreg():
                    h = hashlib.sha256()
                    src = tar.extractfile(m)
                    while chunk := src.read(1 << 20):
                        h.update(chunk)
                    out[name] = {"type": "file", "size": m.size, "sha256": h.hexdigest()}
                elif m.issym():
                    out[name] = {"type": "link", "target": m.linkname}
                elif m.isdir():
                    out[name] = {"type": "dir"}
                else:
                    out[name] = {"type": "other"}
    except (tarfile.TarError, EOFError, OSError) as exc:
        proc.kill()
        raise ProvisionError(f"{path} is not a readable archive: {exc}",
                             hint="archive this team again (`datathon archive TEAM`)") from None
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        code = proc.wait(timeout=60)
    if code != 0:
        raise ProvisionError(f"{path} is damaged: {err[-300:]}", hint="archive this team again")
    return out


def restore_home(acct: Account, archive: Path) -> None:
    """Unpack an archived home into the team's home, as the team (files it cannot write stay as they are)."""
    who = owner(acct)
    option = "--zstd" if archive.name.endswith(".zst") else "--gzip"
    with open(archive, "rb") as fh:
        proc = subprocess.run(
            ["tar", "--extract", option, "--file=-", "--no-same-owner", f"--directory={acct.home}"],
            stdin=fh, capture_output=True, timeout=TAR_TIMEOUT, cwd="/",
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, **_as(who.uid, who.gid))
    if proc.returncode != 0:
        raise ProvisionError(f"restoring {archive} into {acct.home} failed: "
                             f"{proc.stderr.decode(errors='replace').strip()[-500:]}",
                             hint="see the message; the files restored so far are in place, run it again")


def environment_report(acct: Account, python: Path) -> dict[str, str]:
    """pip freeze and R's sessionInfo as the team sees them (its ~/.local packages included), run as the team:
    both read files the team wrote (.pth files, ~/.Rprofile), which must not run with root's rights."""
    who = owner(acct)
    env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(acct.home), "LANG": "C.UTF-8",
           "USER": acct.user}
    out = {}
    for name, cmd in (("pip-freeze.txt", [str(python), "-m", "pip", "freeze", "--all"]),
                      ("r-sessioninfo.txt", ["Rscript", "-e", "sessionInfo(); ip <- installed.packages()[, "
                                             "c('Package', 'Version', 'LibPath')]; print(ip, quote = FALSE)"])):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=ENV_TIMEOUT, cwd=acct.home, env=env,
                                  stdin=subprocess.DEVNULL, **_as(who.uid, who.gid))
            out[name] = proc.stdout if proc.returncode == 0 else f"# failed ({proc.returncode}): {proc.stderr[-500:]}\n"
        except (OSError, subprocess.TimeoutExpired) as exc:
            out[name] = f"# could not run {cmd[0]}: {exc}\n"
    return out


# Where a team's own packages and start-up files live: without any of them, its pip freeze and sessionInfo are
# the team environment's, the same for every such team (worked out once per archive run).
PERSONAL = [".local/lib", ".local/bin", "R", ".Rprofile", ".Renviron", ".config/R", ".config/pip", ".pip",
            ".pydistutils.cfg", ".condarc"]


def has_personal_packages(home: Path) -> bool:
    return any(os.path.lexists(home / p) for p in PERSONAL)


def newer_files(home: Path, since: float, entries: dict[str, dict] | None, *, skip_datasets_link: bool,
                limit: int = 3) -> list[str]:
    """Paths in the home that are not as archived: a file or link changed after `since` (ctime: a team can set a
    file's mtime back, not its ctime), or a folder whose names differ from the archive's (added, deleted,
    renamed). A folder's own ctime is not used: `up` rewriting .pgpass would touch the home's. Walked as root
    without following any link. `entries` None: no archive, everything there is work."""
    skip = {p.removeprefix("./") for p in EXCLUDED} | ({"datasets"} if skip_datasets_link else set())
    children: dict[str, set[str]] = {}
    for rel in entries or {}:
        if rel != ".":
            parent, _, name = rel.rpartition("/")
            children.setdefault(parent, set()).add(name)
    found: list[str] = []
    stack = [""]
    while stack and len(found) < limit:
        rel = stack.pop()
        try:
            with os.scandir(home / rel if rel else home) as it:
                names = set()
                for entry in it:
                    child = f"{rel}/{entry.name}" if rel else entry.name
                    if child in skip or entry.name in EXCLUDED_ANYWHERE:
                        continue
                    names.add(entry.name)
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(child)
                    elif entries is None or entry.stat(follow_symlinks=False).st_ctime > since:
                        found.append(child)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if entries is not None and names != children.get(rel, set()):
            gone = sorted(children.get(rel, set()) - names)
            found += [f"{rel}/{n}" if rel else n for n in gone] or [rel or "."]
    return found[:limit]
