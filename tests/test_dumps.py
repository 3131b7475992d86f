"""The organizer's own dumps, restored as they are: made on a second, stock PostgreSQL cluster (whose superuser is
`postgres`, with roles that exist only there), restored through `datathon up`, then read by every team."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
import yaml

from conftest import Event, event_data, free_port
from datathon.check.runner import run_check
from datathon.commands.plan import plan_event
from datathon.commands.up import run_up
from datathon.dumps.reader import Copy, Meta, read_items
from datathon.errors import ProvisionError

BIN = Path("/usr/lib/postgresql/15/bin")
SOURCE_SQL = r"""
CREATE ROLE analyst; CREATE ROLE reader;
CREATE SCHEMA eicu_crd AUTHORIZATION analyst;
CREATE TABLE eicu_crd.patient (patientunitstayid int PRIMARY KEY, gender text, age text, note text);
INSERT INTO eicu_crd.patient SELECT g, CASE WHEN g % 2 = 0 THEN 'Male' ELSE 'Female' END,
  CASE WHEN g % 17 = 0 THEN '> 89' ELSE (20 + g % 60)::text END, E'semi;\nnext ''q'' \\ tab\t$$ \\.'
  FROM generate_series(1, 120) g;
ALTER TABLE eicu_crd.patient OWNER TO analyst;
CREATE SEQUENCE eicu_crd.ids START 5;
SELECT nextval('eicu_crd.ids'), nextval('eicu_crd.ids');
CREATE FUNCTION eicu_crd.age_years(a text) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $body$
BEGIN
  -- a comment; with a semicolon, and a quote ' in it
  IF a = '> 89' THEN RETURN 90; END IF;
  RETURN a::int;
