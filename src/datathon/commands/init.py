from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from datathon.config.models import check_identifier
from datathon.errors import ConfigError


STARTERS = {"local": "starter.yaml", "aws": "starter-aws.yaml"}


def starter_text(*, event: str, teams: int, title: str | None = None, provider: str = "local") -> str:
    template = files("datathon.config").joinpath(STARTERS[provider]).read_text()
    return template.format(event=event, teams=teams, title=title or f"{event} datathon")


def write_starter(path: Path, *, event: str, teams: int, force: bool, provider: str = "local") -> Path:
    if provider not in STARTERS:
        raise ConfigError(f"--provider {provider!r}: valid: {', '.join(sorted(STARTERS))}")
    try:
        check_identifier(event, what="event name", max_len=20)
    except ValueError as exc:
        raise ConfigError(str(exc), hint="pass --event with a short lower-case name, e.g. --event sg2026") from None
    if teams < 1:
        raise ConfigError("--teams must be at least 1")
    if path.exists() and not force:
        raise ConfigError(f"{path} exists already; nothing was written", hint="pass --force to overwrite it")
    path.write_text(starter_text(event=event, teams=teams, provider=provider))
    return path
