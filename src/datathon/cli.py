"""The `datathon` command: a thin layer that parses options, calls the library and prints results.

Errors of type DatathonError are caught here, once, and printed without a traceback; tracebacks go to the
log file (.datathon/datathon.log next to the event file).
"""

from __future__ import annotations

import functools
import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from datathon.config import DEFAULT_CONFIG, load_config
from datathon.core.context import Context
from datathon.core.state import StateStore
from datathon.errors import DatathonError

app = typer.Typer(
    help="Stand up, check, run and tear down the computing environment of a clinical-data datathon.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
log = logging.getLogger("datathon")

ConfigOpt = Annotated[Path, typer.Option("-c", "--config", help="the event file", show_default=True)]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="for scripts: no plan, no progress; errors and "
                                                              "one closing line only")]


def _log_file(config: Path) -> Path | None:
    folder = config.resolve().parent / ".datathon"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return None
    return folder / "datathon.log"


def _setup_logging(config: Path, verb: str) -> Path | None:
    path = _log_file(config)
    log.handlers.clear()
    log.setLevel(logging.DEBUG)
    log.propagate = False
    if path is None:
        return None
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.info("datathon %s -c %s", verb, config)
    return path


def command(fn):
    """Run a verb inside the error boundary: clear message and exit code, traceback only in the log."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        config = kwargs.get("config", DEFAULT_CONFIG)
        log_path = _setup_logging(config, fn.__name__)
        try:
            return fn(*args, **kwargs)
        except DatathonError as exc:
            log.error("%s", exc, exc_info=True)
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            log.warning("interrupted")
            err_console.print("[yellow]interrupted[/]: run the same command again to finish what was started")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # a bug: say so plainly, keep the traceback in the log
            log.exception("unexpected error")
            where = f"; the traceback is in {log_path}" if log_path else ""
            err_console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc}{where}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(70) from None

    return wrapper


def _context(config: Path, *, check_paths: bool = True, quiet: bool = False, json_out: bool = False) -> Context:
    """`json_out`: stdout carries only the JSON, so the command's own lines (plan, progress) go to stderr."""
    loaded = load_config(config, check_paths=check_paths)
    out = Console(quiet=True) if quiet else err_console if json_out else console
    return Context(loaded=loaded, state=StateStore(loaded.base_dir, loaded.config.event), console=out)


@app.command()
@command
def init(
    config: ConfigOpt = DEFAULT_CONFIG,
    event: Annotated[str, typer.Option(help="short event identifier")] = "datathon",
    teams: Annotated[int, typer.Option(help="number of teams")] = 10,
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
    provider: Annotated[str, typer.Option(help="local (this server) or aws (a machine per team)")] = "local",
    teams_csv: Annotated[Path | None, typer.Option(
        "--teams-csv", help="the registration sheet as CSV: team, display name, member name, email, GPU yes/no "
                            "(a row per member); the event file reads it as teams_file")] = None,
) -> None:
    """Write a commented starter event file."""
    from datathon.commands.init import write_starter

    path, registered = write_starter(config, event=event, teams=teams, force=force, teams_csv=teams_csv,
                                     provider=provider)
    if registered:
        table = Table(title=f"{len(registered)} teams from {teams_csv}", title_justify="left")
        for col in ("name (logins, schema)", "title (handouts)", "members", "GPU"):
            table.add_column(col)
        for t in registered:
            table.add_row(t.name, t.title, ", ".join(m["name"] for m in t.members), "yes" if t.gpu else "")
        console.print(table)
    console.print(f"wrote {path}; edit it, then run `datathon validate -c {path}` and `datathon plan -c {path}`")


@app.command()
@command
def validate(config: ConfigOpt = DEFAULT_CONFIG, json_out: JsonOpt = False) -> None:
    """Check the event file; report every problem at once."""
    from datathon.commands.validate import validate_event

    facts = validate_event(config)
    if json_out:
        console.print_json(data={"valid": True, **facts})
        return
    table = Table(title=f"{config} is valid", title_justify="left", show_header=False)
    for k, v in facts.items():
        table.add_row(k, ", ".join(v) if isinstance(v, list) else str(v))
    console.print(table)


@app.command()
@command
def plan(
    config: ConfigOpt = DEFAULT_CONFIG,
    json_out: JsonOpt = False,
    show_all: Annotated[bool, typer.Option("--all", help="also list what needs no change")] = False,
    drop_team_data: Annotated[bool, typer.Option(help="plan dropping schemas of removed teams")] = False,
) -> None:
    """Show what `up` would change, touching nothing."""
    from datathon.commands.plan import plan_event
    from datathon.ui import print_plan

    ctx = _context(config, json_out=json_out)
    p = plan_event(ctx, drop_team_data=drop_team_data)
    if json_out:
        console.print_json(data={"changes": [c.as_dict() for c in p.changes], "notes": p.notes,
                                 "pending": len(p.pending), "preflight": p.preflight})
    else:
        print_plan(console, p, show_keep=show_all)
    if p.preflight:
        err_console.print(f"[bold red]`up` would stop before changing anything[/]: {len(p.preflight)} problem(s) "
                          "on this machine, listed above", highlight=False)
        raise typer.Exit(1)


