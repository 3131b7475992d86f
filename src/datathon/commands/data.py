"""`datathon data ...`: synthetic clinical data; imaging datasets pushed, verified, pulled."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from datathon.core.context import Context
from datathon.errors import ConfigError


@dataclass
class SynthResult:
    kind: str
    out: Path
    rows: dict[str, int]
    bytes: int
    seconds: float


def synth(kind: str, out: Path, *, patients: int, seed: int, console: Console) -> SynthResult:
    from datathon.datasets.synth import GENERATORS, synthesize

    if kind not in GENERATORS:
        raise ConfigError(f"no synthetic generator for {kind!r}", hint=f"choose one of: {', '.join(GENERATORS)}")
    started = time.monotonic()
    with console.status(f"generating {kind} for {patients} patients ..."):
        writer = synthesize(kind, out, patients=patients, seed=seed)
    size = sum(p.stat().st_size for p in out.rglob("*.csv.gz"))
    return SynthResult(kind, out, dict(writer.rows), size, time.monotonic() - started)


def storage_names(ctx: Context, dataset: str | None) -> list[str]:
    from datathon.storage import get_store

    get_store(ctx)  # says so when the event file has no storage: section
    names = [d.name for d in ctx.config.storage.datasets]
    if dataset is None:
        return names
    if dataset not in names:
        raise ConfigError(f"no dataset {dataset!r} in storage.datasets", hint=f"choose one of: {', '.join(names)}")
    return [dataset]


def push(ctx: Context, dataset: str | None):
    from datathon.storage import get_store
    from datathon.storage.sync import ensure_store, push_dataset

    names = storage_names(ctx, dataset)
    store = get_store(ctx)
    with ctx.state.lock():
        ensure_store(ctx, store)
        return store, [push_dataset(ctx, store, name) for name in names]


def verify(ctx: Context, dataset: str | None, *, deep: bool, console: Console):
    from datathon.storage import get_store
    from datathon.storage.transfer import verify as verify_dataset

    names = storage_names(ctx, dataset)
    store = get_store(ctx)
    return store, [verify_dataset(store, n, workers=ctx.config.storage.concurrency, deep=deep, console=console)
                   for n in names]


def pull(ctx: Context | None, dataset: str, to: Path, *, prefix: str | None, pattern: str | None,
         from_: str | None, region: str, endpoint_url: str | None, concurrency: int | None, console: Console):
    """From `from_` (no event file needed: a team's terminal) or the event file's store."""
    from datathon.storage import get_store, store_at
    from datathon.storage.transfer import pull as pull_dataset

    if from_:
        store = store_at(from_, region=region, endpoint_url=endpoint_url, concurrency=concurrency or 16)
    else:
        store = get_store(ctx)
        concurrency = concurrency or ctx.config.storage.concurrency
    return store, pull_dataset(store, dataset, to, prefix=prefix, pattern=pattern, workers=concurrency or 16,
                               console=console)
