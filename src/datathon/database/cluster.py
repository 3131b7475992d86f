"""The managed PostgreSQL cluster of the `local` provider: initdb, TLS, settings, start/stop, health.

It runs as an unprivileged OS user (`postgres` when datathon runs as root) in its own session, so it outlives
the datathon process that started it. The admin superuser reaches it over a Unix socket that only the server's
OS user and root can open; teams reach it over TCP with TLS and scram-sha-256, nothing else.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import psycopg

from datathon.core import procs
from datathon.core import roster as roles
from datathon.core.context import Context
from datathon.core.endpoint import Endpoint
from datathon.core.fsutil import write_owned
from datathon.core.plan import Change
from datathon.core.procs import process_alive
from datathon.core.state import SYSTEM_ROOT
from datathon.core.status import ComponentStatus
from datathon.database.server import DatabaseServer, ServerTraits
from datathon.database.tenancy import wanted_logins
from datathon.database.tls import self_signed_certificate
from datathon.errors import ConfigError, ProvisionError

ADMIN_USER = "datathon"
PG_CTL_TIMEOUT = 60  # seconds pg_ctl waits for start/stop


def machine_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def sized_settings(*, memory_bytes: int, max_connections: int) -> dict[str, str]:
    """Memory settings for a server shared with the teams' notebooks (not a dedicated database host)."""
    mb = memory_bytes // 2**20

    def clamp(v: int, lo: int, hi: int) -> int:
        return max(lo, min(hi, v))

    return {
        # Bulk loads: at wal_level=minimal a table created and filled in one transaction writes no WAL, and
        # fewer checkpoints interrupt a long load. (No streaming replicas: the archive verb takes backups.)
        "wal_level": "minimal",
        "max_wal_senders": "0",
        "max_wal_size": "4GB",
        "checkpoint_timeout": "15min",
        "max_connections": str(max_connections),
        "shared_buffers": f"{clamp(mb // 8, 128, 8192)}MB",
        "effective_cache_size": f"{max(mb // 2, 512)}MB",
        "maintenance_work_mem": f"{clamp(mb // 32, 64, 2048)}MB",
    }


# max_connections takes effect only on a restart, which ends every team's session. So the cluster is sized with
# room to spare (a quarter more than the logins' limits need, rounded up to a step) and never shrunk: adding a team
# or a mentor on event day fits in the room left and changes nothing that needs a restart.
CONNECTION_STEP = 50
CONNECTION_SPARE = 1.25
# Settings PostgreSQL reads only at start (context 'postmaster'); what the server says when it runs wins.
RESTART_SETTINGS = frozenset({"listen_addresses", "port", "max_connections", "shared_buffers", "wal_level",
                              "max_wal_senders", "unix_socket_directories", "unix_socket_permissions"})


