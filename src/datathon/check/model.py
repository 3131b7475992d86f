"""Probes and their results. A probe has a stable id, a one-line description and what it expects: that
something works, or that it is refused. Its result carries the evidence: the exact statement and what came back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Expect = Literal["works", "refused"]
Outcome = Literal["pass", "fail", "skip"]


@dataclass
class Evidence:
    statement: str
    result: str  # "ok: ..." or "ERROR <sqlstate>: message"

    def as_dict(self) -> dict:
        return {"statement": self.statement, "result": self.result}


@dataclass
class ProbeResult:
    probe: str
    subject: str  # the team (or mentor) the probe ran as
    outcome: Outcome
    description: str
    expect: Expect
    evidence: list[Evidence] = field(default_factory=list)
    detail: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "probe": self.probe, "team": self.subject, "outcome": self.outcome, "expect": self.expect,
            "description": self.description, "detail": self.detail, "seconds": round(self.seconds, 4),
            "evidence": [e.as_dict() for e in self.evidence],
        }


class ProbeFailed(Exception):
    """Raised inside a probe: the check did not hold. Carries the evidence gathered so far."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ProbeSkipped(Exception):
    """The probe does not apply to this event (e.g. no mentors); counted neither pass nor fail."""


@dataclass(frozen=True)
class Probe:
    id: str
    description: str
    expect: Expect
    run: Callable  # (session) -> None; raises ProbeFailed / ProbeSkipped
    locked: bool = False  # runs for a team an organizer locked out (and only for one): everything must refuse it


REGISTRY: list[Probe] = []


def probe(id: str, description: str, *, expect: Expect, locked: bool = False):
    def register(fn: Callable) -> Callable:
        if any(p.id == id for p in REGISTRY):
            raise ValueError(f"probe id {id} registered twice")
        REGISTRY.append(Probe(id, description, expect, fn, locked))
        return fn

    return register
