"""The workspace bootstrap (AWS user data) run for real on this machine as root, into a scratch prefix: a team's
Unix user, its environment with JupyterLab and Python and R kernels, its database settings, JupyterLab on a
loopback port (a background process with a pid file: no systemd here), /scratch on a loop device standing in for
the instance-store NVMe. Then the machine probes run against it over a private sshd with the team's ed25519 key,
as `check` does on AWS."""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg import sql

from conftest import DEMO_SQL, Event, event_yaml, free_port
from datathon.check.machine_probes import MACHINE_PROBES, MachineSession, run_machine_probes
from datathon.core import ssh
from datathon.core.endpoint import Endpoint
from datathon.errors import ConfigError
from datathon.workspaces import accounts
from datathon.workspaces.bootstrap import Layout, render_user_data, user_data_bytes
from datathon.workspaces.bootstrap.secrets import deliver_pgpass
from sshd import available as sshd_missing
from sshd import keygen, private_sshd

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(os.geteuid() != 0, reason="the bootstrap makes a Unix user: run as root")]

TEAM, USER = "alpha", "bs_alpha"
BOOTSTRAP_TIMEOUT = 1200  # the first run builds the team environment with pip


def _loop_device(image: Path) -> tuple[str, str]:
    """(device, "") with a 64 MB loop device over `image`, or ("", why not)."""
    if shutil.which("losetup") is None:
        return "", "no losetup"
    with open(image, "wb") as fh:
        fh.truncate(64 << 20)
    res = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if res.returncode != 0:
        return "", f"losetup cannot attach a loop device here: {res.stderr.strip()}"
    return res.stdout.strip(), ""


@dataclass
class Machine:
    ev: Event
    prefix: Path
    layout: Layout
    script: str
    first: subprocess.CompletedProcess
    endpoint: Endpoint
    key: Path
    target: ssh.SshTarget | None
    no_loop: str


def _bootstrap(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=BOOTSTRAP_TIMEOUT)


def _cleanup(prefix: Path, layout: Layout, device: str) -> None:
    """No process, user, mount or loop device of the test outlives it."""
    entry = accounts.lookup(USER)
    if entry is not None:
        accounts.kill_processes(entry.pw_uid, entry.pw_gid)
        subprocess.run(["userdel", "--remove", USER], capture_output=True)
    subprocess.run(["umount", str(layout.scratch)], capture_output=True)
    if device:
        subprocess.run(["losetup", "-d", device], capture_output=True)
    shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    if accounts.lookup(USER) is not None:
        pytest.fail(f"Unix user {USER} exists already (a previous run left it?): userdel -r {USER}")
    folder = tmp_path_factory.mktemp("bs_event")
    shutil.copy(DEMO_SQL, folder / "demo-data.sql")
    ev = Event(folder, event_yaml(event="bs", port=free_port(), teams=[{"name": TEAM}]))
    # The team's home and environment must be reachable by the team: not under pytest's private tmp folder.
    prefix = Path(tempfile.mkdtemp(prefix="datathon-bs-", dir="/var/tmp"))
    prefix.chmod(0o755)
    device, no_loop = _loop_device(prefix / "nvme.img")
    layout = Layout(port=free_port(), home_root=prefix / "home", env_root=prefix / "envs", sys_root=prefix / "sys",
                    state_dir=prefix / "state", scratch=prefix / "scratch", scratch_device=device,
                    service="background")
    keys = prefix / "keys"
    keys.mkdir(mode=0o700)
    key = keys / "team"
    try:
        ev.up()
        endpoint = ev.server.endpoint()
        script = render_user_data(ev.ctx.config, TEAM, endpoint=endpoint, authorized_key=keygen(key),
                                  layout=layout)
        (prefix / "user-data.sh").write_text(script)
        first = _bootstrap(prefix / "user-data.sh")
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        if sshd_missing():
            yield Machine(ev, prefix, layout, script, first, endpoint, key, None, no_loop)
            return
        port = free_port()
        with private_sshd(prefix / "sshd", port):
            target = ssh.SshTarget("127.0.0.1", port, USER, key, prefix / "known_hosts")
            # The secret arrives after boot, over SSH with the team's key: never in the user data.
            assert deliver_pgpass(target, endpoint, USER, ev.password(USER)) is True
            assert deliver_pgpass(target, endpoint, USER, ev.password(USER)) is False  # the same: not rewritten
            yield Machine(ev, prefix, layout, script, first, endpoint, key, target, no_loop)
    finally:
        try:
            _cleanup(prefix, layout, device)
        finally:
            ev.close()


def _files_in(script: str) -> dict[str, bytes]:
    block = script.split("DT_FILES='", 1)[1].split("'", 1)[0]
    return {line.split()[0]: base64.b64decode(line.split()[3]) for line in block.splitlines() if line.strip()}


def test_first_run_builds_the_workspace(machine):
    out = machine.first.stdout
    assert "changed: built the team environment" in out
    assert f"changed: created Unix user {USER}" in out
    assert "JupyterLab answers on 127.0.0.1:" in out
    home = machine.layout.home_root / USER
    st = home.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (pwd.getpwnam(USER).pw_uid, 0o700)
    for f in ("examples/01-python-sql.ipynb", "examples/02-r-sql.ipynb", ".pg_service.conf", ".datathon/env.sh"):
        assert (home / f).stat().st_uid == st.st_uid, f
    assert (home / ".pg_service.conf").stat().st_mode & 0o777 == 0o600
    assert (home / ".datathon/jupyter-token").stat().st_mode & 0o077 == 0
    pid = int((machine.layout.state_dir / f"jupyterlab-{USER}.pid").read_text())
    assert Path(f"/proc/{pid}").stat().st_uid == st.st_uid  # JupyterLab runs as the team


