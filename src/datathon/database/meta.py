"""datathon's own bookkeeping inside each event database (schema datathon_meta, readable by nobody else):
what was loaded, recorded in the same transaction as the load itself."""

from __future__ import annotations

import psycopg
from psycopg import sql

from datathon.database.facts import META_SCHEMA


def ensure_meta(conn: psycopg.Connection) -> None:
    meta = sql.Identifier(META_SCHEMA)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(meta))
    conn.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {}.loaded_sources"
        " (name text PRIMARY KEY, sha256 text NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now())").format(meta))
    conn.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {}.loaded_tables (schema_name text, table_name text, dataset text NOT NULL,"
        " rows bigint NOT NULL, file_records bigint NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now(),"
        " PRIMARY KEY (schema_name, table_name))").format(meta))
    # Foreign keys of an organizer's DDL, set aside while its tables load (see datasets.run); a row is removed
    # once its key is back, so an interrupted load puts them back on the next run.
    conn.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {}.deferred_foreign_keys (schema_name text, table_name text, name text,"
        " definition text NOT NULL, PRIMARY KEY (schema_name, table_name, name))").format(meta))
    # An archive restore in progress (pg_restore's parallel jobs share no transaction): what it makes, removed
    # again if it fails, or by the next run if it was killed (see dumps.archive).
    conn.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {}.pending_restores (name text PRIMARY KEY, schemas text[] NOT NULL,"
        " blobs oid[] NOT NULL, extensions text[] NOT NULL, started_at timestamptz NOT NULL DEFAULT now())"
    ).format(meta))


def mark_source_statement(name: str, digest: str) -> sql.Composable:
    return sql.SQL(
        "INSERT INTO {}.loaded_sources (name, sha256) VALUES ({}, {})"
        " ON CONFLICT (name) DO UPDATE SET sha256 = EXCLUDED.sha256, loaded_at = now()"
    ).format(sql.Identifier(META_SCHEMA), sql.Literal(name), sql.Literal(digest))
