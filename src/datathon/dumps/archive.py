"""pg_dump archives (custom, directory, tar): readable or not, what they hold, and their restore with pg_restore
in parallel jobs, undone when it fails.

pg_restore's parallel jobs cannot share one transaction, so an archive restore is made undoable instead: it is
recorded in datathon_meta.pending_restores (the schemas it creates, its large objects, the extensions made for
it) before it starts; a failure drops exactly those, and a restore killed outright is cleaned up the same way by
the next `up` before it starts again. An archive with objects outside its own schemas (in `public`, say) cannot be
undone that way: it restores in one transaction (pg_restore --single-transaction, no parallel jobs).
"""

from __future__ import annotations

import io
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from rich.console import Console

from datathon.database.facts import META_SCHEMA
from datathon.database.meta import ensure_meta
from datathon.dumps.plain import RestoreSummary, make_progress, make_room_for_schemas, run_items
from datathon.dumps.policy import Policy, ServerFacts
from datathon.dumps.reader import read_items
from datathon.errors import ProvisionError

I = sql.Identifier  # noqa: E741
Tool = Callable[[str], str]

# The archive format's version (in its header) -> the pg_dump that writes it.
FORMAT_MADE_BY = {(1, 12): "10", (1, 13): "11", (1, 14): "12 to 15", (1, 15): "16", (1, 16): "17 or later"}
# Multi-word object kinds of a `pg_restore -l` listing, longest first.
_DESCS = sorted(["TABLE DATA", "SEQUENCE SET", "SEQUENCE OWNED BY", "FK CONSTRAINT", "MATERIALIZED VIEW DATA",
                 "MATERIALIZED VIEW", "TABLE ATTACH", "INDEX ATTACH", "DEFAULT ACL", "BLOB METADATA",
                 "FOREIGN TABLE", "FOREIGN DATA WRAPPER", "FOREIGN SERVER", "USER MAPPING", "EVENT TRIGGER",
                 "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE",
                 "PROCEDURAL LANGUAGE", "SHELL TYPE", "ACCESS METHOD", "OPERATOR CLASS", "OPERATOR FAMILY",
                 "DEFAULT", "ROW SECURITY", "STATISTICS", "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA",
                 "DATABASE PROPERTIES", "ENCODING", "STDSTRINGS", "SEARCHPATH"], key=len, reverse=True)
# Kinds that live in no schema of the dump's, or that --no-owner/--no-privileges leave out anyway.
_SCHEMALESS = {"SCHEMA", "EXTENSION", "COMMENT", "ACL", "DEFAULT ACL", "BLOB", "BLOBS", "BLOB METADATA",
               "ENCODING", "STDSTRINGS", "SEARCHPATH", "DATABASE", "DATABASE PROPERTIES", "PUBLICATION",
               "SUBSCRIPTION", "PROCEDURAL LANGUAGE", "EVENT TRIGGER"}


@dataclass
class Entry:
    line: str  # as listed (what -L takes back)
    desc: str
    namespace: str
    tag: str


@dataclass
class Toc:
    entries: list[Entry]
    made_by: str

    @property
    def schemas(self) -> list[str]:
        return [e.tag for e in self.entries if e.desc == "SCHEMA" and e.tag != "public"]  # never dropped on undo

    @property
    def tables(self) -> int:
        return sum(1 for e in self.entries if e.desc in ("TABLE", "FOREIGN TABLE"))

    @property
    def data_entries(self) -> int:
        return sum(1 for e in self.entries if e.desc == "TABLE DATA")

    @property
    def blobs(self) -> list[int]:
        return [int(e.tag) for e in self.entries if e.desc in ("BLOB", "BLOB METADATA") and e.tag.isdigit()]

    def outside(self) -> list[Entry]:
        """Objects in schemas the archive does not create itself."""
        own = set(self.schemas)
        return [e for e in self.entries if e.desc not in _SCHEMALESS and e.namespace not in own | {"-"}]

    def prerequisites(self) -> list[Entry]:
        """What datathon runs itself, as the administrator: extensions and their comments."""
        return [e for e in self.entries if e.desc == "EXTENSION"
                or (e.desc == "COMMENT" and e.tag.startswith("EXTENSION "))]


