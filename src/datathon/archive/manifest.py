"""The archive folder's layout and manifest, written so that a crash never leaves a half-written file under a
final name: every file is written under a temporary name and renamed; a team's folder is built as
`teams/.<team>.partial-*` and renamed into place only once complete.

    <out>/manifest.json           every team: files (size, sha256), each part's record (tables with rows and
                                  checksums, the home's files), a summary
    <out>/verified.json           when each team's archive was verified
    <out>/teams/<team>/team.json  the team's own entry (what a re-run resumes from)
    <out>/teams/<team>/<part>/    what each part wrote (database/<db>.dump, workspace/home.tar.zst, ...)
    <out>/audit/                  the audit trail `down` exports
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from pathlib import Path

from datathon.core.fsutil import file_sha256
from datathon.errors import ProvisionError

FORMAT = "datathon-archive/1"
MANIFEST = "manifest.json"
VERIFIED = "verified.json"
TEAM_FILE = "team.json"


def teams_dir(out: Path) -> Path:
    return out / "teams"


def team_dir(out: Path, team: str) -> Path:
    return teams_dir(out) / team


def slug(part_name: str) -> str:
    return {"data": "database", "workspaces": "workspace"}.get(part_name, part_name.replace(" ", "-"))


def disk_full(path: Path | str) -> ProvisionError:
    return ProvisionError(f"the disk is full writing {path}",
                          hint="free space there (or choose another folder with --out), then run the same command "
                               "again: what was complete is kept, nothing half-written was")


def write_json(path: Path, data: dict) -> None:
    """Atomically (temporary name, fsync, rename), 0600: the manifest names every team's files."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if exc.errno == errno.ENOSPC:
            raise disk_full(path) from None
        raise


def read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProvisionError(f"{path} is missing: {what}",
                             hint="give the folder `datathon archive` wrote (it holds manifest.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProvisionError(f"{path} is damaged ({exc})",
                             hint="run `datathon archive` again into this folder to rewrite it") from None
    if not isinstance(data, dict):
        raise ProvisionError(f"{path} is damaged (not a JSON object)", hint="run `datathon archive` again")
    return data


def load_manifest(out: Path) -> dict:
    """The manifest, checked enough that what reads it next cannot fail on its shape."""
    if not out.is_dir():
        raise ProvisionError(f"{out} is not a folder", hint="give the folder `datathon archive` wrote")
    path = out / MANIFEST
    if not path.exists():
        raise ProvisionError(f"{out} is not a datathon archive (no {MANIFEST})",
                             hint="give the folder `datathon archive` wrote, or run `datathon archive --out` first")
    data = read_json(path, "the archive's manifest")
    if data.get("format") != FORMAT:
        raise ProvisionError(f"{path} is not a datathon archive manifest (format {data.get('format')!r})",
                             hint=f"expected {FORMAT!r}; give the folder `datathon archive` wrote")
    teams = data.get("teams")
    if not isinstance(teams, dict):
        raise ProvisionError(f"{path} is damaged (no teams)", hint="run `datathon archive` again into this folder")
    for name, entry in teams.items():
        problem = entry_problem(entry)
        if problem:
            raise ProvisionError(f"{path} is damaged (team {name}: {problem})",
                                 hint="run `datathon archive` again into this folder")
    return data


def entry_problem(entry: object) -> str | None:
    if not isinstance(entry, dict):
        return "not an object"
    for key, kind in (("files", dict), ("parts", dict), ("started", float | int), ("team", str)):
        if not isinstance(entry.get(key), kind):
            return f"{key} missing or wrong"
    for name, part in entry["parts"].items():
        if not (isinstance(part, dict) and isinstance(part.get("record"), dict) and isinstance(part.get("dir"), str)
                and "/" not in part["dir"] and part["dir"] not in ("", ".", "..")):
            return f"part {name}: no folder or record"
    for rel, f in entry["files"].items():
        if not (isinstance(f, dict) and isinstance(f.get("size"), int) and isinstance(f.get("sha256"), str)):
            return f"file {rel}: no size or sha256"
        if rel.startswith("/") or ".." in Path(rel).parts:
            return f"file {rel}: outside the team's folder"
    return None


def hash_files(folder: Path) -> dict[str, dict]:
    """Every file under `folder` (no link followed): relative path -> size and sha256."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.name == TEAM_FILE:
            continue
        out[str(path.relative_to(folder))] = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    return out


def file_problems(folder: Path, files: dict[str, dict], *, deep: bool = True) -> list[str]:
    """Missing, resized or (deep) changed files of a team folder."""
    problems = []
    for rel, f in sorted(files.items()):
        path = folder / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            problems.append(f"{path}: missing")
            continue
        if size != f["size"]:
            problems.append(f"{path}: {size} bytes, the manifest says {f['size']}")
        elif deep and file_sha256(path) != f["sha256"]:
            problems.append(f"{path}: sha256 differs from the manifest")
    return problems


def clean_partials(out: Path) -> None:
    """What a killed run left: unfinished team folders and swapped-out old ones."""
    folder = teams_dir(out)
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.name.startswith(".") and (".partial-" in p.name or ".old-" in p.name):
            shutil.rmtree(p, ignore_errors=True)
    for p in list(out.glob(".*.tmp")):
        p.unlink(missing_ok=True)


def swap_in(tmp: Path, final: Path) -> None:
    """Put a complete team folder in place of the previous one (two renames; a crash between them leaves no
    team folder, and the next run archives that team again)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{secrets.token_hex(4)}")
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
