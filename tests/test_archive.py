"""`archive`, `archive verify`, `restore`, `down`'s protection and the audit trail on a real managed cluster
(database only; the homes are in test_archive_workspaces.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import psycopg
import pytest

from datathon.archive import manifest as mf
from datathon.commands.archive import run_archive, run_restore, run_verify
from datathon.commands.audit import run_audit
from datathon.commands.down import run_down
from datathon.errors import ProvisionError

TWO = [{"name": "alpha"}, {"name": "beta"}]


def login(ev, team, db=None, password=None):
    role = f"{ev.ctx.config.event}_{team}"
    ep = ev.server.endpoint()
    return psycopg.connect(host=ep.host, port=ep.port, dbname=db or f"{ev.ctx.config.event}db", user=role,
                           password=password or ev.password(role), sslmode="require", autocommit=True,
                           connect_timeout=5)


def fill(ev, team, rows=20_000):
    with login(ev, team) as c:
        c.execute(f"CREATE TABLE results AS SELECT g AS id, md5(g::text) AS v, g * 1.5::float8 AS f, "
                  f"'2026-01-01'::timestamptz + g * interval '1 min' AS ts FROM generate_series(1, {rows}) g")
        c.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text, tags text[], meta jsonb)")
        c.execute("INSERT INTO notes (body, tags, meta) VALUES ('a', '{x,y}', '{\"k\": 1}'), (NULL, NULL, NULL)")
    with login(ev, team, db=f"{ev.ctx.config.event}extra") as c:
        c.execute("CREATE TABLE other AS SELECT 1 AS one")


def digest(ev, team, table, db=None):
    with login(ev, team, db=db) as c:
        return c.execute(f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t").fetchone()


def cli(ev, *args, env=None):
    return subprocess.run([sys.executable, "-m", "datathon.cli", *args, "-c", str(ev.ctx.loaded.path)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


def test_archive_verify_restore_into_a_new_event_and_down_protects_work(make_event, tmp_path):
    ev = make_event(event="ar1", teams=TWO)
    ev.up()
    fill(ev, "alpha")
    with pytest.raises(ProvisionError, match="1 team.s. have work that no verified archive holds") as refused:
        run_down(ev.ctx, yes=True)  # alpha's tables; beta's schema is empty: no work
    assert "alpha: schema ar1db.alpha is not in the archive" in str(refused.value) and ev.server.running()

    out = tmp_path / "arch"
    result = run_archive(ev.ctx, out=out)
    alpha = next(t for t in result.teams if t.team == "alpha")
    assert (alpha.state, alpha.tables, alpha.rows) == ("archived", 3, 20_003)
    man = json.loads((out / "manifest.json").read_text())
    rec = man["teams"]["alpha"]["parts"]["data"]["record"]["databases"]["ar1db"]
    assert rec["tables"]["results"]["rows"] == 20_000 and rec["tables"]["notes"]["rows"] == 2
    for rel, f in man["teams"]["alpha"]["files"].items():
        assert mf.file_sha256(out / "teams" / "alpha" / rel) == f["sha256"]
    assert oct((out / "manifest.json").stat().st_mode & 0o777) == "0o600"

    # archived, not verified: still refused
    with pytest.raises(ProvisionError, match="archived, not verified"):
        run_down(ev.ctx, yes=True)
    assert run_verify(ev.ctx, out=out).ok
    assert ev.ctx.state.load()["archive"]["verified"]
    assert [t.state for t in run_archive(ev.ctx, out=out).teams] == ["unchanged", "unchanged"]

    # new work after the verified archive: refused again, naming it; a re-run archives only that team
    with login(ev, "beta") as c:
        c.execute("CREATE TABLE late (x int)")
    with pytest.raises(ProvisionError, match="beta: schema ar1db.beta changed"):
        run_down(ev.ctx, yes=True)
    states = {t.team: t.state for t in run_archive(ev.ctx, out=out).teams}
    assert states == {"alpha": "unchanged", "beta": "archived"}
    assert run_verify(ev.ctx, out=out).ok
    before = {t: digest(ev, "alpha", t) for t in ("results", "notes")}
    before_extra = digest(ev, "alpha", "other", db="ar1extra")

    result = run_down(ev.ctx, yes=True)  # everything verified: no flag needed
    assert any("audit trail" in what for what, _ in result.checked)
    assert (out / "audit" / "audit.csv").exists() and list((out / "audit" / "logs").glob("*.gz"))

    ev2 = make_event(event="ar2", teams=TWO)
    ev2.up()
    run_restore(ev2.ctx, "alpha", source=out)
    run_restore(ev2.ctx, "beta", source=out)
    assert {t: digest(ev2, "alpha", t) for t in ("results", "notes")} == before
    assert digest(ev2, "alpha", "other", db="ar2extra") == before_extra
    with login(ev2, "alpha") as c:  # restored as the team: it owns its tables, and keeps working
        assert c.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'results'").fetchone() == ("ar2_alpha",)
        c.execute("INSERT INTO notes (body) VALUES ('after')")
    with login(ev2, "beta") as c:
        assert c.execute("SELECT to_regclass('beta.late') IS NOT NULL").fetchone() == (True,)
    with pytest.raises(ProvisionError, match="already holds"):  # never on top of existing work
        run_restore(ev2.ctx, "alpha", source=out)


def test_a_team_cannot_make_the_archive_run_its_code_as_the_administrator(make_event, tmp_path):
    """The team's function tries to make its own login a superuser; it is wired into a cast from its row type to
    text (what `t::text` would call), a CHECK constraint (runs on restore) and a view. After archive, verify and
    restore its login is still an ordinary one."""
    ev = make_event(event="ar3", teams=TWO)
    ev.up()
    with login(ev, "alpha") as c:
        c.execute("""CREATE FUNCTION grab() RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN
              BEGIN EXECUTE 'ALTER ROLE ar3_alpha SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
              RETURN true;
            END $$""")
        c.execute("CREATE TABLE t (id int CHECK (grab()), v text)")
        c.execute("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g")
        c.execute("CREATE FUNCTION t_text(t) RETURNS text LANGUAGE sql AS $$ SELECT alpha.grab()::text $$")
        c.execute("CREATE CAST (t AS text) WITH FUNCTION t_text(t)")
        c.execute("CREATE VIEW v AS SELECT grab() AS g FROM t")
        c.execute("ALTER TABLE t ENABLE ROW LEVEL SECURITY")
        c.execute("ALTER TABLE t FORCE ROW LEVEL SECURITY")
        c.execute("CREATE POLICY hide ON t USING (grab() AND false)")
    out = tmp_path / "arch"
    run_archive(ev.ctx, out=out, teams=["alpha"])
    rec = json.loads((out / "manifest.json").read_text())["teams"]["alpha"]["parts"]["data"]["record"]
    assert rec["databases"]["ar3db"]["tables"]["t"]["rows"] == 100  # row security did not hide rows
    assert run_verify(ev.ctx, out=out).ok
    with ev.server.connect(autocommit=True) as c:
        assert c.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'ar3_alpha'").fetchone() == (False,)


def test_archive_killed_at_any_step_is_finished_by_running_it_again(make_event, tmp_path):
    ev = make_event(event="ar4", teams=TWO)
    ev.up()
    fill(ev, "alpha", rows=5_000)
    fill(ev, "beta", rows=3_000)
    clean = tmp_path / "clean"
    run_archive(ev.ctx, out=clean)
    wanted = json.loads((clean / "manifest.json").read_text())["teams"]

    def shape(teams):
        return {name: ({rel for rel in e["files"]}, e["parts"]["data"]["record"]["databases"]) for name, e in
                teams.items()}

    for step in ("archive.database_dumped@3", "archive.team_written@1", "archive.team_done@2",
                 "archive.manifest_written"):
        out = tmp_path / step.replace("@", "-")
        killed = cli(ev, "archive", "--out", str(out), env={"DATATHON_DIE_AT": step})
        assert killed.returncode == -9, (step, killed.stdout, killed.stderr)
        again = cli(ev, "archive", "--out", str(out))
        assert again.returncode == 0, (step, again.stdout, again.stderr)
        got = json.loads((out / "manifest.json").read_text())["teams"]
        for name in got:
            for db in got[name]["parts"]["data"]["record"]["databases"].values():
                db.pop("fingerprint")
        for name in wanted:
            for db in wanted[name]["parts"]["data"]["record"]["databases"].values():
                db.pop("fingerprint", None)
        assert shape(got) == shape(wanted), step
        assert sorted(p.name for p in (out / "teams").iterdir()) == ["alpha", "beta"], step  # nothing half-made
        assert not list(out.glob(".*")), step
    assert cli(ev, "archive", "verify", str(tmp_path / "archive.team_done-2")).returncode == 0


def test_bad_archives_get_one_clear_message_naming_the_file(make_event, tmp_path):
    ev = make_event(event="ar5", teams=TWO)
    ev.up()
    fill(ev, "alpha", rows=1_000)

    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ProvisionError, match=f"{other} is not a datathon archive"):
        run_verify(ev.ctx, out=other)
    with pytest.raises(ProvisionError, match=f"{other} is not a datathon archive and not empty"):
        run_archive(ev.ctx, out=other)
    assert sorted(p.name for p in other.iterdir()) == ["cat.jpg"]

    out = tmp_path / "arch"
    run_archive(ev.ctx, out=out)
    good = (out / "manifest.json").read_text()
    (out / "manifest.json").write_text(good[: len(good) // 2])
    with pytest.raises(ProvisionError, match=f"{out / 'manifest.json'} is damaged"):
        run_verify(ev.ctx, out=out)
    with pytest.raises(ProvisionError, match="is damaged"):
        run_restore(ev.ctx, "alpha", source=out)
    run_archive(ev.ctx, out=out)  # a re-run writes it again from the teams' entries
    assert json.loads((out / "manifest.json").read_text())["teams"].keys() == {"alpha", "beta"}

    # a dump that does not restore (its manifest entry made to match, so only restoring can tell)
    dump = out / "teams" / "alpha" / "database" / "ar5db.dump"
    dump.write_bytes(dump.read_bytes()[:200] + b"\0" * 5000)
    team = json.loads((out / "teams" / "alpha" / "team.json").read_text())
    team["files"]["database/ar5db.dump"] = {"size": dump.stat().st_size, "sha256": mf.file_sha256(dump)}
    (out / "teams" / "alpha" / "team.json").write_text(json.dumps(team))
    man = json.loads((out / "manifest.json").read_text())
    man["teams"]["alpha"] = team
    (out / "manifest.json").write_text(json.dumps(man))
    v = run_verify(ev.ctx, out=out)
    problems = next(t for t in v.teams if t.team == "alpha").problems
    assert not v.ok and problems and all(str(dump) in p for p in problems) and "does not restore" in problems[0]
    with ev.server.connect(autocommit=True) as c:  # its scratch database is gone
        assert c.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'datathon_verify_%'").fetchone() == (0,)

    # a changed file: named, and restore refuses before touching anything
    (out / "teams" / "alpha" / "database" / "ar5extra.dump").write_bytes(b"changed")
    with pytest.raises(ProvisionError, match="ar5extra.dump"):
        run_restore(ev.ctx, "alpha", source=out)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small filesystem: needs root")
def test_a_disk_that_fills_during_archive_is_named_and_leaves_nothing_half_written(make_event, tmp_path):
    ev = make_event(event="ar6", teams=TWO)
    ev.up()
    fill(ev, "alpha", rows=200_000)  # a dump of several MB
    fill(ev, "beta", rows=10)
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        out = mnt / "arch"
        with pytest.raises(ProvisionError, match=f"the disk is full writing {out}/teams/") as full:
            run_archive(ev.ctx, out=out, jobs=1)
        assert "alpha" in str(full.value) and "run the same command again" in str(full.value)
        leftovers = [p for p in (out / "teams").iterdir() if p.name.startswith(".")]
        assert leftovers == [] and not (out / "teams" / "alpha").exists()
        assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    result = run_archive(ev.ctx, out=tmp_path / "roomy")  # the same command, with room: done
    assert {t.team for t in result.teams if t.state == "archived"} == {"alpha", "beta"}


def test_audit_export_lists_connections_with_tls_and_refusals(make_event, tmp_path):
    ev = make_event(event="ar7", teams=TWO)
    ev.up()
    with login(ev, "alpha") as c:
        c.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        login(ev, "beta", password="wrong")
    r = run_audit(ev.ctx)
    alpha = [e for e in r.events if e.login == "ar7_alpha"]
    connect = next(e for e in alpha if e.event == "connect")
    disconnect = next(e for e in alpha if e.event == "disconnect")
    assert connect.database == "ar7db" and connect.client.startswith("127.0.0.1:") and "TLSv1." in connect.tls
    assert disconnect.client == connect.client and disconnect.seconds is not None and disconnect.tls == connect.tls
    assert any(e.event == "refused" and e.login == "ar7_beta" for e in r.events)
    rows = {x.login: x for x in r.summary}
    assert rows["ar7_alpha"].connections == 1 and rows["ar7_beta"].refused == 1 and rows["ar7_beta"].team == "beta"
    assert run_audit(ev.ctx, since="2100-01-01").events == []
    export = cli(ev, "audit", "export", "--format", "json")
    assert export.returncode == 0, export.stderr
    assert any(e["login"] == "ar7_alpha" and e["event"] == "connect" for e in json.loads(export.stdout))
    assert shutil.which("zstd")  # the archive's compressor on this machine (gzip otherwise)


@pytest.mark.parametrize("line, expected", [
    ('2026-12-02 07:06:49.872 UTC [811] x_alpha@xdb 10.0.0.7(51234) LOG:  connection authorized: user=x_alpha '
     'database=xdb application_name=psql SSL enabled (protocol=TLSv1.3, cipher=TLS_AES_256_GCM_SHA384, bits=256)',
     ("connect", "x_alpha", "xdb", "10.0.0.7:51234", "TLSv1.3 TLS_AES_256_GCM_SHA384")),
    ('2026-12-02 07:06:49.872 UTC [812] x_alpha@xdb 10.0.0.7(51235) FATAL:  no pg_hba.conf entry for host '
     '"10.0.0.7", user "x_alpha", database "xdb", no encryption',
     ("refused", "x_alpha", "xdb", "10.0.0.7:51235", "")),
    ('2026-12-02 07:06:49.872 UTC [813] x_beta@xdb 10.0.0.7(51236) FATAL:  too many connections for role "x_beta"',
     ("refused", "x_beta", "xdb", "10.0.0.7:51236", "")),
    ('2026-12-02 07:06:49.872 UTC [814] x_beta@xdb 10.0.0.7(51237) FATAL:  role "x_beta" is not permitted to '
     'log in', ("refused", "x_beta", "xdb", "10.0.0.7:51237", "")),
    ('2026-12-02 09:06:49.872 CET [815] datathon@postgres [local] LOG:  connection authorized: user=datathon '
     'database=postgres application_name=datathon', ("connect", "datathon", "postgres", "[local]", "no")),
])
def test_every_kind_of_server_log_line_becomes_one_audit_event(line, expected):
    """The lines PostgreSQL 15 writes for the events the audit reports (refusals are hard to provoke all at
    once on a live server; connections and wrong passwords are covered live above)."""
    from datathon.database.audit import parse_lines

    (event,) = parse_lines([line, "2026-12-02 07:06:49.872 UTC [9] LOG:  checkpoint starting: time"])
    assert (event.event, event.login, event.database, event.client, event.tls) == expected
    assert event.time.endswith("+00:00") and (event.time.startswith("2026-12-02T08:06") if "CET" in line else True)
