"""The acceptance round trip with homes: two teams fill their schemas (one table of 1 M rows) and homes
(notebooks, a 50 MB file, a link out of the home), archive, verify, `down` (refused first), a new event, restore,
and every row and file is back. Needs root (Unix users); run under the workspace-test flock."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
from pathlib import Path

import pytest

from conftest import DEMO_SQL, Event
from datathon.commands.archive import run_archive, run_restore, run_verify
from datathon.commands.audit import run_audit
from datathon.commands.down import run_down
from datathon.errors import ProvisionError
from datathon.workspaces.client import BrowserSession
from datathon.workspaces.hub import hub_for
from test_archive import login
from test_workspaces import ws_yaml

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="workspaces make Unix users: needs root")

TEAMS = [{"name": "alpha"}, {"name": "beta"}]
SKIPPED = {".cache", ".pgpass", ".pg_service.conf", ".postgresql", "datasets", ".local", ".ipython", ".jupyter",
           ".npm", ".config", ".bash_profile", ".Renviron"}  # datathon's own files: each event writes its own


def _folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    (folder / "cxr").mkdir(parents=True)
    (folder / "cxr" / "a.jpg").write_bytes(b"\xff\xd8" * 100)
    shutil.copy(DEMO_SQL, folder / "demo-data.sql")
    return folder


def _yaml(event: str) -> str:
    return ws_yaml(event, TEAMS, storage={"backend": "local", "datasets": [{"name": "cxr", "path": "cxr"}]})


def _as_team(ev: Event, team: str, rel: str, data: bytes) -> Path:
    entry = pwd.getpwnam(f"{ev.ctx.config.event}_{team}")
    path = Path(entry.pw_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    for p in [path, *path.parents]:
        if p == Path(entry.pw_dir):
            break
        os.chown(p, entry.pw_uid, entry.pw_gid)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _home_files(home: Path) -> dict[str, tuple]:
    """Every entry of a home but datathon's own files and caches: path -> (kind, sha256 or link target)."""
    out = {}
    for root, dirs, files in os.walk(home):
        rel_root = Path(root).relative_to(home)
        if rel_root == Path("."):
            dirs[:] = [d for d in dirs if d not in SKIPPED]
            files = [f for f in files if f not in SKIPPED]
        for name in dirs + files:
            p = Path(root) / name
            rel = str(rel_root / name)
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_file():
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def _tables(ev: Event, team: str) -> dict[str, tuple]:
    with login(ev, team) as c:
        names = [r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1",
                                         (team,)).fetchall()]
        return {n: c.execute(f"SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))) "
                             f"FROM {n} t").fetchone() for n in names}


