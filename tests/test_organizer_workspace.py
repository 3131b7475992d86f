"""From the registration sheet to a team's first query, on one real event (a hub, Unix users, kernels):

- every way a team reaches its machine reaches the database with no arguments: a login shell (`su -`), Python
  and R run by `runuser` (no PG* variable inherited), the services of ~/.pg_service.conf;
- the handouts' snippets run as printed: the laptop's Python snippets in a scratch venv made from the handout's
  own `pip install` line, R, psql, and the pull lines whose prefix and pattern come from the dataset's manifest;
- mentors read the imaging store;
- a pip package added is installed into a copy of the environment (only it); `status` names the servers still
  on the old environment, `datathon restart` moves them.

Run under the workspace flock (COMMON.md): it makes Unix users and a hub.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DEMO_SQL, Event, event_data, free_port
from datathon.commands.status import run_status
from datathon.workspaces.environment import STAMP, TeamEnvironment
from datathon.workspaces.hub import hub_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="workspaces make Unix users: needs root")

LAPTOP_VENV = Path("/var/tmp/datathon-og-laptop-venv")  # cached between runs: only pip's own work is slow
CLEAN_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}  # nothing of the caller's PG* settings


def _hub_port() -> int:
    """A port whose next two (the hub's internal ports) are free too, below the ephemeral range (as in
    test_workspaces)."""
    import random
    import socket

    def free(port: int) -> bool:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return True
            except OSError:
                return False

    for _ in range(100):
        port = random.randrange(20000, 30000)
        if all(free(p) for p in (port, port + 1, port + 2)):
            return port
    raise RuntimeError("no free port triple")


def _dataset(folder: Path) -> Path:
    """An imaging dataset laid out like MIMIC-CXR: files/pNN/pNNNNNNNN/sNNNNNNNN/*.dcm, plus a few text reports."""
    root = folder / "cxr"
    for p in ("p10", "p11"):
        for i in range(3):
            study = root / "files" / p / f"{p}00000{i}" / f"s5000{i}"
            study.mkdir(parents=True)
            for v in range(2):
                (study / f"view{v}.dcm").write_bytes(os.urandom(512 + v))
            (study.parent / f"s5000{i}.txt").write_text(f"report {p} {i}\n")
    return root


@pytest.fixture(scope="module")
def event(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ogws")
    shutil.copy(DEMO_SQL, folder / "demo-data.sql")
    _dataset(folder)
    data = event_data(event="ogws", port=free_port(), teams=[{"name": "alpha", "title": "Alpha Team"}])
    data["workspaces"] = {"port": _hub_port(), "idle_timeout": "30min"}
    data["storage"] = {"backend": "local", "datasets": [{"name": "cxr", "path": "cxr"}]}
    ev = Event(folder, yaml.safe_dump(data, sort_keys=False))
    made: list[Path] = []
    try:
        ev.up()
        ev.data = data  # for the package test to rewrite
        ev.made_envs = made
        yield ev
    finally:
        ev.close()
        for prefix in made:  # the environment the package test added: nobody else asks for it
            shutil.rmtree(prefix, ignore_errors=True)


def _as(user: str, *cmd: str, stdin: str | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/sbin/runuser", "-u", user, "--", *cmd], capture_output=True, text=True, env=CLEAN_ENV,
                          input=stdin, timeout=timeout, cwd="/")


def _snippets(markdown: str) -> dict[str, tuple[str, str]]:
    return {title: (lang, code) for title, lang, code in
            re.findall(r"^### (.*?)\n\n```(\w+)\n(.*?)\n```", markdown, flags=re.S | re.M)}


def test_every_way_a_team_reaches_its_machine_reaches_the_database(event):
    env = TeamEnvironment(event.ctx.config.workspaces)
    db = event.ctx.config.databases[0].name
    # a login shell (ssh and `su -` alike), no argument to psql
    res = subprocess.run(["su", "-", "ogws_alpha", "-c", "psql -XAtc 'select current_user, current_database()'"],
                         capture_output=True, text=True, env=CLEAN_ENV, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == f"ogws_alpha|{db}", res.stdout + res.stderr
    # every event database is a service of ~/.pg_service.conf
    other = event.ctx.config.databases[1].name
    res = subprocess.run(["su", "-", "ogws_alpha", "-c", f"psql -XAt service={other} -c 'select current_database()'"],
                         capture_output=True, text=True, env=CLEAN_ENV, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == other, res.stdout + res.stderr
    # Python and R started by runuser (cron, nbconvert, a script): no PG* variable, no argument
    script = "import psycopg\nwith psycopg.connect() as c:\n    print(c.execute('select current_user').fetchone()[0])\n"
    res = _as("ogws_alpha", str(env.bin / "python"), "-c", script)
    assert res.returncode == 0 and res.stdout.strip() == "ogws_alpha", res.stdout + res.stderr
    r = ('library(DBI); con <- dbConnect(RPostgreSQL::PostgreSQL()); '
         'cat(dbGetQuery(con, "select count(*) as n from mimiciv_demo.patients")$n, "\\n")')
    res = _as("ogws_alpha", "Rscript", "-e", r)
    assert res.returncode == 0 and int(res.stdout.split()[-1]) > 0, res.stdout + res.stderr
    # without the settings, the same script falls back to a local socket and fails: the test can fail
    res = _as("ogws_alpha", "/usr/bin/env", "-i", "PGHOST=/nonexistent", str(env.bin / "python"), "-c", script)
    assert res.returncode != 0
    # the files hold no secret and are the team's own: readable to it, not to another team
    home = Path(pwd.getpwnam("ogws_alpha").pw_dir)
    env_file = (home / ".config/datathon/database.env").read_text()
    assert "PGUSER=ogws_alpha" in env_file and "password" not in env_file.lower()
    assert oct(home.stat().st_mode & 0o777) == "0o700"


def test_the_handouts_snippets_run_as_printed(event):
    ev = event
    md = (ev.ctx.state.handouts_dir / "team-alpha.md").read_text()
    snippets = _snippets(md)
    assert "Team **Alpha Team** (`alpha`)" in md
    # the search path's order and how to qualify a name
    assert "in order (alpha, mimiciv_demo)" in md and "Write schema.table" in md
    # the laptop: a scratch venv made from the handout's own pip line, then its Python snippets as printed
    _, laptop = next(v for k, v in snippets.items() if k.startswith("What your laptop needs"))
    pip_line = next(line for line in laptop.splitlines() if line.startswith("pip install "))
    py = LAPTOP_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(LAPTOP_VENV)], check=True)
    res = subprocess.run(["bash", "-c", f"{LAPTOP_VENV}/bin/{pip_line} -q"], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    for title in ("Python (SQLAlchemy + pandas)", "Python (psycopg)"):
        res = subprocess.run([str(py), "-c", snippets[title][1]], capture_output=True, text=True, timeout=120,
                             env={**CLEAN_ENV, "HOME": "/nonexistent"})
        assert res.returncode == 0, title + res.stderr
        assert ("mimiciv_demo" if "pandas" in title else "alpha") in res.stdout, res.stdout
    # R, as printed
    res = subprocess.run(["Rscript", "-e", snippets["R (DBI + RPostgreSQL)"][1]], capture_output=True, text=True,
                         timeout=120, env={**CLEAN_ENV, "HOME": "/nonexistent"})
    assert res.returncode == 0 and "mimiciv_demo" in res.stdout, res.stderr
    # psql, as printed (the password where the snippet says it is asked for)
    psql = snippets["psql"][1].splitlines()[0] + " -XAtc 'select current_user'"
    password = ev.password("ogws_alpha")
    res = subprocess.run(["bash", "-c", psql], capture_output=True, text=True, timeout=60,
                         env={**CLEAN_ENV, "HOME": "/nonexistent", "PGPASSWORD": password})
    assert res.returncode == 0 and res.stdout.strip() == "ogws_alpha", res.stderr
    # the pull lines select real files of the dataset: as many as the handout says
    _, pull = next(v for k, v in snippets.items() if k.startswith("Pull a subset"))
    lines = pull.splitlines()
    counts = [int(m.group(1)) for m in re.finditer(r"^# (\d+) of", pull, flags=re.M)]
    assert counts == [3 * 2 + 3]  # files/p10/: 3 studies of 2 views, 3 reports
    by_prefix = lines[1]
    by_pattern = lines[3]
    assert "--prefix files/p10/" in by_prefix and "--manifest-filter '*.dcm'" in by_pattern, pull
    entry = pwd.getpwnam("ogws_alpha")
    hub = hub_for(ev.ctx)
    for line, wanted in ((by_prefix, counts[0]), (by_pattern, 12)):
        out = Path(entry.pw_dir) / "data" / "cxr"
        shutil.rmtree(out, ignore_errors=True)
        res = subprocess.run(["bash", "-c", line], cwd=entry.pw_dir, user=entry.pw_uid, group=entry.pw_gid,
                             extra_groups=[], capture_output=True, text=True, timeout=120,
                             env={**CLEAN_ENV, "HOME": entry.pw_dir, "PATH": f"{hub.env.bin}:/usr/bin:/bin"})
        assert res.returncode == 0, res.stdout + res.stderr
        assert sum(1 for p in out.rglob("*") if p.is_file()) == wanted, line
    # read in place: the snippet's pattern matches its files, as a team and as a mentor
    _, in_place = snippets["Or read it in place (Python)"]
    wanted = int(in_place.rsplit("# ", 1)[1])
    assert wanted == 12
    for user in ("ogws_alpha", "ogws_mentor_ana"):
        res = _as(user, str(hub.env.bin / "python"), "-c", in_place)
        assert res.returncode == 0 and int(res.stdout.strip()) == wanted, user + res.stdout + res.stderr


def test_a_mentor_reads_the_imaging_store_and_nobody_writes_it(event):
    store = event.ctx.config.storage.local_root("ogws")
    first = next(p for p in (store / "cxr").rglob("*.dcm"))
    res = _as("ogws_mentor_ana", "sha256sum", str(first))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == hashlib.sha256(first.read_bytes()).hexdigest()
    for user in ("ogws_mentor_ana", "ogws_alpha"):
        assert _as(user, "touch", str(store / "cxr" / "new")).returncode != 0
    # a mentor's home stays its own (it is in the teams' group only for the store)
    home = Path(pwd.getpwnam("ogws_alpha").pw_dir)
    assert _as("ogws_mentor_ana", "ls", str(home)).returncode != 0


def test_an_added_package_goes_into_a_copy_and_restart_moves_the_servers(event):
    ev = event
    hub = hub_for(ev.ctx)
    old = TeamEnvironment(ev.ctx.config.workspaces)
    hub.start_server("ogws_alpha")
    st = run_status(ev.ctx)
    (alpha,) = [w for w in st.tables["workspaces"] if w.user == "ogws_alpha"]
    assert alpha.server == "running" and alpha.environment == "current"

    ev.data["workspaces"]["packages"] = {"pip": ["tabulate"]}
    ev.rewrite(yaml.safe_dump(ev.data, sort_keys=False))
    new = TeamEnvironment(ev.ctx.config.workspaces)
    ev.made_envs.append(new.prefix)
    assert new.prefix != old.prefix and new.base() == (old.prefix, ["tabulate"])
    proc = subprocess.run([sys.executable, "-m", "datathon.cli", "up", "--yes", "-c", str(ev.ctx.loaded.path)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "250"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    # not a terminal: a line per step; the copy, then only the new package
    assert f"copying {old.prefix.name}" in proc.stdout and "installing only the added package(s): tabulate" \
        in proc.stdout, proc.stdout
    assert (new.prefix / STAMP).exists() and new.is_built()
    assert subprocess.run([str(new.bin / "python"), "-c", "import tabulate"]).returncode == 0
    assert subprocess.run([str(old.bin / "python"), "-c", "import tabulate"], capture_output=True).returncode != 0
    # no script of the copy names the old folder; the old one, whose files the copy shares (hard links), is intact
    assert not [p for p in new.bin.iterdir() if p.is_file() and not p.is_symlink()
                and str(old.prefix).encode() in p.read_bytes()]
    assert old.is_built() and old.cli_current()
    assert (old.bin / "jupyter").read_text().startswith(f"#!{old.bin / 'python'}")
    assert (old.bin / "datathon").read_text().startswith(f"#!{old.bin / 'python'}")
    assert os.stat(old.bin / "jupyter").st_ino != os.stat(new.bin / "jupyter").st_ino
    # the server that ran stays on the old environment: status says so, and how to move it
    st = run_status(ev.ctx)
    (alpha,) = [w for w in st.tables["workspaces"] if w.user == "ogws_alpha"]
    assert alpha.environment == old.prefix.name and alpha.outdated and not st.healthy
    proc = subprocess.run([sys.executable, "-m", "datathon.cli", "status", "-c", str(ev.ctx.loaded.path)],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "250"})
    assert proc.returncode == 1 and "datathon restart ogws_alpha" in proc.stdout, proc.stdout
    proc = subprocess.run([sys.executable, "-m", "datathon.cli", "restart", "-c", str(ev.ctx.loaded.path)],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "250"}, timeout=300)
    assert proc.returncode == 0 and f"moved from {old.prefix.name}" in proc.stdout, proc.stdout + proc.stderr
    st = run_status(ev.ctx)
    (alpha,) = [w for w in st.tables["workspaces"] if w.user == "ogws_alpha"]
    assert alpha.server == "running" and alpha.environment == "current"
    # the team's scripts outside the hub run the new environment too, with the database settings
    res = _as("ogws_alpha", str(new.bin / "python"), "-c",
              "import tabulate, psycopg\nprint(psycopg.connect().execute('select 1').fetchone()[0])")
    assert res.returncode == 0 and res.stdout.strip() == "1", res.stderr