END;
$body$;
CREATE TABLE eicu_crd.vitals (patientunitstayid int, observed date, hr int) PARTITION BY RANGE (observed);
CREATE TABLE eicu_crd.vitals_2020 PARTITION OF eicu_crd.vitals FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
CREATE TABLE eicu_crd.vitals_2021 PARTITION OF eicu_crd.vitals FOR VALUES FROM ('2021-01-01') TO ('2022-01-01');
INSERT INTO eicu_crd.vitals SELECT g, date '2020-01-01' + g * 3, 60 + g % 40 FROM generate_series(1, 200) g;
ALTER TABLE eicu_crd.vitals OWNER TO analyst;
CREATE VIEW eicu_crd.adults AS SELECT patientunitstayid, eicu_crd.age_years(age) AS years FROM eicu_crd.patient;
ALTER VIEW eicu_crd.adults OWNER TO analyst;
COMMENT ON TABLE eicu_crd.patient IS 'one row; per
stay';
GRANT USAGE ON SCHEMA eicu_crd TO reader;
GRANT SELECT ON ALL TABLES IN SCHEMA eicu_crd TO reader;
REVOKE ALL ON FUNCTION eicu_crd.age_years(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eicu_crd.age_years(text) TO reader;
CREATE EXTENSION pg_trgm;
SELECT lo_from_bytea(0, 'a large object');
"""
VIEWS_SQL = """CREATE VIEW eicu_crd.patient_vitals AS
  SELECT p.patientunitstayid, a.years, count(v.hr) AS measures
  FROM eicu_crd.patient p JOIN eicu_crd.adults a USING (patientunitstayid)
  LEFT JOIN eicu_crd.vitals v USING (patientunitstayid) GROUP BY 1, 2;
"""
RELATIONS = {"patient": 120, "vitals": 200, "vitals_2020": 121, "vitals_2021": 79, "adults": 120,
             "patient_vitals": 120}


class StockCluster:
    """A stock PostgreSQL 15 (Debian's) as the postgres OS user, on a free port: the organizer's own server."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="d19stock-", dir="/tmp"))
        shutil.chown(self.home, "postgres")
        self.port = free_port()
        self.env = {**os.environ, "PGHOST": str(self.home), "PGPORT": str(self.port), "PGUSER": "postgres"}
        self._as_postgres([BIN / "initdb", "-D", self.home / "data", "-U", "postgres", "--auth=trust", "-E", "UTF8",
                           "--locale=C.UTF-8"])
        self._as_postgres([BIN / "pg_ctl", "-D", self.home / "data", "-l", self.home / "log", "-w", "-o",
                           f"-p {self.port} -k {self.home} -c listen_addresses=''", "start"])

    def _as_postgres(self, cmd: list) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *map(str, cmd)], check=True, capture_output=True)

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=str(self.home), port=self.port, user="postgres", dbname=dbname, autocommit=True)

    def pg_dump(self, dbname: str, out: Path, fmt: str) -> Path:
        subprocess.run([BIN / "pg_dump", f"--format={fmt}", "-f", str(out), dbname], env=self.env, check=True)
        return out

    def close(self) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(BIN / "pg_ctl"), "-D", str(self.home / "data"),
                        "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    """The source database on a stock cluster, and its dumps in every format (the cluster is gone afterwards)."""
    stock = StockCluster()
    try:
        with stock.connect() as conn:
            conn.execute("CREATE DATABASE eicu")
        subprocess.run([BIN / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "eicu"], input=SOURCE_SQL.encode(),
                       env=stock.env, check=True, capture_output=True)
        folder = tmp_path_factory.mktemp("dumps")
        out = {fmt: stock.pg_dump("eicu", folder / name, fmt)
               for fmt, name in (("plain", "eicu.sql"), ("custom", "eicu.dump"), ("directory", "eicu.dir"))}
        out["gzip"] = folder / "eicu.sql.gz"
        out["gzip"].write_bytes(gzip.compress(out["plain"].read_bytes()))
        yield out
    finally:
        stock.close()


@pytest.fixture
def dump_event(tmp_path):
    made = []

    def make(event: str, dump: Path, *, views: bool = True) -> Event:
        data = event_data(event=event, port=free_port(), teams=[{"name": "alpha"}, {"name": "beta"}])
        (tmp_path / "views.sql").write_text(VIEWS_SQL)
        sources = [{"pg_dump": str(dump)}] + ([{"sql": "views.sql"}] if views else [])
        data["databases"] = [{"name": f"{event}db", "shared_schemas": ["eicu_crd"], "sources": sources}]
        ev = Event(tmp_path, yaml.safe_dump(data, sort_keys=False))
        made.append(ev)
        return ev

    yield make
    for ev in made:
        ev.close()


def team(ev, name: str) -> psycopg.Connection:
    e = ev.ctx.config.event
    ep = ev.server.endpoint()
    return psycopg.connect(host=ep.host, port=ep.port, dbname=f"{e}db", user=f"{e}_{name}",
                           password=ev.password(f"{e}_{name}"), sslmode="require", autocommit=True)


def admin(ev) -> psycopg.Connection:
    return ev.server.connect(f"{ev.ctx.config.event}db", autocommit=True)


def relations(ev) -> dict[str, str]:
    with admin(ev) as c:
        return dict(c.execute("SELECT relname, pg_get_userbyid(relowner) FROM pg_class c JOIN pg_namespace n"
                              " ON n.oid = c.relnamespace WHERE n.nspname = 'eicu_crd'"
                              " AND relkind IN ('r', 'p', 'v', 'S')").fetchall())


# -- the reader, on the real output of pg_dump ------------------------------------------------------------------

def test_reader_cuts_the_real_dump_at_statements_and_copy_blocks(dumps):
    found, copies = [], {}
    for x in read_items(io.BytesIO(dumps["plain"].read_bytes())):
        found.append(x)
        if isinstance(x, Copy):  # its data is read before the next item, or skipped
            copies[x.statement.target] = sum(c.count(b"\n") for c in x.chunks)
    assert copies == {"eicu_crd.patient": 120, "eicu_crd.vitals_2020": 121, "eicu_crd.vitals_2021": 79}
    heads = [x.head for x in found if not isinstance(x, Copy | Meta)]
    function = next(h for h in heads if h.startswith("CREATE FUNCTION"))
    assert function.endswith("AS $?$;")  # the body (with its `;` + newline and its quote) is one statement
    assert any(h.startswith("COMMENT ON TABLE EICU_CRD.PATIENT IS '?';") for h in heads)
    assert "ALTER SCHEMA EICU_CRD OWNER TO ANALYST;" in heads and "BEGIN;" in heads
    assert [x.command for x in found if isinstance(x, Meta)] == ["\\restrict", "\\unrestrict"]


def test_reader_lexes_what_pg_dump_can_write():
    text = (b"SELECT 'a;\nb' AS x; SELECT 1;\n"
            b"CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $x$ ; $fn$ LANGUAGE sql;\n"
            b"SELECT E'it\\'s;\n', \"we;ird\"\"x\" /* c; /* nested; */ still; */ FROM t; -- trailing; comment\n"
            b"COPY t (a) FROM stdin;\n\\\\.\nx;y $$ '\n\\.\nSELECT a$b$c, $1 FROM z;\n")
    found = list(read_items(io.BytesIO(text)))
    assert [(x.line, x.head) for x in found if not isinstance(x, Copy)] == [
        (1, "SELECT '?' AS X;"), (2, "SELECT 1;"), (3, "CREATE FUNCTION F() RETURNS INT AS $?$ LANGUAGE SQL;"),
        (4, "SELECT E'?', \"?\" FROM T;"), (10, "SELECT A$B$C, $1 FROM Z;")]
    copy = next(x for x in found if isinstance(x, Copy))
    assert copy.statement.line == 6


def test_a_truncated_dump_is_named_as_such():
    with pytest.raises(ProvisionError, match=r"ends inside the data of t \(line 4\)"):
        for item in read_items(io.BytesIO(b"SELECT 1;\nCOPY t (a) FROM stdin;\n1\n2\n")):
            if isinstance(item, Copy):
                list(item.chunks)
    with pytest.raises(ProvisionError, match="ends inside the statement that starts on line 2"):
        list(read_items(io.BytesIO(b"SELECT 1;\nCREATE FUNCTION f() AS $$ SELECT 1;\n")))


# -- restored through up, read by every team ----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["plain", "gzip", "custom", "directory"])
def test_each_format_restores_through_up_and_every_team_reads_every_table_and_view(dump_event, dumps, fmt):
    ev = dump_event(f"d19{fmt[:3]}", dumps[fmt])
    plan = plan_event(ev.ctx)
    reason = next(c.reason for c in plan.changes if c.component == "source" and "pg_dump" in c.target)
    assert "4 tables" in reason, reason  # patient, vitals and its two partitions
    run_up(ev.ctx, yes=True)
    owners = relations(ev)
    assert set(owners) == set(RELATIONS) | {"ids"}
    assert set(owners.values()) == {f"d19{fmt[:3]}_data"}  # not postgres, not analyst: the event's data owner
    for name in ("alpha", "beta"):
        with team(ev, name) as conn:
            for rel, rows in RELATIONS.items():
                assert conn.execute(f"SELECT count(*) FROM eicu_crd.{rel}").fetchone()[0] == rows, (name, rel)
            assert conn.execute("SELECT years FROM eicu_crd.adults WHERE patientunitstayid = 17").fetchone() == (90,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM eicu_crd.patient")
    with admin(ev) as c:
        assert c.execute("SELECT last_value FROM eicu_crd.ids").fetchone() == (6,)
        assert c.execute("SELECT convert_from(lo_get(oid), 'UTF8') FROM pg_largeobject_metadata").fetchall() == \
            [("a large object",)]
        assert c.execute("SELECT note FROM eicu_crd.patient WHERE patientunitstayid = 1").fetchone() == \
            ("semi;\nnext 'q' \\ tab\t$$ \\.",)
        assert c.execute("SELECT count(*) FROM datathon_meta.pending_restores").fetchone() == (0,)
    report = run_check(ev.ctx)
    assert report.go, [(r.probe, r.detail) for r in report.failures]
    read = [r for r in report.results if r.probe == "db.shared.read"]
    assert read and all(r.outcome == "pass" for r in read)
    assert run_up(ev.ctx, yes=True).applied == 0


def with_lines(dumps, tmp_path: Path, after: bytes, lines: bytes, name="eicu-bad.sql") -> Path:
    text = dumps["plain"].read_bytes().replace(after, after + lines, 1)
    path = tmp_path / name
    path.write_bytes(text)
    return path


def test_statements_this_server_refuses_are_reported_by_line_before_any_change(dump_event, dumps, tmp_path):
    """What a newer pg_dump writes (transaction_timeout is PostgreSQL 17's) and an extension this server lacks."""
    bad = with_lines(dumps, tmp_path, b"SET lock_timeout = 0;\n",
                     b"SET transaction_timeout = 0;\nCREATE EXTENSION IF NOT EXISTS no_such_ext WITH SCHEMA public;\n")
    ev = dump_event("d19bad", bad)
    with pytest.raises(ProvisionError) as err:
        run_up(ev.ctx, yes=True)
    msg = str(err.value)
    assert "line 12: SET transaction_timeout: PostgreSQL 15" in msg and "has no setting transaction_timeout" in msg
    assert "line 13: CREATE EXTENSION no_such_ext: extension no_such_ext is not installed" in msg
    assert "sed -i -e 12d -e 13d eicu-bad.sql" in msg
    with admin(ev) as c:
        assert c.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'eicu_crd'::regnamespace"
                         ).fetchone() == (0,)  # the shared schema is there (tenancy), empty
        assert c.execute("SELECT to_regclass('datathon_meta.loaded_sources')").fetchone() == (None,)  # untouched
    subprocess.run(["sed", "-i", "-e", "12d", "-e", "13d", str(bad)], check=True)  # the fix it gives
    run_up(ev.ctx, yes=True)
    assert relations(ev)["patient"] == "d19bad_data"


