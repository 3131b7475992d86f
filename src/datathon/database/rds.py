"""The event's PostgreSQL on Amazon RDS: datathon makes the instance (with its parameter and subnet groups), scales
it on the days the file says, reaches it only through a tunnel (it is never public), and removes it after a final
snapshot. Inside it, tenancy, loads and `check` are the external server's: the master user is a member of
`rds_superuser`, not a superuser, which is what the external server path is built for."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from datathon.config.rds import RdsSettings
from datathon.core.aws import call, error_code
from datathon.core.context import Context
from datathon.core.endpoint import Endpoint
from datathon.core.plan import Change
from datathon.core.status import ComponentStatus
from datathon.database.external import ExternalServer
from datathon.database.rds_plan import (
    LOADING,
    PARAMETERS,
    InstanceFacts,
    NetworkRef,
    Override,
    Price,
    RdsFacts,
    leftovers_rds,
    plan_rds,
    teardown_rds,
)
from datathon.database.server import ServerTraits
from datathon.errors import ProvisionError

MASTER_SECRET = "rds-master"
OVERRIDE_KEY = "rds_scale"  # in state.json: the last `datathon scale database`
WAIT_S = 40 * 60  # creating an instance takes 10-20 minutes; a class change about as long
NOT_FOUND = {"DBInstanceNotFound", "DBInstanceNotFoundFault", "DBParameterGroupNotFound",
             "DBParameterGroupNotFoundFault", "DBSubnetGroupNotFoundFault", "DBSubnetGroupNotFound"}


def identifier_for(event: str) -> str:
    return f"datathon-{event}".replace("_", "-")  # RDS names: letters, digits and hyphens


class RdsServer(ExternalServer):
    kind = "rds"

    def __init__(self, ctx: Context, *, client: Callable[[str], Any], network: Callable[[], NetworkRef | None],
                 price: Price, tags: list[dict[str, str]], final_snapshot: bool | None = None) -> None:
        super().__init__(ctx)
        self.want = ctx.config.database.rds or RdsSettings()  # `rds:` may be left out: the defaults
        self.identifier = self.want.identifier or identifier_for(ctx.config.event)
        self._client, self._network, self._price, self.tags = client, network, price, tags
        self.final_snapshot = self.want.final_snapshot if final_snapshot is None else final_snapshot

    @property
    def rds(self):
        return self._client("rds")

    # -- what is there -------------------------------------------------------------------------
    def observe(self) -> RdsFacts:
        today = datetime.now(UTC).date()
        return RdsFacts(identifier=self.identifier, parameter_group_name=self.identifier,
                        subnet_group_name=self.identifier, today=today, instance=self._instance(),
                        parameters=self._parameters(), subnet_group=self._subnets(), network=self._network(),
                        override=self._override())

    def _override(self) -> Override | None:
        o = self.ctx.state.load().get(OVERRIDE_KEY)
        if not o:
            return None
        return Override(at=datetime.fromisoformat(o["at"]), instance_class=o.get("instance_class"),
                        storage_gb=o.get("storage_gb"))

    def scale(self, *, instance_class: str | None = None, storage_gb: int | None = None) -> Callable[[], None]:
        """Record `datathon scale database` (the next plan acts on it); returns what undoes the record."""
        from datathon.config.rds import CLASS_RE

        if instance_class is not None and not CLASS_RE.match(instance_class):
            raise ProvisionError(f"{instance_class!r} is not an RDS instance class",
                                 hint="e.g. db.r6g.2xlarge (see the RDS pricing page for the region's classes)")
        if storage_gb is not None and not 20 <= storage_gb <= 65536:
            raise ProvisionError(f"storage of {storage_gb} GB is out of RDS's range", hint="20 to 65536 GB")
        state = self.ctx.state.load()
        before = state.get(OVERRIDE_KEY)
        now = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "instance_class": instance_class,
               "storage_gb": storage_gb}
        self.ctx.state.update(**{OVERRIDE_KEY: now})
        return lambda: self.ctx.state.update(**{OVERRIDE_KEY: before})

    def _instance(self) -> InstanceFacts | None:
        found = self._describe("describe the RDS instance", lambda: self.rds.describe_db_instances(
            DBInstanceIdentifier=self.identifier)["DBInstances"])
        if not found:
            return None
        d = found[0]
        ep = d.get("Endpoint") or {}
        return InstanceFacts(
            identifier=d["DBInstanceIdentifier"], status=d.get("DBInstanceStatus", "unknown"),
            instance_class=d["DBInstanceClass"], engine_version=d.get("EngineVersion", ""),
            storage_gb=int(d.get("AllocatedStorage", 0)), max_storage_gb=d.get("MaxAllocatedStorage"),
            storage_type=d.get("StorageType", ""), encrypted=bool(d.get("StorageEncrypted")),
            publicly_accessible=bool(d.get("PubliclyAccessible")),
            backup_retention_days=int(d.get("BackupRetentionPeriod", 0)),
            maintenance_window=d.get("PreferredMaintenanceWindow", ""), backup_window=d.get("PreferredBackupWindow", ""),
            deletion_protection=bool(d.get("DeletionProtection")),
            parameter_group=next((g["DBParameterGroupName"] for g in d.get("DBParameterGroups", [])), ""),
            subnet_group=(d.get("DBSubnetGroup") or {}).get("DBSubnetGroupName", ""),
            security_group_ids=tuple(g["VpcSecurityGroupId"] for g in d.get("VpcSecurityGroups", [])),
            address=ep.get("Address"), port=ep.get("Port"),
            pending_class=(d.get("PendingModifiedValues") or {}).get("DBInstanceClass"),
        )

    def _parameters(self) -> dict[str, str] | None:
        groups = self._describe("describe the RDS parameter group", lambda: self.rds.describe_db_parameter_groups(
            DBParameterGroupName=self.identifier)["DBParameterGroups"])
        if not groups:
            return None
        pages = self.rds.get_paginator("describe_db_parameters").paginate(
            DBParameterGroupName=self.identifier, Source="user")
        params = call("read the RDS parameters", lambda: [p for page in pages for p in page["Parameters"]])
        return {p["ParameterName"]: str(p.get("ParameterValue")) for p in params}

    def _subnets(self) -> tuple[str, ...] | None:
        groups = self._describe("describe the RDS subnet group", lambda: self.rds.describe_db_subnet_groups(
            DBSubnetGroupName=self.identifier)["DBSubnetGroups"])
        if not groups:
            return None
        return tuple(s["SubnetIdentifier"] for s in groups[0].get("Subnets", []))

    def _describe(self, what: str, fn: Callable[[], list]) -> list:
        try:
            return call(what, fn)
        except ProvisionError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and error_code(cause) in NOT_FOUND:
                return []
            raise

    # -- the plan --------------------------------------------------------------------------------
    def plan(self, facts: RdsFacts) -> list[Change]:
        return plan_rds(self.want, facts, _Runner(self), self._price)

    def teardown(self) -> list[Change]:
        return teardown_rds(self.observe(), _Runner(self), final_snapshot=self.final_snapshot)

    def leftovers(self) -> list[str]:
        return leftovers_rds(self.observe())

    @property
    def traits(self) -> ServerTraits:
        return ServerTraits(removed_with_event=True, controls_hba=False)

    # -- reaching it ----------------------------------------------------------------------------
    def _address(self) -> tuple[str, int] | None:
        """The instance's DNS name and port, once it has them (RDS gives them when it is made; they stay)."""
        if self.__dict__.get("_known") is None:
            i = self._instance()
            if i is None or not i.address:
                return None
            self.__dict__["_known"] = (i.address, i.port or 5432)
        return self.__dict__["_known"]

    @cached_property
    def params(self) -> dict:
        where = self._address()
        if where is None:
            raise ProvisionError(f"the RDS instance {self.identifier} does not exist yet (or has no address)",
                                 hint="run `datathon up` to make it")
        return {"host": where[0], "port": where[1], "user": self.want.master_user, "dbname": "postgres",
                "sslmode": self.cfg.sslmode}

    def endpoint(self) -> Endpoint:
        """Where teams connect from their machines (inside the VPC): the instance's own name. Before it exists
        (a first plan), a name that says so; the machines are planned again once it was made."""
        where = self._address()
        host, port = where if where else (f"{self.identifier}.not-made-yet.invalid", 5432)
        return Endpoint(host=host, port=port, sslmode=self.cfg.sslmode,
                        ca_cert=self._path(self.cfg.ca_file) if self.cfg.ca_file else None)

    def _password(self) -> str | None:
        return self.ctx.state.secret(MASTER_SECRET)

    def exists(self) -> bool:
        return self._instance() is not None

    def is_reachable(self) -> bool:
        i = self._instance()
        return i is not None and i.status == "available" and super().is_reachable()

    def log_files(self) -> list[Path]:
        """The instance's PostgreSQL logs (RDS keeps them for `rds.log_retention_period`, 3 days by default),
        downloaded into the state folder so that `audit export` and `down` read them like the managed cluster's:
        a file already here at its listed size is not fetched again. Oldest first."""
        if self._instance() is None:
            return []
        rds, folder = self.rds, self.ctx.state.root / "rds-logs"
        pages = rds.get_paginator("describe_db_log_files").paginate(DBInstanceIdentifier=self.identifier)
        listed = call(f"list the logs of {self.identifier}",
                      lambda: [f for page in pages for f in page.get("DescribeDBLogFiles", [])])
        out = []
        for f in sorted(listed, key=lambda f: f.get("LastWritten", 0)):
            name = f["LogFileName"]
            if "postgres" not in name:
                continue
            path = folder / name.replace("/", "_")
            if not (path.exists() and path.stat().st_size == f.get("Size")):
                self._download(name, path)
            out.append(path)
        return out

    def _download(self, name: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        part = path.with_name(path.name + ".part")
        marker, pending = "0", True
        with open(part, "w") as out:
            while pending:  # RDS hands a log out in portions: follow the marker until nothing is pending
                got = call(f"download log {name} of {self.identifier}", lambda m=marker: self.rds.
                           download_db_log_file_portion(DBInstanceIdentifier=self.identifier, LogFileName=name,
                                                        Marker=m))
                out.write(got.get("LogFileData") or "")
                marker, pending = got.get("Marker", marker), bool(got.get("AdditionalDataPending"))
        part.replace(path)

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """The parameter group's bulk-load settings for the load, then RDS's defaults again (also when it fails;
        a run killed in between is put right by the next load or `up`, whose plan resets nothing else)."""
        rds = self.rds
        call(f"set bulk-load parameters on {self.identifier}", lambda: rds.modify_db_parameter_group(
            DBParameterGroupName=self.identifier, Parameters=[
                {"ParameterName": k, "ParameterValue": v, "ApplyMethod": "immediate"} for k, v in LOADING.items()]))
        try:
            yield
        finally:
            call(f"reset bulk-load parameters on {self.identifier}", lambda: rds.reset_db_parameter_group(
                DBParameterGroupName=self.identifier, ResetAllParameters=False, Parameters=[
                    {"ParameterName": k, "ApplyMethod": "immediate"} for k in LOADING]))

    @property
    def where(self) -> str:
        via = f" through {self.cfg.tunnel.ssh}" if self.cfg.tunnel else ""
        return f"RDS {self.identifier}{via}"

    def status(self) -> list[ComponentStatus]:
        i = self._instance()
        if i is None:
            return [ComponentStatus("database", f"rds {self.identifier}", "missing", "run `datathon up`",
                                    healthy=False)]
        row = ComponentStatus("database", f"rds {self.identifier}", i.status,
                              f"{i.instance_class}{' -> ' + i.pending_class if i.pending_class else ''}, "
                              f"PostgreSQL {i.engine_version}, {i.storage_gb} GB, "
                              f"{'public!' if i.publicly_accessible else 'private'}",
                              healthy=i.status == "available" and not i.publicly_accessible)
        return [row, *super().status()] if i.status == "available" else [row]


class _Runner:
    """What the plan's changes do on AWS. Each step looks at its resource again and does only what is missing."""

    def __init__(self, server: RdsServer) -> None:
        self.s = server
        self.id = server.identifier

    @property
    def rds(self):
        return self.s.rds

    def _network(self) -> NetworkRef:
        net = self.s._network()
        if net is None:
            raise ProvisionError("the database security group and subnets are not there",
                                 hint="run `datathon up` again: the network part makes them first")
        return net

    def ensure_parameter_group(self) -> None:
        if self.s._parameters() is None:
            call(f"create RDS parameter group {self.id}", lambda: self.rds.create_db_parameter_group(
                DBParameterGroupName=self.id, DBParameterGroupFamily=self.s.want.family,
                Description=f"datathon {self.s.ctx.config.event}: TLS only, connections logged", Tags=self.s.tags))
        call(f"set the parameters of {self.id}", lambda: self.rds.modify_db_parameter_group(
            DBParameterGroupName=self.id, Parameters=[
                {"ParameterName": k, "ParameterValue": v, "ApplyMethod": "immediate"} for k, v in PARAMETERS.items()]))

    def ensure_subnet_group(self) -> None:
        net = self._network()
        if self.s._subnets() is None:
            call(f"create RDS subnet group {self.id}", lambda: self.rds.create_db_subnet_group(
                DBSubnetGroupName=self.id, DBSubnetGroupDescription=f"datathon {self.s.ctx.config.event}",
                SubnetIds=list(net.subnet_ids), Tags=self.s.tags))
        else:
            call(f"update RDS subnet group {self.id}", lambda: self.rds.modify_db_subnet_group(
                DBSubnetGroupName=self.id, SubnetIds=list(net.subnet_ids)))

    def create_instance(self, instance_class: str, storage_gb: int) -> None:
        if self.s._instance() is not None:
            return  # made by an interrupted run: adopted, never made twice
        w, net = self.s.want, self._network()
        args: dict = dict(
            DBInstanceIdentifier=self.id, Engine="postgres", EngineVersion=w.engine_version,
            DBInstanceClass=instance_class, AllocatedStorage=storage_gb, StorageType=w.storage_type, StorageEncrypted=w.encrypted,
            MasterUsername=w.master_user, MasterUserPassword=self.s._password(), DBName="postgres",
            DBParameterGroupName=self.id, DBSubnetGroupName=self.id, VpcSecurityGroupIds=list(net.security_group_ids),
            PubliclyAccessible=False, BackupRetentionPeriod=w.backup_retention_days,
            PreferredMaintenanceWindow=w.maintenance_window, PreferredBackupWindow=w.backup_window,
            DeletionProtection=w.deletion_protection, CopyTagsToSnapshot=True, AutoMinorVersionUpgrade=True,
            Tags=self.s.tags)
        if w.max_storage_gb:
            args["MaxAllocatedStorage"] = w.max_storage_gb
        call(f"create RDS instance {self.id}", lambda: self.rds.create_db_instance(**args))

    def modify_instance(self, changes: dict) -> None:
        call(f"modify RDS instance {self.id}", lambda: self.rds.modify_db_instance(
            DBInstanceIdentifier=self.id, ApplyImmediately=True, **changes))
        self.wait_available()

    def wait_available(self) -> None:
        self._wait("db_instance_available", "available")

    def _wait(self, waiter: str, state: str) -> None:
        started = time.monotonic()
        try:
            self.rds.get_waiter(waiter).wait(DBInstanceIdentifier=self.id,
                                             WaiterConfig={"Delay": 15, "MaxAttempts": WAIT_S // 15})
        except Exception as exc:  # botocore's WaiterError: say what we waited for and how long
            raise ProvisionError(f"RDS instance {self.id} did not become {state} within "
                                 f"{(time.monotonic() - started) / 60:.0f} min: {exc}",
                                 hint="see its events in the RDS console, then run the command again") from None

    def delete_instance(self, final_snapshot: str | None) -> None:
        i = self.s._instance()
        if i is None:
            return
        if i.deletion_protection:
            call(f"lift deletion protection of {self.id}", lambda: self.rds.modify_db_instance(
                DBInstanceIdentifier=self.id, DeletionProtection=False, ApplyImmediately=True))
        if i.status != "deleting":
            args: dict = {"DBInstanceIdentifier": self.id, "DeleteAutomatedBackups": final_snapshot is None}
            if final_snapshot:
                args |= {"SkipFinalSnapshot": False, "FinalDBSnapshotIdentifier": final_snapshot}
            else:
                args |= {"SkipFinalSnapshot": True}
            call(f"delete RDS instance {self.id}", lambda: self.rds.delete_db_instance(**args))
        self._wait("db_instance_deleted", "deleted")

    def delete_parameter_group(self) -> None:
        if self.s._parameters() is not None:
            call(f"delete RDS parameter group {self.id}",
                 lambda: self.rds.delete_db_parameter_group(DBParameterGroupName=self.id))

    def delete_subnet_group(self) -> None:
        if self.s._subnets() is not None:
            call(f"delete RDS subnet group {self.id}",
                 lambda: self.rds.delete_db_subnet_group(DBSubnetGroupName=self.id))
