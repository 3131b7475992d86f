"""The event file as pydantic models. Unknown keys are rejected everywhere (extra="forbid")."""

from __future__ import annotations

import ipaddress
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from datathon.config.common import (  # noqa: F401  (re-exported: other modules import them from here)
    DURATION_RE,
    GUC_RE,
    IDENT_RE,
    MEMORY_RE,
    PROVIDER_NAMES,
    RESERVED_NAMES,
    Strict,
    check_email,
    check_identifier,
    existing_path,
)
from datathon.config.aws import AwsConfig
from datathon.config.dashboard import Dashboard
from datathon.config.rds import RdsSettings
from datathon.config.storage import StorageConfig
from datathon.config.workspaces import Workspaces


class Member(Strict):
    name: str = Field(min_length=1, max_length=200)
    email: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        return check_email(v)


# A team's GPUs: how many (datathon picks the devices) or exactly which device ids.
Gpus = Annotated[int, Field(ge=0, le=64)] | list[Annotated[int, Field(ge=0, le=63)]]


class Team(Strict):
    name: str
    title: str | None = None
    members: list[Member] = []
    gpus: Gpus = Field(default=0, description="GPUs for this team's workspace: a count, or device ids")

    @property
    def gpu_count(self) -> int:
        return len(self.gpus) if isinstance(self.gpus, list) else self.gpus

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_identifier(v, what="team name", max_len=30)


class GeneratedTeams(Strict):
    """`count` teams named <prefix>01, <prefix>02, ..."""

    count: int = Field(ge=1, le=500)
    prefix: str = "team"
    gpus: int = Field(default=0, ge=0, le=64, description="GPUs for each team's workspace")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return check_identifier(v, what="team prefix", max_len=26)

    def expand(self) -> list[Team]:
        width = max(2, len(str(self.count)))
        return [Team(name=f"{self.prefix}{i:0{width}d}", gpus=self.gpus) for i in range(1, self.count + 1)]


def _teams_shape(value: object) -> str:
    return "list" if isinstance(value, list) else "generated"


TeamsSpec = Annotated[
    Annotated[GeneratedTeams, Tag("generated")] | Annotated[list[Team], Tag("list")],
    Discriminator(_teams_shape),
]


class Mentor(Strict):
    name: str
    email: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_identifier(v, what="mentor name", max_len=30)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        return check_email(v)


class Policy(Strict):
    """Per-team limits, applied as defaults of each team's login role."""

    connection_limit: int = Field(default=10, ge=1, le=1000)
    statement_timeout: str = "30min"
    idle_in_transaction_session_timeout: str = "15min"
    temp_file_limit: str = "20GB"
    work_mem: str = "64MB"
    temp_tables: bool = Field(
        default=True, description="allow CREATE TEMP TABLE (many MIMIC concept scripts use it)"
    )
    disk_quota: str | None = Field(
        default=None, description="the most a team's own schema may take (e.g. 50GB); `check` and `status` flag a "
                                  "team over it (PostgreSQL cannot stop the writes: it has no per-schema quota)")

    @field_validator("statement_timeout", "idle_in_transaction_session_timeout", mode="before")
    @classmethod
    def _duration(cls, v: object) -> str:
        v = str(v).strip()
        if not DURATION_RE.match(v):
            raise ValueError(f"{v!r} is not a duration; write e.g. 30s, 15min, 2h (0 turns it off)")
        return v.replace(" ", "")

    @field_validator("disk_quota", mode="before")
    @classmethod
    def _quota(cls, v: object) -> str | None:
        if v is None:
            return None
        v = str(v).strip().replace(" ", "")
        if not MEMORY_RE.match(v) or v.startswith("-"):
            raise ValueError(f"{v!r} is not a size; write e.g. 50GB or 500MB")
        return v

    @field_validator("temp_file_limit", "work_mem", mode="before")
    @classmethod
    def _memory(cls, v: object) -> str:
        v = str(v).strip()
        if not MEMORY_RE.match(v):
            raise ValueError(f"{v!r} is not a size; write e.g. 64MB, 20GB (-1 means no limit)")
        return v.replace(" ", "")


