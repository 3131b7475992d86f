"""The generator's machinery: one pass over N patients, each patient's rows written to every table's gzip file
as they are made (memory flat in N), every value drawn from one seeded RNG (deterministic for a seed).

Values are produced as CSV text directly: NULL is an empty field, an empty string is `""`, and free text is
quoted and escaped the way the real files are (commas, quotes, newlines, non-ASCII)."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from datathon.datasets.catalogue import Column, Table

NULL = ""
EMPTY = '""'
EPOCH = dt.datetime(2000, 1, 1)

WORDS = ("patient", "stable", "improving", "noted", "per", "protocol", "pain", "left", "right", "chest", "acute",
         "chronic", "history", "of", "with", "without", "mild", "moderate", "severe", "follow-up", "normal",
         "elevated", "low", "dose", "given", "held", "refused", "bedside", "consult", "family", "aware", "review")
QUIRKY = ("résumé of café visit", "µg/kg/min", "temp 38.5 °C", "naïve", "Ærø", "señora", "→ ICU", "½ tab",
          'said "no"', "left, then right", "line one\nline two", 'a "quoted, comma" note')


def csv_text(value: str) -> str:
    """A text field as the releases write it: quoted when it must be (or when empty), quotes doubled."""
    if not value or "," in value or '"' in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


class Rng(random.Random):
    """random.Random with the few draws the generators need, returning CSV-ready strings."""

    def count(self, mean: float) -> int:
        """How many rows a parent gets: about `mean` on average, spread out."""
        if mean <= 0:
            return 0
        if mean < 4:
            n = int(mean)
            return n + (1 if self.random() < mean - n else 0)
        return max(0, int(self.uniform(0.4, 1.6) * mean))

    def words(self, n: int, limit: int | None = None, *, quirks: float = 0.0) -> str:
        """Free text of about n words, CSV-ready. Drawn from a pool of phrases made once per generator (fast)."""
        if quirks and self.random() < quirks:
            return csv_text(self.choice(QUIRKY)[:limit] if limit else self.choice(QUIRKY))
        pool = self._pools.get((n, limit))
        if pool is None:
            pool = self._pools[(n, limit)] = [
                csv_text(" ".join(self.choices(WORDS, k=max(1, n + self.randint(-1, 1))))[:limit or None])
                for _ in range(256)]
        return pool[int(self.random() * 256)]

    @property
    def _pools(self) -> dict:
        try:
            return self.__pools
        except AttributeError:
            self.__pools: dict = {}
            return self.__pools

    def maybe(self, p: float, value: str) -> str:
        return value if self.random() < p else NULL


def ts(t: dt.datetime) -> str:
    return str(t)  # "YYYY-MM-DD HH:MM:SS": every generated time is whole seconds


@dataclass
class Ctx:
    """The entities the current rows belong to, and the counters of generated ids."""

    rng: Rng
    ids: dict[str, int] = field(default_factory=dict)
    row: dict[str, object] = field(default_factory=dict)

    def next_id(self, key: str, start: int = 1) -> int:
        value = self.ids.get(key, start - 1) + 1
        self.ids[key] = value
        return value


ValueFn = Callable[[Ctx], str]


def default_value(col: Column) -> ValueFn:
    """A plausible value for a column nothing more specific was said about, honouring type, length and NOT NULL."""
    length = int(m.group(1)) if (m := re.fullmatch(r"vc(\d+)", col.short)) else None
    nn = col.not_null
    kind = col.kind
    if kind == "int":
        hi = 30000 if col.short != "si" else 30
        return lambda c: str(c.rng.randint(0, hi)) if nn or c.rng.random() < 0.9 else NULL
    if kind == "float":
        return lambda c: f"{c.rng.uniform(0, 200):.2f}" if nn or c.rng.random() < 0.85 else NULL
    if kind == "timestamp":
        return lambda c: ts(c.row["time"] + dt.timedelta(minutes=c.rng.randint(0, 600))) if nn or \
            c.rng.random() < 0.9 else NULL
    if kind == "date":
        return lambda c: (c.row["time"] + dt.timedelta(days=c.rng.randint(0, 3))).strftime("%Y-%m-%d")
    if kind == "bool":
        return lambda c: c.rng.choice(("true", "false")) if nn or c.rng.random() < 0.9 else NULL
    limit = min(length or 60, 60)
    return lambda c: c.rng.words(c.rng.randint(1, 4), limit) if nn or c.rng.random() < 0.8 else NULL


@dataclass
class TableGen:
    table: Table
    per: str  # "dimension" (fixed rows), "patient", "admission", "stay"
    rate: float  # rows per parent (for a dimension: rows in all)
    values: dict[str, ValueFn] = field(default_factory=dict)
    setup: Callable[[Ctx], None] | None = None  # per row, before the values (e.g. a row time)
    common: dict[str, ValueFn] = field(default_factory=dict)  # used for the columns this table has

    def __post_init__(self) -> None:
        unknown = set(self.values) - {c.name for c in self.table.columns}
        if unknown:
            raise ValueError(f"{self.table.name}: no columns {unknown}")
        values = {k: v for k, v in self.common.items() if self.table.column(k)} | self.values
        self.fns = [values.get(c.name) or default_value(c) for c in self.table.columns]


class Writer:
    """Gzip CSV files in the release layout, with the official header row, and SHA256SUMS.txt at the end."""

    def __init__(self, out: Path, tables: list[Table], *, level: int = 6) -> None:
        self.out = out
        self.files: dict[str, gzip.GzipFile] = {}
        self.rows: dict[str, int] = {}
        for t in tables:
            path = out / t.file
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = gzip.GzipFile(path, "wb", compresslevel=level, mtime=0)  # mtime=0: identical bytes per seed
            fh.write((",".join(c.name for c in t.columns) + "\n").encode())
            self.files[t.name] = fh
            self.rows[t.name] = 0
        self.buffers: dict[str, list[str]] = {t.name: [] for t in tables}

    def add(self, table: str, values: list[str]) -> None:
        buf = self.buffers[table]
        buf.append(",".join(values))
        if len(buf) >= 2000:
            self.flush(table)

    def flush(self, table: str) -> None:
        buf = self.buffers[table]
        if buf:
            self.files[table].write(("\n".join(buf) + "\n").encode())
            self.rows[table] += len(buf)
            buf.clear()

    def close(self, tables: list[Table]) -> None:
        for name in list(self.files):
            self.flush(name)
            self.files[name].close()
        lines = []
        for t in sorted(tables, key=lambda t: t.file):
            with open(self.out / t.file, "rb") as fh:
                h = hashlib.file_digest(fh, "sha256").hexdigest()
            lines.append(f"{h}  {t.file}")
        (self.out / "SHA256SUMS.txt").write_text("\n".join(lines) + "\n")


def emit(gen: TableGen, ctx: Ctx, writer: Writer, n: int) -> None:
    for _ in range(n):
        if gen.setup:
            gen.setup(ctx)
        writer.add(gen.table.name, [f(ctx) for f in gen.fns])
