"""Building blocks shared by the parts of the event file."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationInfo

# Lower-case identifiers that need no quoting in SQL and are safe as Unix user names later on.
IDENT_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# PostgreSQL names that would collide with system schemas or our own group roles.
RESERVED_NAMES = {"public", "information_schema", "teams", "mentors", "data", "admin", "datathon_meta", "postgres"}
DURATION_RE = re.compile(r"^\d+\s*(us|ms|s|min|h|d)?$")
MEMORY_RE = re.compile(r"^-?\d+\s*(B|kB|MB|GB|TB)?$")
GUC_RE = re.compile(r"^[a-z_][a-z0-9_.]*$")
SSH_TARGET_RE = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(:(?P<port>\d+))?$")
# The providers an event file may name. The classes behind them are registered in datathon.providers (config
# imports no behaviour); a test keeps the two lists equal.
PROVIDER_NAMES: set[str] = {"local", "aws"}


def check_identifier(value: str, *, what: str, max_len: int) -> str:
    if not IDENT_RE.match(value):
        raise ValueError(
            f"{what} {value!r} must start with a lower-case letter and hold only a-z, 0-9 and _"
        )
    if len(value) > max_len:
        raise ValueError(f"{what} {value!r} is longer than {max_len} characters")
    if value.startswith("pg_") or value in RESERVED_NAMES:
        raise ValueError(f"{what} {value!r} is reserved; pick another name")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def existing_path(v: Path, info: ValidationInfo, *, what: str, folder: bool | None) -> Path:
    """The path, resolved against the event file's folder; it must be a folder (True), a file (False) or either
    (None), unless the verb does not read data (check_paths=False)."""
    context = info.context or {}
    base = context.get("base_dir")
    path = v if v.is_absolute() or base is None else Path(base) / v
    if not context.get("check_paths", True):  # down, status: data folders may be gone already
        return path.resolve()
    ok = path.exists() if folder is None else path.is_dir() if folder else path.is_file()
    if not ok:
        raise ValueError(f"{what} {str(v)!r} not found (looked at {path})")
    return path.resolve()


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600, "d": 86400, "": 1}


def duration_seconds(text: str) -> int:
    m = re.match(r"^(\d+)\s*(us|ms|s|min|h|d)?$", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a duration")
    return int(int(m.group(1)) * _UNITS[m.group(2) or ""])