def _parse_entry(line: str) -> Entry | None:
    m = re.match(r"^\d+; \d+ \d+ (.*)$", line)
    if not m:
        return None
    rest = m.group(1)
    desc = next((d for d in _DESCS if rest.startswith(d + " ")), rest.split(" ", 1)[0])
    parts = rest[len(desc) + 1:].split(" ", 1)
    namespace = parts[0]
    tag = parts[1].rsplit(" ", 1)[0] if len(parts) > 1 else ""
    return Entry(line, desc, namespace, tag)


def header_version(path: Path) -> tuple[int, int] | None:
    """The archive format's version from its header (custom: the file; directory: toc.dat; tar: its first member)."""
    target = path / "toc.dat" if path.is_dir() else path
    with open(target, "rb") as fh:
        head = fh.read(1024)
    for offset in (0, 512):  # a tar archive starts with a 512-byte member header
        if head[offset:offset + 5] == b"PGDMP":
            return head[offset + 5], head[offset + 6]
    return None


def is_archive(path: Path) -> bool:
    return header_version(path) is not None if (path.is_file() or (path / "toc.dat").exists()) else False


def read_toc(path: Path, tool: Tool, env: dict) -> Toc:
    """The archive's table of contents, or a clear message when this pg_restore cannot read it."""
    proc = subprocess.run([tool("pg_restore"), "-l", str(path)], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        version = header_version(path)
        ours = subprocess.run([tool("pg_restore"), "--version"], capture_output=True, text=True).stdout.strip()
        if "unsupported version" in proc.stderr and version:
            made = FORMAT_MADE_BY.get(version, "newer than this one")
            raise ProvisionError(
                f"{path} was made by pg_dump {made} (archive format {version[0]}.{version[1]}); this server's "
                f"tools ({ours}) cannot read it",
                hint=f"on the machine that made it, write it out as a plain SQL dump, which datathon restores "
                     f"whatever made it: `pg_restore -f - {path.name} | gzip > {path.name.split('.')[0]}.sql.gz`, "
                     "and point pg_dump: at that file")
        raise ProvisionError(f"{path}: pg_restore cannot read it: {proc.stderr.strip()[-300:]}",
                             hint="check that the file is complete (copy it again)")
    made_by = ""
    if m := re.search(r"^;\s+Dumped by pg_dump version: (\S+)", proc.stdout, re.M):
        made_by = m.group(1)
    entries = [e for e in (_parse_entry(x) for x in proc.stdout.splitlines()) if e]
    return Toc(entries, made_by)


def _pending(conn: psycopg.Connection, name: str):
    return conn.execute(sql.SQL("SELECT schemas, blobs, extensions FROM {}.pending_restores WHERE name = %s")
                        .format(I(META_SCHEMA)), (name,)).fetchone()


def undo(conn: psycopg.Connection, name: str) -> bool:
    """Remove what an unfinished restore of `name` made (autocommit connection); True if there was one."""
    found = _pending(conn, name)
    if not found:
        return False
    schemas, blobs, extensions = found
    with conn.transaction():
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(I(schema)))
        for oid in blobs:
            conn.execute("SELECT lo_unlink(l.oid) FROM pg_largeobject_metadata l WHERE l.oid = %s", (oid,))
        for ext in extensions:
            conn.execute(sql.SQL("DROP EXTENSION IF EXISTS {} CASCADE").format(I(ext)))
        conn.execute(sql.SQL("DELETE FROM {}.pending_restores WHERE name = %s").format(I(META_SCHEMA)), (name,))
    return True


