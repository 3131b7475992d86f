"""Shared data from plain SQL files, loaded once per database, as the data owner, in one transaction.

What was loaded is recorded in the database itself (datathon_meta.loaded_sources) in the same transaction,
so an interrupted `up` either loaded a file completely and knows it, or loads it again from scratch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg
from psycopg import sql

from datathon.config import EventConfig
from datathon.database import roles
from datathon.database.facts import META_SCHEMA, Facts
from datathon.errors import ProvisionError
from datathon.plan import Change


def source_name(path: Path, base_dir: Path) -> str:
    try:
        return str(path.relative_to(base_dir))
    except ValueError:
        return str(path)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def plan_sources(config: EventConfig, facts: Facts, base_dir: Path) -> list[Change]:
    out = []
    for db in config.databases:
        loaded = facts.databases[db.name].loaded_sources if db.name in facts.databases else {}
        for src in db.sources:
            name = source_name(src.sql, base_dir)
            digest = file_sha256(src.sql)
            target = f"{db.name} <- {name}"
            if loaded.get(name) == digest:
                out.append(Change("source", target, "keep", "loaded"))
            elif name in loaded:
                out.append(Change("source", target, "blocked",
                                  "the file changed since it was loaded; it is not reloaded over existing tables "
                                  "(drop them, or give the new file another name)"))
            else:
                owner = roles.data_owner(config.event)
                out.append(Change("source", target, "load", f"run {src.sql.name} as {owner}", database=db.name,
                                  statements=[_loader(src.sql, name, digest, owner)]))
    return out


def _loader(path: Path, name: str, digest: str, owner: str):
    def build(conn: psycopg.Connection) -> sql.Composable:
        text = path.read_text(encoding="utf-8")
        meta = sql.Identifier(META_SCHEMA)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(meta))
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.loaded_sources"
            " (name text PRIMARY KEY, sha256 text NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now())"
        ).format(meta))
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(owner)))
        try:
            conn.execute(sql.SQL(text))  # type: ignore[arg-type]  # a file the organizer wrote, run as is
        except psycopg.Error as exc:
            raise ProvisionError(
                f"{path}{_line_of(exc, text)}: {str(exc).strip().splitlines()[0]}",
                hint="fix the SQL file and run `datathon up` again; nothing of it was kept",
            ) from None
        conn.execute("RESET ROLE")
        return sql.SQL(
            "INSERT INTO {}.loaded_sources (name, sha256) VALUES ({}, {})"
            " ON CONFLICT (name) DO UPDATE SET sha256 = EXCLUDED.sha256, loaded_at = now()"
        ).format(meta, sql.Literal(name), sql.Literal(digest))

    return build


def _line_of(exc: psycopg.Error, text: str) -> str:
    pos = exc.diag.statement_position
    if not pos:
        return ""
    return f":{text[: int(pos)].count(chr(10)) + 1}"