class SqlSource(Strict):
    """A plain SQL file (schema-qualified statements, no psql meta-commands) run once, as the data owner."""

    sql: Path

    @field_validator("sql")
    @classmethod
    def _exists(cls, v: Path, info: ValidationInfo) -> Path:
        return existing_path(v, info, what="SQL file", folder=False)

    label: ClassVar[str] = "sql"

    @property
    def location(self) -> Path:
        return self.sql

    @property
    def schemas(self) -> list[str]:
        return []


class DatasetSource(Strict):
    """A release of a known dataset (its official folder layout), or synthetic data in the same layout."""

    dataset: Literal["mimic-iv", "mimic-iv-ed", "mimic-iv-note", "mimic-cxr", "eicu"]
    path: Path
    version: str | None = Field(default=None, description="e.g. 3.1; read from the path when it names one")
    tables: list[str] = Field(default=[], description="load only these tables (default: all)")
    foreign_keys: Literal["validate", "strict", "skip"] = "validate"
    extra_keys: bool = Field(default=False, description="also the keys and indexes datathon adds beyond the "
                             "dataset's official build (default: exactly the official ones)")
    workers: int | None = Field(default=None, ge=1, le=256, description="parallel loads (default: twice the cores)")

    @field_validator("path")
    @classmethod
    def _exists(cls, v: Path, info: ValidationInfo) -> Path:
        return existing_path(v, info, what="dataset folder", folder=True)

    @field_validator("extra_keys", mode="before")
    @classmethod
    def _yes_or_no(cls, v: object) -> object:
        if not isinstance(v, bool):
            raise ValueError(f"must be true or false, not {v!r}: true also builds the keys and indexes datathon "
                             "adds beyond the dataset's official build (README, Clinical datasets)")
        return v

    @model_validator(mode="after")
    def _known_tables(self) -> DatasetSource:
        from datathon.datasets.catalogue import DATASETS

        names = {t.name for t in DATASETS[self.dataset].tables}
        unknown = [t for t in self.tables if t not in names]
        if unknown:
            raise ValueError(f"{self.dataset} has no table(s) {', '.join(unknown)}")
        return self

    @property
    def label(self) -> str:
        return self.dataset

    @property
    def location(self) -> Path:
        return self.path

    @property
    def schemas(self) -> list[str]:
        from datathon.datasets.catalogue import DATASETS

        return DATASETS[self.dataset].schemas