def test_a_plain_dump_failing_midway_leaves_nothing_and_is_not_recorded(dump_event, dumps, tmp_path):
    bad = with_lines(dumps, tmp_path, b"ALTER TABLE ONLY eicu_crd.patient\n    ADD CONSTRAINT patient_pkey "
                     b"PRIMARY KEY (patientunitstayid);\n", b"INSERT INTO eicu_crd.patient VALUES (1);\n",
                     name="eicu-dup.sql")
    ev = dump_event("d19dup", bad, views=False)
    with pytest.raises(ProvisionError, match=r"eicu-dup.sql:\d+ failed: duplicate key value") as err:
        run_up(ev.ctx, yes=True)
    assert "nothing of the dump was kept" in str(err.value)
    assert relations(ev) == {}
    with admin(ev) as c:
        assert c.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)


def test_a_failed_archive_restore_is_undone_and_a_killed_one_cleaned_up_by_the_next_up(dump_event, dumps, tmp_path):
    broken = tmp_path / "eicu.dir"
    shutil.copytree(dumps["directory"], broken)
    data = next(p for p in broken.glob("*.dat.gz") if b"semi;" in gzip.decompress(p.read_bytes()))  # patient
    good = data.read_bytes()
    data.write_bytes(gzip.compress(b"not\ta\trow\tx\n" + gzip.decompress(good)))  # a row pg_restore cannot copy
    ev = dump_event("d19und", broken)
    with pytest.raises(ProvisionError, match="restoring .*eicu.dir failed:.*invalid input syntax") as err:
        run_up(ev.ctx, yes=True)
    assert "was removed again" in str(err.value)
    assert relations(ev) == {}
    with admin(ev) as c:
        assert c.execute("SELECT count(*) FROM datathon_meta.pending_restores").fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)
        # as a restore killed outright leaves it: objects made, the restore still pending
        c.execute("CREATE SCHEMA IF NOT EXISTS eicu_crd")
        c.execute("CREATE TABLE eicu_crd.patient (half_restored int)")
        c.execute("INSERT INTO datathon_meta.pending_restores (name, schemas, blobs, extensions)"
                  " VALUES ('pg_dump:eicu.dir', '{eicu_crd}', '{}', '{}')")
    data.write_bytes(good)
    run_up(ev.ctx, yes=True)
    assert "removed what an interrupted restore had left" in ev.ctx.console.file.getvalue()
    with team(ev, "alpha") as conn:
        assert conn.execute("SELECT count(*) FROM eicu_crd.patient_vitals").fetchone() == (120,)


