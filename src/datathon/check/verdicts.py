"""`check`'s last verdict per team, kept in the state folder so that the dashboard shows what `check` found
(not a second opinion of its own): {team: {"verdict": "GO"|"NO-GO", "time": ..., "failures": [probe ids]}}."""

from __future__ import annotations

import json

from datathon.core.state import StateStore, write_private

FILE = "check-verdicts.json"


def read(state: StateStore) -> dict[str, dict]:
    try:
        return json.loads((state.root / FILE).read_text())
    except (OSError, ValueError):
        return {}


def record(state: StateStore, report) -> None:
    """Merge this run's verdicts (a run may check only some teams)."""
    verdicts = read(state)
    for team in report.teams:
        failed = sorted({r.probe for r in report.results if r.subject == team and r.outcome == "fail"})
        verdicts[team] = {"verdict": "NO-GO" if failed else "GO", "time": report.started, "failures": failed}
    state.ensure_dirs()
    write_private(state.root / FILE, json.dumps(verdicts, indent=1, sort_keys=True) + "\n")
