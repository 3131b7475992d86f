"""A team's schemas, archived, verified and restored, without ever running the team's code with more rights than
the team has.

Dump: `pg_dump -Fc -n <team>` as the administrator, inside one exported snapshot in which the per-table row
counts and checksums are taken too (a team writing meanwhile cannot make the manifest and the dump disagree).
pg_dump runs no function of the dumped schema: it reads the catalogs with an empty search_path, copies tables
with COPY (the output functions of base types, which only a superuser can define), and never reads a view or
refreshes a materialized view. The checksum query is written the same way: every function schema-qualified in
pg_catalog, `record_out(t)` instead of `t::text` (a team may CREATE CAST from its own row type to text; a function
call never uses a cast), row security off (an error, never a silently filtered count).

Restore (verify's scratch copy and `datathon restore`): that is where a team's code does run (CHECK constraints
calling its functions during COPY, index expressions, materialized view refreshes), so pg_restore connects as
the team's own login, never as the administrator with SET ROLE (team code could RESET ROLE back to superuser).
On the managed cluster it comes over the 0700 Unix socket that only root and the server's OS user can open
(pg_hba has a line for the event's teams there); elsewhere over the team's usual TLS endpoint.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from datathon.core.endpoint import Endpoint
from datathon.database.server import DatabaseServer
from datathon.errors import ProvisionError

DUMP_TIMEOUT = 6 * 3600  # a schema of hundreds of GB; every wait is bounded
# Fixed output settings: the same row prints the same text on the live server and in the scratch copy.
SESSION = ("SET search_path = pg_catalog, pg_temp; SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; "
           "SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex'; "
           "SET row_security = off; SET statement_timeout = 0; SET lock_timeout = '60s'")
TABLES = ("SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
          "WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY 1")
CHECKSUM = ("SELECT pg_catalog.count(*), COALESCE(pg_catalog.sum(pg_catalog.hashtextextended("
            "pg_catalog.textin(pg_catalog.record_out(t)), 0)::pg_catalog.numeric), 0)::pg_catalog.text "
            "FROM ONLY {table} AS t")
# What says the schema changed, cheaply: its relations (a TRUNCATE or rewrite gives a new relfilenode), columns,
# functions, sequence values, and the statistics' insert/update/delete counters of every table. Any difference
# (counters reset by a crash included) counts as new work: `down` asks for a fresh archive rather than guess.
FINGERPRINT = """
SELECT pg_catalog.md5(pg_catalog.concat_ws('|',
  (SELECT pg_catalog.string_agg(pg_catalog.concat_ws(':', c.relname, c.relkind, c.relfilenode,
          s.n_tup_ins, s.n_tup_upd, s.n_tup_del,
          (SELECT pg_catalog.string_agg(a.attname || ' ' || a.atttypid::text, ',' ORDER BY a.attnum)
             FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)),
          ';' ORDER BY c.relname COLLATE "C")
     FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid
    WHERE c.relnamespace = n.oid),
  (SELECT pg_catalog.string_agg(p.proname || '(' || p.proargtypes::text || ')' || pg_catalog.md5(p.prosrc), ';'
          ORDER BY 1) FROM pg_catalog.pg_proc p WHERE p.pronamespace = n.oid),
  (SELECT pg_catalog.string_agg(q.sequencename || '=' || COALESCE(q.last_value::text, '-'), ';'
          ORDER BY 1) FROM pg_catalog.pg_sequences q WHERE q.schemaname = n.nspname)))
