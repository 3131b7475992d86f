"""The one environment every team's server runs: Debian's python3 in a world-readable prefix.

The default Python of these machines lives in root's home, which team users cannot read; so the team
environment is a venv of /usr/bin/python3 under `workspaces.env_root`, named by a hash of what goes into it.
It is built once and reused by every team (and every event asking for the same packages); a changed package
list builds a new one. It also holds the hub itself (JupyterHub, the idle culler, configurable-http-proxy), so
the hub and the single-user servers always run matching versions.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from rich.console import Console

import datathon
from datathon.config.workspaces import Workspaces
from datathon.errors import ProvisionError

log = logging.getLogger("datathon")

SYSTEM_PYTHON = Path("/usr/bin/python3")
# The data stack of the issue, pinned to compatible ranges; the config adds to it.
BASE_PIP = [
    "jupyterhub>=5,<7", "jupyterlab>=4,<5", "jupyterhub-idle-culler>=1.4,<3", "ipykernel>=6,<8",
    "pandas>=2,<4", "numpy>=1.26,<3", "matplotlib>=3.8,<4", "scikit-learn>=1.4,<2", "SQLAlchemy>=2,<3",
    "psycopg[binary]>=3.1,<4",
]
# R with its Jupyter kernel and database drivers come from Debian (r-cran-irkernel registers the "ir" kernel).
BASE_APT = ["python3-venv", "r-base-core", "r-cran-irkernel", "r-cran-dbi", "r-cran-rpostgresql"]
PROXY_NPM = "configurable-http-proxy@^5"
STAMP = ".datathon-env.json"


def replace_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a new file and rename it over `path`: an environment extended from another shares its files by hard
    links, and writing one in place would change both."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".datathon-new")
    tmp.unlink(missing_ok=True)
    with open(tmp, "xb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def step_line(console: Console, text: str) -> None:
    """A line per step where no spinner shows (a log file, CI, tmux with logging): long work is never silent."""
    if not console.is_terminal:
        console.print(f"{time.strftime('%H:%M:%S')} {text}", highlight=False, markup=False, soft_wrap=True)


def missing_apt(names: list[str]) -> list[str]:
    """The packages (name or name=version) not installed as asked."""
    missing = []
    for name in names:
        pkg, _, version = name.partition("=")
        res = subprocess.run(["dpkg-query", "-W", "-f=${Status}\t${Version}", pkg], capture_output=True, text=True)
        status, _, installed = res.stdout.partition("\t")
        if res.returncode != 0 or "install ok installed" not in status or (version and installed != version):
            missing.append(name)
    return missing


def install_apt(names: list[str], console: Console) -> None:
    if os.geteuid() != 0:
        raise ProvisionError(f"Debian packages missing: {' '.join(names)}",
                             hint=f"install them as root (apt-get install {' '.join(names)}), then run `up` again")
    step_line(console, f"apt-get install {' '.join(names)}")
    with console.status(f"apt-get install {' '.join(names)} ..."):
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *names]):
            res = subprocess.run(cmd, capture_output=True, text=True,
                                 env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            log.info("%s -> %s\n%s%s", " ".join(cmd), res.returncode, res.stdout[-4000:], res.stderr[-4000:])
            if res.returncode != 0:
                tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
                raise ProvisionError(f"`{' '.join(cmd)}` failed: {tail[0]}",
                                     hint="check the package names in workspaces.packages.apt and the network")


def datathon_requirements() -> list[str]:
    """datathon's own dependencies: teams run `datathon data pull` in their terminal (the handouts say so)."""
    try:
        reqs = importlib.metadata.requires("datathon") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return sorted(r for r in reqs if "extra ==" not in r)


