"""A `pg_dump:` source restored into an event database, and what `plan` says about it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from psycopg import sql
from rich.console import Console

from datathon.database.server import DatabaseServer
from datathon.dumps.archive import is_archive, read_toc, restore_archive
from datathon.dumps.plain import RestoreSummary, restore_plain
from datathon.dumps.policy import CREATE_TABLE
from datathon.dumps.reader import GZIP_MAGIC, ZSTD_MAGIC, Copy, Statement, iter_dump


def tools(server: DatabaseServer):
    """pg_restore and friends: the managed cluster's own, else the ones on PATH."""
    bin_dir = server.traits.bin_dir
    return (lambda name: str(bin_dir / name)) if bin_dir else (lambda name: shutil.which(name) or name)


def restore_dump(server: DatabaseServer, dbname: str, owner: str, path: Path, *, name: str, mark: sql.Composable,
                 readable: list[str], jobs: int | None, console: Console) -> RestoreSummary:
    if is_archive(path):
        tool = tools(server)
        env = {**os.environ, **server.cli_env(dbname)}
        # pg_restore runs its jobs in parallel for custom and directory archives; tar cannot seek.
        parallel = 1 if path.is_file() and _is_tar(path) else (jobs or os.cpu_count() or 2)
        with server.connect(dbname, autocommit=True) as conn:
            summary = restore_archive(conn, path, owner, dbname, name=name, jobs=parallel, readable=readable,
                                      mark=mark, tool=tool, env=env, console=console)
    else:
        with server.connect(dbname) as conn:
            summary = restore_plain(conn, path, owner, dbname, readable=readable, mark=mark, console=console)
    for line in summary.lines():
        console.print(line)
    return summary


def _is_tar(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(5) != b"PGDMP"


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def describe_dump(server: DatabaseServer, path: Path) -> str:
    """For `plan`: the dump's kind, size and table count (an archive's table of contents; a plain dump's CREATE
    TABLE statements, which pg_dump writes before any data, so only the start of the file is read)."""
    size = human(_size(path))
    if is_archive(path):
        env = {**os.environ, **server.cli_env("postgres")}
        toc = read_toc(path, tools(server), env)  # an archive these tools cannot read is reported here
        kind = "directory archive" if path.is_dir() else ("tar archive" if _is_tar(path) else "custom archive")
        made = f", pg_dump {toc.made_by}" if toc.made_by else ""
        return f"{kind}, {size}, {toc.tables} tables{made}"
    with open(path, "rb") as fh:
        magic = fh.read(4)
    packed = " gzip" if magic.startswith(GZIP_MAGIC) else " zstd" if magic == ZSTD_MAGIC else ""
    tables = 0
    items = iter_dump(path)
    try:
        for item in items:
            if isinstance(item, Copy):
                break
            if isinstance(item, Statement) and CREATE_TABLE.match(item.head):
                tables += 1
    finally:
        items.close()
    return f"plain SQL dump, {size}{packed}, {tables} tables"
