"""Printing for people: tables and messages. Secrets never pass through here."""

from __future__ import annotations

import json
from collections import Counter

from rich.console import Console
from rich.table import Table

from datathon.core.plan import Plan
from datathon.core.status import ComponentStatus

ACTION_STYLE = {
    "create": "green", "load": "green", "start": "green", "update": "yellow", "restart": "yellow",
    "drop": "bold red", "blocked": "bold magenta", "keep": "dim",
}


def print_json(console: Console, data: object) -> None:
    console.print_json(json.dumps(data, default=str))


def plan_table(plan: Plan, *, show_keep: bool = False) -> Table:
    table = Table(title="Plan", title_justify="left", show_lines=False)
    for col in ("action", "component", "target", "why"):
        table.add_column(col)
    for c in plan.changes:
        if c.action == "keep" and not show_keep:
            continue
        style = ACTION_STYLE.get(c.action, "")
        table.add_row(f"[{style}]{c.action}[/]", c.component, c.target, c.reason)
    return table


def plan_summary(plan: Plan) -> str:
    counts = Counter(c.action for c in plan.changes)
    order = ["create", "update", "load", "start", "restart", "drop", "blocked", "keep"]
    parts = [f"[{ACTION_STYLE[a]}]{counts[a]} {a}[/]" for a in order if counts.get(a)]
    return ", ".join(parts) or "nothing to do"


COMPACT_ABOVE = 40  # rows; a plan for 100 teams is summarised per kind of change (`plan --all` lists all)


def grouped_table(plan: Plan) -> Table:
    groups: dict[tuple[str, str, str], list[str]] = {}
    for c in plan.changes:
        if c.action != "keep":
            key = (c.action, c.component, c.reason if c.component == "cluster" else "")
            groups.setdefault(key, []).append(c.target)
    table = Table(title="Plan (summarised; `datathon plan --all` lists every change)", title_justify="left")
    for col in ("action", "component", "count", "targets"):
        table.add_column(col)
    for (action, component, _), targets in groups.items():
        shown = ", ".join(targets[:3]) + (f", ... ({len(targets) - 3} more)" if len(targets) > 3 else "")
        table.add_row(f"[{ACTION_STYLE.get(action, '')}]{action}[/]", component, str(len(targets)), shown)
    return table


def print_plan(console: Console, plan: Plan, *, show_keep: bool = False) -> None:
    for problem in getattr(plan, "preflight", []):
        console.print(f"[bold red]cannot start:[/] {problem}", highlight=False, soft_wrap=True)
    for note in plan.notes:
        console.print(f"[dim]note: {note}[/]")
    rows = len(plan.changes) if show_keep else len(plan.pending) + len(plan.blocked)
    if rows > COMPACT_ABOVE and not show_keep:
        console.print(grouped_table(plan))
    elif rows:
        console.print(plan_table(plan, show_keep=show_keep))
    console.print(f"Plan: {plan_summary(plan)}")


def print_blocked(console: Console, plan: Plan) -> None:
    for c in plan.blocked:
        console.print(f"[bold magenta]not done[/] {c.component} {c.target}: {c.reason}")


def status_table(components: list[ComponentStatus]) -> Table:
    table = Table(title="Components", title_justify="left")
    for col in ("component", "name", "state", "detail"):
        table.add_column(col)
    for s in components:
        style = "green" if s.healthy else "red"
        table.add_row(s.component, s.name, f"[{style}]{s.state}[/]", s.detail)
    return table
