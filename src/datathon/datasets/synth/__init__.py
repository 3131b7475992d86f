"""`datathon data synth`: synthetic datasets in exactly the official layout, deterministic for a seed."""

from __future__ import annotations

from pathlib import Path

from datathon.datasets.synth import ed, eicu, mimic
from datathon.datasets.synth.engine import Writer

GENERATORS = {"mimic-iv": mimic.generate, "mimic-iv-ed": ed.generate, "eicu": eicu.generate}


def synthesize(kind: str, out: Path, *, patients: int, seed: int) -> Writer:
    out.mkdir(parents=True, exist_ok=True)
    return GENERATORS[kind](out, patients=patients, seed=seed)
