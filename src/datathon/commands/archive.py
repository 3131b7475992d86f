"""`datathon archive`, `archive verify` and `restore`: teams' work kept beyond the event, proven restorable."""

from __future__ import annotations

from pathlib import Path

from datathon.archive.run import (
    ArchiveResult,
    TeamSummary,
    VerifyResult,
    archive_event,
    default_out,
    restore_team,
    verify_archive,
)
from datathon.commands.plan import ready_provider
from datathon.core.context import Context
from datathon.errors import ProvisionError


def _out(ctx: Context, out: Path | None) -> Path:
    return (out or default_out(ctx.loaded.base_dir, ctx.config.event)).resolve()


def _recorded(ctx: Context, out: Path | None) -> Path:
    """The folder to verify: the one given, else the last one `archive` wrote for this event."""
    if out is not None:
        return out.resolve()
    recorded = ctx.state.load().get("archive", {}).get("dir")
    if recorded:
        return Path(recorded)
    raise ProvisionError("no archive of this event is recorded", hint="give the folder: `datathon archive verify DIR`")


def run_archive(ctx: Context, *, out: Path | None = None, teams: list[str] | None = None,
                jobs: int | None = None) -> ArchiveResult:
    parts = ready_provider(ctx).parts()
    with ctx.state.lock():
        return archive_event(ctx.config, ctx.state, parts, _out(ctx, out), teams=teams, console=ctx.console,
                             jobs=jobs)


def run_verify(ctx: Context, *, out: Path | None = None, jobs: int | None = None) -> VerifyResult:
    parts = ready_provider(ctx).parts()
    with ctx.state.lock():
        return verify_archive(ctx.config, ctx.state, parts, _recorded(ctx, out), console=ctx.console, jobs=jobs)


def run_restore(ctx: Context, team: str, *, source: Path) -> TeamSummary:
    parts = ready_provider(ctx).parts()
    with ctx.state.lock():
        return restore_team(ctx.config, parts, source.resolve(), team, console=ctx.console)
