"""The check's outputs: a terminal matrix, a JSON file (one record per team and probe), a standalone HTML page."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
from rich.console import Console
from rich.table import Table

from datathon.check.advice import problems
from datathon.check.runner import CheckReport

MARK = {"pass": "[green]✓[/]", "fail": "[bold red]✗[/]", "skip": "[dim]–[/]"}
MATRIX_TEAMS = 10  # beyond this many teams the terminal shows a row per team instead of a column


def print_report(console: Console, report: CheckReport) -> None:
    cells = {(r.probe, r.subject): r for r in report.results}
    if len(report.teams) <= MATRIX_TEAMS:
        table = Table(title=f"check: {len(report.probes)} probes × {len(report.teams)} teams", title_justify="left")
        table.add_column("probe")
        table.add_column("expect")
        for t in report.teams:
            table.add_column(t, justify="center")
        for p in report.probes:
            # a locked team runs only the probes proving it is refused, the others all but those: "·" not run
            table.add_row(p.id, p.expect, *(MARK[cells[(p.id, t)].outcome] if (p.id, t) in cells else "[dim]·[/]"
                                            for t in report.teams))
    else:
        table = Table(title=f"check: {len(report.probes)} probes × {len(report.teams)} teams", title_justify="left")
        for col in ("team", "pass", "fail", "skip", "failing probes"):
            table.add_column(col)
        for t in report.teams:
            rows = [r for r in report.results if r.subject == t]
            fails = [r.probe for r in rows if r.outcome == "fail"]
            table.add_row(t, *(str(sum(r.outcome == o for r in rows)) for o in ("pass", "fail", "skip")),
                          "[red]" + ", ".join(fails) + "[/]" if fails else "")
    console.print(table)
    for r in report.failures:
        console.print(f"[bold red]FAIL[/] {r.probe} as team {r.subject}: {r.detail}", highlight=False)
        for e in r.evidence[-2:]:
            console.print(f"     {e.statement}\n       -> {e.result}", highlight=False, soft_wrap=True)
    verdict = "[bold green]GO[/]" if report.go else "[bold red]NO-GO[/]"
    console.print(f"{verdict}: {len(report.results) - len(report.failures)} of {len(report.results)} probe runs "
                  f"passed or did not apply, {len(report.failures)} failed, in {report.seconds:.1f}s")


def write_json(report: CheckReport, path: Path) -> None:
    path.write_text(json.dumps(report.as_dict(), indent=2) + "\n")


def write_html(report: CheckReport, path: Path) -> None:
    env = jinja2.Environment(loader=jinja2.PackageLoader("datathon.check", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    cells = {(r.probe, r.subject): r for r in report.results}
    path.write_text(env.get_template("report.html.j2").render(r=report, cells=cells,
                                                              problems=problems(report.failures)))
