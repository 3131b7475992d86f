"""The organizers' registration sheet (CSV, one row per member) -> the event's teams.

Columns (common spellings accepted, any order, extra columns ignored): team, display name, member name, email,
GPU (yes/no). A team's display name becomes its title (handouts, roster, status); its safe name (a-z, 0-9, _,
unique) is derived from the team column. Every problem of the sheet is reported at once, each at its row as a
spreadsheet numbers it (the header is row 1).
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from datathon.config.common import RESERVED_NAMES, email_problem

# normalised header (lower case, letters and digits only) -> column
HEADERS = {
    "team": {"team", "teamname", "teamid", "teamcode", "group", "groupname"},
    "title": {"displayname", "teamdisplayname", "title", "teamtitle", "project", "projectname", "projecttitle"},
    "member": {"member", "membername", "name", "fullname", "participant", "participantname", "person"},
    "email": {"email", "emailaddress", "mail", "memberemail", "participantemail"},
    "gpu": {"gpu", "gpus", "needsgpu", "needgpu", "gpuyesno", "wantsgpu", "gpurequired"},
}
REQUIRED = ("team", "member", "email")
WORDS = {"team": "team", "title": "display name", "member": "member name", "email": "email", "gpu": "GPU (yes/no)"}
YES = {"yes", "y", "true", "1", "x"}
NO = {"no", "n", "false", "0", ""}
MAX_NAME = 30


@dataclass
class RegisteredTeam:
    name: str  # the safe name: database schema, login suffix, Unix user suffix
    title: str
    members: list[dict[str, str]] = field(default_factory=list)
    gpu: bool = False
    row: int = 0  # its first row

    def as_config(self) -> dict:
        out: dict = {"name": self.name, "title": self.title, "members": self.members}
        if self.gpu:
            out["gpus"] = 1
        return out


@dataclass
class Registration:
    teams: list[RegisteredTeam]
    problems: list[str]


def _norm(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.strip().lower().split("(")[0] or header.lower())


def safe_name(text: str, taken: set[str], max_len: int = MAX_NAME) -> str:
    """a-z, 0-9, _; starting with a letter; unique among `taken` (a suffix _2, _3, ... when needed)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    base = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_") or "team"
    if not base[0].isalpha():
        base = f"t_{base}"
    if base.startswith("pg_") or base in RESERVED_NAMES:
        base = f"team_{base}"
    base = base[:max_len].rstrip("_")
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base[:max_len - len(str(n)) - 1]}_{n}"
    return name


def read_registration(path: Path, *, max_len: int = MAX_NAME) -> Registration:
    """Parse the sheet; `problems` holds every problem found ("<file> row N: ..."), `teams` what could be read.
    `max_len`: the longest safe name (shorter when it also makes a Unix user <event>_<name>, 32 at most)."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's export often starts with a BOM
    except FileNotFoundError:
        return Registration([], [f"{where}: no such file"])
    except (OSError, UnicodeDecodeError) as exc:
        return Registration([], [f"{where}: cannot read it ({exc}); export the sheet as CSV (UTF-8)"])
    try:
        dialect = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(text.splitlines(), dialect))
    if not rows:
        return Registration([], [f"{where}: the file is empty; it needs a header row and a row per member"])
    header, problems = rows[0], []
    columns: dict[str, int] = {}
    for i, cell in enumerate(header):
        key = next((k for k, names in HEADERS.items() if _norm(cell) in names), None)
        if key is None:
            continue
        if key in columns:
            problems.append(f"{where} row 1: columns {header[columns[key]]!r} and {cell!r} both look like the "
                            f"{WORDS[key]} column; rename one")
        else:
            columns[key] = i
    missing = [k for k in REQUIRED if k not in columns]
    for k in missing:
        problems.append(f"{where} row 1: no {WORDS[k]} column (the header has: {', '.join(h for h in header if h)};"
                        f" accepted names include {', '.join(sorted(HEADERS[k])[:4])})")

    def cell(row: list[str], key: str) -> str:
        i = columns.get(key)
        return row[i].strip() if i is not None and i < len(row) else ""

    teams: dict[str, RegisteredTeam] = {}
    taken: set[str] = set()
    emails: dict[str, int] = {}
    people: dict[tuple[str, str], int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue  # blank lines between blocks are common in sheets
        at = f"{where} row {number}"
        team, title, member = cell(row, "team"), cell(row, "title"), cell(row, "member")
        email, gpu = cell(row, "email"), cell(row, "gpu").lower()
        if "team" in columns and not team:
            problems.append(f"{at}: the team is empty")
        if "member" in columns and not member:
            problems.append(f"{at}: the member name is empty")
        if "email" in columns:
            why = email_problem(email) if email else "the email is empty"
            if why:
                problems.append(f"{at}: {why}")
            elif email.lower() in emails:
                problems.append(f"{at}: {email} is registered twice (also on row {emails[email.lower()]}); "
                                "remove the duplicate row")
            else:
                emails[email.lower()] = number
        if gpu not in YES | NO:
            problems.append(f"{at}: GPU {cell(row, 'gpu')!r} is not yes or no")
        if not team:
            continue
        key = team.casefold()
        if key not in teams:
            teams[key] = RegisteredTeam(safe_name(team, taken, max_len), title or team, row=number)
            taken.add(teams[key].name)
        t = teams[key]
        if title and t.title != title:
            if t.title == team:  # the first rows left the display name empty
                t.title = title
            else:
                problems.append(f"{at}: team {team!r} has display name {title!r} here and {t.title!r} on row "
                                f"{t.row}; use one")
        if member:
            if (key, member.casefold()) in people:
                problems.append(f"{at}: {member} is listed twice in team {team!r} (also on row "
                                f"{people[(key, member.casefold())]}); remove the duplicate row")
                continue
            people[(key, member.casefold())] = number
            t.members.append({"name": member, **({"email": email} if email and not email_problem(email) else {})})
        t.gpu = t.gpu or gpu in YES
    if not problems and not teams:
        problems.append(f"{where}: no team rows under the header")
    return Registration(list(teams.values()), problems)
