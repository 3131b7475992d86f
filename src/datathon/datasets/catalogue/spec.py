"""How a dataset is described: tables with typed columns, file names, keys, indexes, foreign keys and the
official row counts. A table's keys and indexes are those of the dataset's official build; the ones datathon
can add beyond it (extra_*) are built only when a source asks for them (`extra_keys: true`), so a default
load is the official database, exactly. Definitions are written in a compact notation, e.g.
    "subject_id int NN, hadm_id int NN, admittime ts NN, language vc25"
(int, si, bigint, vcN or vc, char(N), ts, ts0, ts3, date, dp, fl, real, numeric, numeric(p,s), text, boolean;
NN = NOT NULL)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

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
class Index:
    name: str  # the official build's name (teams' scripts may DROP or hint it); datathon's own for extras
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    name: str
    schema: str
    file: str  # relative path in the release, e.g. hosp/admissions.csv.gz
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    indexes: tuple[Index, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    counts: dict[str, int] = field(default_factory=dict, hash=False, compare=False)  # version -> rows
    # beyond the official build: built only on request
    extra_primary_key: tuple[str, ...] = ()
    extra_indexes: tuple[Index, ...] = ()
    extra_foreign_keys: tuple[ForeignKey, ...] = ()

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def pk_name(self) -> str:
        return f"{self.name}_pk"  # the official builds' convention (admissions_pk, patient_pk)

    def fk_name(self, fk: ForeignKey) -> str:
        """<table>_<referenced table>_fk as the official build names them; with the columns where a table has
        two keys into the same table."""
        same = [k for k in (*self.foreign_keys, *self.extra_foreign_keys) if k.ref_table == fk.ref_table]
        middle = fk.ref_table if len(same) < 2 else f"{'_'.join(fk.columns)}_{fk.ref_table}"
        return f"{self.name}_{middle}_fk"[:63]

    def with_extras(self) -> Table:
        return replace(self, primary_key=self.primary_key or self.extra_primary_key,
                       indexes=self.indexes + self.extra_indexes,
                       foreign_keys=self.foreign_keys + self.extra_foreign_keys,
                       extra_primary_key=(), extra_indexes=(), extra_foreign_keys=())


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

    def with_extras(self) -> Dataset:
        """The dataset with datathon's extra keys and indexes among its own (a source's `extra_keys: true`)."""
        return replace(self, tables=tuple(t.with_extras() for t in self.tables))


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


def official_indexes(table: str, specs: list[str], names: dict[int, str] | None = None) -> tuple[Index, ...]:
    """The official builds name indexes <table>_idx01, _idx02, ... in order; `names` holds their exceptions
    (position -> name, e.g. MIMIC-IV's d_icd_diag_idx02)."""
    names = names or {}
    return tuple(Index(names.get(i, f"{table}_idx{i:02d}"), keys(s)) for i, s in enumerate(specs, 1))


def extra_indexes(table: str, specs: list[str]) -> tuple[Index, ...]:
    """datathon's own indexes: named by their columns, so they never take an official name."""
    return tuple(Index(f"{table}_{'_'.join(keys(s))}_idx"[:63], keys(s)) for s in specs)
