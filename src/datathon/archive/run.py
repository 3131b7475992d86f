"""Archive, verify and restore teams' work through the parts' hooks."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from datathon.archive import manifest as mf
from datathon.archive.progress import Steps
from datathon.config import EventConfig
from datathon.core import faults
from datathon.core.part import Part
from datathon.core.roster import Member, members
from datathon.core.state import StateStore
from datathon.errors import ConfigError, ProvisionError


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_out(base_dir: Path, event: str) -> Path:
    """Beside the event file, outside the state folder that `down` removes."""
    return base_dir / "datathon-archive" / event


def select_teams(config: EventConfig, names: list[str] | None) -> list[Member]:
    teams = [m for m in members(config) if m.kind == "team"]
    if not names:
        return teams
    known = {m.name: m for m in teams}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"no team {', '.join(unknown)} in the event file",
                          hint=f"teams: {', '.join(sorted(known)) or '(none)'}")
    return [known[n] for n in dict.fromkeys(names)]


@dataclass
class TeamSummary:
    team: str
    state: str  # archived, unchanged, verified, failed
    tables: int = 0
    rows: int = 0
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def summarise(entry: dict) -> dict:
    """Tables, rows, home files and bytes of a team's entry (as written in team.json)."""
    tables = rows = files = 0
    for part in entry["parts"].values():
        rec = part.get("record", {}) if isinstance(part, dict) else {}
        for db in rec.get("databases", {}).values():
            tables += len(db.get("tables", {}))
            rows += sum(t["rows"] for t in db.get("tables", {}).values())
        files += sum(1 for e in rec.get("entries", {}).values() if e.get("type") == "file")
    return {"tables": tables, "rows": rows, "files": files,
            "bytes": sum(f["size"] for f in entry["files"].values())}


# -- archive ----------------------------------------------------------------------------------------------------

@dataclass
class ArchiveResult:
    out: Path
    teams: list[TeamSummary]
    seconds: float

    def as_dict(self) -> dict:
        return {"out": str(self.out), "seconds": round(self.seconds, 1), "teams": [t.as_dict() for t in self.teams]}


def _current(out: Path, member: Member, parts: list[Part]) -> dict | None:
    """The team's archive in `out` when it is complete, its files intact and no part saw work since."""
    folder = mf.team_dir(out, member.name)
    try:
        entry = mf.read_json(folder / mf.TEAM_FILE, "")
    except ProvisionError:
        return None
    if mf.entry_problem(entry) or mf.file_problems(folder, entry["files"]):
        return None
    for part in parts:
        rec = entry["parts"].get(part.name)
        if rec is not None and part.work_since(member, rec["record"], entry["started"]):
            return None
    return entry


def _archive_team(out: Path, member: Member, parts: list[Part], steps: Steps) -> tuple[dict, bool]:
    """(the team's entry, whether it was made now)."""
    if (entry := _current(out, member, parts)) is not None:
        return entry, False
    tmp = mf.teams_dir(out) / f".{member.name}.partial-{secrets.token_hex(4)}"
    tmp.mkdir(mode=0o700, parents=True)
    try:
        started = time.time()
        entry = {"team": member.name, "login": member.login, "started": started, "parts": {}}
        for part in parts:
            dest = tmp / mf.slug(part.name)
            dest.mkdir(mode=0o700)
            rec = part.archive(member, dest)
            if rec is None:
                dest.rmdir()
            else:
                entry["parts"][part.name] = {"dir": dest.name, "record": rec}
                steps.step(f"{member.name}: {part.name} done")
        entry["files"] = {f"{rel}": f for rel, f in mf.hash_files(tmp).items()}
        entry["finished"] = time.time()
        entry["summary"] = summarise(entry)
        mf.write_json(tmp / mf.TEAM_FILE, entry)
        faults.point("archive.team_written")
        mf.swap_in(tmp, mf.team_dir(out, member.name))
        faults.point("archive.team_done")
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise mf.disk_full(exc.filename or tmp) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written stays (gone already once swapped in)
    return entry, True


