"""How a dataset is described: tables with typed columns, file names, keys, indexes, foreign keys and the
official row counts. Definitions are written in a compact notation, e.g.
    "subject_id int NN, hadm_id int NN, admittime ts NN, language vc25"
(int, si, bigint, vcN or vc, char(N), ts, ts0, ts3, date, dp, fl, real, numeric, numeric(p,s), text, boolean;
NN = NOT NULL)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TYPES = {
    "int": "INTEGER", "si": "SMALLINT", "bigint": "BIGINT", "ts": "TIMESTAMP", "ts0": "TIMESTAMP(0)",
    "ts3": "TIMESTAMP(3)", "date": "DATE", "dp": "DOUBLE PRECISION", "fl": "DOUBLE PRECISION", "real": "REAL",
    "text": "TEXT", "boolean": "BOOLEAN", "numeric": "NUMERIC", "vc": "VARCHAR",
}


@dataclass(frozen=True)
class Column:
    name: str
    short: str  # the compact type, e.g. vc25
    not_null: bool

    @property
    def sql_type(self) -> str:
        if self.short in TYPES:
            return TYPES[self.short]
        if m := re.fullmatch(r"vc(\d+)", self.short):
            return f"VARCHAR({m.group(1)})"
        if m := re.fullmatch(r"char\((\d+)\)", self.short):
            return f"CHAR({m.group(1)})"
        if m := re.fullmatch(r"numeric\((\d+),(\d+)\)", self.short):
            return f"NUMERIC({m.group(1)},{m.group(2)})"
        raise ValueError(f"unknown column type {self.short!r} for {self.name}")

    @property
    def kind(self) -> str:
        """int, float, text, timestamp, date, bool: what a value must look like (messages, generators)."""
        s = self.short
        if s in ("int", "si", "bigint"):
            return "int"
        if s in ("dp", "fl", "real") or s.startswith("numeric"):
            return "float"
        if s.startswith("ts"):
            return "timestamp"
        return {"date": "date", "boolean": "bool"}.get(s, "text")


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    ref_table: str  # in the same dataset
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    name: str
    schema: str
    file: str  # relative path in the release, e.g. hosp/admissions.csv.gz
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    counts: dict[str, int] = field(default_factory=dict, hash=False, compare=False)  # version -> rows

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class Dataset:
    kind: str  # mimic-iv, mimic-iv-ed, mimic-iv-note, mimic-cxr, eicu
    title: str
    tables: tuple[Table, ...]
    versions: tuple[str, ...] = ()

    @property
    def schemas(self) -> list[str]:
        return list(dict.fromkeys(t.schema for t in self.tables))

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


def columns(spec: str) -> tuple[Column, ...]:
    out = []
    for part in re.split(r",\s*(?![^()]*\))", spec.strip()):
        words = part.split()
        if len(words) < 2:
            raise ValueError(f"bad column spec {part!r}")
        out.append(Column(words[0], words[1], len(words) > 2 and words[2] == "NN"))
    return tuple(out)


def keys(spec: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in spec.split(",") if k.strip())


def fk(cols: str, ref: str, ref_cols: str | None = None) -> ForeignKey:
    return ForeignKey(keys(cols), ref, keys(ref_cols or cols))