def test_an_archive_from_a_newer_pg_dump_names_both_versions_and_the_fix(dump_event, dumps, tmp_path):
    newer = tmp_path / "eicu16.dump"
    data = bytearray(dumps["custom"].read_bytes())
    assert data[:5] == b"PGDMP" and (data[5], data[6]) == (1, 14)
    data[6] = 15  # the header of pg_dump 16's archives
    newer.write_bytes(bytes(data))
    ev = dump_event("d19new", newer)
    with pytest.raises(ProvisionError) as err:
        run_up(ev.ctx, yes=True)
    msg = str(err.value)
    assert "made by pg_dump 16 (archive format 1.15)" in msg and "pg_restore (PostgreSQL) 15" in msg
    assert "pg_restore -f - eicu16.dump | gzip > eicu16.sql.gz" in msg
    assert not ev.server.exists()  # refused while planning: not even the cluster was made


def test_a_zstd_dump_reads_as_the_plain_one(dumps, tmp_path):
    from datathon.dumps.reader import iter_dump

    packed = tmp_path / "eicu.sql.zst"
    subprocess.run(["zstd", "-q", "-o", str(packed), str(dumps["plain"])], check=True)

    def heads(path: Path) -> list[tuple[int, str, int]]:
        out = []
        for x in iter_dump(path):
            rows = sum(c.count(b"\n") for c in x.chunks) if isinstance(x, Copy) else 0
            out.append((x.line if not isinstance(x, Copy) else x.statement.line, type(x).__name__, rows))
        return out

    assert heads(packed) == heads(dumps["plain"]) == heads(dumps["gzip"])
    damaged = tmp_path / "damaged.sql.zst"
    damaged.write_bytes(packed.read_bytes()[:-40])
    with pytest.raises(ProvisionError, match="damaged|truncated"):
        heads(damaged)