def write_manifest(out: Path, event: str) -> dict:
    """The one manifest, from every complete team folder (teams archived by earlier runs included)."""
    teams = {}
    for folder in sorted(mf.teams_dir(out).iterdir()) if mf.teams_dir(out).is_dir() else []:
        if folder.name.startswith(".") or not (folder / mf.TEAM_FILE).exists():
            continue
        try:
            entry = mf.read_json(folder / mf.TEAM_FILE, "a team's entry")
        except ProvisionError:
            continue  # a damaged entry is no archive: that team is archived again by the next run
        if mf.entry_problem(entry) is None:
            teams[folder.name] = entry
    data = {"format": mf.FORMAT, "event": event, "updated": now_iso(), "teams": teams}
    mf.write_json(out / mf.MANIFEST, data)
    return data


def archive_event(config: EventConfig, state: StateStore, parts: list[Part], out: Path, *, teams: list[str] | None,
                  console: Console, jobs: int | None = None) -> ArchiveResult:
    chosen = select_teams(config, teams)
    begun = time.monotonic()
    if out.exists() and not out.is_dir():
        raise ProvisionError(f"{out} is not a folder", hint="choose a folder with --out")
    if out.is_dir() and any(out.iterdir()) and not (out / mf.MANIFEST).exists() and not mf.teams_dir(out).is_dir():
        raise ProvisionError(f"{out} is not a datathon archive and not empty",
                             hint="choose an empty or new folder with --out; nothing was written")
    if (out / mf.MANIFEST).exists():
        try:
            man = mf.load_manifest(out)
        except ProvisionError as exc:  # derived from the teams' own entries: written again at the end
            console.print(f"note: {exc.message}; it is written again from the teams' entries", highlight=False)
        else:
            if man.get("event") != config.event:
                raise ProvisionError(f"{out} holds the archive of event {man.get('event')!r}, not {config.event!r}",
                                     hint="choose another folder with --out; nothing was written")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    mf.teams_dir(out).mkdir(exist_ok=True, mode=0o700)
    mf.clean_partials(out)
    summaries: list[TeamSummary] = []
    # pg_dump, tar and zstd each keep a core busy: more teams at once than cores only queue
    workers = jobs or max(1, min(len(chosen), os.cpu_count() or 2))
    with Steps(console, "archive", len(chosen)) as steps, ThreadPoolExecutor(max_workers=workers) as pool:
        def one(member: Member) -> TeamSummary:
            t0 = time.monotonic()
            entry, made = _archive_team(out, member, parts, steps)
            s = TeamSummary(member.name, "archived" if made else "unchanged", seconds=time.monotonic() - t0,
                            **entry["summary"])
            steps.advance(f"{member.name} {s.state}")
            return s

        summaries = list(pool.map(one, chosen))
    write_manifest(out, config.event)
    faults.point("archive.manifest_written")
    state.update(archive={**state.load().get("archive", {}), "dir": str(out.resolve()), "archived": now_iso()})
    return ArchiveResult(out, summaries, time.monotonic() - begun)


# -- verify -----------------------------------------------------------------------------------------------------

@dataclass
class VerifyResult:
    out: Path
    teams: list[TeamSummary]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(not t.problems for t in self.teams)

    def as_dict(self) -> dict:
        return {"out": str(self.out), "ok": self.ok, "seconds": round(self.seconds, 1),
                "teams": [t.as_dict() for t in self.teams]}


def _verify_team(out: Path, member: Member, entry: dict, parts: list[Part]) -> list[str]:
    folder = mf.team_dir(out, member.name)
    problems = mf.file_problems(folder, entry["files"])
    if problems:
        return problems  # restoring a file that is not what was written proves nothing
    by_name = {p.name: p for p in parts}
    for name, rec in entry["parts"].items():
        part = by_name.get(name)
        if part is None:
            problems.append(f"{folder}: part {name!r} is not in this event, its copy was not checked")
            continue
        try:
            problems += part.verify_archive(member, folder / rec["dir"], rec["record"])
        except (KeyError, TypeError, AttributeError):
            problems.append(f"{folder / mf.TEAM_FILE}: the {name} record is damaged")
    return problems


