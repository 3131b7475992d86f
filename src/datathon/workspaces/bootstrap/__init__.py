"""The workspace bootstrap: one shell script that turns a fresh Debian/Ubuntu machine into one team's workspace.

The AWS provider sends it as an instance's user data; the tests run the same rendered text as root on this machine.
Settings are shell variables written above the body (workspace.sh, package data). It carries no secret: user data
is readable by any process on the machine (IMDS) and by anyone allowed ec2:DescribeInstanceAttribute. The team's
password (~/.pgpass) is delivered after boot over SSH with the team's key (see `secrets.py`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from datathon.config import EventConfig
from datathon.config.workspaces import Workspaces
from datathon.core import clientfiles
from datathon.core.endpoint import Endpoint
from datathon.errors import ConfigError
from datathon.workspaces import names
from datathon.workspaces.environment import SYSTEM_PYTHON, TeamEnvironment
from datathon.workspaces.home import pg_environment, python_example, r_example

# What a machine needs beyond the local provider's list: psql for the team, curl for the health wait.
MACHINE_APT = ["postgresql-client", "curl"]
SCRATCH_README = ("This disk is the machine's instance store: fast, large, and ERASED whenever the machine is "
                  "stopped (or fails).\nKeep only copies here; anything you need to keep goes in your home folder "
                  "or the database.")
LAB_SETTINGS = {"@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"}}
SOURCE_LINE = '[ -f "$HOME/.datathon/env.sh" ] && . "$HOME/.datathon/env.sh"  # datathon: database settings'


@dataclass(frozen=True)
class Layout:
    """Where the script puts things; the defaults are a real machine's, tests point them into a scratch prefix."""

    port: int = 8888  # JupyterLab, on 127.0.0.1 only
    home_root: Path = Path("/home")
    env_root: Path = Path("/opt/datathon/envs")
    sys_root: Path = Path("/")  # holds usr/local/lib/datathon (the runner and the installed bootstrap)
    state_dir: Path = Path("/var/lib/datathon")  # logs and, without systemd, pid files
    scratch: Path = Path("/scratch")
    scratch_device: str = ""  # "" = the first instance-store NVMe, if any
    service: str = "auto"  # auto: systemd where it runs; background: a process with a pid file


def machine_environment(ws: Workspaces) -> tuple[list[str], list[str], str]:
    """(apt, pip, spec) of a machine's team environment: the local provider's package lists, without the hub's
    proxy (a machine runs JupyterLab alone)."""
    env = TeamEnvironment(ws)
    spec = json.dumps({"python": str(SYSTEM_PYTHON), "pip": env.pip, "layout": "machine-1"}, sort_keys=True)
    return env.apt + MACHINE_APT, env.pip, spec


def default_endpoint(config: EventConfig) -> Endpoint:
    db = config.database
    host = db.public_host or {"*": "localhost"}.get(db.listen_addresses[0], db.listen_addresses[0])
    return Endpoint(host=host, port=db.port, sslmode=db.sslmode)


def _env_sh(env: dict[str, str]) -> bytes:
    lines = ["# Written by datathon: the event database's settings (password in ~/.pgpass)."]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    return ("\n".join(lines) + "\n").encode()


def _files(config: EventConfig, team: str, user: str, endpoint: Endpoint) -> list[tuple[str, int, bool, bytes]]:
    """(path in home, mode, overwrite, content): overwrite=False for what the team may edit."""
    from datathon.workspaces.accounts import Account

    acct = Account("team", team, user, user, Path("/nonexistent"))
    shared = list(dict.fromkeys(s for d in config.databases for s in d.readable_schemas))
    files = [(".datathon/env.sh", 0o644, True, _env_sh(pg_environment(config, acct, endpoint))),
             (".pg_service.conf", 0o600, True, clientfiles.team_services(config, endpoint, {team: user}))]
    if endpoint.ca_cert and endpoint.ca_cert.exists():
        files.append((".postgresql/root.crt", 0o644, True, endpoint.ca_cert.read_bytes()))
    files += [("examples/01-python-sql.ipynb", 0o644, False, python_example(shared)),
              ("examples/02-r-sql.ipynb", 0o644, False, r_example(shared))]
    return files