class CsvSource(Strict):
    """Any folder of CSV(.gz) files with a header row, into the tables a DDL file creates (table = file name)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    csv: Path
    ddl: Path
    target_schema: str = Field(alias="schema")

    @field_validator("csv")
    @classmethod
    def _folder(cls, v: Path, info: ValidationInfo) -> Path:
        return existing_path(v, info, what="CSV folder", folder=True)

    @field_validator("ddl")
    @classmethod
    def _ddl(cls, v: Path, info: ValidationInfo) -> Path:
        return existing_path(v, info, what="DDL file", folder=False)

    @field_validator("target_schema")
    @classmethod
    def _schema(cls, v: str) -> str:
        return check_identifier(v, what="schema name", max_len=40)

    label: ClassVar[str] = "csv"

    @property
    def location(self) -> Path:
        return self.csv

    @property
    def schemas(self) -> list[str]:
        return [self.target_schema]


class DumpSource(Strict):
    """The organizer's own pg_dump: an archive (custom, directory, tar; restored with pg_restore -j) or a plain SQL
    dump (.sql, .sql.gz, .sql.zst), made on any server with any roles (see datathon.dumps)."""

    pg_dump: Path
    jobs: int | None = Field(default=None, ge=1, le=64)

    @field_validator("pg_dump")
    @classmethod
    def _exists(cls, v: Path, info: ValidationInfo) -> Path:
        return existing_path(v, info, what="dump", folder=None)

    label: ClassVar[str] = "pg_dump"

    @property
    def location(self) -> Path:
        return self.pg_dump

    @property
    def schemas(self) -> list[str]:
        return []


class ServerSource(Strict):
    """A PostgreSQL server that already holds the data (the organizer's machine with MIMIC-IV and eICU): its
    schemas dumped in directory format with parallel jobs, then restored with parallel jobs like a pg_dump source."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    pg_server: str = Field(description="libpq connection string of the source database, without a password")
    from_schemas: list[str] = Field(alias="schemas", min_length=1, description="the schemas to copy")
    password_file: Path | None = Field(default=None, description="else ~/.pgpass or PGPASSWORD")
    jobs: int | None = Field(default=None, ge=1, le=64, description="parallel dump and restore jobs")

    @field_validator("pg_server")
    @classmethod
    def _dsn(cls, v: str) -> str:
        import psycopg.conninfo

        try:
            params = psycopg.conninfo.conninfo_to_dict(v)
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"not a valid connection string: {exc}") from None
        if "password" in params:
            raise ValueError("holds a password; keep secrets out of datathon.yaml: use password_file or ~/.pgpass")
        if not params.get("dbname"):
            raise ValueError("names no database: add dbname=... (the database that holds the schemas)")
        return v

    @field_validator("from_schemas")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for s in v:
            check_identifier(s, what="schema name", max_len=63)
        return v

    @field_validator("password_file")
    @classmethod
    def _password_file(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return None if v is None else existing_path(v, info, what="password file", folder=False)

    label: ClassVar[str] = "pg_server"

    @property
    def location(self) -> Path:
        """What the source is called where it is recorded as loaded: server and database, never a password."""
        import psycopg.conninfo

        p = psycopg.conninfo.conninfo_to_dict(self.pg_server)
        return Path(f"{p.get('host') or 'localhost'}:{p.get('port') or 5432}/{p['dbname']}")

    @property
    def schemas(self) -> list[str]:
        return list(self.from_schemas)


SOURCE_TAGS = {"src:sql", "src:dataset", "src:csv", "src:pg_dump", "src:pg_server"}


def _source_kind(value: object) -> str:
    if isinstance(value, dict):
        for key in ("dataset", "csv", "pg_dump", "pg_server"):
            if key in value:
                return f"src:{key}"
    return "src:sql"


Source = Annotated[
    Annotated[SqlSource, Tag("src:sql")] | Annotated[DatasetSource, Tag("src:dataset")]
    | Annotated[CsvSource, Tag("src:csv")] | Annotated[DumpSource, Tag("src:pg_dump")]
    | Annotated[ServerSource, Tag("src:pg_server")],
    Discriminator(_source_kind),
]


class Database(Strict):
    name: str
    shared_schemas: list[str] = Field(default=[], description="schemas every team and mentor may read")
    sources: list[Source] = Field(default=[], description="run in order: sql, dataset, csv, pg_dump, pg_server")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v in {"postgres", "template0", "template1"}:
            raise ValueError(f"database {v!r} is a system database; pick another name")
        return check_identifier(v, what="database name", max_len=40)

    @field_validator("shared_schemas")
    @classmethod
    def _schemas(cls, v: list[str]) -> list[str]:
        for s in v:
            check_identifier(s, what="schema name", max_len=40)
        if len(set(v)) != len(v):
            raise ValueError("a schema is listed twice")
        return v

    def known_tables(self) -> dict[str, list[str]]:
        """Table name -> the schemas that hold it, for the datasets this database loads (from the catalogue)."""
        from datathon.datasets.catalogue import DATASETS

        out: dict[str, list[str]] = {}
        for src in self.sources:
            if isinstance(src, DatasetSource):
                for t in DATASETS[src.dataset].tables:
                    if not src.tables or t.name in src.tables:
                        out.setdefault(t.name, [])
                        if t.schema not in out[t.name]:
                            out[t.name].append(t.schema)
        return out

    @property
    def readable_schemas(self) -> list[str]:
        """The shared schemas, plus those the sources load into: teams read all of them."""
        return list(dict.fromkeys([*self.shared_schemas, *(s for src in self.sources for s in src.schemas)]))


class DatabaseTunnel(Strict):
    """Reach the server through an SSH jump host (RDS in a VPC, a server behind a bastion)."""

    ssh: str = Field(description="user@host or user@host:port of the jump host")
    identity_file: Path = Field(description="the private key that logs in to the jump host (mode 0600)")
    known_hosts: Path | None = Field(
        default=None, description="the jump host's key, checked strictly; default: the first key seen is pinned")

    @field_validator("ssh")
    @classmethod
    def _target(cls, v: str) -> str:
        from datathon.config.common import SSH_TARGET_RE

        if not SSH_TARGET_RE.match(v):
            raise ValueError(f"{v!r} is not user@host or user@host:port (e.g. ubuntu@bastion.example.org)")
        return v


class DatabaseServer(Strict):
    server: Literal["managed", "external", "rds"] = "managed"
    listen_addresses: list[str] = ["127.0.0.1"]
    port: int = Field(default=54320, ge=1024, le=65535)
    allow_from: list[str] = Field(
        default=["127.0.0.1/32", "::1/128"], description="client networks allowed to log in (CIDR)"
    )
    public_host: str | None = Field(default=None, description="host name teams connect to (handouts)")
    data_dir: Path | None = None
    bin_dir: Path | None = None
    settings: dict[str, str | int | float | bool] = Field(
        default={}, description="extra postgresql.conf settings for the managed cluster"
    )
    admin_dsn: str | None = Field(default=None, description="external server: admin connection, no password")
    admin_password_file: Path | None = None
    sslmode: Literal["require", "verify-ca", "verify-full", "prefer", "disable"] = "require"
    ca_file: Path | None = Field(
        default=None, description="external server: the CA bundle its certificate is checked against (RDS: the "
        "region's bundle); given to teams too")
    tunnel: DatabaseTunnel | None = Field(default=None, description="external server: reach it through SSH")
    rds: RdsSettings | None = Field(default=None, description="server: rds (provider aws): the RDS instance")

    @field_validator("listen_addresses")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one address is needed (127.0.0.1 for this machine only)")
        for a in v:
            if a in ("*", "localhost"):
                continue
            try:
                ipaddress.ip_address(a)
            except ValueError:
                raise ValueError(f"{a!r} is not an IP address (or '*', 'localhost')") from None
        return v

    @field_validator("allow_from")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for n in v:
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError:
                raise ValueError(f"{n!r} is not a network; write e.g. 10.0.0.0/16") from None
        return v

    @field_validator("settings")
    @classmethod
    def _settings(cls, v: dict) -> dict:
        for k in v:
            if not GUC_RE.match(k):
                raise ValueError(f"{k!r} is not a PostgreSQL setting name")
        return v

    @model_validator(mode="after")
    def _server_kind(self) -> DatabaseServer:
        if self.server == "external":
            if not self.admin_dsn:
                raise ValueError("an external server needs admin_dsn (e.g. postgresql://admin@db.example.org/postgres)")
            if _dsn_has_password(self.admin_dsn):
                raise ValueError(
                    "admin_dsn holds a password; keep secrets out of datathon.yaml: "
                    "use admin_password_file, ~/.pgpass or PGPASSWORD"
                )
            if self.tunnel is not None and str(_dsn_host(self.admin_dsn)).startswith("/"):
                raise ValueError("a tunnel reaches a server by host name: admin_dsn's host is a socket folder")
            if self.sslmode in ("verify-ca", "verify-full") and self.ca_file is None:
                raise ValueError(f"sslmode {self.sslmode} checks the server's certificate: give ca_file "
                                 "(for RDS, the region's CA bundle from AWS)")
        elif self.server == "rds":
            if self.admin_dsn:
                raise ValueError("admin_dsn is only for server: external (datathon makes the RDS instance and its "
                                 "master login)")
            if self.tunnel is None:
                raise ValueError("an RDS instance is never public: give tunnel: {ssh: user@jump-host, "
                                 "identity_file: ...} (a machine in the instance's VPC)")
            if self.ca_file is None:
                raise ValueError("give ca_file: the RDS CA bundle (https://truststore.pki.rds.amazonaws.com/global/"
                                 "global-bundle.pem) the instance's certificate is checked against")
        else:
            for key in ("admin_dsn", "tunnel", "ca_file", "rds"):
                if getattr(self, key):
                    raise ValueError(f"{key} is only for server: external or rds (the managed cluster makes its "
                                     "own)")
        if self.server != "rds" and self.rds is not None:
            raise ValueError("rds: is only for server: rds")
        return self


def _dsn_user(dsn: str) -> str | None:
    import psycopg.conninfo

    try:
        return psycopg.conninfo.conninfo_to_dict(dsn).get("user")
    except psycopg.ProgrammingError:
        return None


def _dsn_host(dsn: str) -> str:
    import psycopg.conninfo

    return psycopg.conninfo.conninfo_to_dict(dsn).get("host") or "localhost"


def _dsn_has_password(dsn: str) -> bool:
    import psycopg.conninfo

    try:
        return "password" in psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"admin_dsn is not a valid connection string: {exc}") from None