def test_archive_verify_down_new_event_restore_finds_every_row_and_file(tmp_path):
    secret = tmp_path / "outside-secret.txt"
    secret.write_text("not the team's: must not be archived\n")
    os.chmod(tmp_path, 0o755)
    ev = Event(_folder(tmp_path, "one"), _yaml("ar8"))
    out = tmp_path / "archive"
    try:
        ev.up()
        with login(ev, "alpha") as c:
            c.execute("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS h, g % 97 AS k FROM "
                      "generate_series(1, 1000000) g")
            c.execute("CREATE INDEX ON big (k)")
            c.execute("CREATE TABLE cohort (subject_id int PRIMARY KEY, label text)")
            c.execute("INSERT INTO cohort SELECT g, 'c' || g FROM generate_series(1, 500) g")
            c.execute("CREATE VIEW cohort_labels AS SELECT label FROM cohort")
        with login(ev, "beta") as c:
            c.execute("CREATE TABLE features (id int, x float8, y float8)")
            c.execute("INSERT INTO features SELECT g, random(), random() FROM generate_series(1, 20000) g")
            c.execute("CREATE TABLE empty_one (id int)")
        nb = json.dumps({"cells": [{"cell_type": "code", "source": "print(1)", "metadata": {}, "outputs": [],
                                    "execution_count": None}], "metadata": {}, "nbformat": 4,
                         "nbformat_minor": 5}).encode()
        for team in ("alpha", "beta"):
            _as_team(ev, team, "work/analysis.ipynb", nb)
            _as_team(ev, team, "work/deeper/model.py", f"# {team}\n".encode())
            _as_team(ev, team, ".cache/pip/junk", b"x" * 1000)
        blob = _as_team(ev, "alpha", "data/blob.bin", os.urandom(50 * 2**20))
        os.symlink(secret, blob.parent / "escape")
        os.lchown(blob.parent / "escape", blob.stat().st_uid, blob.stat().st_gid)
        homes = {t: Path(pwd.getpwnam(f"ar8_{t}").pw_dir) for t in ("alpha", "beta")}
        # a hub login and a server started and stopped, for the audit trail
        hub = hub_for(ev.ctx)
        assert BrowserSession(hub.local_url).login("ar8_alpha", ev.password("ar8_alpha"))
        hub.start_server("ar8_alpha")
        hub.stop_server("ar8_alpha")

        with pytest.raises(ProvisionError, match="no verified archive holds"):
            run_down(ev.ctx, yes=True)

        result = run_archive(ev.ctx, out=out)
        by_team = {t.team: t for t in result.teams}
        assert by_team["alpha"].rows == 1_000_500 and by_team["beta"].tables == 2
        man = json.loads((out / "manifest.json").read_text())
        ws = man["teams"]["alpha"]["parts"]["workspaces"]["record"]
        assert ws["entries"]["data/escape"] == {"type": "link", "target": str(secret)}
        assert ws["entries"]["data/blob.bin"]["size"] == 50 * 2**20
        assert "work/analysis.ipynb" in ws["notebooks"] and "examples/01-python-sql.ipynb" in ws["notebooks"]
        assert not {".pgpass", ".cache/pip/junk", "datasets"} & ws["entries"].keys()
        tarball = out / "teams" / "alpha" / "workspace" / ws["home"]
        assert tarball.name.endswith(".tar.zst")
        assert b"not the team's" not in tarball.read_bytes()
        env_dir = out / "teams" / "alpha" / "workspace"
        assert "jupyterlab" in (env_dir / "pip-freeze.txt").read_text().lower()
        assert "R version" in (env_dir / "r-sessioninfo.txt").read_text()
        assert ws["environment"]["id"]
        assert (env_dir / "notebooks.txt").read_text().splitlines() == ws["notebooks"]
        assert run_verify(ev.ctx, out=out).ok

        events = run_audit(ev.ctx).events
        hub_events = {(e.event, e.login) for e in events if e.source == "hub"}
        assert {("login", "ar8_alpha"), ("server start", "ar8_alpha"), ("server stop", "ar8_alpha")} <= hub_events

        files = {t: _home_files(homes[t]) for t in homes}
        tables = {t: _tables(ev, t) for t in homes}
        assert files["alpha"]["data/escape"] == ("link", str(secret)) and "data/blob.bin" in files["alpha"]
        assert tables["alpha"]["big"][0] == 1_000_000

        # a file touched after the verified archive: refused, naming it
        (homes["beta"] / "work" / "deeper" / "model.py").write_text("# changed\n")
        with pytest.raises(ProvisionError, match="beta: ~ar8_beta/work/deeper/model.py changed"):
            run_down(ev.ctx, yes=True)
        run_archive(ev.ctx, out=out, teams=["beta"])
        assert run_verify(ev.ctx, out=out).ok
        files["beta"] = _home_files(homes["beta"])
        run_down(ev.ctx, yes=True)
        assert not homes["alpha"].exists()
        assert (out / "audit" / "audit.csv").exists()
    finally:
        ev.close()

    ev2 = Event(_folder(tmp_path, "two"), _yaml("ar9"))
    try:
        ev2.up()
        for team in ("alpha", "beta"):
            run_restore(ev2.ctx, team, source=out)
        for team in ("alpha", "beta"):
            home = Path(pwd.getpwnam(f"ar9_{team}").pw_dir)
            restored = _home_files(home)
            assert restored == files[team], team
            assert _tables(ev2, team) == tables[team], team
            assert (home / "work").stat().st_uid == pwd.getpwnam(f"ar9_{team}").pw_uid
        assert os.readlink(Path(pwd.getpwnam("ar9_alpha").pw_dir) / "data" / "escape") == str(secret)
        assert ev2.up().applied == 0  # the restored homes and schemas are as `up` wants them
    finally:
        ev2.close()