def restore_archive(conn: psycopg.Connection, path: Path, owner: str, dbname: str, *, name: str, jobs: int,
                    readable: list[str], mark: sql.Composable, tool: Tool, env: dict,
                    console: Console) -> RestoreSummary:
    """`conn` is an autocommit administrator's connection to `dbname`."""
    started = time.perf_counter()
    toc = read_toc(path, tool, env)
    facts = ServerFacts.read(conn)
    prereq = toc.prerequisites()
    script = b""
    if prereq:
        with tempfile.NamedTemporaryFile("w", suffix=".list") as listing:
            listing.write("\n".join(e.line for e in prereq) + "\n")
            listing.flush()
            script = subprocess.run([tool("pg_restore"), "-L", listing.name, "-f", "-", str(path)], env=env,
                                    capture_output=True, check=True, stdin=subprocess.DEVNULL).stdout
    planned = Policy(facts, made_by=toc.made_by)
    for item in read_items(io.BytesIO(script)):
        planned.decide(item)
    if planned.problems:
        raise ProvisionError(planned.report(path), hint="fix what each line says (the lines are those of "
                             f"`pg_restore -f - {path.name}`), then run `datathon up` again; nothing was restored")
    outside = toc.outside()
    single = bool(outside)
    ensure_meta(conn)
    if undo(conn, name):
        console.print(f"{path.name}: removed what an interrupted restore had left; restoring again")
    run = Policy(facts, made_by=toc.made_by)
    with conn.transaction():
        make_room_for_schemas(conn, [s for s in toc.schemas if s in readable and s != "public"])
        conn.execute(sql.SQL("SET ROLE {}").format(I(owner)))
        run_items(conn, read_items(io.BytesIO(script)), run, owner, where=path)
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("INSERT INTO {}.pending_restores (name, schemas, blobs, extensions) VALUES"
                             " (%s, %s, %s, %s)").format(I(META_SCHEMA)),
                     (name, [] if single else toc.schemas, [] if single else toc.blobs,
                      sorted(run.created_extensions)))
        # The archive creates its schemas as the data owner, which may not create schemas otherwise: allowed
        # for the length of the restore only (revoked below, whatever happens).
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(I(dbname), I(owner)))
    skip = {e.line for e in prereq}
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".list") as listing:
            listing.write("\n".join(e.line if e.line not in skip else f";{e.line}" for e in toc.entries) + "\n")
            listing.flush()
            cmd = [tool("pg_restore"), "--no-owner", "--no-privileges", f"--role={owner}", "--exit-on-error",
                   "--verbose", "-L", listing.name, "-d", dbname, str(path)]
            cmd[1:1] = ["--single-transaction"] if single else ["-j", str(jobs)]
            errors = _run_with_progress(cmd, env, console, f"restore {path.name}", toc.data_entries,
                                        serial=single or jobs == 1)
    except BaseException:
        with conn.transaction():
            conn.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(I(dbname), I(owner)))
        undo(conn, name)
        raise
    with conn.transaction():
        conn.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(I(dbname), I(owner)))
    if errors is not None:
        undo(conn, name)
        raise ProvisionError(f"restoring {path} failed: {errors}",
                             hint="what it had restored was removed again; fix the cause and run `datathon up` "
                                  "again")
    with conn.transaction():
        conn.execute(mark)
        conn.execute(sql.SQL("DELETE FROM {}.pending_restores WHERE name = %s").format(I(META_SCHEMA)), (name,))
    summary = RestoreSummary(path, tables=toc.data_entries, seconds=time.perf_counter() - started,
                             left_out=dict(run.left_out),
                             unshared=[s for s in toc.schemas if s not in readable])
    if single:
        summary.left_out[f"parallel jobs ({len(outside)} objects outside the archive's own schemas, e.g. "
                         f"{outside[0].namespace}.{outside[0].tag}: restored in one transaction)"] = 1
    return summary


# One line per table's data: serial pg_restore says when it starts one, parallel when a worker has finished one.
_DATA_SERIAL = re.compile(r'processing data for table "([^"]+)"')
_DATA_PARALLEL = re.compile(r"finished item \d+ TABLE DATA (\S+) (\S+)")


def _run_with_progress(cmd: list[str], env: dict, console: Console, label: str, total: int, *,
                       serial: bool) -> str | None:
    """pg_restore --verbose, one step of the bar per table's data; the error lines when it fails, else None."""
    errors: list[str] = []
    tail: list[str] = []
    with make_progress(console) as progress:
        task = progress.add_task(label, total=total, table="")
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
        try:
            for line in proc.stderr or []:
                line = line.rstrip()
                if m := (_DATA_SERIAL if serial else _DATA_PARALLEL).search(line):
                    progress.update(task, table=".".join(m.groups()))
                    progress.advance(task)
                elif "error:" in line or "ERROR:" in line or "DETAIL:" in line or "Command was" in line:
                    errors.append(line.removeprefix("pg_restore: "))
                tail = (tail + [line])[-5:]
            proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode == 0:
        return None
    return " ".join(errors[:4])[:800] or " ".join(tail)[-600:]