def verify_archive(config: EventConfig, state: StateStore, parts: list[Part], out: Path, *, console: Console,
                   jobs: int | None = None) -> VerifyResult:
    begun = time.monotonic()
    man = mf.load_manifest(out)
    known = {m.name: m for m in members(config) if m.kind == "team"}
    missing = sorted(set(man["teams"]) - set(known))
    if missing:
        raise ProvisionError(f"{out / mf.MANIFEST} holds teams that are not in this event: {', '.join(missing)}",
                             hint="verify restores as each team's own login: run it in the event that archived them")
    results: list[TeamSummary] = []
    with Steps(console, "verify", len(man["teams"])) as steps, \
            ThreadPoolExecutor(max_workers=jobs or max(1, min(len(man["teams"]), os.cpu_count() or 2))) as pool:
        def one(name: str) -> TeamSummary:
            t0 = time.monotonic()
            entry = man["teams"][name]
            steps.step(f"{name}: files and restore")
            problems = _verify_team(out, known[name], entry, parts)
            s = TeamSummary(name, "failed" if problems else "verified", seconds=time.monotonic() - t0,
                            problems=problems, **summarise(entry))
            steps.advance(f"{name} {s.state}")
            return s

        results = list(pool.map(one, sorted(man["teams"])))
    result = VerifyResult(out, results, time.monotonic() - begun)
    if result.ok:
        stamp = now_iso()
        prior = mf.read_json(out / mf.VERIFIED, "") if (out / mf.VERIFIED).exists() else {}
        prior.update({name: {"verified": stamp, "started": man["teams"][name]["started"]} for name in man["teams"]})
        mf.write_json(out / mf.VERIFIED, prior)
        state.update(archive={**state.load().get("archive", {}), "dir": str(out.resolve()), "verified": stamp})
    return result


# -- restore ----------------------------------------------------------------------------------------------------

def restore_team(config: EventConfig, parts: list[Part], out: Path, team: str, *, console: Console) -> TeamSummary:
    begun = time.monotonic()
    man = mf.load_manifest(out)
    if team not in man["teams"]:
        raise ProvisionError(f"{out / mf.MANIFEST} has no team {team!r}",
                             hint=f"it holds: {', '.join(sorted(man['teams'])) or '(none)'}")
    member = select_teams(config, [team])[0]
    entry = man["teams"][team]
    folder = mf.team_dir(out, team)
    problems = mf.file_problems(folder, entry["files"])
    if problems:
        raise ProvisionError(f"the archive of team {team} is damaged: {problems[0]}"
                             + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                             hint="nothing was restored; restore from another copy of the archive")
    by_name = {p.name: p for p in parts}
    for name, rec in entry["parts"].items():
        if name not in by_name:
            raise ProvisionError(f"the archive holds {name} work of team {team}, and this event has no {name}",
                                 hint="add that section to the event file and run `datathon up`")
    for name, rec in entry["parts"].items():
        console.print(f"restore: {team}: {name}", highlight=False)
        by_name[name].restore(member, folder / rec["dir"], rec["record"])
    return TeamSummary(team, "restored", seconds=time.monotonic() - begun, **summarise(entry))


# -- what `down` would lose -------------------------------------------------------------------------------------

@dataclass
class TeamWork:
    team: str
    archived: str  # "verified <time> in <dir>", or why there is none
    unarchived: list[str]  # what changed since (empty: all in the verified archive)


def work_at_risk(config: EventConfig, state: StateStore, parts: list[Part]) -> list[TeamWork]:
    """Per team: is its work in a verified archive, and what changed since. Without one, a team whose schema or
    home exists has work at risk."""
    record = state.load().get("archive", {})
    man: dict = {}
    verified: dict = {}
    where = "no archive"
    if record.get("dir"):
        out = Path(record["dir"])
        try:
            man = mf.load_manifest(out)
            verified = mf.read_json(out / mf.VERIFIED, "") if (out / mf.VERIFIED).exists() else {}
            where = f"in {out}"
        except ProvisionError as exc:
            where = f"the archive is unreadable: {exc.message}"
    out_list = []
    for member in select_teams(config, None):
        entry = man.get("teams", {}).get(member.name)
        v = verified.get(member.name)
        if entry is not None and v and v.get("started") == entry["started"]:
            since, label = entry["started"], f"verified {v['verified']} {where}"
            recs = {name: rec["record"] for name, rec in entry["parts"].items()}
        else:
            since = 0.0
            label = "archived, not verified" if entry is not None else where
            recs = {}
        changed = [line for part in parts for line in part.work_since(member, recs.get(part.name, {}), since)]
        out_list.append(TeamWork(member.name, label, changed))
    return out_list
