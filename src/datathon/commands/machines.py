"""`datathon stop [TEAM]` / `datathon start [TEAM]`: the team machines off for the night and on again. Stopping
erases a machine's instance-store disk (/scratch), so `stop` says so and asks first."""

from __future__ import annotations

from dataclasses import dataclass

from datathon.commands.plan import ready_provider
from datathon.commands.up import confirm
from datathon.core.context import Context
from datathon.errors import ProvisionError
from datathon.handouts import build_handouts

SCRATCH_WARNING = ("stopping erases /scratch (the local NVMe disk of GPU machines) on every machine stopped; "
                   "the home folders and the root volume are kept")


@dataclass
class MachineState:
    team: str
    instance: str
    state: str
    address: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _machines(ctx: Context):
    provider = ready_provider(ctx)
    m = provider.machines()
    if m is None:
        raise ProvisionError(f"provider {provider.name!r} runs no machine per team: nothing to stop or start",
                             hint="the team servers of the local provider stop with `datathon down`")
    return m


def _rows(instances) -> list[MachineState]:
    return [MachineState(i.team, i.id, i.state, i.public_ip or "") for i in instances]


def run_stop(ctx: Context, team: str | None, *, yes: bool = False) -> list[MachineState]:
    m = _machines(ctx)
    with ctx.state.lock():
        running = [i for i in m.select(team) if i.state in ("running", "pending")]
        if running:
            ctx.console.print(f"[yellow]warning:[/] {SCRATCH_WARNING}")
            confirm(ctx, f"Stop {len(running)} machine(s): {', '.join(i.team for i in running)}?", yes=yes)
        return _rows(m.stop(team))


def run_start(ctx: Context, team: str | None) -> list[MachineState]:
    """Start them; a started machine has a new public address, so the handouts and roster are written again."""
    provider = ready_provider(ctx)
    m = _machines(ctx)
    with ctx.state.lock():
        rows = _rows(m.start(team))
        if ctx.state.exists():
            build_handouts(ctx, provider.parts())
        return rows
