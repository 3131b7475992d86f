"""An existing PostgreSQL server (on-premise, or RDS reached from its network or through an SSH jump host):
datathon adopts it and manages only the event's roles, databases, schemas and grants, as a client. It never
stops or deletes it."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from datathon.core.context import Context
from datathon.core.endpoint import Endpoint
from datathon.core.plan import Change
from datathon.core.status import ComponentStatus
from datathon.database.server import DatabaseServer, ServerTraits
from datathon.database.tunnel import SshTunnel, TunnelSpec, tunnel_for
from datathon.errors import ProvisionError


class ExternalServer(DatabaseServer):
    kind = "external"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.cfg = ctx.config.database

    @cached_property
    def params(self) -> dict:
        """The admin's connection parameters (no password)."""
        return conninfo_to_dict(self.cfg.admin_dsn or "")

    @cached_property
    def _tunnel(self) -> SshTunnel | None:
        if self.cfg.tunnel is None:
            return None
        t = self.cfg.tunnel
        spec = TunnelSpec.parse(t.ssh, self._path(t.identity_file),
                                self._path(t.known_hosts) if t.known_hosts else None, self.ctx.state.root)
        return tunnel_for(spec, self.host, int(self.params.get("port") or 5432))

    def _path(self, path: Path) -> Path:
        path = path.expanduser()
        return path if path.is_absolute() else self.ctx.loaded.base_dir / path

    @property
    def host(self) -> str:
        return str(self.params.get("host") or "localhost")

    def _local(self) -> dict[str, str | int]:
        """How this machine reaches the server: through the tunnel's local port (the certificate still checked
        against the server's own name), or as admin_dsn says."""
        out: dict[str, str | int] = {}
        if self._tunnel is not None:
            out = {"hostaddr": "127.0.0.1", "port": self._tunnel.open()}
        if self.cfg.ca_file is not None and "sslrootcert" not in self.params:
            out["sslrootcert"] = str(self._path(self.cfg.ca_file))
        if self.cfg.ca_file is not None and "sslmode" not in self.params:
            out["sslmode"] = self.cfg.sslmode
        return out

    def _password(self) -> str | None:
        path = self.cfg.admin_password_file
        if path is None:
            return None  # libpq falls back to PGPASSWORD / ~/.pgpass
        path = self._path(path)
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ProvisionError(f"cannot read database.admin_password_file {path}: {exc.strerror}",
                                 hint="create it (mode 0600) holding only the admin password") from None

    @property
    def where(self) -> str:
        via = f" through {self._tunnel.where}" if self._tunnel else ""
        return f"{self.host}:{self.params.get('port', 5432)}{via}"

    def connect(self, dbname: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
        params = {**self.params, **self._local()}
        if dbname:
            params["dbname"] = dbname
        password = self._password()
        if password is not None:
            params["password"] = password
        params.setdefault("connect_timeout", 10)
        params.setdefault("application_name", "datathon")
        try:
            return psycopg.connect(**params, autocommit=autocommit)
        except psycopg.OperationalError as exc:
            raise ProvisionError(
                f"cannot connect to the database server at {self.where}: {str(exc).strip().splitlines()[-1]}",
                hint="check database.admin_dsn, the admin password and that this machine may reach the server",
            ) from None

    def _admin_rights(self) -> tuple[str, bool, bool, bool, str]:
        with self.connect(autocommit=True) as conn:
            return conn.execute(
                "SELECT current_user, rolsuper, rolcreaterole, rolcreatedb, current_setting('server_version')"
                " FROM pg_roles WHERE rolname = current_user"
            ).fetchone()

    @property
    def traits(self) -> ServerTraits:
        return ServerTraits(removed_with_event=False, controls_hba=False)

    def observe(self) -> tuple[str, bool, bool, bool, str]:
        """The admin role's rights and the server's version (connecting is the only way to know)."""
        return self._admin_rights()

    def plan(self, facts: tuple[str, bool, bool, bool, str]) -> list[Change]:
        user, superuser, createrole, createdb, version = facts
        if not (superuser or createrole):
            return [Change("server", self.where, "blocked",
                           f"the admin role {user} may not create roles; give it CREATEROLE (on RDS: the master user)")]
        detail = "superuser" if superuser else "CREATEROLE" + (", CREATEDB" if createdb else "")
        return [Change("server", self.where, "keep",
                       f"PostgreSQL {version}, adopted (datathon manages the event's roles and databases only); "
                       f"admin {user} ({detail})")]

    def exists(self) -> bool:
        return True

    def is_reachable(self) -> bool:
        try:
            self.connect(autocommit=True).close()
        except ProvisionError:
            return False
        return True

    def cli_env(self, dbname: str) -> dict[str, str]:
        names = {"host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "user": "PGUSER",
                 "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT"}
        params = {**self.params, **self._local()}
        env = {var: str(params[k]) for k, var in names.items() if k in params}
        password = self._password()
        if password is not None:
            env["PGPASSWORD"] = password
        return {**env, "PGDATABASE": dbname}

    def endpoint(self) -> Endpoint:
        host = self.cfg.public_host or self.host
        return Endpoint(host=host, port=int(self.params.get("port") or 5432), sslmode=self.cfg.sslmode,
                        ca_cert=self._path(self.cfg.ca_file) if self.cfg.ca_file else None)

    def reach(self) -> Endpoint:
        ep = self.endpoint()
        if self._tunnel is None:
            return ep
        return Endpoint(host=self.host, port=self._tunnel.open(), sslmode=ep.sslmode, ca_cert=ep.ca_cert,
                        hostaddr="127.0.0.1")

    def close(self) -> None:
        if self.cfg.tunnel is not None and self._tunnel is not None:
            self._tunnel.close()

    def status(self) -> list[ComponentStatus]:
        try:
            user, superuser, createrole, _, version = self._admin_rights()
        except ProvisionError as exc:
            return [ComponentStatus("database", "external server", "unreachable", exc.message, healthy=False)]
        return [ComponentStatus("database", "external server", "reachable",
                                f"PostgreSQL {version} at {self.where}, admin {user}"
                                f"{' (superuser)' if superuser else ''}",
                                healthy=superuser or createrole)]

    def teardown(self) -> list[Change]:
        return []  # not ours: only the event's roles and databases go (tenancy teardown)

    def leftovers(self) -> list[str]:
        return []
