"""Fault injection for crash-safety tests: `DATATHON_DIE_AT=step[,step...]` makes the process kill itself with
SIGKILL when it reaches a named step, exactly as an organizer's Ctrl-\\ or a lost SSH session would. A test then
runs the same command again and compares the result with an uninterrupted run.

Steps are named `<verb>.<where>`, e.g. `rotate.after_database` or `archive.team_dumped`; `DATATHON_DIE_AT` may
also give `step@N` to die at the N-th time the step is reached (1-based). Unset in normal use: one dict lookup."""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "DATATHON_DIE_AT"
_reached: Counter[str] = Counter()


def point(step: str) -> None:
    """A place where a crash must leave state that the next run of the same command completes."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    _reached[step] += 1
    for item in wanted.split(","):
        name, _, nth = item.strip().partition("@")
        if name == step and (not nth or int(nth) == _reached[step]):
            os.kill(os.getpid(), signal.SIGKILL)
