"""The engine: every verb is a loop over the provider's parts (observe -> plan -> apply, status, teardown).

It returns plans and results and never asks or prints: the caller approves (a CLI prompt, a dashboard button)
through a callback, and watches progress through the console it passed in. Nothing here knows which parts
exist or which provider made them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from datathon.apply import apply_changes
from datathon.core import faults
from datathon.core.activity import Activity, WatchReport
from datathon.core.context import Context
from datathon.core.part import Part, PartStatus
from datathon.core.plan import Change, Plan
from datathon.core.status import ComponentStatus
from datathon.errors import Aborted, DatathonError, ProvisionError

Approve = Callable[[list[Change], str], bool]  # (changes, question) -> approved?


@dataclass
class PartPlan:
    part: Part
    facts: Any
    changes: list[Change]
    notes: list[str] = field(default_factory=list)


@dataclass
class EventPlan(Plan):
    """A whole event's plan: each part's changes, in the order the parts are made."""

    parts: list[PartPlan] = field(default_factory=list)
    preflight: list[str] = field(default_factory=list)  # what on this machine stops `up` before it starts

    @property
    def stopping(self) -> list[Change]:
        """Blocked changes that stop `up` before it touches anything."""
        return [c for p in self.parts if p.part.blocking for c in p.changes if c.action == "blocked"]


def ordered(parts: list[Part]) -> list[Part]:
    """The parts with every one after those it names in `after` (the provider's order otherwise)."""
    names = {p.name for p in parts}
    unknown = sorted({d for p in parts for d in p.after} - names)
    if unknown:  # a part that waits for one that is not there would wait forever
        raise ProvisionError(f"parts wait for parts this provider does not have: {', '.join(unknown)}",
                             hint="a provider bug: report it")
    out: list[Part] = []
    todo = list(parts)
    while todo:
        ready = next((p for p in todo if all(d in {x.name for x in out} for d in p.after)), None)
        if ready is None:
            raise ProvisionError(f"parts wait for each other: {', '.join(p.name for p in todo)}",
                                 hint="a provider bug: report it")
        out.append(ready)
        todo.remove(ready)
    return out


def _plan_part(part: Part) -> PartPlan:
    facts = part.observe()
    return PartPlan(part, facts, part.plan(facts), part.notes(facts))


def plan_up(parts: list[Part]) -> EventPlan:
    """What `up` would do, touching nothing."""
    plan = EventPlan()
    for part in ordered(parts):
        pp = _plan_part(part)
        plan.parts.append(pp)
        plan.extend(pp.changes)
        plan.notes += pp.notes
    return plan


def preflight(parts: list[Part]) -> list[str]:
    """Every problem of this machine that would stop the event before it starts (ports held by other programs),
    from every part at once. Read-only."""
    return [p for part in ordered(parts) for p in part.preflight()]


def _key(c: Change) -> tuple[str, str, str]:
    """The same change in two plans of one run."""
    return str(c.component), c.target, c.action


def apply_up(ctx: Context, plan: EventPlan, *, approve: Approve) -> tuple[int, EventPlan]:
    """Apply an approved plan, part by part. A part whose predecessors changed something is planned again from
    fresh facts first; a deletion that the approved plan did not show is put to `approve` again. Returns the
    number of changes run and the plan as it was run."""
    if plan.stopping:
        first = plan.stopping[0]
        raise ProvisionError(f"{first.component} {first.target}: {first.reason}",
                             hint="nothing was changed; fix this and run `datathon up` again")
    approved = {_key(c) for c in plan.destructive}
    applied = 0
    changed: set[str] = set()
    ran = EventPlan(notes=list(plan.notes))
    for pp in plan.parts:
        part = pp.part
        if any(d in changed for d in part.after) or (pp.notes and not pp.changes):
            pp = _plan_part(part)
            stopping = [c for c in pp.changes if c.action == "blocked"] if part.blocking else []
            if stopping:
                raise ProvisionError(f"{stopping[0].component} {stopping[0].target}: {stopping[0].reason}",
                                     hint=f"fix this and run `datathon up` again (the parts before {part.name} "
                                          "are done)")
            new = [c for c in pp.changes if c.destructive and _key(c) not in approved]
            if new and not approve(new, f"Apply the {len(new)} {part.name} change(s) listed above (they delete or "
                                        "interrupt something)?"):
                raise Aborted("declined; the parts before this one are done, nothing of it was changed")
        n = apply_changes(pp.changes, part.sql(), ctx.console, label=part.name)
        faults.point(f"up.{part.name.replace(' ', '_')}")  # e.g. up.database_server, up.data, up.workspaces
        if n and part.settles:  # what its own changes made needs more of it (grants on loaded tables)
            again = [c for c in part.plan(part.observe()) if c.mutating and not c.destructive]
            n += apply_changes(again, part.sql(), ctx.console, label=f"{part.name}: settle")
        if n:
            changed.add(part.name)
        applied += n
        ran.parts.append(pp)
        ran.extend(pp.changes)
    return applied, ran


def apply_only(ctx: Context, parts: list[Part], chosen: Callable[[Change], bool], *, label: str) -> EventPlan:
    """Plan every part and apply only the chosen changes (never a deletion): e.g. `lock` applies its teams'
    access changes and leaves whatever else `up` would do for `up`. Returns what was chosen."""
    ran = EventPlan()
    for part in ordered(parts):
        pp = _plan_part(part)
        mine = [c for c in pp.changes if chosen(c) and not c.destructive]
        apply_changes(mine, part.sql(), ctx.console, label=f"{label}: {part.name}")
        ran.parts.append(PartPlan(part, pp.facts, mine))
        ran.extend(mine)
    return ran


# -- down ------------------------------------------------------------------------------------------------------

def plan_down(parts: list[Part]) -> EventPlan:
    """Teardown in the reverse order of making: what a part is built on goes last."""
    plan = EventPlan()
    for part in reversed(ordered(parts)):
        facts = part.observe("teardown")
        pp = PartPlan(part, facts, part.teardown(facts))
        plan.parts.append(pp)
        plan.extend(pp.changes)
    return plan


def apply_down(ctx: Context, plan: EventPlan) -> tuple[int, list[str], list[tuple[str, str]]]:
    """Run the teardown, part by part; then every part proves it is gone. Returns (changes run, what is left,
    proof lines)."""
    removed = sum(apply_changes(pp.changes, pp.part.sql(), ctx.console, label=f"removing {pp.part.name}")
                  for pp in plan.parts)
    left = [x for pp in plan.parts for x in pp.part.leftovers()]
    proof = [line for pp in plan.parts for line in pp.part.gone()]
    return removed, left, proof


# -- status ----------------------------------------------------------------------------------------------------

@dataclass
class EventStatus:
    event: str
    components: list[ComponentStatus] = field(default_factory=list)
    tables: dict[str, list] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return all(c.healthy for c in self.components) and all(
            getattr(row, "healthy", True) for rows in self.tables.values() for row in rows)

    def as_dict(self) -> dict:
        return {"event": self.event, "healthy": self.healthy,
                "components": [c.as_dict() for c in self.components],
                **{name: [r.as_dict() for r in rows] for name, rows in self.tables.items()}}


def event_status(event: str, parts: list[Part]) -> EventStatus:
    result = EventStatus(event)
    for part in ordered(parts):
        st: PartStatus = part.status(part.observe("status"))
        result.components += st.components
        for name, rows in st.tables.items():
            result.tables.setdefault(name, []).extend(rows)
    return result


# -- event day -----------------------------------------------------------------------------------------------

def guard_cycle(parts: list[Part], now: datetime) -> WatchReport:
    """One cycle of the watcher over every part; a part that fails is reported, the others still run."""
    report = WatchReport()
    for part in ordered(parts):
        try:
            if (got := part.guard(now)) is not None:
                report.merge(got)
        except DatathonError as exc:
            report.problems.append(f"{part.name}: {exc}")
    return report


def event_activity(parts: list[Part]) -> list[Activity]:
    return [a for part in ordered(parts) for a in part.activity()]
