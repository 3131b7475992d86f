from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

from datathon.config.models import check_identifier
from datathon.config.registration import RegisteredTeam, read_registration
from datathon.errors import ConfigError

GENERATED_TEAMS = "teams:\n  count: {teams}\n  prefix: team\n"

STARTERS = {"local": "starter.yaml", "aws": "starter-aws.yaml"}
# Each starter's generated teams, with the comment above them: what a registration sheet replaces.
TEAMS_BLOCK = {"local": "# Either a number of teams named <prefix>01, <prefix>02, ...\n" + GENERATED_TEAMS,
               "aws": "# Teams named <prefix>01, <prefix>02, ...; `gpus: 1` on a team (or on `count:`) gives it the "
                      "GPU profile.\n" + GENERATED_TEAMS}


def starter_text(*, event: str, teams: int, title: str | None = None, teams_file: str | None = None,
                 provider: str = "local") -> str:
    template = files("datathon.config").joinpath(STARTERS[provider]).read_text()
    if teams_file is not None:  # the sheet replaces the generated teams; the commented list stays as an example
        template = template.replace(
            TEAMS_BLOCK[provider],
            "# The registration sheet (team, display name, member name, email, GPU yes/no; a row per member),\n"
            "# read again by every verb: edit the sheet, then `datathon plan`.\n"
            f"teams_file: {teams_file!r}\n"
            "# ... or a number of teams (remove teams_file):\n# teams: {{count: 10, prefix: team}}\n")
    return template.format(event=event, teams=teams, title=title or f"{event} datathon")


def write_starter(path: Path, *, event: str, teams: int, force: bool, teams_csv: Path | None = None,
                  provider: str = "local") -> tuple[Path, list[RegisteredTeam]]:
    """Write the starter; with a registration sheet, its teams (checked first: every problem, nothing written)."""
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
    registered: list[RegisteredTeam] = []
    teams_file = None
    if teams_csv is not None:
        reg = read_registration(teams_csv, max_len=min(30, 31 - len(event)))  # the starter has workspaces
        if reg.problems:
            n = len(reg.problems)
            raise ConfigError(f"{teams_csv} has {n} problem{'s' if n != 1 else ''}; nothing was written",
                              problems=reg.problems, hint="fix the sheet (or its CSV export) and run init again")
        registered = reg.teams
        # relative to the event file when it can be: the folder moves with both
        teams_file = os.path.relpath(teams_csv.resolve(), path.resolve().parent)
    text = starter_text(event=event, teams=teams, teams_file=teams_file, provider=provider)
    path.write_text(text)
    return path, registered