FROM pg_catalog.pg_namespace n WHERE n.nspname = %s
"""


@dataclass
class TableSum:
    rows: int
    checksum: str

    def as_dict(self) -> dict:
        return {"rows": self.rows, "checksum": self.checksum}


def _tool(server: DatabaseServer, name: str) -> str:
    bin_dir = server.traits.bin_dir
    return str(bin_dir / name) if bin_dir else name


DISK_FULL_HINT = ("free space there (or choose another folder with --out), then run the same command again: what "
                  "was complete is kept, nothing half-written was")


def _run(cmd: list[str], env: dict[str, str], what: str, *, timeout: int = DUMP_TIMEOUT,
         writes: Path | None = None) -> str:
    try:
        proc = subprocess.run(cmd, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **env}, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ProvisionError(f"{what} did not finish within {timeout}s", hint="run it again") from None
    if proc.returncode != 0:
        if writes is not None and "No space left on device" in proc.stderr:
            raise ProvisionError(f"the disk is full writing {writes}", hint=DISK_FULL_HINT)
        raise ProvisionError(f"{what} failed: {proc.stderr.strip()[-600:]}",
                             hint="see the message above; nothing was kept under the final name")
    return proc.stdout


def table_sums(conn: psycopg.Connection, schema: str) -> dict[str, TableSum]:
    """Row count and an order-independent checksum of every table of `schema` (in the caller's transaction)."""
    out = {}
    for (table,) in conn.execute(TABLES, (schema,)).fetchall():
        q = sql.SQL(CHECKSUM).format(table=sql.Identifier(schema, table))
        rows, checksum = conn.execute(q).fetchone()
        out[table] = TableSum(int(rows), checksum)
    return out


def fingerprint(server: DatabaseServer, database: str, schema: str) -> str | None:
    """A digest of the schema's shape and write counters (None: no such schema)."""
    with server.connect(database, autocommit=True) as conn:
        conn.execute(SESSION)
        row = conn.execute(FINGERPRINT, (schema,)).fetchone()
    return row[0] if row else None


def dump_schema(server: DatabaseServer, database: str, schema: str, dest: Path) -> dict:
    """Dump one schema into `dest` (custom format) and return its record: tables with rows and checksums, and
    the fingerprint taken before the snapshot (so that any later write shows as new work)."""
    before = fingerprint(server, database, schema)
    if before is None:
        return {"schema": schema, "present": False, "tables": {}}
    with server.connect(database) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute(SESSION)
        snapshot = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0]
        # pg_dump (compressing on this side) and the checksums (scanning on the server's) run at once, both
        # in the exported snapshot
        with ThreadPoolExecutor(max_workers=1) as pool:
            dumping = pool.submit(
                _run, [_tool(server, "pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                       "--no-subscriptions", "--no-publications", f"--snapshot={snapshot}",
                       "--lock-wait-timeout=60000", f"--schema={_pattern(schema)}", f"--file={dest}", database],
                server.cli_env(database), f"pg_dump of schema {schema} in database {database}", writes=dest)
            try:
                sums = table_sums(conn, schema)
            finally:
                dumping.result()
        conn.rollback()
    return {"schema": schema, "present": True, "fingerprint": before,
            "tables": {t: s.as_dict() for t, s in sums.items()}}


def _pattern(schema: str) -> str:
    """pg_dump's -n takes a pattern: quoted, the name stands for itself."""
    return '"' + schema.replace('"', '""') + '"'


# -- restore, as the team -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TeamLogin:
    role: str
    password: str


def team_env(server: DatabaseServer, login: TeamLogin, database: str) -> dict[str, str]:
    """libpq settings that connect as the team itself: the socket where datathon runs the server, else the
    team's usual endpoint. No time limit of the team's policy cuts a long restore."""
    admin = server.cli_env(database)
    env = {"PGUSER": login.role, "PGPASSWORD": login.password, "PGDATABASE": database,
           "PGOPTIONS": "-c statement_timeout=0 -c idle_in_transaction_session_timeout=0",
           "PGAPPNAME": "datathon restore"}
    if server.traits.controls_hba and admin.get("PGHOST", "").startswith("/"):
        return {**env, "PGHOST": admin["PGHOST"], "PGPORT": admin["PGPORT"]}
    ep: Endpoint = server.endpoint()
    env.update({"PGHOST": ep.host, "PGPORT": str(ep.port), "PGSSLMODE": ep.sslmode})
    if ep.ca_cert:
        env["PGSSLROOTCERT"] = str(ep.ca_cert)
    return env


def _restore(server: DatabaseServer, dump: Path, env: dict[str, str], database: str, *, skip_schema: str | None,
             what: str) -> None:
    cmd = [_tool(server, "pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
           f"--dbname={database}"]
    listing = None
    if skip_schema is not None:  # the schema exists (made by `up`, owned by the team): restore what is in it
        toc = _run([_tool(server, "pg_restore"), "--list", str(dump)], {}, f"reading {dump}", timeout=600)
        keep = [line for line in toc.splitlines() if not _is_schema_entry(line, skip_schema)]
        listing = dump.with_name(f".{dump.name}.{secrets.token_hex(4)}.list")
        listing.write_text("\n".join(keep) + "\n")
        cmd.append(f"--use-list={listing}")
    try:
        _run([*cmd, str(dump)], env, what)
    finally:
        if listing is not None:
            listing.unlink(missing_ok=True)


def _is_schema_entry(line: str, schema: str) -> bool:
    """`215; 2615 16385 SCHEMA - alpha datathon` (and its COMMENT): the CREATE SCHEMA of the dump."""
    if line.startswith(";"):
        return False
    parts = line.split()
    return (len(parts) >= 6 and parts[3] == "SCHEMA" and parts[5] == schema) or \
        (len(parts) >= 7 and parts[3] == "COMMENT" and parts[5] == "SCHEMA" and parts[6] == schema)


def schema_objects(server: DatabaseServer, database: str, schema: str) -> int | None:
    """How many relations, functions and types the schema holds (None: no such schema)."""
    with server.connect(database, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = n.oid)"
            " + (SELECT count(*) FROM pg_proc WHERE pronamespace = n.oid)"
            " + (SELECT count(*) FROM pg_type t WHERE typnamespace = n.oid AND typrelid = 0"
            "    AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid))"
            " FROM pg_namespace n WHERE nspname = %s", (schema,)).fetchone()
    return None if row is None else int(row[0])


def restore_schema(server: DatabaseServer, dump: Path, database: str, schema: str, login: TeamLogin) -> None:
    """Put a dumped schema back into the team's (existing, empty) schema of `database`, as the team."""
    n = schema_objects(server, database, schema)
    if n is None:
        raise ProvisionError(f"database {database} has no schema {schema}",
                             hint="the team must be in the event file of the target event: run `datathon up`")
    if n:
        raise ProvisionError(f"schema {schema} in database {database} already holds {n} objects",
                             hint="restore into an empty schema: drop the team's tables first, or restore into a "
                                  "new event")
    _restore(server, dump, team_env(server, login, database), database, skip_schema=schema,
             what=f"restoring {dump} into {database}.{schema}")


def verify_dump(server: DatabaseServer, dump: Path, record: dict, login: TeamLogin) -> list[str]:
    """Restore the dump into a scratch database owned by the team's login, compare every table's rows and
    checksum with the record; the scratch database is dropped whatever happens. Returns the problems."""
    scratch = f"datathon_verify_{secrets.token_hex(6)}"
    schema = record["schema"]
    with server.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
            sql.Identifier(scratch), sql.Identifier(login.role)))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(scratch)))
    try:
        try:
            _restore(server, dump, team_env(server, login, scratch), scratch, skip_schema=None,
                     what=f"restoring {dump} into a scratch database")
        except ProvisionError as exc:
            return [f"{dump}: does not restore: {exc.message}"]
        with server.connect(scratch) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute(SESSION)
            got = table_sums(conn, schema)
            conn.rollback()
        return compare(record["tables"], {t: s.as_dict() for t, s in got.items()}, f"{dump}")
    finally:
        with contextlib.suppress(ProvisionError, psycopg.Error), server.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))


def compare(wanted: dict[str, dict], got: dict[str, dict], where: str) -> list[str]:
    problems = [f"{where}: table {t} missing after restore" for t in sorted(wanted.keys() - got.keys())]
    problems += [f"{where}: table {t} not in the manifest" for t in sorted(got.keys() - wanted.keys())]
    for t in sorted(wanted.keys() & got.keys()):
        w, g = wanted[t], got[t]
        if w["rows"] != g["rows"]:
            problems.append(f"{where}: table {t} has {g['rows']} rows, the manifest says {w['rows']}")
        elif w["checksum"] != g["checksum"]:
            problems.append(f"{where}: table {t} differs from the manifest (checksum)")
    return problems