def _package_files() -> list[Path]:
    root = Path(datathon.__file__).parent
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def cli_digest() -> str:
    """What datathon's code is now: the team environment's copy is refreshed when it differs."""
    root = Path(datathon.__file__).parent
    h = hashlib.sha256()
    for p in _package_files():
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class TeamEnvironment:
    ws: Workspaces

    @cached_property
    def pip(self) -> list[str]:
        return BASE_PIP + datathon_requirements() + list(self.ws.packages.pip)

    @cached_property
    def apt(self) -> list[str]:
        return BASE_APT + list(self.ws.packages.apt)

    @cached_property
    def spec(self) -> dict:
        return {"python": str(SYSTEM_PYTHON), "pip": self.pip, "npm": [PROXY_NPM], "layout": 1}

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def prefix(self) -> Path:
        return self.ws.env_root / f"env-{self.digest}"

    @property
    def bin(self) -> Path:
        return self.prefix / "bin"

    # -- which events use it: one is shared by every event of this machine with the same package list, so one
    # event's `down` must never offer it for deletion while another uses it
    @property
    def events_dir(self) -> Path:
        return self.ws.env_root / f".env-{self.digest}.events"

    def uses(self, tag: str) -> bool:
        return (self.events_dir / tag).exists()

    def register(self, tag: str, config: Path) -> None:
        self.events_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        (self.events_dir / tag).write_text(f"{config}\n")

    @staticmethod
    def recorded_uses(env_root: Path, tag: str) -> list[Path]:
        """Every environment under `env_root` this event is recorded as using (whatever its package list now)."""
        return sorted(env_root.glob(f".env-*.events/{tag}"))

    def other_users(self, tag: str) -> list[str]:
        """The event files of other events that use it (those whose file is gone no longer count)."""
        out = []
        with contextlib.suppress(OSError):
            for entry in sorted(self.events_dir.iterdir()):
                config = entry.read_text().strip()
                if entry.name != tag and Path(config).exists():
                    out.append(config)
        return out

    @property
    def proxy(self) -> Path:
        return self.prefix / "node" / "node_modules" / ".bin" / "configurable-http-proxy"

    @property
    def cli_stamp(self) -> Path:
        return self.prefix / ".datathon-cli"

    def cli_current(self) -> bool:
        try:
            return self.cli_stamp.read_text().strip() == cli_digest()
        except OSError:
            return False

    def install_cli(self) -> None:
        with self._locked():
            self._install_cli()

    def _install_cli(self) -> None:
        """Copy datathon's package into the environment (its dependencies are in the build) and put a
        `datathon` command in its bin/: a copy, not a link, because root's own Python is not readable."""
        site = next(self.prefix.glob("lib/python3*/site-packages"))
        target, staging = site / "datathon", site / ".datathon.new"
        old_umask = os.umask(0o022)
        try:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(Path(datathon.__file__).parent, staging,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
            replace_file(self.bin / "datathon",
                         f"#!{self.bin / 'python'}\nfrom datathon.cli import main\n\nmain()\n".encode(), 0o755)
            self._lab_settings()
            # the database settings for a team's Python outside the hub (runuser, cron): see the module. A .pth
            # line runs it at start (Debian's own sitecustomize comes first on the path, so not that name)
            replace_file(site / "datathon_database_env.py",
                         (Path(__file__).parent / "templates" / "datathon_database_env.py").read_bytes())
            replace_file(site / "datathon-database-env.pth", b"import datathon_database_env\n")
            # a team's server as the hub starts it (workspaces.light_start; see the module)
            replace_file(site / "datathon_singleuser.py",
                         (Path(__file__).parent / "templates" / "datathon_singleuser.py").read_bytes())
            replace_file(self.cli_stamp, (cli_digest() + "\n").encode())
        finally:
            os.umask(old_umask)

    def _lab_settings(self) -> None:
        """JupyterLab defaults for every team: no pop-up asking about news and updates on the first screen, and no
        build check when the page opens (about 0.6 s of the server's CPU per page load, to offer a rebuild of a
        JupyterLab that is root's, shared, and never rebuilt by a team)."""
        folder = self.prefix / "share" / "jupyter" / "lab" / "settings"
        folder.mkdir(parents=True, exist_ok=True)
        replace_file(folder / "overrides.json", (json.dumps(
            {"@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"}},
            indent=1) + "\n").encode())
        labconfig = self.prefix / "etc" / "jupyter" / "labconfig"
        labconfig.mkdir(parents=True, exist_ok=True)
        page = labconfig / "page_config.json"  # `jupyter labextension disable` writes here too: kept
        try:
            config = json.loads(page.read_text())
        except (OSError, json.JSONDecodeError):
            config = {}
        config.update(buildAvailable=False, buildCheck=False)
        replace_file(page, (json.dumps(config, indent=1, sort_keys=True) + "\n").encode())

    def is_built(self) -> bool:
        """Complete only once the stamp is written, as the last step of a build."""
        try:
            return json.loads((self.prefix / STAMP).read_text()) == self.spec
        except (OSError, json.JSONDecodeError):
            return False

    @contextlib.contextmanager
    def _locked(self):
        """One builder at a time: the environment is shared by every event on this machine."""
        self.ws.env_root.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(self.ws.env_root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def base(self) -> tuple[Path, list[str]] | None:
        """A built environment this one only adds pip packages to: (its prefix, the packages to add). The new one
        is then a copy of it plus those packages, not a build from nothing (seconds instead of minutes)."""
        best = None
        try:
            stamps = sorted(self.ws.env_root.glob(f"env-*/{STAMP}"))
        except OSError:
            return None
        for stamp in stamps:
            try:
                spec = json.loads(stamp.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            same = {k: v for k, v in spec.items() if k != "pip"} == {k: v for k, v in self.spec.items() if k != "pip"}
            have = spec.get("pip", [])
            if stamp.parent == self.prefix or not same or not set(have) < set(self.pip):
                continue
            added = [p for p in self.pip if p not in have]
            if best is None or len(added) < len(best[1]):
                best = (stamp.parent, added)
        return best

    def build(self, console: Console) -> None:
        with self._locked():
            if not self.is_built():  # another event's `up` may have built it while we waited
                base = self.base()
                if base is not None:
                    self._extend(*base, console)
                else:
                    self._build(console)

    def _extend(self, base: Path, added: list[str], console: Console) -> None:
        """A copy of `base` made of hard links (seconds for 900 MB; a venv names its own folder in its scripts:
        those are rewritten), then pip installs only `added`; checked and stamped like a full build. Switching is
        the hub's restart. A file shared by the two is never written in place: pip removes and creates files,
        and datathon's own writes go to a new file renamed over the old name (replace_file)."""
        old_umask = os.umask(0o022)
        try:
            if self.prefix.exists():  # a half-made one (no stamp): made again
                shutil.rmtree(self.prefix)
            py = str(self.bin / "python")
            steps = [(f"copying {base.name}", lambda: self._copy_from(base)),
                     (f"installing only the added package(s): {' '.join(added)}",
                      lambda: self._run([py, "-m", "pip", "install", "--progress-bar", "off", *added],
                                        f"installing {' '.join(added)}"))]
            with console.status("extending the team environment ...") as status:
                for i, (label, step) in enumerate(steps, 1):
                    status.update(f"team environment {self.prefix}: {label} ...")
                    step_line(console, f"team environment {self.prefix} [{i}/{len(steps)}]: {label}")
                    step()
            step_line(console, f"team environment {self.prefix}: checking the kernels and R's drivers")
            self._verify()
            self._install_cli()
            replace_file(self.prefix / STAMP, (json.dumps(self.spec, sort_keys=True) + "\n").encode())
        finally:
            os.umask(old_umask)

    def _copy_from(self, base: Path) -> None:
        res = subprocess.run(["cp", "-a", "--link", str(base), str(self.prefix)], capture_output=True, text=True)
        if res.returncode != 0:
            raise ProvisionError(f"copying the team environment {base} failed: {res.stderr.strip()[-300:]}",
                                 hint="check the free disk space under workspaces.env_root, then run `up` again")
        (self.prefix / STAMP).unlink(missing_ok=True)  # not complete until this build stamps it
        self.cli_stamp.unlink(missing_ok=True)
        old, new = str(base).encode(), str(self.prefix).encode()
        # the scripts' #! lines, activate*, pyvenv.cfg: every text file of bin/ and the venv's own config
        for path in [*self.bin.iterdir(), self.prefix / "pyvenv.cfg"]:
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            if old in data and b"\0" not in data[:4096]:
                replace_file(path, data.replace(old, new), path.stat().st_mode & 0o7777)

    def _build(self, console: Console) -> None:
        if not SYSTEM_PYTHON.exists():
            raise ProvisionError(f"{SYSTEM_PYTHON} is missing", hint="apt-get install python3 python3-venv")
        if shutil.which("npm") is None:
            install_apt(["npm"], console)
        old_umask = os.umask(0o022)  # every file world-readable: team users run them
        try:
            self.ws.env_root.mkdir(parents=True, exist_ok=True)
            # A venv cannot be moved (its scripts name their folder), so it is built in place; a half-built one
            # (no stamp) is removed and started again.
            if self.prefix.exists():
                shutil.rmtree(self.prefix)
            py = str(self.bin / "python")
            steps = [
                ("creating the venv", [str(SYSTEM_PYTHON), "-m", "venv", str(self.prefix)]),
                ("upgrading pip", [py, "-m", "pip", "install", "-q", "--upgrade", "pip"]),
                (f"installing {len(self.pip)} Python packages", [py, "-m", "pip", "install", "--progress-bar", "off",
                                                                 *self.pip]),
                ("installing configurable-http-proxy", ["npm", "install", "--no-audit", "--no-fund", "--silent",
                                                        "--prefix", str(self.prefix / "node"), PROXY_NPM]),
            ]
            with console.status("building the team environment ...") as status:
                for i, (label, cmd) in enumerate(steps, 1):
                    status.update(f"team environment {self.prefix}: {label} ...")
                    step_line(console, f"team environment {self.prefix} [{i}/{len(steps)}]: {label}")
                    self._run(cmd, label)
            step_line(console, f"team environment {self.prefix}: checking the kernels and R's drivers")
            self._verify()
            self._install_cli()
            (self.prefix / STAMP).write_text(json.dumps(self.spec, sort_keys=True) + "\n")
        finally:
            os.umask(old_umask)

    def _run(self, cmd: list[str], label: str) -> None:
        res = subprocess.run(cmd, capture_output=True, text=True)
        log.info("%s -> %s\n%s%s", " ".join(cmd), res.returncode, res.stdout[-8000:], res.stderr[-8000:])
        if res.returncode != 0:
            lines = [x for x in (res.stderr or res.stdout).strip().splitlines() if x.strip()]
            raise ProvisionError(f"building the team environment failed while {label}: "
                                 f"{lines[-1] if lines else 'no output'}",
                                 hint="see the log file for the full output; fix it (a package name in "
                                      "workspaces.packages?) and run `datathon up` again")

    def _verify(self) -> None:
        """Both kernels must exist and R must load its database drivers, else teams find out on event day."""
        res = subprocess.run([str(self.bin / "jupyter"), "kernelspec", "list", "--json"], capture_output=True,
                             text=True)
        kernels = json.loads(res.stdout or "{}").get("kernelspecs", {}) if res.returncode == 0 else {}
        for name in ("python3", "ir"):
            if name not in kernels:
                raise ProvisionError(f"the team environment has no {name!r} Jupyter kernel",
                                     hint="for R: apt-get install r-cran-irkernel; then run `datathon up` again")
        self._run(["Rscript", "-e", "suppressMessages({library(IRkernel); library(DBI); library(RPostgreSQL)})"],
                  "loading R's IRkernel, DBI and RPostgreSQL")
        if not self.proxy.exists():
            raise ProvisionError(f"configurable-http-proxy is missing at {self.proxy}",
                                 hint="check that npm can reach its registry, then run `datathon up` again")
