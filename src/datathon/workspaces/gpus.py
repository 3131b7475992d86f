"""GPUs for team workspaces: how many this machine has, and which devices each team gets (no device given to two
teams). The assignment reaches a team's server as CUDA_VISIBLE_DEVICES, which CUDA programs honour; it is not a
wall: the device files are usually open to every user, so a team that sets the variable itself can reach another
team's GPU. `status` and the handouts say so."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from datathon.config import EventConfig


@dataclass
class GpuInventory:
    count: int
    names: list[str]
    source: str  # how we know: "nvidia-smi", or why we could not ask

    @property
    def summary(self) -> str:
        if not self.count:
            return f"no GPU ({self.source})"
        return f"{self.count} GPU(s): {', '.join(sorted(set(self.names)))} ({self.source})"


def detect() -> GpuInventory:
    """The GPUs `nvidia-smi` reports; none when it is missing or fails (then nothing is faked)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return GpuInventory(0, [], "nvidia-smi not found")
    try:
        out = subprocess.run([exe, "--query-gpu=index,name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        return GpuInventory(0, [], f"nvidia-smi failed: {exc}")
    rows = [line.split(",", 1) for line in out.splitlines() if line.strip()]
    return GpuInventory(len(rows), [r[1].strip() for r in rows if len(r) > 1], "nvidia-smi")


class GpuRequestError(ValueError):
    pass


def assign(config: EventConfig, available: int) -> dict[str, list[int]]:
    """Device ids per team. Explicit ids are honoured first; counts take the lowest free ids, in team order.
    Raises GpuRequestError when the teams ask for more than there is, or two teams name the same device."""
    wanted = [(t.name, t.gpus) for t in config.team_list if t.gpus]
    asked = sum(t.gpu_count for t in config.team_list)
    if asked > available:
        raise GpuRequestError(f"the teams ask for {asked} GPU(s) and this machine has {available}")
    taken: dict[int, str] = {}
    result: dict[str, list[int]] = {}
    for name, gpus in wanted:
        if isinstance(gpus, list):
            for dev in gpus:
                if dev >= available:
                    raise GpuRequestError(f"team {name} asks for GPU {dev}; this machine has GPUs 0-{available - 1}"
                                          if available else f"team {name} asks for GPU {dev}; this machine has none")
                if dev in taken:
                    raise GpuRequestError(f"GPU {dev} is asked for by both {taken[dev]} and {name}")
                taken[dev] = name
            result[name] = list(gpus)
    free = (d for d in range(available) if d not in taken)
    for name, gpus in wanted:
        if isinstance(gpus, int):
            result[name] = [next(free) for _ in range(gpus)]
            for d in result[name]:
                taken[d] = name
    return result