def sized_max_connections(needed: int, current: int | None = None) -> int:
    """Room for `needed` connections: the current setting when it has room (no restart), else `needed` plus a
    quarter, rounded up to a step of CONNECTION_STEP."""
    if current is not None and current >= needed:
        return current
    return -(-int(needed * CONNECTION_SPARE) // CONNECTION_STEP) * CONNECTION_STEP


def find_bin_dir(configured: Path | None) -> Path:
    if configured:
        if not (configured / "initdb").exists():
            raise ConfigError(f"database.bin_dir {configured} has no initdb",
                              hint="point it at PostgreSQL's bin folder")
        return configured
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    which = shutil.which("initdb")
    if which:
        return Path(which).resolve().parent
    raise ConfigError(
        "PostgreSQL server programs (initdb, pg_ctl) were not found",
        hint="install them with `apt-get install postgresql-15` (the README's set-up does this)",
    )


def _quote(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class ClusterFacts:
    """What the managed cluster looks like on disk and in the process table, read without changing anything."""

    initialised: bool
    tls_present: bool
    settings_text: str | None  # datathon.conf as written
    hba_text: str | None  # pg_hba.conf as written
    pid: int | None
    memory_bytes: int  # this machine's memory, which the settings are sized from
    version: str  # the PostgreSQL major version of the server programs
    # when it runs: the settings it reads only at start (its own list), those changed but waiting for a restart,
    # and the client sessions a restart would end
    restart_settings: frozenset[str] = RESTART_SETTINGS
    pending_restart: frozenset[str] = frozenset()
    sessions: int = 0


def _settings_of(text: str | None) -> dict[str, str]:
    current: dict[str, str] = {}
    for line in (text or "").splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            current[k.strip()] = v.strip()
    return current


class ManagedCluster(DatabaseServer):
    kind = "managed"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.cfg = ctx.config.database

    # -- where things are ------------------------------------------------------------------------
    @cached_property
    def os_user(self) -> pwd.struct_passwd:
        if os.geteuid() != 0:
            return pwd.getpwuid(os.geteuid())
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise ProvisionError(
                "the OS user 'postgres' that runs the managed cluster does not exist",
                hint="install PostgreSQL with `apt-get install postgresql-15` (it creates the user)",
            ) from None

    @cached_property
    def home(self) -> Path:
        """The cluster's folder: pgdata/ and server.log. Reachable by the server's OS user."""
        if self.cfg.data_dir:
            return self.cfg.data_dir.resolve()
        if os.geteuid() != 0:
            return self.ctx.state.root / "postgres"
        # root's files (and often the event folder) are not readable by `postgres`: keep the cluster in
        # /var/lib, one folder per event file so two checkouts never share a cluster.
        return self.ctx.state.system_dir()

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    @property
    def socket_dir(self) -> Path:
        return self.pgdata

    @cached_property
    def bin_dir(self) -> Path:
        return find_bin_dir(self.cfg.bin_dir)

    @property
    def ca_cert(self) -> Path:
        return self.ctx.state.root / "server.crt"

    # -- facts -----------------------------------------------------------------------------------
    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def pid(self) -> int | None:
        """The postmaster's pid when it is alive, read from postmaster.pid."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def running_port(self) -> int:
        """The port the running server listens on (postmaster.pid, line 4); the configured one otherwise.
        They differ between writing a new port to the settings and the restart that applies it."""
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split("\n")[3])
        except (OSError, ValueError, IndexError):
            return self.cfg.port

    def running(self) -> bool:
        return self.pid() is not None

    @property
    def traits(self) -> ServerTraits:
        return ServerTraits(removed_with_event=True, controls_hba=True, os_user=self.os_user,
                            memory_bytes=machine_memory_bytes(), bin_dir=self.bin_dir)

    def desired_settings(self, memory_bytes: int | None = None, current_max: str | None = None) -> dict[str, str]:
        """`current_max`: max_connections as written now (kept while it has room: see sized_max_connections)."""
        config = self.ctx.config
        limits = sum(login.policy.connection_limit for login in wanted_logins(config))
        current = int(current_max) if current_max and current_max.isdigit() else None
        settings = {
            "listen_addresses": _quote(",".join(self.cfg.listen_addresses)),
            "port": str(self.cfg.port),
            "unix_socket_directories": _quote(str(self.socket_dir)),
            "unix_socket_permissions": "0700",
            "password_encryption": "'scram-sha-256'",
            "ssl": "on",
            "ssl_cert_file": "'server.crt'",
            "ssl_key_file": "'server.key'",
            "ssl_min_protocol_version": "'TLSv1.2'",
            # The audit trail a data use agreement asks for: who connected, from where, when.
            "log_connections": "on",
            "log_disconnections": "on",
            "log_line_prefix": "'%m [%p] %q%u@%d %r '",
            "log_timezone": "'UTC'",
            # Kept for the whole event: a file per day or per 100 MB, none ever deleted by the server
            # (`audit export` reads them all; `down` exports them into the archive before the cluster goes).
            "logging_collector": "on",
            "log_directory": "'log'",
            "log_filename": "'server-%Y-%m-%d_%H%M%S.log'",
            "log_rotation_age": "'1d'",
            "log_rotation_size": "'100MB'",
            "log_truncate_on_rotation": "off",
            "log_file_mode": "0600",
            **sized_settings(memory_bytes=memory_bytes or machine_memory_bytes(),
                             max_connections=sized_max_connections(max(20, limits + 10), current)),
        }
        for key, value in self.cfg.settings.items():
            if isinstance(value, bool):
                value = "on" if value else "off"
            settings[key] = str(value) if isinstance(value, int | float) else _quote(str(value))
        return settings

    def settings_text(self, memory_bytes: int | None = None, current_max: str | None = None) -> str:
        lines = ["# Written by datathon from datathon.yaml; `datathon up` overwrites it."]
        lines += [f"{k} = {v}" for k, v in self.desired_settings(memory_bytes, current_max).items()]
        return "\n".join(lines) + "\n"

    def hba_text(self) -> str:
        config = self.ctx.config
        dbs = ",".join(d.name for d in config.databases)
        groups = f"+{roles.teams_group(config.event)},+{roles.mentors_group(config.event)}"
        lines = [
            "# Written by datathon; `datathon up` overwrites it.",
            "# The administrator over the Unix socket (0700: only the server's OS user and root reach it).",
            f"local all {ADMIN_USER} scram-sha-256",
            "# Teams as themselves over the same socket: `archive verify` and `restore` run a team's code (its",
            "# constraints, index expressions) only with the team's own rights, in scratch databases too.",
            f"local all +{roles.teams_group(config.event)} scram-sha-256",
            "# Teams and mentors: TLS only, their event databases only, from the allowed networks.",
        ]
        lines += [f"hostssl {dbs} {groups} {net} scram-sha-256" for net in self.cfg.allow_from]
        lines.append("# Anything else is refused (no line matches).")
        return "\n".join(lines) + "\n"

    def _current(self, name: str) -> str | None:
        try:
            return (self.pgdata / name).read_text()
        except OSError:
            return None

    # -- observe / plan -----------------------------------------------------------------------------
    def observe(self) -> ClusterFacts:
        facts = ClusterFacts(
            initialised=self.initialised(),
            tls_present=self.ca_cert.exists() and (self.pgdata / "server.key").exists(),
            settings_text=self._current("datathon.conf"), hba_text=self._current("pg_hba.conf"),
            pid=self.pid(), memory_bytes=machine_memory_bytes(), version=self.bin_dir.parent.name)
        if facts.pid is not None and facts.initialised:
            try:
                with self.connect(autocommit=True) as conn:
                    facts = dataclasses.replace(
                        facts,
                        restart_settings=frozenset(r[0] for r in conn.execute(
                            "SELECT name FROM pg_settings WHERE context = 'postmaster'")),
                        pending_restart=frozenset(r[0] for r in conn.execute(
                            "SELECT name FROM pg_settings WHERE pending_restart")),
                        sessions=conn.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                            " AND pid <> pg_backend_pid()").fetchone()[0])
            except ProvisionError:
                pass  # not answering: planned from the static list; `start`/status say the rest
        return facts

    def plan(self, facts: ClusterFacts) -> list[Change]:
        where = f"PostgreSQL {facts.version} in {self.pgdata}"
        if not facts.initialised:
            return [
                Change("cluster", "managed cluster", "create", f"initdb {where}, TLS, scram-sha-256",
                       run=self._initdb),
                Change("cluster", "settings", "update", "write datathon.conf and pg_hba.conf",
                       run=self._configure),
                Change("cluster", "managed cluster", "start",
                       f"listen on {','.join(self.cfg.listen_addresses)}:{self.cfg.port}", run=self._start),
            ]
        changes: list[Change] = []
        if not facts.tls_present:
            changes.append(Change("cluster", "TLS certificate", "create", "certificate missing", run=self._write_tls))
        current = _settings_of(facts.settings_text)
        desired = self.desired_settings(facts.memory_bytes, current.get("max_connections"))
        changed = sorted(k for k in desired.keys() | current.keys() if desired.get(k) != current.get(k))
        if changed or facts.hba_text != self.hba_text():
            what = ", ".join(changed) if changed else "pg_hba.conf"
            changes.append(Change("cluster", "settings", "update", f"changed: {what}", run=self._configure))
        else:
            changes.append(Change("cluster", "settings", "keep", "datathon.conf and pg_hba.conf up to date"))
        if facts.pid is None:
            changes.append(Change("cluster", "managed cluster", "start", f"stopped; data in {self.pgdata}",
                                  run=self._start))
            return changes
        restart = sorted(facts.pending_restart | (set(changed) & facts.restart_settings))
        if restart:
            # destructive: it ends every session (a team's running query, each notebook's connection), so `up`
            # shows it and asks, even when nothing is deleted
            changes.append(Change("cluster", "managed cluster", "restart",
                                  f"{', '.join(restart)} take effect only on a restart, which ends the "
                                  f"{facts.sessions} open session(s) of teams and mentors",
                                  run=self._restart, destructive=True))
        else:
            changes.append(Change("cluster", "managed cluster", "keep",
                                  f"running (pid {facts.pid}, port {self.cfg.port})"))
        return changes

    # -- actions ---------------------------------------------------------------------------------
    def _as_server_user(self, args: list[str], *, timeout: int = 120,
                        check: bool = True) -> subprocess.CompletedProcess:
        env = {"PATH": f"{self.bin_dir}:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "HOME": self.os_user.pw_dir}
        kwargs: dict = {}
        if os.geteuid() == 0:
            kwargs = {"user": self.os_user.pw_uid, "group": self.os_user.pw_gid, "extra_groups": []}
        try:
            proc = subprocess.run(
                [str(self.bin_dir / args[0]), *args[1:]],
                cwd=self.home, env=env, capture_output=True, text=True, timeout=timeout,
                start_new_session=True,  # the server must not die with this process's terminal
                stdin=subprocess.DEVNULL, **kwargs,
            )
        except subprocess.TimeoutExpired:
            raise ProvisionError(f"{args[0]} did not finish within {timeout}s", hint=f"see {self.log_file}") from None
        if check and proc.returncode != 0:
            raise ProvisionError(
                f"{args[0]} failed: {(proc.stderr or proc.stdout).strip()[-800:]}",
                hint=f"the server log is {self.log_file}",
            )
        return proc

    def _write_owned(self, path: Path, data: bytes) -> None:
        """Write a file in a folder the server's OS user owns, never following a link that user planted."""
        write_owned(path, data, uid=self.os_user.pw_uid, gid=self.os_user.pw_gid)

    def _own(self, path: Path, mode: int) -> None:
        if path.is_symlink():
            raise ProvisionError(f"{path} is a symbolic link where datathon expects its own file or folder",
                                 hint="remove it (someone else put it there), then run `datathon up` again")
        if os.geteuid() == 0:
            os.chown(path, self.os_user.pw_uid, self.os_user.pw_gid)
        os.chmod(path, mode)

    def _prepare_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if self.home.parent == SYSTEM_ROOT:
            os.chmod(SYSTEM_ROOT, 0o755)
        self._own(self.home, 0o700)
        probe = subprocess.run(["test", "-x", str(self.home)], user=self.os_user.pw_uid if os.geteuid() == 0 else None)
        if probe.returncode != 0:
            raise ProvisionError(
                f"the server's OS user {self.os_user.pw_name!r} cannot reach {self.home}",
                hint="set database.data_dir to a folder every user can traverse, e.g. /var/lib/datathon/<event>",
            )

    def _initdb(self) -> None:
        self._prepare_home()
        staging = self.home / "pgdata.initdb"
        if staging.exists():
            shutil.rmtree(staging)  # a half-made cluster from an interrupted run: start again
        pwfile = self.home / ".pwfile"
        self._write_owned(pwfile, (self.ctx.state.secret("admin") + "\n").encode())
        try:
            self._as_server_user([
                "initdb", "-D", str(staging), "-U", ADMIN_USER, f"--pwfile={pwfile}",
                # Collation "C": the same order as C.UTF-8 (code points, which is byte order in UTF-8), but
                # PostgreSQL knows it needs no strcoll: text sorts use abbreviated keys (index builds, ORDER BY)
                # and no glibc upgrade can reorder an index. Character classes stay UTF-8 aware (ctype).
                "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--lc-collate=C",
            ])
        finally:
            pwfile.unlink(missing_ok=True)
        with open(staging / "postgresql.conf", "a") as fh:
            fh.write("\n# datathon's settings\ninclude_if_exists = 'datathon.conf'\n")
        staging.rename(self.pgdata)  # only a complete cluster ever sits at pgdata/
        self._write_tls()

    def _write_tls(self) -> None:
        hosts = [h for h in self.cfg.listen_addresses if h != "*"]
        if self.cfg.public_host:
            hosts.append(self.cfg.public_host)
        cert, key = self_signed_certificate(hosts, common_name=f"datathon {self.ctx.config.event}")
        for name, data in (("server.crt", cert), ("server.key", key)):
            path = self.pgdata / name
            self._write_owned(path, data)
        self.ctx.state.ensure_dirs()
        self.ca_cert.write_bytes(cert)
        os.chmod(self.ca_cert, 0o644)

    def _write_server_file(self, name: str, text: str) -> None:
        self._write_owned(self.pgdata / name, text.encode())

    def _configure(self) -> None:
        """Write the settings and reload them. What needs a restart waits for the plan's own restart change (shown
        and asked for): a reload never ends a session."""
        current = _settings_of(self._current("datathon.conf")).get("max_connections")
        self._write_server_file("datathon.conf", self.settings_text(current_max=current))
        self._write_server_file("pg_hba.conf", self.hba_text())
        if not self.running():
            return
        self._as_server_user(["pg_ctl", "reload", "-D", str(self.pgdata), "-s"])
        time.sleep(0.2)  # the postmaster re-reads its files asynchronously after SIGHUP

    def _restart(self) -> None:
        self._stop()
        self._start()

    def preflight(self) -> list[str]:
        """database.port on every listen address: free, or held by this cluster's own postmaster."""
        ours = {pid} if (pid := self.pid()) else set()
        out = []
        for addr in self.cfg.listen_addresses:
            host = None if addr == "*" else ("127.0.0.1" if addr == "localhost" else addr)
            who = procs.others_on_port(self.cfg.port, host, ours)
            if who:
                out.append(f"database.port {self.cfg.port} on {host or 'every address'} is held by {', '.join(who)}"
                           ": stop that program, or set database.port to a free port")
        return out

    def _check_port_free(self) -> None:
        for addr in self.cfg.listen_addresses:
            host = "0.0.0.0" if addr == "*" else ("127.0.0.1" if addr == "localhost" else addr)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, self.cfg.port))
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        raise ProvisionError(
                            f"port {self.cfg.port} on {host} is already in use by another program",
                            hint="stop that program or set database.port in datathon.yaml to a free port",
                        ) from None
                    if exc.errno == errno.EADDRNOTAVAIL:
                        raise ProvisionError(
                            f"this machine has no address {host} (database.listen_addresses)",
                            hint="list only addresses of this machine, or 127.0.0.1",
                        ) from None
                    raise

    def _start(self) -> None:
        if self.running():
            return
        self._check_port_free()
        if not self.log_file.exists():
            self.log_file.touch(mode=0o600)
            self._own(self.log_file, 0o600)
        proc = self._as_server_user(
            ["pg_ctl", "start", "-D", str(self.pgdata), "-l", str(self.log_file), "-w",
             "-t", str(PG_CTL_TIMEOUT), "-s"], check=False, timeout=PG_CTL_TIMEOUT + 10,
        )
        if proc.returncode != 0:
            raise ProvisionError(
                f"the managed cluster did not start: {self._log_tail()}",
                hint=f"read {self.log_file}; fix the setting it names in datathon.yaml, then run `datathon up` again",
            )

    def _log_tail(self, lines: int = 5) -> str:
        try:
            newest = max((p for p in self.log_files() if p.exists()), key=lambda p: p.stat().st_mtime)
            tail = newest.read_text(errors="replace").strip().splitlines()[-lines:]
        except (OSError, ValueError):
            return "(no server log)"
        return " | ".join(tail)

    def _stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        proc = self._as_server_user(["pg_ctl", "stop", "-D", str(self.pgdata), "-m", "fast", "-w",
                                     "-t", str(PG_CTL_TIMEOUT), "-s"], check=False, timeout=PG_CTL_TIMEOUT + 10)
        if proc.returncode != 0 and self.running():
            self._as_server_user(["pg_ctl", "stop", "-D", str(self.pgdata), "-m", "immediate", "-w", "-s"])
        # pg_ctl returns once the pid file is gone; the postmaster may still be exiting. Wait, with a bound.
        deadline = time.monotonic() + PG_CTL_TIMEOUT
        while process_alive(pid):
            if time.monotonic() > deadline:
                raise ProvisionError(f"the server process {pid} did not exit", hint=f"kill {pid}, then retry")
            time.sleep(0.05)

    def _remove(self) -> None:
        self._stop()
        shutil.rmtree(self.home, ignore_errors=False)
        self.ca_cert.unlink(missing_ok=True)

    # -- DatabaseServer --------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.initialised()

    def is_reachable(self) -> bool:
        return self.initialised() and self.running()

    def connect(self, dbname: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
        try:
            return psycopg.connect(
                host=str(self.socket_dir), port=self.running_port(), user=ADMIN_USER,
                password=self.ctx.state.secret("admin", create=False) or "",
                dbname=dbname or "postgres", autocommit=autocommit, connect_timeout=10,
                application_name="datathon",
            )
        except psycopg.OperationalError as exc:
            raise ProvisionError(
                f"cannot connect to the managed cluster as its administrator: {str(exc).strip()}",
                hint="run `datathon status` to see whether it is running, then `datathon up`",
            ) from None

    def cli_env(self, dbname: str) -> dict[str, str]:
        return {"PGHOST": str(self.socket_dir), "PGPORT": str(self.running_port()), "PGUSER": ADMIN_USER,
                "PGPASSWORD": self.ctx.state.secret("admin", create=False) or "", "PGDATABASE": dbname}

    def endpoint(self) -> Endpoint:
        host = self.cfg.public_host
        if not host:
            first = self.cfg.listen_addresses[0]
            host = {"*": socket.gethostname(), "localhost": "127.0.0.1"}.get(first, first)
        return Endpoint(host=host, port=self.cfg.port, sslmode=self.cfg.sslmode,
                        ca_cert=self.ca_cert if self.ca_cert.exists() else None)

    def status(self) -> list[ComponentStatus]:
        if not self.initialised():
            return [ComponentStatus("database", "managed cluster", "missing", "run `datathon up`", healthy=False)]
        pid = self.pid()
        if pid is None:
            return [ComponentStatus("database", "managed cluster", "stopped",
                                    f"data in {self.pgdata}; `datathon up` starts it", healthy=False)]
        try:
            with self.connect(autocommit=True) as conn:
                row = conn.execute(
                    "SELECT current_setting('server_version'), pg_postmaster_start_time()::timestamp(0)::text,"
                    " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),"
                    " current_setting('max_connections'), current_setting('ssl')"
                ).fetchone()
        except ProvisionError as exc:
            return [ComponentStatus("database", "managed cluster", "error", exc.message, healthy=False)]
        version, since, conns, maxconn, ssl = row
        version = version.split(" ")[0]  # "15.18 (Debian 15.18-0+deb12u1)" -> "15.18"
        ep = self.endpoint()
        return [ComponentStatus(
            "database", "managed cluster", "running",
            f"PostgreSQL {version} on {ep.host}:{ep.port}, pid {pid}, up since {since}, "
            f"{conns}/{maxconn} connections, TLS {ssl}",
            extra={"pid": pid, "port": ep.port, "data_dir": str(self.pgdata), "log": str(self.log_file),
                   "version": version, "connections": conns, "ssl": ssl},
        )]

    def log_files(self) -> list[Path]:
        """pg_ctl's start-up log, then the collector's files (their names sort by time)."""
        return [self.log_file, *sorted((self.pgdata / "log").glob("server-*.log"))]

    def teardown(self) -> list[Change]:
        if not self.home.exists():
            return [Change("cluster", "managed cluster", "keep", "no cluster on disk")]
        return [Change("cluster", "managed cluster", "drop", f"stop the server and delete {self.home}",
                       run=self._remove, destructive=True)]

    def leftovers(self) -> list[str]:
        left = []
        if self.home.exists():
            left.append(f"folder {self.home}")
        pid = self.pid()
        if pid:
            left.append(f"server process {pid}")
        for addr in self.cfg.listen_addresses:
            host = "127.0.0.1" if addr in ("*", "localhost") else addr
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
                s.settimeout(1)
                if s.connect_ex((host, self.cfg.port)) == 0:
                    left.append(f"something still listens on {host}:{self.cfg.port}")
        return left
