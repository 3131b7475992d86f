"""An existing PostgreSQL server (on-premise, or RDS reached from its network): datathon adopts it and
manages only the event's roles, databases, schemas and grants, as a client. It never stops or deletes it."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict

from datathon.core.context import Context
from datathon.core.endpoint import Endpoint
from datathon.core.plan import Change
from datathon.core.status import ComponentStatus
from datathon.database.server import DatabaseServer, ServerTraits
from datathon.errors import ProvisionError


class ExternalServer(DatabaseServer):
    kind = "external"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.cfg = ctx.config.database
        self.params = conninfo_to_dict(self.cfg.admin_dsn or "")

    def _password(self) -> str | None:
        path = self.cfg.admin_password_file
        if path is None:
            return None  # libpq falls back to PGPASSWORD / ~/.pgpass
        path = path if path.is_absolute() else self.ctx.loaded.base_dir / path
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ProvisionError(f"cannot read database.admin_password_file {path}: {exc.strerror}",
                                 hint="create it (mode 0600) holding only the admin password") from None

    @property
    def where(self) -> str:
        return f"{self.params.get('host', 'localhost')}:{self.params.get('port', 5432)}"

    def connect(self, dbname: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
        params = dict(self.params)
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
        names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "sslmode": "PGSSLMODE",
                 "sslrootcert": "PGSSLROOTCERT"}
        env = {var: str(self.params[k]) for k, var in names.items() if k in self.params}
        password = self._password()
        if password is not None:
            env["PGPASSWORD"] = password
        return {**env, "PGDATABASE": dbname}

    def endpoint(self) -> Endpoint:
        host = self.cfg.public_host or self.params.get("host") or "localhost"
        return Endpoint(host=host, port=int(self.params.get("port") or 5432), sslmode=self.cfg.sslmode)

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