def _facts(**kw):
    from datathon.dumps.policy import ServerFacts

    base = dict(version="15.18", admin_superuser=False, settings={"lock_timeout": "user", "search_path": "user",
                                                                  "session_replication_role": "superuser"},
                available={"pg_trgm": (True, True), "postgres_fdw": (True, False)}, installed={"plpgsql": False})
    return ServerFacts(**{**base, **kw})


@pytest.mark.parametrize("sql, facts, action, problem", [
    (b"ALTER TABLE x.t OWNER TO postgres;", {}, "skip", None),
    (b"ALTER LARGE OBJECT 16491 OWNER TO \"Some Role\";", {}, "skip", None),
    (b"ALTER SEQUENCE x.s OWNED BY x.t.id;", {}, "run", None),
    (b"GRANT SELECT ON TABLE x.t TO analyst;", {}, "skip", None),
    (b"REVOKE ALL ON FUNCTION x.f() FROM PUBLIC;", {}, "skip", None),
    (b"SET lock_timeout = 0;", {}, "run", None),
    (b"SELECT pg_catalog.set_config('search_path', '', false);", {}, "run", None),
    (b"SET transaction_timeout = 0;", {}, "skip", "has no setting transaction_timeout"),
    (b"SET session_replication_role = replica;", {}, "skip", "cannot be set by the data owner"),
    (b"SET myapp.flag = on;", {}, "run", None),
    (b"CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;", {}, "admin", None),  # trusted
    (b"CREATE EXTENSION IF NOT EXISTS postgres_fdw WITH SCHEMA public;", {}, "skip", "needs a superuser"),
    (b"CREATE EXTENSION IF NOT EXISTS postgres_fdw WITH SCHEMA public;", {"admin_superuser": True}, "admin", None),
    (b"CREATE EXTENSION IF NOT EXISTS plpgsql WITH SCHEMA pg_catalog;", {}, "skip", None),  # already there
    (b"COMMENT ON EXTENSION plpgsql IS 'PL/pgSQL procedural language';", {}, "skip", "belongs to another role"),
    (b"COMMENT ON EXTENSION plpgsql IS 'x';", {"installed": {"plpgsql": True}}, "admin", None),
    (b"CREATE DATABASE eicu WITH TEMPLATE = template0;", {}, "skip", "pg_dump --create"),
    (b"CREATE EVENT TRIGGER t ON ddl_command_end EXECUTE FUNCTION f();", {}, "skip", "need a superuser"),
])
def test_what_becomes_of_each_statement(sql, facts, action, problem):
    from datathon.dumps.policy import Policy

    policy = Policy(_facts(**facts))
    (stmt,) = list(read_items(io.BytesIO(b"\n\n" + sql + b"\n")))
    assert policy.decide(stmt).action == action
    if problem:
        assert len(policy.problems) == 1 and problem in policy.problems[0].why and policy.problems[0].line == 3
    else:
        assert policy.problems == []
