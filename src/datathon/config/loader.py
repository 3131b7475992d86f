"""Read datathon.yaml: YAML -> pydantic, with every error at once, each with file, line and a did-you-mean."""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from datathon.config.models import SOURCE_TAGS, USED_TWICE, EventConfig
from datathon.config.registration import read_registration
from datathon.errors import ConfigError

DEFAULT_CONFIG = Path("datathon.yaml")
UNION_TAGS = {"generated", "list", *SOURCE_TAGS}  # pydantic's names for union branches; not keys of the file
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedConfig:
    config: EventConfig
    path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def load_config(path: Path, *, check_paths: bool = True) -> LoadedConfig:
    """Parse and validate; raises ConfigError listing every problem found. Without check_paths, the data
    files a source names need not exist (for verbs that do not read them: down, status, handouts, check)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"no event file at {path}",
            hint="run `datathon init` to write a commented starter, or pass -c/--config FILE",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    data, lines, problems = _parse_yaml(text, path)
    if problems:
        raise ConfigError(f"{path} is not valid YAML", problems=problems)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the event file must be a mapping of keys (event:, teams:, databases:, ...)",
            hint="run `datathon init` to see a complete example",
        )
    data, problems = _read_teams_file(data, lines, path)
    duplicates = _duplicate_names(data, lines, path)
    problems += duplicates
    try:
        config = EventConfig.model_validate(data, context={"base_dir": path.resolve().parent,
                                                                "check_paths": check_paths})
    except ValidationError as exc:
        problems += [_describe(err, path, lines, data) for err in exc.errors()
                     if not (duplicates and USED_TWICE in err["msg"])]
    if problems:
        n = len(problems)
        raise ConfigError(
            f"{path} has {n} problem{'s' if n != 1 else ''}; nothing was changed", problems=problems
        ) from None
    return LoadedConfig(config=config, path=path.resolve())


def _read_teams_file(data: dict, lines: dict[Loc, int], path: Path) -> tuple[dict, list[str]]:
    """`teams_file:` -> `teams:` read from the registration sheet (every problem of the sheet, with its row)."""
    if "teams_file" not in data:
        return data, []
    line = lines.get(("teams_file",))
    where = f"{path}:{line}" if line else str(path)
    if "teams" in data:
        return data, [f"{where}: teams_file and teams are both given; keep one (the sheet, or the list)"]
    value = data["teams_file"]
    if not isinstance(value, str) or not value.strip():
        return {**data, "teams": []}, [f"{where}: teams_file: write the path of the registration CSV"]
    sheet = Path(value)
    sheet = sheet if sheet.is_absolute() else path.resolve().parent / sheet
    event = data.get("event")
    # with workspaces a team is also the Unix user <event>_<name>, 32 characters at most: derive names that fit
    limit = 31 - len(event) if data.get("workspaces") is not None and isinstance(event, str) else 30
    reg = read_registration(sheet, max_len=max(8, min(30, limit)))
    lines[("teams",)] = line or 1  # problems of the teams read from it point at the teams_file line
    teams = [t.as_config() for t in reg.teams] if not reg.problems else []
    return {**data, "teams": teams}, list(reg.problems)


def _duplicate_names(data: dict, lines: dict[Loc, int], path: Path) -> list[str]:
    """A team or mentor name used twice, at the duplicate's own line (found before the rest is validated, so it
    is reported with every other problem)."""
    seen: dict[str, int | None] = {}
    out = []
    for key in ("teams", "mentors"):
        items = data.get(key)
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                continue
            line = lines.get((key, i, "name")) or lines.get((key, i))
            if name in seen:
                first = f" (first on line {seen[name]})" if seen[name] else ""
                out.append(f"{path}:{line}: {key}.{i}.name: {name!r} {USED_TWICE}{first}; rename one")
            else:
                seen[name] = line
    return out


# --- YAML with line numbers ------------------------------------------------------------------


def _parse_yaml(text: str, path: Path) -> tuple[object, dict[Loc, int], list[str]]:
    """Return the data, a map from key path to 1-based line, and duplicate-key problems."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        return None, {}, [f"{where}: {exc.problem or exc}"]
    if node is None:
        return None, {}, []
    lines: dict[Loc, int] = {}
    problems: list[str] = []
    _index(node, (), lines, problems, path)
    data = yaml.SafeLoader(text).get_single_data() if not problems else None
    return data, lines, problems


def _index(node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[str], path: Path) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(f"{path}:{line}: key {key!r} appears twice (first on line {seen[key]})")
            seen[key] = line
            lines[(*loc, key)] = line
            _index(value_node, (*loc, key), lines, problems, path)
            lines[(*loc, key)] = line  # the key's own line wins over its value's
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*loc, i), lines, problems, path)


# --- pydantic errors -> messages -----------------------------------------------------------------


def _data_loc(loc: Loc, data: object) -> Loc:
    """Drop pydantic's union tags and function names from a loc, keeping only steps that exist in the data."""
    out: list[str | int] = []
    node = data
    for step in loc:
        if isinstance(node, dict) and step in node:
            out.append(step)
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            out.append(step)
            node = node[step]
        elif isinstance(node, dict) and isinstance(step, str) and step not in UNION_TAGS:
            out.append(step)  # a missing key: keep it so the message names it
            node = None
    return tuple(out)


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    while True:
        if loc in lines:
            return lines[loc]
        if not loc:
            return None
        loc = loc[:-1]


def _describe(err: dict, path: Path, lines: dict[Loc, int], data: object) -> str:
    loc = _data_loc(tuple(err["loc"]), data)
    line = _line_for(loc, lines)
    where = f"{path}:{line}" if line else str(path)
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        valid = _valid_keys(tuple(err["loc"])[:-1])
        guess = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        msg = f"unknown key {key!r}"
        if guess:
            msg += f"; did you mean {guess[0]!r}?"
        elif valid:
            msg += f"; valid keys here: {', '.join(valid)}"
        return f"{where}: {msg}"
    if kind == "missing":
        return f"{where}: {dotted}: required key is missing"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{where}: {dotted}: {msg}"


def _valid_keys(model_loc: Loc) -> list[str]:
    """Field names of the model found at a pydantic loc (for did-you-mean)."""
    tp: object = EventConfig
    for step in model_loc:
        tp = _step(tp, step)
        if tp is None:
            return []
    tp = _unwrap(tp, None)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _step(tp: object, step: str | int) -> object:
    if step in UNION_TAGS:
        return _unwrap(tp, step)  # a union tag: choose that branch
    tp = _unwrap(tp, None)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(step) if isinstance(step, str) else None
        return field.annotation if field else None
    origin = typing.get_origin(tp)
    if origin in (list, tuple) and isinstance(step, int):
        return typing.get_args(tp)[0]
    if origin is dict and isinstance(step, str):
        return typing.get_args(tp)[1]
    return None


def _unwrap(tp: object, step: str | int | None) -> object:
    """Strip Optional/Annotated/Union; for a tagged union pick the branch whose Tag is the step."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tagged = [a for a in args if typing.get_origin(a) is typing.Annotated
                      and any(getattr(m, "tag", None) == step for m in typing.get_args(a)[1:])]
            tp = (tagged or args)[0]
        else:
            return tp
