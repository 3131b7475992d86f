"""The database's two parts of an event: the server itself, and what lives in it (tenancy and data)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from datathon.core import access
from datathon.core import roster as roles
from datathon.core.context import Context
from datathon.core.handout import Section
from datathon.core.part import Part, PartStatus, Purpose
from datathon.core.plan import Change
from datathon.core.roster import Member
from datathon.database.facts import Facts, observe, scram_matches
from datathon.database.server import DatabaseServer
from datathon.database.sources import plan_sources, source_identity
from datathon.database.tenancy import MARK, Login, plan_tenancy, teardown_tenancy, wanted_logins
from datathon.errors import DatathonError, ProvisionError

if TYPE_CHECKING:
    from datetime import datetime

    from datathon.core.activity import Activity, WatchReport
    from datathon.database.archive import TeamLogin


class ServerPart(Part):
    """The PostgreSQL server: made and run by datathon (managed cluster) or adopted (external, RDS)."""

    name = "database server"

    def __init__(self, server: DatabaseServer) -> None:
        self.server = server

    def observe(self, purpose: Purpose = "plan"):
        try:
            return self.server.observe()
        except ProvisionError as exc:
            if purpose == "plan":
                raise  # `up` stops here with the message (an unreachable server, a wrong admin password)
            return exc  # `status` reports it (unhealthy); `down` of an adopted server removes nothing of it

    def plan(self, facts) -> list[Change]:
        return self.server.plan(facts)

    def preflight(self) -> list[str]:
        return self.server.preflight()

    def status(self, facts) -> PartStatus:
        return PartStatus(self.server.status())

    def teardown(self, facts) -> list[Change]:
        return self.server.teardown()

    def leftovers(self) -> list[str]:
        return self.server.leftovers()

    def shared_files(self) -> dict[str, bytes]:
        ep = self.server.endpoint()
        return {"server-ca.crt": ep.ca_cert.read_bytes()} if ep.ca_cert and ep.ca_cert.exists() else {}

    def audit(self, since):
        from datathon.database.audit import server_events

        return server_events(self.server, since)

    def logs(self) -> list[Path]:
        return self.server.log_files()

    def gone(self) -> list[tuple[str, str]]:
        if self.server.traits.removed_with_event:
            return [("server process, port and data folder", "verified gone")]
        return []


@dataclass
class DataFacts:
    """The tenancy facts when the server can be observed; `exists` tells a stopped server from a missing one."""

    tenancy: Facts | None
    exists: bool
    dumps: dict[str, str]  # source name -> what a dump holds (kind, size, tables), for the plan
    # a dump this server's tools cannot read: `plan` (so `up`) stops on it; `status` and `down` need not
    unreadable: ProvisionError | None = None
    locked: frozenset[str] = frozenset()  # the team logins an organizer locked out (core.access): kept NOLOGIN


class DataPart(Part):
    """Roles, databases, schemas, grants and the shared data, the same on every server."""

    name = "data"
    after = ("database server",)
    settles = True  # what a load makes (a dump's own schemas, tables of other owners) gets the grants at once
    blocking = False  # a refused drop (a team's schema holding data) is reported; the rest goes ahead

    def __init__(self, ctx: Context, server: DatabaseServer, *, drop_team_data: bool = False) -> None:
        self.ctx = ctx
        self.server = server
        self.drop_team_data = drop_team_data

    def sql(self) -> DatabaseServer:
        return self.server

    # -- observe / plan ----------------------------------------------------------------------------
    def observe(self, purpose: Purpose = "plan") -> DataFacts:
        from datathon.datasets.run import describe_source

        if self.server.is_reachable():
            tenancy = observe(self.server, self.ctx.config)
        elif self.server.exists():
            return DataFacts(None, True, {})
        else:  # exact for a server still to be made: an empty one
            tenancy = Facts(admin="datathon", admin_superuser=True)
        if purpose != "plan":  # status and teardown need neither the dumps' contents nor the password checks
            return DataFacts(tenancy, self.server.exists(), {})
        # what a dump not loaded yet holds (its kind, size and tables): read from the file, for the plan
        describe = describe_source(self.server)
        dumps = {}
        for db in self.ctx.config.databases:
            loaded = tenancy.databases[db.name].loaded_sources if db.name in tenancy.databases else {}
            for src in db.sources:
                if source_identity(src, self.ctx.loaded.base_dir)[0] in loaded:
                    continue
                try:
                    if text := describe(src):
                        dumps[str(src)] = text
                except ProvisionError as exc:
                    return DataFacts(tenancy, self.server.exists(), dumps, unreadable=exc)
        tenancy.changed_passwords = self._changed_passwords(tenancy)
        locked = frozenset(roles.login_role(self.ctx.config.event, n) for n in access.locked(self.ctx.state))
        return DataFacts(tenancy, self.server.exists(), dumps, locked=locked)

    def notes(self, facts: DataFacts) -> list[str]:
        if facts.tenancy is None:
            return ["the database server is not running: roles and schemas are checked once `up` starts it"]
        if not facts.exists:
            return ["the database server does not exist yet: roles and schemas are planned as for an empty one"]
        return []

    def plan(self, facts: DataFacts) -> list[Change]:
        if facts.unreadable is not None:
            raise facts.unreadable
        if facts.tenancy is None:
            return []
        from datathon.datasets.run import bulk_factory

        changes = plan_tenancy(self.ctx.config, facts.tenancy, secret_for=self._secret,
                               stored_secrets=self._stored(), drop_team_data=self.drop_team_data,
                               locked=facts.locked)
        describe = (lambda src: facts.dumps.get(str(src))) if facts.dumps else None
        return changes + plan_sources(self.ctx.config, facts.tenancy, self.ctx.loaded.base_dir,
                                      bulk_factory(self.ctx, self.server), describe)

    def _secret(self, role: str) -> str:
        return self.ctx.state.secret(role)  # called at apply time only: made and stored 0600 before the role

    def _stored(self) -> set[str]:
        return {r for r in self.logins if self.ctx.state.secret_path(r).exists()}

    def _changed_passwords(self, tenancy: Facts) -> set[str]:
        """Each check is 4096 rounds of PBKDF2 (tens of ms for a hundred logins): in parallel (hashlib lets go of
        the GIL), reading secrets only (none is made)."""
        from concurrent.futures import ThreadPoolExecutor

        def changed(role: str) -> bool:
            fact = tenancy.roles.get(role)
            secret = self.ctx.state.secret(role, create=False)
            return bool(fact and fact.verifier and secret is not None and not scram_matches(fact.verifier, secret))

        roles = [x.role for x in self.logins.values()]
        with ThreadPoolExecutor(max_workers=4) as pool:
            return {r for r, c in zip(roles, pool.map(changed, roles), strict=True) if c}

    # -- event day: sessions, the organizer's hand on them, the watcher -----------------------------------
    @property
    def _guard_memory(self):
        from datathon.database.guard import memory_for

        return memory_for(str(self.ctx.state.root))

    def _owners(self) -> dict[str, str]:
        """Every login of the event -> the member it belongs to (a mentor's per-team logins are the mentor's)."""
        return {x.role: x.name for x in self.logins.values()}

    def activity(self) -> list[Activity]:
        from datathon.database.activity import activities

        try:  # no is_reachable() first: on RDS it asks AWS, and this runs on every refresh of the dashboard
            return activities(self.server, self._owners())
        except ProvisionError:
            return []  # not running, or not made yet: nothing runs in it (`status` says why)

    def cancel(self, member: Member, ident: str, *, terminate: bool = False) -> str:
        from datathon.database.activity import cancel_session

        own = [x.role for x in self.logins.values() if x.name == member.name and x.kind in (
            ("team",) if member.kind == "team" else ("mentor", "mentor_team"))]
        if not own:
            raise DatathonError(f"{member.kind} {member.name} has no database login in this event",
                                hint="check the name against the event file")
        who = f"{'team' if member.kind == 'team' else 'mentor'} {member.name}"
        return cancel_session(self.server, own, who, ident, terminate=terminate)

    def guard(self, now: datetime) -> WatchReport | None:
        from datathon.database.guard import guard

        # Straight to the server, every few seconds: no exists()/is_reachable() first (on RDS they ask AWS, on an
        # external server they open a connection of their own). A server that cannot be reached is the
        # engine's to report (the connection's ProvisionError says why), and the next cycle tries again.
        return guard(self.server, list(self.logins.values()), [d.name for d in self.ctx.config.databases],
                     quota=self.ctx.config.policy.disk_quota, memory=self._guard_memory)

    @cached_property
    def logins(self) -> dict[str, Login]:
        return {x.role: x for x in wanted_logins(self.ctx.config)}

    def _team_logins(self, member: Member) -> list[Login]:
        """A mentor's login for each team (none for a team)."""
        return [x for x in self.logins.values() if x.kind == "mentor_team" and x.name == member.name] \
            if member.kind == "mentor" else []

    # -- status / teardown -------------------------------------------------------------------------
    def status(self, facts: DataFacts) -> PartStatus:
        from datathon.database.status import data_status

        if facts.tenancy is None or not facts.exists:  # not running, or not made yet
            return PartStatus()
        return data_status(self.ctx, self.server, facts.tenancy)

    def teardown(self, facts: DataFacts) -> list[Change]:
        if self.server.traits.removed_with_event:
            return []  # the server goes, and every role and database with it
        if facts.tenancy is None or not facts.exists:
            raise ProvisionError("the database server cannot be reached, so the event's roles cannot be removed",
                                 hint="check database.admin_dsn and the server, then run `datathon down` again")
        return teardown_tenancy(self.ctx.config, facts.tenancy)

    def leftovers(self) -> list[str]:
        if self.server.traits.removed_with_event or not self.server.is_reachable():
            return []
        facts = observe(self.server, self.ctx.config)
        mark = MARK.format(event=self.ctx.config.event)
        return ([f"role {r}" for r, f in facts.roles.items() if f.comment == mark]
                + [f"database {d}" for d, f in facts.databases.items() if f.comment == mark])

    def gone(self) -> list[tuple[str, str]]:
        return [] if self.server.traits.removed_with_event else [("event roles and databases on the server",
                                                                  "verified gone")]

    # -- password rotation -------------------------------------------------------------------------
    def set_password(self, member: Member, login: str, password: str, *, locked: bool) -> None:
        """The role's new password (as a SCRAM verifier), then every session of it ended: a session opened with
        the old password does not outlive it. A role not made yet is left to `up`, which uses the new secret."""
        from datathon.database.tenancy import end_sessions, password_statement

        if not self.server.is_reachable():
            raise ProvisionError("the database server is not running, so no password can be changed",
                                 hint="run `datathon up`, then the same command again (it resumes)")
        with self.server.connect(autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone() is None:
                return
            conn.execute(password_statement(login, lambda _: password)(conn))
            conn.execute(end_sessions(login))

    # -- a team's work ---------------------------------------------------------------------------
    def archive(self, member: Member, dest: Path) -> dict | None:
        from datathon.core import faults
        from datathon.database.archive import dump_schema

        if member.kind != "team":
            return None
        out = {}
        for i, db in enumerate(self.ctx.config.databases):
            out[db.name] = {**dump_schema(self.server, db.name, member.name, dest / f"{db.name}.dump"), "position": i}
            faults.point("archive.database_dumped")
        return {"databases": out}

    def _login(self, member: Member) -> TeamLogin:
        from datathon.database.archive import TeamLogin

        password = self.ctx.state.secret(member.login, create=False)
        if password is None:
            raise ProvisionError(f"no password of {member.login} in {self.ctx.state.secrets_dir}",
                                 hint="run `datathon up` so that the team's login exists")
        return TeamLogin(member.login, password)

    def verify_archive(self, member: Member, src: Path, record: dict) -> list[str]:
        from datathon.database.archive import verify_dump

        problems = []
        for db, rec in record.get("databases", {}).items():
            if rec.get("present"):
                problems += verify_dump(self.server, src / f"{db}.dump", rec, self._login(member))
        return problems

    def restore(self, member: Member, src: Path, record: dict) -> None:
        from datathon.database.archive import restore_schema

        for db, rec in record.get("databases", {}).items():
            if rec.get("present"):
                target = self._target_database(db, rec)
                restore_schema(self.server, src / f"{db}.dump", target, rec["schema"], self._login(member))

    def _target_database(self, db: str, rec: dict) -> str:
        """The same database, else the one in the same place of the event file (a new event's databases are
        usually named after it: demo24db -> demo25db)."""
        names = [d.name for d in self.ctx.config.databases]
        if db in names:
            return db
        pos = rec.get("position")
        if isinstance(pos, int) and 0 <= pos < len(names):
            return names[pos]
        raise ProvisionError(f"the archive holds schema {rec['schema']} of database {db}, which this event does "
                             "not have", hint=f"add database {db} to the event file and run `datathon up`")

    def work_since(self, member: Member, record: dict, since: float) -> list[str]:
        from datathon.database.archive import fingerprint, schema_objects

        if not self.server.is_reachable():
            if not self.server.exists():
                return []
            return [f"the database server is not running: whether schema {member.name} changed cannot be told "
                    "(`datathon up` starts it)"]
        out = []
        for db in self.ctx.config.databases:
            rec = record.get("databases", {}).get(db.name)
            if rec is None:  # an empty schema is no work; anything in it is
                if schema_objects(self.server, db.name, member.name):
                    out.append(f"schema {db.name}.{member.name} is not in the archive")
                continue
            now = fingerprint(self.server, db.name, member.name)
            if now != rec.get("fingerprint"):
                out.append(f"schema {db.name}.{member.name} changed (tables, rows or functions)")
        return out

    # -- handouts ----------------------------------------------------------------------------------
    def handout(self, member: Member, secret: Callable[[str], str]) -> list[Section]:
        from datathon.database.handout import database_section, mentor_teams_section

        login = self.logins[member.login]
        endpoint = self.server.endpoint()
        out = [database_section(self.ctx.config, login, endpoint, secret(login.role))]
        if member.kind == "mentor":
            team_logins = [(x, secret(x.role)) for x in self._team_logins(member)]
            out.append(mentor_teams_section(self.ctx.config, login, endpoint, team_logins))
        return out

    def roster(self, member: Member, secret: Callable[[str], str]) -> dict[str, str]:
        ep = self.server.endpoint()
        return {"db_user": member.login, "db_password": secret(member.login), "host": ep.host, "port": str(ep.port),
                "databases": " ".join(d.name for d in self.ctx.config.databases), "sslmode": ep.sslmode}

    def files(self, member: Member) -> dict[str, str]:
        """pgAdmin's servers.json for this member (file suffix -> text)."""
        import json

        from datathon.database.handout import pgadmin_servers

        login = self.logins[member.login]
        team_logins = self._team_logins(member)
        servers = pgadmin_servers(self.ctx.config, login, self.server.endpoint(), team_logins)
        return {"pgadmin-servers.json": json.dumps(servers, indent=2) + "\n"}


__all__ = ["DataPart", "ServerPart"]
