"""Shared data from plain SQL files, loaded once per database, as the data owner, in one transaction.

What was loaded is recorded in the database itself (datathon_meta.loaded_sources) in the same transaction,
so an interrupted `up` either loaded a file completely and knows it, or loads it again from scratch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from datathon.config import EventConfig
from datathon.config.models import SqlSource
from datathon.core import roster as roles
from datathon.core.fsutil import file_sha256
from datathon.core.plan import Change
from datathon.database.facts import Facts
from datathon.database.meta import ensure_meta, mark_source_statement
from datathon.errors import ProvisionError


def source_name(path: Path, base_dir: Path) -> str:
    try:
        return str(path.relative_to(base_dir))
    except ValueError:
        return str(path)


BulkFactory = Callable[[str, object, str, str], Callable[[], None]]  # (database, source, name, digest) -> run
Describe = Callable[[object], str]  # a source -> what `plan` says it is (a dump's size and tables)


LATER_OPTIONS = {"extra_keys": False}  # option -> its default, for options added after sources were first loaded


def source_identity(src, base_dir: Path) -> tuple[str, str]:
    """A source's stable name (what is recorded as loaded) and a digest of what it is."""
    if isinstance(src, SqlSource):  # the file's content is what it is
        return source_name(src.sql, base_dir), file_sha256(src.sql)
    # An option added later is left out while it has its default, so a source loaded before it existed keeps its
    # identity (otherwise every loaded dataset would count as changed and be refused).
    dump = src.model_dump(mode="json", exclude={k for k, v in LATER_OPTIONS.items() if getattr(src, k, v) == v})
    digest = hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()
    return f"{src.label}:{source_name(src.location, base_dir)}", digest


def plan_sources(config: EventConfig, facts: Facts, base_dir: Path, bulk: BulkFactory | None = None,
                 describe: Describe | None = None) -> list[Change]:
    out = []
    owner = roles.data_owner(config.event)
    for db in config.databases:
        loaded = facts.databases[db.name].loaded_sources if db.name in facts.databases else {}
        for src in db.sources:
            name, digest = source_identity(src, base_dir)
            target = f"{db.name} <- {name}"
            if loaded.get(name) == digest:
                out.append(Change("source", target, "keep", "loaded"))
            elif name in loaded:
                out.append(Change("source", target, "blocked",
                                  "it changed since it was loaded; it is not reloaded over existing tables "
                                  "(drop them, or give the new source another name)"))
            elif isinstance(src, SqlSource):
                out.append(Change("source", target, "load", f"run {src.sql.name} as {owner}", database=db.name,
                                  statements=[_loader(src.sql, name, digest, owner)]))
            else:
                what = describe(src) if describe else ""
                what = f"{what}; " if what else ""
                out.append(Change("source", target, "load", f"{what}load as {owner} (resumes where it stopped)",
                                  database=db.name, run=bulk(db.name, src, name, digest) if bulk else None))
    return out


def _loader(path: Path, name: str, digest: str, owner: str):
    def build(conn: psycopg.Connection) -> sql.Composable:
        text = path.read_text(encoding="utf-8")
        ensure_meta(conn)
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(owner)))
        try:
            conn.execute(sql.SQL(text))  # type: ignore[arg-type]  # a file the organizer wrote, run as is
        except psycopg.Error as exc:
            raise ProvisionError(
                f"{path}{_line_of(exc, text)}: {str(exc).strip().splitlines()[0]}",
                hint="fix the SQL file and run `datathon up` again; nothing of it was kept",
            ) from None
        conn.execute("RESET ROLE")
        return mark_source_statement(name, digest)

    return build


def _line_of(exc: psycopg.Error, text: str) -> str:
    pos = exc.diag.statement_position
    if not pos:
        return ""
    return f":{text[: int(pos)].count(chr(10)) + 1}"