def render_user_data(config: EventConfig, team: str, *, endpoint: Endpoint | None = None,
                     authorized_key: str | None = None, layout: Layout = Layout()) -> str:
    """The bootstrap for `team`'s machine: a self-contained bash script (user data starting with #! runs as root
    at first boot under cloud-init). `endpoint`: where the team's database is (default: from the event file);
    `authorized_key`: the team's public key (default: the EC2 key pair's, read from the instance metadata)."""
    if team not in {t.name for t in config.team_list}:
        raise ConfigError(f"no team {team!r} in the event file",
                          hint=f"teams: {', '.join(t.name for t in config.team_list)}")
    if authorized_key is not None and ("\n" in authorized_key.strip() or not authorized_key.startswith("ssh-")):
        raise ConfigError("the team's SSH key is not one OpenSSH public key line", hint="pass ssh-ed25519 AAAA...")
    ws = config.workspaces or Workspaces()
    endpoint = endpoint or default_endpoint(config)
    user = names.unix_user(config.event, team)
    apt, pip, spec = machine_environment(ws)
    files = "\n".join(f"{path} {mode:o} {int(over)} {base64.b64encode(data).decode()}"
                      for path, mode, over, data in _files(config, team, user, endpoint))
    settings = {
        "DT_EVENT": config.event, "DT_TEAM": team, "DT_USER": user,
        "DT_HOME_ROOT": str(layout.home_root), "DT_ENV_ROOT": str(layout.env_root),
        "DT_SYS_ROOT": str(layout.sys_root).rstrip("/"), "DT_STATE_DIR": str(layout.state_dir),
        "DT_SCRATCH": str(layout.scratch), "DT_SCRATCH_DEVICE": layout.scratch_device,
        "DT_SCRATCH_README": SCRATCH_README, "DT_PORT": str(layout.port), "DT_SERVICE": layout.service,
        "DT_APT": " ".join(apt), "DT_PIP": "\n".join(pip), "DT_ENV_SPEC": spec,
        "DT_ENV_DIGEST": hashlib.sha256(spec.encode()).hexdigest()[:12],
        "DT_LAB_SETTINGS": json.dumps(LAB_SETTINGS), "DT_SOURCE_LINE": SOURCE_LINE,
        "DT_AUTHORIZED_KEY": (authorized_key or "").strip(), "DT_FILES": files,
    }
    head = ["#!/bin/bash", f"# datathon workspace bootstrap: event {config.event}, team {team}. No secrets here.",
            *(f"{k}={shlex.quote(v)}" for k, v in settings.items()),
            'DT_SELF="${BASH_SOURCE[0]:-}"']
    body = resources.files(__package__).joinpath("workspace.sh").read_text()
    return "\n".join(head) + "\n" + body


def script_digest(user_data: str) -> str:
    """Names a bootstrap (e.g. in an image's tag): the same script, the same digest."""
    return hashlib.sha256(user_data.encode()).hexdigest()[:16]


# EC2 takes at most 16 KB of user data before base64; cloud-init unpacks gzip itself, so the script travels gzipped.
MAX_USER_DATA = 16384


def user_data_bytes(script: str) -> bytes:
    """What RunInstances gets as UserData: the script gzipped (mtime 0: the same script, the same bytes)."""
    import gzip

    data = gzip.compress(script.encode(), mtime=0)
    if len(data) > MAX_USER_DATA:
        raise ConfigError(f"the workspace bootstrap is {len(data)} bytes gzipped; EC2 takes {MAX_USER_DATA}",
                          hint="fewer extra packages in workspaces.packages, or a golden image (`datathon image build`)")
    return data