@app.command()
@command
def up(
    config: ConfigOpt = DEFAULT_CONFIG,
    yes: YesOpt = False,
    drop_team_data: Annotated[bool, typer.Option(help="allow dropping schemas (with tables) of removed teams")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Create or update everything the event file describes (idempotent, resumable)."""
    from datathon.commands.up import run_up
    from datathon.ui import plan_summary

    ctx = _context(config, quiet=quiet)
    result = run_up(ctx, yes=yes, drop_team_data=drop_team_data)
    if quiet:
        console.print(f"up: {len(result.plan.pending)} changes in {result.seconds:.1f}s; handouts in "
                      f"{ctx.state.handouts_dir}", highlight=False, soft_wrap=True, markup=False)
        return
    if result.applied == 0:
        console.print(f"[green]No changes[/]: everything is as {config} says ({len(result.plan.changes)} checks, "
                      f"{result.seconds:.1f}s).")
    else:
        console.print(f"[green]Done[/]: {plan_summary(result.plan)} in {result.seconds:.1f}s.")
    _print_where(ctx, result)


scale_app = typer.Typer(help="Resize what the event runs on (RDS: the instance class and storage).",
                        no_args_is_help=True)
app.add_typer(scale_app, name="scale")


@scale_app.command("database")
@command
def scale_database(
    instance_class: Annotated[str | None, typer.Option("--class", help="e.g. db.r6g.2xlarge")] = None,
    storage_gb: Annotated[int | None, typer.Option(help="grow the storage to this many GB (it cannot shrink)")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    yes: YesOpt = False,
) -> None:
    """Resize the database server now: the plan shows the price difference and asks (a class change is an
    outage of a few minutes). Kept by later `up`s until a later scale step of the file."""
    from datathon.commands.scale import run_scale
    from datathon.ui import plan_summary

    ctx = _context(config)
    result = run_scale(ctx, instance_class=instance_class, storage_gb=storage_gb, yes=yes)
    console.print(f"[green]Done[/]: {plan_summary(result.plan)} in {result.seconds:.1f}s.")


def _print_where(ctx: Context, result) -> None:
    from datathon.commands.status import run_status
    from datathon.providers import get_provider
    from datathon.ui import status_table

    st = run_status(ctx)
    console.print(status_table(st.components))
    logins = st.tables.get("logins", [])
    if logins:
        table = Table(title="Logins", title_justify="left")
        for col in ("kind", "name", "database user", "schemas", "handout"):
            table.add_column(col)
        files = {f.name: f.html.name for f in result.handouts}
        for login in logins:
            table.add_row(login.kind, login.name, login.role, login.schemas, files.get(login.name, ""))
        console.print(table)
    folder = ctx.state.handouts_dir
    console.print(f"Handouts (0600, they hold passwords): {folder}/\nRoster for the organizers: {result.roster}",
                  soft_wrap=True)
    first = next((x for x in logins if x.kind == "team"), None)
    server = get_provider(ctx).database_server()
    if first and server is not None:
        ep, sheet = server.endpoint(), folder / f"team-{first.name}.md"
        console.print(f"Try it: psql \"host={ep.host} port={ep.port} dbname={ctx.config.databases[0].name} "
                      f"user={first.role} sslmode={ep.sslmode}\"  (the password is in {sheet})",
                      highlight=False, soft_wrap=True)
        if ctx.config.workspaces is not None and ctx.config.workspaces.hub:
            from datathon.workspaces.hub import public_url

            console.print(f"        or open {public_url(ctx.config.workspaces)} and log in as {first.role} "
                          "(same password): JupyterLab, Python and R, examples in ~/examples",
                          highlight=False, soft_wrap=True)


def _bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@app.command()
@command
def status(config: ConfigOpt = DEFAULT_CONFIG, json_out: JsonOpt = False) -> None:
    """Show what runs, where, and each team's login. Exits 1 when something is unhealthy."""
    from datathon.commands.status import run_status
    from datathon.ui import status_table

    st = run_status(_context(config, json_out=json_out, check_paths=False))
    if json_out:
        console.print_json(data=st.as_dict())
    else:
        console.print(status_table(st.components))
        if st.tables.get("logins"):
            table = Table(title="Logins", title_justify="left")
            for col in ("kind", "name", "database user", "exists", "access", "schemas", "connections",
                        "schema size", "temp files", "limits"):
                table.add_column(col)
            for x in st.tables["logins"]:
                size = "-" if x.schema_bytes is None else _bytes(x.schema_bytes) + (" [red]over quota[/]"
                                                                                   if x.over_quota else "")
                temp = "-" if x.temp_bytes is None else _bytes(x.temp_bytes)
                limits = f"[red]changed: {', '.join(x.drift)}[/]" if x.drift else "as the policy"
                name = f"{x.name} ({x.title})" if x.title else x.name
                access = {"open": "open", "locked": "[yellow]locked[/]"}.get(x.access, f"[red]{x.access}[/]")
                table.add_row(x.kind, name, x.role, "yes" if x.exists else "[red]no[/]", access, x.schemas,
                              str(x.connections), size, temp, limits)
            console.print(table)
        if st.tables.get("machines"):
            table = Table(title="Machines", title_justify="left")
            for col in ("team", "machine", "state", "address", "type", "uptime", "cost so far"):
                table.add_column(col)
            for m in st.tables["machines"]:
                table.add_row(m.team, m.instance, m.state if m.healthy else f"[red]{m.state}[/]", m.address, m.type,
                              m.uptime, m.cost)
            console.print(table)
        if st.tables.get("workspaces"):
            table = Table(title="Workspaces", title_justify="left")
            for col in ("kind", "user", "Unix user", "server", "environment", "last activity"):
                table.add_column(col)
            for w in st.tables["workspaces"]:
                env = f"[red]{w.environment}: restart it[/]" if w.outdated else w.environment
                table.add_row(w.kind, w.user, "yes" if w.unix_user else "[red]no[/]", w.server, env, w.last_activity)
            console.print(table)
    if not st.healthy:
        raise typer.Exit(1)


@app.command()
@command
def restart(
    teams: Annotated[list[str] | None, typer.Argument(help="teams or mentors (default: every server on an older "
                                                           "team environment)")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    json_out: JsonOpt = False,
) -> None:
    """Stop and start team servers so they run the current team environment (after a package change)."""
    from datathon.commands.restart import run_restart

    done = run_restart(_context(config, json_out=json_out, check_paths=False), teams)
    if json_out:
        console.print_json(data={"restarted": [r.as_dict() for r in done]})
        return
    if not done:
        console.print("No server runs an older team environment: nothing to restart.")
        return
    table = Table(title="Team servers", title_justify="left")
    for col in ("user", "result", "seconds"):
        table.add_column(col)
    for r in done:
        table.add_row(r.user, r.result, f"{r.seconds:.1f}")
    console.print(table)


@app.command()
@command
def handouts(config: ConfigOpt = DEFAULT_CONFIG, json_out: JsonOpt = False) -> None:
    """Write every team's handout (HTML, Markdown, pgAdmin servers.json) and the organizer roster."""
    from datathon.commands.handouts import write_handouts

    ctx = _context(config, json_out=json_out)
    files, roster = write_handouts(ctx)
    if json_out:
        console.print_json(data={"roster": str(roster), "handouts": [
            {"kind": f.kind, "name": f.name, "html": str(f.html), "markdown": str(f.markdown),
             **{k: str(v) for k, v in f.extra.items()}} for f in files]})
        return
    table = Table(title=f"Handouts in {ctx.state.handouts_dir} (0600: they hold passwords)", title_justify="left")
    for col in ("kind", "name", "html", "markdown", "other files"):
        table.add_column(col)
    for f in files:
        table.add_row(f.kind, f.name, f.html.name, f.markdown.name, ", ".join(p.name for p in f.extra.values()))
    console.print(table)
    console.print(f"Roster: {roster}")


@app.command()
@command
def check(
    config: ConfigOpt = DEFAULT_CONFIG,
    json_path: Annotated[Path | None, typer.Option("--json", help="write one record per team and probe here")] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="write a standalone HTML report here")] = None,
    team: Annotated[list[str] | None, typer.Option(help="check only this team (repeatable)")] = None,
) -> None:
    """Go/no-go: run every probe as every team, with the team's own credentials. Exits 1 on any failure."""
    from datathon.check.report import print_report, write_html, write_json
    from datathon.check.runner import run_check

    report = run_check(_context(config, check_paths=False), only=team)
    print_report(console, report)
    if json_path:
        write_json(report, json_path)
        console.print(f"JSON: {json_path}")
    if html_path:
        write_html(report, html_path)
        console.print(f"HTML: {html_path}")
    if not report.go:
        raise typer.Exit(1)


@app.command()
@command
def serve(
    config: ConfigOpt = DEFAULT_CONFIG,
    stop: Annotated[bool, typer.Option("--stop", help="stop the dashboard")] = False,
    foreground: Annotated[bool, typer.Option("--foreground", help="run here, not detached (what `serve` starts)")] = False,
    mark: Annotated[str, typer.Option(hidden=True)] = "",
    json_out: JsonOpt = False,
) -> None:
    """The live dashboard: the organizer's view, the team portal and the watcher, on `dashboard.listen:port`
    (detached, with a pid file; `up` starts it when the file has `dashboard:`, `down` stops it)."""
    if foreground:
        from datathon.web.server import serve_forever

        serve_forever(config)
        return
    from datathon.commands.serve import run_serve, run_serve_stop

    ctx = _context(config, json_out=json_out, check_paths=False)
    result = run_serve_stop(ctx) if stop else run_serve(ctx)
    if json_out:
        console.print_json(data=result.as_dict())
    elif stop:
        console.print("dashboard stopped" if result.started else "no dashboard was running")
    else:
        console.print(f"dashboard {'started' if result.started else 'runs'} at {result.url} (pid {result.pid}); "
                      f"organizer token in {result.token_file}; teams log in with their handout's password",
                      highlight=False, soft_wrap=True)


def _print_access(result, json_out: bool) -> None:
    if json_out:
        console.print_json(data=result.as_dict())
        return
    table = Table(title=f"{result.verb.capitalize()}: {', '.join(result.teams)}", title_justify="left")
    for col in ("what", "target", "change"):
        table.add_column(col)
    for c in result.changes:
        table.add_row(str(c.component), c.target, c.reason)
    if result.changes:
        console.print(table)
    state = "locked" if result.verb == "lock" else "unlocked"
    console.print(f"[green]{len(result.teams)} team(s) {state}[/] ({len(result.changes)} change(s)); "
                  f"`datathon up` keeps it so, `datathon status` shows it.")


@app.command()
@command
def lock(
    teams: Annotated[list[str] | None, typer.Argument(help="teams to lock out (default: every team)")] = None,
    config: ConfigOpt = DEFAULT_CONFIG, json_out: JsonOpt = False,
) -> None:
    """End teams' access without deleting anything: database logins refused and sessions ended, servers
    stopped, hub logins refused. Kept by `up` until `unlock`."""
    from datathon.commands.access import run_access

    _print_access(run_access(_context(config, json_out=json_out, check_paths=False), teams or [], lock=True), json_out)


@app.command()
@command
def unlock(
    teams: Annotated[list[str] | None, typer.Argument(help="teams to let in again (default: every team)")] = None,
    config: ConfigOpt = DEFAULT_CONFIG, json_out: JsonOpt = False,
) -> None:
    """Give locked teams their access back (the same passwords)."""
    from datathon.commands.access import run_access

    _print_access(run_access(_context(config, json_out=json_out, check_paths=False), teams or [], lock=False), json_out)


@app.command()
@command
def rotate(
    names: Annotated[list[str] | None, typer.Argument(help="teams or mentors whose passwords to change")] = None,
    all_teams: Annotated[bool, typer.Option("--all", help="every team")] = False,
    config: ConfigOpt = DEFAULT_CONFIG, json_out: JsonOpt = False,
) -> None:
    """New passwords for teams or mentors everywhere they use one; the old ones are refused at once. Prints
    which sheets to hand out again (never a password)."""
    from datathon.commands.rotate import run_rotate

    result = run_rotate(_context(config, json_out=json_out, check_paths=False), names or [], all_teams=all_teams)
    if json_out:
        console.print_json(data=result.as_dict())
        return
    table = Table(title="Hand these out again (the old passwords no longer work)", title_justify="left")
    for col in ("kind", "name", "logins", "handout", "server"):
        table.add_column(col)
    for r in result.rotated:
        server = "restarted" if r.restarted else "-"
        table.add_row(r.kind, r.name, str(len(r.logins)), r.handout + (" (finished an interrupted rotation)"
                                                                        if r.resumed else ""), server)
    console.print(table)
    console.print(f"Handouts (0600): {result.handouts_dir}/  Roster: {result.roster}", soft_wrap=True)


@app.command()
@command
def down(
    config: ConfigOpt = DEFAULT_CONFIG,
    yes: YesOpt = False,
    quiet: QuietOpt = False,
    no_archive: Annotated[bool, typer.Option("--no-archive", help="delete teams' work that no verified archive "
                                             "holds")] = False,
    delete_images: Annotated[bool, typer.Option(help="also the machine images the event made (AWS)")] = False,
    no_final_snapshot: Annotated[bool, typer.Option("--no-final-snapshot", help="RDS: delete the instance "
                                                    "without a final snapshot (its data is gone for good)")] = False,
) -> None:
    """Stop and remove everything datathon created for the event, and prove it is gone. Refuses while a team has
    work newer than the last verified archive (see `datathon archive`)."""
    from datathon.commands.down import run_down

    result = run_down(_context(config, check_paths=False, quiet=quiet), yes=yes, no_archive=no_archive,
                      delete_images=delete_images, final_snapshot=not no_final_snapshot)
    if quiet:
        console.print(f"down: {result.removed} removed, {len(result.checked)} checks passed", highlight=False)
        return
    table = Table(title="Teardown", title_justify="left")
    table.add_column("what")
    table.add_column("result")
    for what, res in result.checked:
        table.add_row(what, f"[green]{res}[/]")
    console.print(table)


def _summary_table(title: str, teams) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("team", "state", "tables", "rows", "files", "size", "seconds"):
        table.add_column(col, justify="left" if col in ("team", "state") else "right")
    for t in teams:
        style = "red" if t.problems or t.state == "failed" else "green"
        table.add_row(t.team, f"[{style}]{t.state}[/]", f"{t.tables:,}",
                      f"{t.rows:,}", f"{t.files:,}", _bytes(t.bytes), f"{t.seconds:.1f}")
    if len(teams) > 1:
        table.add_row("all", "", f"{sum(t.tables for t in teams):,}", f"{sum(t.rows for t in teams):,}",
                      f"{sum(t.files for t in teams):,}", _bytes(sum(t.bytes for t in teams)), "")
    return table


@app.command()
@command
def archive(
    teams: Annotated[list[str] | None, typer.Argument(help="teams to archive (default: all); `verify [DIR]` checks "
                                                          "an archive")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="the archive folder (default: datathon-archive/<event> "
                                                           "beside the event file)")] = None,
    jobs: Annotated[int | None, typer.Option(min=1, max=64, help="teams archived at once")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    json_out: JsonOpt = False,
) -> None:
    """Keep every team's work (schemas, home, environment) with a manifest; resumable. `archive verify [DIR]`
    restores each team into a scratch database and checks every file and table against the manifest."""
    from datathon.commands.archive import run_archive, run_verify

    ctx = _context(config, check_paths=False)
    if teams and teams[0] == "verify":
        if len(teams) > 2:
            raise typer.BadParameter("archive verify takes one folder")
        folder = Path(teams[1]) if len(teams) == 2 else out
        v = run_verify(ctx, out=folder, jobs=jobs)
        if json_out:
            console.print_json(data=v.as_dict())
        else:
            console.print(_summary_table(f"Verified {v.out} ({v.seconds:.1f}s)", v.teams))
            for t in v.teams:
                for p in t.problems:
                    console.print(f"[red]{t.team}[/]: {p}", highlight=False, soft_wrap=True)
        if not v.ok:
            raise typer.Exit(1)
        return
    r = run_archive(ctx, out=out, teams=teams or None, jobs=jobs)
    if json_out:
        console.print_json(data=r.as_dict())
        return
    console.print(_summary_table(f"Archived into {r.out} ({r.seconds:.1f}s)", r.teams))
    console.print(f"Next: datathon archive verify {r.out}", highlight=False, soft_wrap=True)


@app.command()
@command
def restore(
    team: Annotated[str, typer.Argument(help="the team whose work to put back")],
    from_: Annotated[Path, typer.Option("--from", help="the archive folder")],
    config: ConfigOpt = DEFAULT_CONFIG,
    json_out: JsonOpt = False,
) -> None:
    """Put a team's archived schemas and home back into this event (the team must be in its event file)."""
    from datathon.commands.archive import run_restore

    r = run_restore(_context(config, check_paths=False), team, source=from_)
    if json_out:
        console.print_json(data=r.as_dict())
    else:
        console.print(_summary_table(f"Restored {team} from {from_}", [r]))


audit_app = typer.Typer(help="The event's audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("export")
@command
def audit_export(
    since: Annotated[str | None, typer.Option(help="only events from this time on (ISO, UTC unless it says)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    out: Annotated[Path | None, typer.Option("--out", help="write here instead of standard output")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Every database connection and disconnection per login (time, database, client, TLS, duration), every hub
    login and server start/stop; a per-team summary."""
    from datathon.commands.audit import run_audit

    if fmt not in ("csv", "json"):
        raise typer.BadParameter("--format is csv or json")
    r = run_audit(_context(config, check_paths=False), since=since)
    text = r.render(fmt)
    shown = err_console
    if out:
        out.write_text(text)
        shown = console
    else:
        sys.stdout.write(text)
    table = Table(title=f"Audit: {len(r.events)} events" + (f" in {out}" if out else ""), title_justify="left")
    for col in ("login", "team", "connections", "refused", "connected", "hub logins", "servers", "first", "last"):
        table.add_column(col)
    for x in r.summary:
        table.add_row(x.login, x.team, str(x.connections), str(x.refused), f"{x.seconds:.0f}s", str(x.hub_logins),
                      str(x.servers_started), x.first[:19], x.last[:19])
    shown.print(table)


# -- datathon watch ---------------------------------------------------------------------------------------------

def _print_watch(report, json_out: bool, once: bool, seen: set[str]) -> None:
    """Each action as a line (flushed at once, also into a pipe); with --json, the cycle as JSON (one line a
    cycle unless --once). A problem is printed when it first appears, not every few seconds."""
    import json
    from datetime import UTC, datetime

    if json_out:
        data = {"time": datetime.now(UTC).isoformat(timespec="seconds"),
                "actions": [a.as_dict() for a in report.actions], "usage": report.usage, "problems": report.problems}
        sys.stdout.write(json.dumps(data, indent=1 if once else None) + "\n")
    else:
        stamp = datetime.now().astimezone().strftime("%H:%M:%S")
        for a in report.actions:
            sys.stdout.write(f"{stamp} {a.member}: {a.action}{'' if a.enforced else ' (flagged)'}: {a.detail}\n")
        for p in report.problems:
            if p not in seen:
                sys.stdout.write(f"{stamp} problem: {p}\n")
        if once and not report.actions:
            sys.stdout.write(f"{stamp} nothing to do: every limit holds\n")
    seen.clear()
    seen.update(report.problems)
    sys.stdout.flush()


@app.command()
@command
def watch(
    config: ConfigOpt = DEFAULT_CONFIG,
    once: Annotated[bool, typer.Option("--once", help="one cycle, then exit")] = False,
    every: Annotated[float | None, typer.Option(help="seconds between cycles (default: dashboard.watch_every, "
                                                     "else 5)", min=1)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Keep the per-team limits in force: put back a policy setting a team changed on its own role, cancel a
    statement past statement_timeout, end a session idle in a transaction past its limit, flag a team over
    policy.disk_quota. Every action is journaled (`datathon audit export` shows it). Ctrl-C stops it."""
    import threading

    from datathon.commands.watch import run_watch_cycle, watch_loop

    ctx = _context(config, check_paths=False, json_out=json_out)
    seen: set[str] = set()
    if once:
        report = run_watch_cycle(ctx)
        _print_watch(report, json_out, True, seen)
        return
    dash = ctx.config.dashboard
    period = every or (dash.watch_seconds if dash is not None else 5.0)
    if not json_out:
        err_console.print(f"watching event {ctx.config.event} every {period:g}s (Ctrl-C stops)", highlight=False)
    stop = threading.Event()
    try:
        watch_loop(ctx, period, stop, lambda r: _print_watch(r, json_out, False, seen))
    except KeyboardInterrupt:
        stop.set()
        err_console.print("stopped watching")


TeamArg = Annotated[str | None, typer.Argument(help="one team (default: every team)")]


def _print_machines(rows, json_out: bool) -> None:
    if json_out:
        console.print_json(data=[r.as_dict() for r in rows])
        return
    table = Table(title="Machines", title_justify="left")
    for col in ("team", "machine", "state", "address"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.team, r.instance, r.state, r.address)
    console.print(table)


@app.command()
@command
def stop(team: TeamArg = None, config: ConfigOpt = DEFAULT_CONFIG, yes: YesOpt = False,
         json_out: JsonOpt = False) -> None:
    """Stop the team machines (all, or one team's) for the night: /scratch is erased, homes are kept."""
    from datathon.commands.machines import run_stop

    _print_machines(run_stop(_context(config, json_out=json_out, check_paths=False), team, yes=yes), json_out)


@app.command()
@command
def start(team: TeamArg = None, config: ConfigOpt = DEFAULT_CONFIG, json_out: JsonOpt = False) -> None:
    """Start the team machines again (all, or one team's); the handouts get their new addresses."""
    from datathon.commands.machines import run_start

    _print_machines(run_start(_context(config, json_out=json_out, check_paths=False), team), json_out)


workspaces_app = typer.Typer(help="The teams' JupyterLab servers on the event's hub.", no_args_is_help=True)
app.add_typer(workspaces_app, name="workspaces")
ParallelOpt = Annotated[int, typer.Option("--parallel", min=1, max=64, help="servers at a time")]


def _print_servers(rows, json_out: bool, verb: str) -> None:
    if json_out:
        console.print_json(data={verb: [r.as_dict() for r in rows]})
    else:
        table = Table(title="Team servers", title_justify="left")
        for col in ("team", "user", "result", "seconds"):
            table.add_column(col)
        for r in rows:
            table.add_row(r.team, r.user, r.result if r.ok else f"[red]{r.result}[/]", f"{r.seconds:.1f}")
        console.print(table)
    if not all(r.ok for r in rows):
        raise typer.Exit(1)


@workspaces_app.command("start")
@command
def workspaces_start(
    teams: Annotated[list[str] | None, typer.Argument(help="teams (default: every team)")] = None,
    config: ConfigOpt = DEFAULT_CONFIG, json_out: JsonOpt = False, parallel: ParallelOpt = 4,
) -> None:
    """Start the teams' servers before the doors open; the idle culler leaves them alone until each team's first
    visit. A locked team's server is not started."""
    from datathon.commands.workspaces import run_workspaces_start

    ctx = _context(config, json_out=json_out, check_paths=False)
    _print_servers(run_workspaces_start(ctx, teams or [], workers=parallel), json_out, "started")


@workspaces_app.command("stop")
@command
def workspaces_stop(
    teams: Annotated[list[str] | None, typer.Argument(help="teams (default: every team)")] = None,
    config: ConfigOpt = DEFAULT_CONFIG, json_out: JsonOpt = False, parallel: ParallelOpt = 4,
) -> None:
    """Stop the teams' servers (their work in files stays; running kernels end)."""
    from datathon.commands.workspaces import run_workspaces_stop

    ctx = _context(config, json_out=json_out, check_paths=False)
    _print_servers(run_workspaces_stop(ctx, teams or [], workers=parallel), json_out, "stopped")


image_app = typer.Typer(help="The golden image of the team machines (AWS).", no_args_is_help=True)
app.add_typer(image_app, name="image")


@image_app.command("build")
@command
def image_build(
    config: ConfigOpt = DEFAULT_CONFIG,
    profile: Annotated[str | None, typer.Option(help="the machine profile whose base image to build on "
                                                     "(default: aws.cpu_profile)")] = None,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Boot one builder with the workspace bootstrap, run the workspace probes on it, save it as the event's
    image (reused while the bootstrap and base image stay the same)."""
    from datathon.commands.image import run_image_build

    result = run_image_build(_context(config, json_out=json_out, check_paths=False), yes=yes, profile=profile)
    if json_out:
        console.print_json(data=result.as_dict())
        return
    how = "reused (the same bootstrap and base image)" if result.reused else f"made from builder {result.builder}"
    console.print(f"image [bold]{result.image}[/] {result.name}: {how}, in {result.seconds:.0f}s")
    for r in result.probes:
        console.print(f"  {r.outcome:4} {r.probe}: {r.description}" + (f" ({r.detail})" if r.detail else ""))


state_app = typer.Typer(help="The local state folder.", no_args_is_help=True)
app.add_typer(state_app, name="state")


@state_app.command("recover")
@command
def state_recover(config: ConfigOpt = DEFAULT_CONFIG, json_out: JsonOpt = False) -> None:
    """Rebuild the local state from what the provider finds by tags (AWS)."""
    from datathon.commands.state import run_recover

    rows = run_recover(_context(config, json_out=json_out, check_paths=False))
    if json_out:
        console.print_json(data=[{"what": w, "found": f} for w, f in rows])
        return
    table = Table(title="Recovered from tags", title_justify="left")
    table.add_column("what")
    table.add_column("found")
    for w, f in rows:
        table.add_row(w, f)
    console.print(table)


data_app = typer.Typer(help="Clinical datasets: synthesize, load; imaging datasets: push, verify, pull.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("synth")
@command
def data_synth(
    kind: Annotated[str, typer.Argument(help="mimic-iv, mimic-iv-ed or eicu")],
    out: Annotated[Path, typer.Option(help="folder to write the release layout into")],
    patients: Annotated[int, typer.Option(min=1, help="number of patients (eICU: unit stays)")] = 100,
    seed: Annotated[int, typer.Option(help="same seed, same bytes")] = 42,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Write synthetic data in exactly the official layout (no real patient)."""
    from datathon.commands.data import synth

    r = synth(kind, out, patients=patients, seed=seed, console=console)
    table = Table()
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in sorted(r.rows.items(), key=lambda x: -x[1]):
        table.add_row(name, f"{n:,}")
    console.print(table)
    console.print(f"{kind} in {out}: {sum(r.rows.values()):,} rows, {r.bytes / 2**20:.1f} MiB, {r.seconds:.1f}s; "
                  f"checksums in {out / 'SHA256SUMS.txt'}", highlight=False, soft_wrap=True)


@data_app.command("load")
@command
def data_load(config: ConfigOpt = DEFAULT_CONFIG, yes: YesOpt = False, quiet: QuietOpt = False) -> None:
    """Load the sources of datathon.yaml that are not loaded yet (as `up` does; resumes where it stopped)."""
    from datathon.commands.up import run_up
    from datathon.ui import plan_summary

    result = run_up(_context(config, quiet=quiet), yes=yes)
    summary = plan_summary(result.plan)
    if quiet:  # plain text for scripts
        from rich.text import Text

        summary = Text.from_markup(summary).plain
    console.print(f"{'No changes' if not result.applied else 'Done: ' + summary} ({result.seconds:.1f}s)",
                  markup=not quiet)


@data_app.command("push")
@command
def data_push(
    dataset: Annotated[str | None, typer.Argument(help="one dataset of storage.datasets (default: all)")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    json_out: JsonOpt = False,
) -> None:
    """Upload imaging datasets into the event's store (parallel, resumable), with their manifests."""
    from datathon.commands.data import push
    from datathon.storage.sync import human

    store, results = push(_context(config, json_out=json_out), dataset)
    if json_out:
        console.print_json(data={"location": store.location, "datasets": [r.as_dict() for r in results]})
        return
    table = Table(title=f"Pushed into {store.location}", title_justify="left")
    for col in ("dataset", "files", "size", "sent", "sent size", "seconds", "rate"):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    for r in results:
        table.add_row(r.dataset, f"{r.files:,}", human(r.bytes), f"{r.sent_files:,}", human(r.sent_bytes),
                      f"{r.seconds:.1f}", f"{human(r.sent_bytes / max(r.seconds, 1e-3))}/s")
    console.print(table)


@data_app.command("verify")
@command
def data_verify(
    dataset: Annotated[str | None, typer.Argument(help="one dataset of storage.datasets (default: all)")] = None,
    deep: Annotated[bool, typer.Option(help="read every object back and hash it (not only recorded sha256)")] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
    json_out: JsonOpt = False,
) -> None:
    """Compare the store with each dataset's manifest; list what is missing or different. Exits 1 if anything is."""
    from datathon.commands.data import verify

    store, results = verify(_context(config, json_out=json_out, check_paths=False), dataset, deep=deep, console=console)
    if json_out:
        console.print_json(data={"location": store.location, "ok": all(r.ok for r in results),
                                 "datasets": [r.as_dict() for r in results]})
    else:
        for r in results:
            if r.ok:
                console.print(f"[green]{r.dataset}[/]: all {r.files:,} files present and matching the manifest"
                              + (f" ({len(r.extra)} objects not in it)" if r.extra else ""))
                continue
            table = Table(title=f"{r.dataset}: {len(r.missing)} missing, {len(r.different)} different "
                                f"of {r.files:,}", title_justify="left")
            table.add_column("file")
            table.add_column("problem")
            for path in r.missing:
                table.add_row(path, "[red]missing[/]")
            for path, why in r.different:
                table.add_row(path, f"[red]different[/]: {why}")
            console.print(table)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@data_app.command("pull")
@command
def data_pull(
    dataset: Annotated[str, typer.Argument(help="the dataset's name")],
    to: Annotated[Path, typer.Option("--to", help="folder to fetch into (made if missing)")],
    prefix: Annotated[str | None, typer.Option(help="only files whose path starts with this, e.g. files/p10/")] = None,
    manifest_filter: Annotated[str | None, typer.Option(help="only files matching this glob, e.g. '*.jpg'")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="s3://bucket/prefix or the store's folder "
                                                              "(default: the event file's store)")] = None,
    region: Annotated[str, typer.Option(help="with --from s3://...")] = "us-east-1",
    endpoint_url: Annotated[str | None, typer.Option(help="with --from s3://... on MinIO/Ceph")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, max=256, help="parallel downloads")] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
    json_out: JsonOpt = False,
) -> None:
    """Fetch a dataset, or part of it, into a folder; every file is checked against the manifest (resumable)."""
    from datathon.commands.data import pull
    from datathon.storage.sync import human

    ctx = None if from_ else _context(config, json_out=json_out, check_paths=False)
    store, r = pull(ctx, dataset, to, prefix=prefix, pattern=manifest_filter, from_=from_, region=region,
                    endpoint_url=endpoint_url, concurrency=concurrency, console=console)
    if json_out:
        console.print_json(data={"location": store.location, "to": str(to), **r.as_dict()})
    else:
        console.print(f"{dataset} -> {to}: {r.files:,} files selected ({human(r.bytes)}), {r.fetched:,} fetched, "
                      f"{r.skipped:,} already there, {len(r.failed)} failed ({r.seconds:.1f}s)", highlight=False)
        if r.failed:
            table = Table(title="Not fetched (nothing kept under these names)", title_justify="left")
            table.add_column("file")
            table.add_column("why")
            for path, why in r.failed:
                table.add_row(path, f"[red]{why}[/]")
            console.print(table)
    if not r.ok:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