class EventDates(Strict):
    """The days the event runs (both included): the cost estimate counts them."""

    start: date
    end: date

    @model_validator(mode="after")
    def _order(self) -> EventDates:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


USED_TWICE = "is used twice among teams and mentors"


class EventConfig(Strict):
    event: str = Field(description="short identifier: role names start with it")
    title: str | None = None
    provider: str = "local"
    teams: TeamsSpec
    teams_file: Path | None = Field(default=None, description="the registration sheet (CSV) the teams were read "
                                                                "from, instead of `teams:`; re-read by every verb")
    mentors: list[Mentor] = []
    database: DatabaseServer = DatabaseServer()
    databases: list[Database] = Field(min_length=1)
    policy: Policy = Policy()
    mentor_policy: Policy | None = None
    workspaces: Workspaces | None = Field(default=None, description="JupyterHub with a Unix user per team")
    storage: StorageConfig | None = Field(default=None, description="imaging datasets in object storage")
    aws: AwsConfig | None = Field(default=None, description="provider aws: region, network, machine profiles")
    dates: EventDates | None = Field(default=None, description="the event's days, for the cost estimate")
    timezone: str = Field(default="UTC", description="the event's time zone (e.g. Asia/Singapore): times on the "
                                                     "dashboard and `workspaces.prestart_at` are read in it")
    dashboard: Dashboard | None = Field(default=None, description="`datathon serve`: the organizer's live view, "
                                                                  "the team portal and the watcher")

    @field_validator("event")
    @classmethod
    def _event(cls, v: str) -> str:
        return check_identifier(v, what="event name", max_len=20)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not a time zone; write e.g. Asia/Singapore, Europe/London or UTC") from None
        return v

    def admin_user(self) -> str | None:
        """The database server's administrator, as far as the file says (None: the connection's default user)."""
        db = self.database
        if db.server == "managed":
            return "datathon"  # database/cluster.py ADMIN_USER
        if db.server == "rds":
            return (db.rds or RdsSettings()).master_user
        return _dsn_user(db.admin_dsn) if db.admin_dsn else None

    @property
    def zone(self):
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)

    @field_validator("provider")
    @classmethod
    def _provider(cls, v: str) -> str:
        if v not in PROVIDER_NAMES:
            raise ValueError(f"unknown provider {v!r}; valid: {', '.join(sorted(PROVIDER_NAMES))}")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> EventConfig:
        seen: set[str] = set()
        for name in [t.name for t in self.team_list] + [m.name for m in self.mentors]:
            if name in seen:
                raise ValueError(f"name {name!r} {USED_TWICE}")
            seen.add(name)
        self._check_role_names()
        dbs = [d.name for d in self.databases]
        if len(set(dbs)) != len(dbs):
            raise ValueError("a database is listed twice")
        if self.workspaces is not None:
            # Unix user names (useradd) are at most 32 characters; ours are <event>_<name> as in the database.
            long = [n for n in seen if len(f"{self.event}_{n}") > 32]
            if long:
                raise ValueError(f"with workspaces, {self.event}_<name> becomes a Unix user name (32 characters at "
                                 f"most): shorten the event name or these names: {', '.join(sorted(long))}")
            if any(len(set(t.gpus)) != len(t.gpus) for t in self.team_list if isinstance(t.gpus, list)):
                raise ValueError("a team lists the same GPU twice")
        elif any(t.gpus for t in self.team_list) and self.provider != "aws":
            raise ValueError("teams ask for GPUs but there is no `workspaces:` section to give them to")
        self._check_provider()
        # A team's schema is named after the team; the administrator's default search path starts with the schema
        # named after itself ("$user"): a team named like the administrator would put its functions and operators
        # ahead of pg_catalog's in every statement datathon runs as the administrator.
        admin = self.admin_user()
        if admin is not None and admin in seen:
            raise ValueError(f"the name {admin!r} is the database administrator's (its own schema comes first on "
                             "its search path, so a team's functions there would run with its rights): rename "
                             "that team or mentor")
        shared = {s for d in self.databases for s in d.readable_schemas}
        clash = shared & {t.name for t in self.team_list}
        if clash:
            raise ValueError(f"team names clash with shared schemas: {', '.join(sorted(clash))}")
        return self

    def _check_provider(self) -> None:
        """What each provider needs from the rest of the file."""
        if self.provider != "aws":
            if self.database.server == "rds":
                raise ValueError("database.server: rds needs provider: aws (and its aws: section)")
            if self.aws is not None:
                raise ValueError(f"the aws: section is only for provider: aws (this file says {self.provider!r})")
            return
        if self.aws is None:
            raise ValueError("provider aws needs an aws: section (region, ssh_from, machine profiles); "
                             "`datathon init --provider aws` writes a commented one")
        if self.database.server == "managed":
            raise ValueError("provider aws runs no cluster of its own: use database.server: rds (datathon makes an "
                             "RDS instance) or external with admin_dsn (a PostgreSQL server you run)")
        unknown = sorted(set(self.aws.team_profiles) - {t.name for t in self.team_list})
        if unknown:
            raise ValueError(f"aws.team_profiles names teams that are not in teams: {', '.join(unknown)}")
        if self.storage is not None and self.storage.workspace_role_name:
            raise ValueError("provider aws makes the machines' role itself (with the read policy of the bucket): "
                             "remove storage.workspace_role_name")

    def _check_role_names(self) -> None:
        """Every database role the event makes (a mentor gets one login per team) fits PostgreSQL's 63
        characters and is unique: a longer name would be cut short silently, and two could become one."""
        from datathon.config import names as roles

        e = self.event
        made = [roles.teams_group(e), roles.mentors_group(e), roles.data_owner(e)]
        made += [roles.login_role(e, x.name) for x in [*self.team_list, *self.mentors]]
        pairs = [roles.mentor_team_role(e, m.name, t.name) for m in self.mentors for t in self.team_list]
        long = [r for r in pairs if len(r) > roles.MAX_ROLE_NAME]
        if long:
            raise ValueError(
                f"each mentor gets a login per team, named <event>_<mentor>__<team>; {long[0]!r} is {len(long[0])} "
                f"characters, PostgreSQL allows {roles.MAX_ROLE_NAME}: shorten the event, mentor or team names")
        seen: set[str] = set()
        for role in made + pairs:
            if role in seen:
                raise ValueError(f"two of the event's database logins would both be named {role!r} (a mentor's "
                                 "per-team login is <event>_<mentor>__<team>): rename that team or mentor")
            seen.add(role)

    # Derived views used everywhere else: code never asks which shape the file used.
    @cached_property
    def team_list(self) -> list[Team]:
        return self.teams.expand() if isinstance(self.teams, GeneratedTeams) else list(self.teams)

    @property
    def effective_mentor_policy(self) -> Policy:
        return self.mentor_policy or self.policy
