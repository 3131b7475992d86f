"""Run every probe as every team, teams concurrently, and gather the verdict."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import datathon.check.database_probes  # noqa: F401  (registers the database probes)
import datathon.check.workspace_guard_probes  # noqa: F401  (and those of the machine's walls between teams)
import datathon.check.workspace_probes  # noqa: F401  (then the workspace probes)
import datathon.check.access_probes  # noqa: F401  (and those of locked teams and rotated passwords)
from datathon.check import verdicts
from datathon.check.model import REGISTRY, Probe, ProbeFailed, ProbeResult, ProbeSkipped
from datathon.check.session import Credentials, Environment, Session
from datathon.core import access
from datathon.core.context import Context
from datathon.database.tenancy import Login, wanted_logins
from datathon.errors import DatathonError, StateError
from datathon.providers import get_provider

MAX_PARALLEL_TEAMS = 8


@dataclass
class CheckReport:
    event: str
    started: str
    config_sha256: str
    seconds: float
    probes: list[Probe]
    teams: list[str]
    results: list[ProbeResult] = field(default_factory=list)

    @property
    def failures(self) -> list[ProbeResult]:
        return [r for r in self.results if r.outcome == "fail"]

    @property
    def go(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        return {
            "event": self.event, "started": self.started, "config_sha256": self.config_sha256,
            "seconds": round(self.seconds, 2), "verdict": "GO" if self.go else "NO-GO",
            "teams": self.teams, "probes": [{"id": p.id, "description": p.description, "expect": p.expect}
                                            for p in self.probes],
            "results": [r.as_dict() for r in self.results],
        }


def run_probe(p: Probe, session: Session) -> ProbeResult:
    session.evidence = []
    started = time.perf_counter()
    outcome, detail = "pass", ""
    try:
        p.run(session)
    except ProbeFailed as exc:
        outcome, detail = "fail", exc.detail
    except ProbeSkipped as exc:
        outcome, detail = "skip", str(exc)
    except Exception as exc:  # a probe that cannot run proves nothing: it fails, with the reason
        outcome, detail = "fail", f"probe error: {type(exc).__name__}: {exc}"
    return ProbeResult(p.id, session.team, outcome, p.description, p.expect, list(session.evidence), detail,
                       time.perf_counter() - started)


def _environment(ctx: Context) -> Environment:
    server = get_provider(ctx).database_server()
    if not server.is_reachable():
        raise DatathonError("the database server is not running", hint="run `datathon up` first")
    shared: dict[str, list[tuple[str, str, str, str]]] = {}
    for db in ctx.config.databases:  # the list of tables is read by the organizer; every probe runs as a team
        if not db.readable_schemas:
            continue
        with server.connect(db.name, autocommit=True) as conn:
            shared[db.name] = conn.execute(
                "SELECT n.nspname, c.relname, c.relkind,"
                " (SELECT attname FROM pg_attribute WHERE attrelid = c.oid AND attnum = 1)"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = ANY(%s) AND c.relkind IN ('r','p','v','m','f') ORDER BY 1, 2",
                (db.readable_schemas,),
            ).fetchall()
    mentor_logins: dict[str, list[Credentials]] = {}
    for x in wanted_logins(ctx.config):
        if x.kind == "mentor_team":
            mentor_logins.setdefault(x.team, []).append(Credentials(x, _password(ctx, x)))
    env = Environment(config=ctx.config, endpoint=server.reach(), managed=server.traits.controls_hba,
                      shared_tables=shared, mentor_logins=mentor_logins)
    env.guard = _guard(ctx, server)
    if ctx.config.workspaces is not None and ctx.config.workspaces.hub:
        from datathon.workspaces.hub import datasets_folder, hub_for

        env.hub, env.datasets = hub_for(ctx), datasets_folder(ctx)
    return env


def _guard(ctx: Context, server) -> Callable[[str], None]:
    """One cycle of the watcher's database guard, as the organizer, on one login only (the probe
    `db.policy.lifted` asks for it after lifting limits as the team; other teams' drift is theirs to show).
    What it does is journaled like the watcher's own, marked as run by `check`."""
    from datathon.core import journal
    from datathon.database.guard import GuardMemory, guard

    logins = {x.role: x for x in wanted_logins(ctx.config)}
    databases = [d.name for d in ctx.config.databases]

    def run(role: str) -> None:
        memory = GuardMemory(sizes_at=time.monotonic())  # no schema sizes, no quota: settings and sessions only
        report = guard(server, [logins[role]], databases, quota=None, memory=memory)
        for a in report.actions:
            journal.record(ctx.state, "watcher", a.action, a.member, f"{a.detail} (a cycle run by `datathon check`)")

    return run


def _password(ctx: Context, login: Login) -> str:
    value = ctx.state.secret(login.role, create=False)
    if value is None:
        raise StateError(f"no stored password for {login.role}", hint="run `datathon up` to create the logins")
    return value


def run_check(ctx: Context, *, only: list[str] | None = None) -> CheckReport:
    env = _environment(ctx)
    teams = [x for x in wanted_logins(ctx.config) if x.kind == "team"]
    if only:
        unknown = sorted(set(only) - {t.name for t in teams})
        if unknown:
            raise DatathonError(f"no team named {', '.join(unknown)}",
                                hint=f"teams: {', '.join(t.name for t in teams)}")
    chosen = [t for t in teams if not only or t.name in only]
    creds = {t.role: Credentials(t, _password(ctx, t)) for t in chosen}
    locked = set(access.locked(ctx.state))

    def probes_for(team: Login) -> list[Probe]:
        # a locked team: only the probes proving it is refused everywhere; the others: every probe of an open team
        return [p for p in REGISTRY if p.locked == (team.name in locked)]

    report = CheckReport(
        event=ctx.config.event, started=datetime.now(UTC).isoformat(timespec="seconds"),
        config_sha256=hashlib.sha256(ctx.loaded.path.read_bytes()).hexdigest(), seconds=0.0,
        probes=[p for p in REGISTRY if any(p.locked == (t.name in locked) for t in chosen)],
        teams=[t.name for t in chosen],
    )
    started = time.perf_counter()
    progress = Progress(TextColumn("[bold]checking"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("probes"), TimeElapsedColumn(), console=ctx.console,
                        disable=not ctx.console.is_terminal)

    def run_team(i: int) -> list[ProbeResult]:
        me = chosen[i]
        index = teams.index(me)
        neighbour = teams[(index + 1) % len(teams)] if len(teams) > 1 else None
        session = Session(env, creds[me.role], neighbour, [t for t in teams if t.role != me.role],
                          retired=access.retired(ctx.state, me.role))
        out = []
        try:
            for p in probes_for(me):
                out.append(run_probe(p, session))
                progress.advance(task)
        finally:
            session.close()
        return out

    with progress:
        task = progress.add_task("check", total=sum(len(probes_for(t)) for t in chosen))
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_TEAMS, len(chosen) or 1)) as pool:
            for results in pool.map(run_team, range(len(chosen))):
                report.results.extend(results)
    report.seconds = time.perf_counter() - started
    verdicts.record(ctx.state, report)  # the dashboard shows each team's last verdict
    return report