def test_second_run_changes_nothing(machine):
    again = _bootstrap(machine.prefix / "user-data.sh")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "changed:" not in again.stdout, again.stdout
    assert again.stdout.rstrip().endswith("done: 0 change(s)")


def test_user_data_holds_no_secret(machine):
    password = machine.ev.password(USER)
    assert password and password not in machine.script
    files = _files_in(machine.script)
    assert ".pgpass" not in files and all(password.encode() not in data for data in files.values())
    assert "PGPASSWORD" not in machine.script
    assert b"host=127.0.0.1" in files[".pg_service.conf"] and f"[{TEAM}]".encode() in files[".pg_service.conf"]
    assert len(user_data_bytes(machine.script)) < 16384


def test_login_shell_reaches_the_database(machine):
    if machine.target is None:  # without sshd the .pgpass is written here, as the delivery would write it
        pytest.skip(sshd_missing())
    res = subprocess.run(["su", "-", USER, "-c", 'psql -XAtw -c "select current_user, current_schema()"'],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"{USER}|{TEAM}"


def test_scratch_disk(machine):
    if machine.no_loop:
        pytest.skip(machine.no_loop)
    scratch = machine.layout.scratch
    src = subprocess.run(["findmnt", "-rn", "-o", "SOURCE,FSTYPE", "--mountpoint", str(scratch)],
                         capture_output=True, text=True).stdout.split()
    assert src == [machine.layout.scratch_device, "ext4"]
    assert "ERASED" in (scratch / "README").read_text()
    assert scratch.stat().st_uid == pwd.getpwnam(USER).pw_uid


def test_instance_store_detection_reads_the_device_list(machine):
    lsblk = ("nvme0n1 Amazon Elastic Block Store\nnvme1n1 Amazon EC2 NVMe Instance Storage\n"
             "nvme2n1 Amazon EC2 NVMe Instance Storage\nloop0\n")
    res = subprocess.run(["bash", "-c", f'DT_SOURCE_ONLY=1 . {machine.prefix / "user-data.sh"} && '
                          "instance_store_devices"], input=lsblk, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["/dev/nvme1n1", "/dev/nvme2n1"]
    none = subprocess.run(["bash", "-c", f'DT_SOURCE_ONLY=1 . {machine.prefix / "user-data.sh"} && '
                           "instance_store_devices"], input="nvme0n1 Amazon Elastic Block Store\n",
                          capture_output=True, text=True)
    assert none.stdout == ""


def test_machine_probes_pass_over_ssh(machine):
    if machine.target is None:
        pytest.skip(sshd_missing())
    shared = sql.Identifier("mimiciv_demo", "patients").as_string(None)
    session = MachineSession(machine.target, TEAM, USER, port=machine.layout.port,
                             scratch=str(machine.layout.scratch), shared_table=shared)
    results = {r.probe: r for r in run_machine_probes(session)}
    assert set(results) == {p.id for p in MACHINE_PROBES}
    bad = {k: (r.detail, [e.as_dict() for e in r.evidence]) for k, r in results.items() if r.outcome == "fail"}
    assert not bad, bad
    want_skip = {"vm.scratch"} if machine.no_loop else set()
    assert {k for k, r in results.items() if r.outcome == "skip"} == want_skip
    # The kernels really reached the database: the shared table was read (10 of the demo's patients).
    assert any("bs_alpha alpha 10 2" in e.result for e in results["vm.python"].evidence)
    assert any("bs_alpha alpha 10 2" in e.result for e in results["vm.r"].evidence)


def test_machine_probes_fail_with_another_key(machine, tmp_path):
    if machine.target is None:
        pytest.skip(sshd_missing())
    keygen(tmp_path / "stranger")
    stranger = ssh.SshTarget(machine.target.host, machine.target.port, USER, tmp_path / "stranger",
                             machine.target.known_hosts)
    [result] = run_machine_probes(MachineSession(stranger, TEAM, USER, port=machine.layout.port),
                                  [p for p in MACHINE_PROBES if p.id == "vm.ssh"])
    assert result.outcome == "fail" and "Permission denied" in result.detail


def test_machine_probe_fails_when_jupyterlab_is_down(machine):
    """The probes can fail: JupyterLab stopped, its probes say so; the bootstrap run again brings it back."""
    if machine.target is None:
        pytest.skip(sshd_missing())
    pidfile = machine.layout.state_dir / f"jupyterlab-{USER}.pid"
    pid = int(pidfile.read_text())
    os.kill(pid, 15)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            break
        import time

        time.sleep(0.1)
    probes = [p for p in MACHINE_PROBES if p.id in ("vm.lab.local", "vm.lab.token")]
    results = run_machine_probes(MachineSession(machine.target, TEAM, USER, port=machine.layout.port), probes)
    assert [r.outcome for r in results] == ["fail", "fail"], [(r.probe, r.detail) for r in results]
    again = _bootstrap(machine.prefix / "user-data.sh")
    assert "changed: started JupyterLab" in again.stdout and again.returncode == 0
    results = run_machine_probes(MachineSession(machine.target, TEAM, USER, port=machine.layout.port), probes)
    assert [r.outcome for r in results] == ["pass", "pass"], [(r.probe, r.detail) for r in results]


def test_render_refuses_bad_input(machine):
    with pytest.raises(ConfigError, match="no team 'nobody'"):
        render_user_data(machine.ev.ctx.config, "nobody")
    with pytest.raises(ConfigError, match="OpenSSH public key"):
        render_user_data(machine.ev.ctx.config, TEAM, authorized_key="ssh-ed25519 AAAA x\nssh-rsa BBBB y")
