"""Preflight: a port the event would bind, held by another program, makes `validate` and `plan` say so (every
one at once) and `up` change nothing; ports held by the event's own processes are fine. With a good registration
sheet the event comes up and the teams' display names show on handouts, roster and status."""

from __future__ import annotations

import csv
import json
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from conftest import DEMO_SQL, Event, event_data, free_port
from datathon.commands.status import run_status
from datathon.engine import preflight
from datathon.providers import get_provider

LISTENER = "import socket,sys,time\ns=socket.socket();s.bind(('127.0.0.1',int(sys.argv[1])));s.listen();" \
           "print('ready',flush=True);time.sleep(600)"


def hold(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", LISTENER, str(port)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "datathon.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"})


def test_ports_held_by_another_program_stop_validate_plan_and_up_before_anything(tmp_path):
    shutil.copy(DEMO_SQL, tmp_path / "demo-data.sql")
    db_port, hub_port, dash_port = free_port(), free_port(), free_port()
    data = event_data(event="ogport", port=db_port, teams=[{"name": "alpha"}],
                      workspaces={"port": hub_port}, dashboard={"port": dash_port})
    (tmp_path / "datathon.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    holders = [hold(db_port), hold(hub_port), hold(dash_port)]
    try:
        for verb in (["validate"], ["plan"]):
            proc = cli(*verb, cwd=tmp_path)
            out = proc.stdout + proc.stderr
            assert proc.returncode == 1, out
            for port, holder in ((db_port, holders[0]), (hub_port, holders[1]), (dash_port, holders[2])):
                assert f"port {port} on 127.0.0.1 is held by pid {holder.pid} (python" in out, out
            assert "Traceback" not in out
        proc = cli("plan", "--json", cwd=tmp_path)
        assert len(json.loads(proc.stdout)["preflight"]) == 3
        proc = cli("up", "--yes", cwd=tmp_path)
        assert proc.returncode == 1 and "nothing was changed" in proc.stderr, proc.stderr
        assert f"database.port {db_port}" in proc.stderr and f"workspaces.port {hub_port}" in proc.stderr
        assert f"dashboard.port {dash_port}" in proc.stderr
        # nothing made: no cluster folder, no Unix user, no event state
        assert not list(Path("/var/lib/datathon").glob("ogport-*"))
        assert not any(u.pw_name.startswith("ogport_") for u in pwd.getpwall())
        assert not (tmp_path / ".datathon" / "ogport").exists()
    finally:
        for h in holders:
            h.kill()
            h.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the ports are free again: the same file passes
        if cli("validate", cwd=tmp_path).returncode == 0:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("validate still fails once the ports are free")


def test_a_good_sheet_makes_the_event_titles_show_and_its_own_port_is_ours(tmp_path):
    shutil.copy(DEMO_SQL, tmp_path / "demo-data.sql")
    with (tmp_path / "registration.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Team Name", "Display name", "Name", "Email", "GPU"])
        w.writerow(["ED Triage", "ED Triage", "Ana Lim", "ana@example.org", "no"])
        w.writerow(["ED Triage", "", "Ben Ong", "ben@example.org", "no"])
        w.writerow(["sepsis-2", "Sepsis: Early Warning", "Cy Tan", "cy@example.org", "no"])
    data = event_data(event="ogcsv", port=free_port(), teams=None)
    del data["teams"]
    data = {"event": data.pop("event"), "teams_file": "registration.csv", **data}
    ev = Event(tmp_path, yaml.safe_dump(data, sort_keys=False))
    try:
        assert [t.name for t in ev.ctx.config.team_list] == ["ed_triage", "sepsis_2"]
        # not a terminal (a log, CI): the plan, then a line per step
        proc = cli("up", "--yes", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        assert "Plan" in out and "create" in out, out
        assert "database server [1/3] create cluster managed cluster" in out, out
        assert "data [1/" in out and " done in " in out, out
        quiet = cli("up", "--yes", "--quiet", cwd=tmp_path)
        assert quiet.returncode == 0 and quiet.stdout.count("\n") == 1 and quiet.stdout.startswith("up: 0 changes")
        # the running cluster holds its own port: that is no problem
        assert preflight(get_provider(ev.ctx).parts()) == []
        folder = ev.ctx.state.handouts_dir
        md = (folder / "team-sepsis_2.md").read_text()
        assert "Team **Sepsis: Early Warning** (`sepsis_2`)" in md, md[:300]
        assert "Ana Lim, Ben Ong" in (folder / "team-ed_triage.md").read_text()
        assert "<strong>ED Triage</strong>" in (folder / "team-ed_triage.html").read_text()
        roster = list(csv.DictReader((folder / "roster.csv").open()))
        assert [(r["name"], r["title"]) for r in roster if r["kind"] == "team"] == [
            ("ed_triage", "ED Triage"), ("sepsis_2", "Sepsis: Early Warning")]
        st = run_status(ev.ctx)
        assert {x.name: x.title for x in st.tables["logins"] if x.kind == "team"} == {
            "ed_triage": "ED Triage", "sepsis_2": "Sepsis: Early Warning"}
        proc = cli("status", cwd=tmp_path)
        assert "sepsis_2 (Sepsis: Early Warning)" in proc.stdout, proc.stdout
        down = cli("down", "--yes", "--quiet", "--no-archive", cwd=tmp_path)
        assert down.returncode == 0 and down.stdout.startswith("down: ") and down.stdout.count("\n") == 1, down
    finally:
        ev.close()
