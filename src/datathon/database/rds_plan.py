"""The RDS instance's decisions as pure functions of what was observed (`RdsFacts`) and what the file wants
(`RdsSettings` + the day): what `up` does, what `down` removes, what `status` says. No AWS call here: each change
calls the `RdsRunner` when it is applied, which looks again at what it acts on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Protocol

from datathon.config.rds import RdsSettings
from datathon.core.plan import Change

# What the parameter group sets (static in none of the supported versions: no reboot needed).
# rds.force_ssl: logins without TLS are refused; log_(dis)connections: the audit trail of who connected when.
PARAMETERS = {"rds.force_ssl": "1", "log_connections": "1", "log_disconnections": "1"}
# For the length of a bulk load only, then reset to RDS's defaults (all dynamic). Units are the parameters' own:
# max_wal_size in MB, checkpoint_timeout in seconds, maintenance_work_mem in kB. Fewer checkpoints while tables
# fill, bigger sorts for index builds; sessions could set maintenance_work_mem themselves, not the other two.
LOADING = {"max_wal_size": "16384", "checkpoint_timeout": "1800", "maintenance_work_mem": "1048576"}


@dataclass(frozen=True)
class NetworkRef:
    """Where the instance lives: the database security group (5432 from the workspaces only) and the subnets."""

    security_group_ids: tuple[str, ...]
    subnet_ids: tuple[str, ...]


@dataclass(frozen=True)
class InstanceFacts:
    identifier: str
    status: str
    instance_class: str
    engine_version: str
    storage_gb: int
    max_storage_gb: int | None
    storage_type: str
    encrypted: bool
    publicly_accessible: bool
    backup_retention_days: int
    maintenance_window: str
    backup_window: str
    deletion_protection: bool
    parameter_group: str
    subnet_group: str
    security_group_ids: tuple[str, ...]
    address: str | None = None
    port: int | None = None
    pending_class: str | None = None


@dataclass(frozen=True)
class Override:
    """`datathon scale database`: a class or storage asked for on the command line, at a time."""

    at: datetime
    instance_class: str | None = None
    storage_gb: int | None = None


@dataclass(frozen=True)
class RdsFacts:
    identifier: str
    parameter_group_name: str
    subnet_group_name: str
    today: date
    instance: InstanceFacts | None = None
    parameters: dict[str, str] | None = None  # the group's user-set parameters; None: no group
    subnet_group: tuple[str, ...] | None = None  # its subnets; None: no group
    network: NetworkRef | None = None  # None: the network part has not made it yet
    snapshots: tuple[str, ...] = field(default=())
    override: Override | None = None


def wanted_class(want: RdsSettings, facts: RdsFacts) -> tuple[str, str]:
    """The class to have now and why: the most recent instruction wins, a scale step reached (from the start of
    its day, UTC) or `datathon scale` (from when it was run); else the file's instance_class."""
    klass, why, since = want.instance_class, "instance_class in the file", datetime.min.replace(tzinfo=UTC)
    for step in want.scale:
        if step.at <= facts.today:
            klass, why = step.instance_class, f"scale step of {step.at}"
            since = datetime.combine(step.at, time.min, tzinfo=UTC)
    o = facts.override
    if o is not None and o.instance_class and o.at >= since:
        klass, why = o.instance_class, f"`datathon scale` at {o.at:%Y-%m-%d %H:%M} UTC"
    return klass, why


def wanted_storage(want: RdsSettings, facts: RdsFacts) -> int:
    o = facts.override
    return max(want.storage_gb, o.storage_gb or 0) if o is not None else want.storage_gb


class RdsRunner(Protocol):
    def ensure_parameter_group(self) -> None: ...
    def ensure_subnet_group(self) -> None: ...
    def create_instance(self, instance_class: str, storage_gb: int) -> None: ...
    def modify_instance(self, changes: dict) -> None: ...
    def wait_available(self) -> None: ...
    def delete_instance(self, final_snapshot: str | None) -> None: ...
    def delete_parameter_group(self) -> None: ...
    def delete_subnet_group(self) -> None: ...


Price = Callable[[str], "float | None"]  # instance class -> USD per hour (None: not in the table)


def _money(hourly: float | None) -> str:
    return f"~${hourly * 24:,.0f}/day" if hourly is not None else "price not in the table"


def describe_wanted(want: RdsSettings, klass: str, storage_gb: int) -> str:
    storage = f"{storage_gb} GB {want.storage_type}" + (
        f" (grows to {want.max_storage_gb} GB)" if want.max_storage_gb else "")
    return (f"{klass}, PostgreSQL {want.engine_version}, {storage}{', encrypted' if want.encrypted else ''}, "
            f"not public, backups {want.backup_retention_days} days, maintenance {want.maintenance_window} UTC"
            f"{', deletion protection' if want.deletion_protection else ''}")


def plan_rds(want: RdsSettings, facts: RdsFacts, run: RdsRunner, price: Price) -> list[Change]:
    out: list[Change] = []
    pg = facts.parameter_group_name
    if facts.parameters is None:
        out.append(Change("server", f"parameter group {pg}", "create",
                          f"{want.family}: TLS only (rds.force_ssl), connections logged", run=run.ensure_parameter_group))
    else:
        drift = {k: v for k, v in PARAMETERS.items() if facts.parameters.get(k) != v}
        out.append(Change("server", f"parameter group {pg}", "update" if drift else "keep",
                          f"set {', '.join(f'{k}={v}' for k, v in drift.items())}" if drift
                          else "TLS only, connections logged", run=run.ensure_parameter_group))
    sg_name = facts.subnet_group_name
    if facts.subnet_group is None:
        out.append(Change("server", f"subnet group {sg_name}", "create", "the network's subnets (private to the VPC)"
                          if facts.network else "the network's subnets (made first, in this run)",
                          run=run.ensure_subnet_group))
    elif facts.network is not None and set(facts.subnet_group) != set(facts.network.subnet_ids):
        out.append(Change("server", f"subnet group {sg_name}", "update", "its subnets are not the network's",
                          run=run.ensure_subnet_group))
    else:
        out.append(Change("server", f"subnet group {sg_name}", "keep", f"{len(facts.subnet_group)} subnets"))

    klass, why = wanted_class(want, facts)
    storage = wanted_storage(want, facts)
    i = facts.instance
    target = f"rds {facts.identifier}"
    if i is None:
        out.append(Change("server", target, "create",
                          f"{describe_wanted(want, klass, storage)}; {_money(price(klass))}",
                          run=lambda: (run.create_instance(klass, storage), run.wait_available())))
        return out
    if i.status in ("deleting",):
        out.append(Change("server", target, "blocked", "it is being deleted: run `up` again once it is gone"))
        return out
    mods: dict = {}
    reasons: list[str] = []
    if i.publicly_accessible:
        mods["PubliclyAccessible"] = False
        reasons.append("it is publicly accessible: made private")
    if i.storage_gb < storage:
        mods["AllocatedStorage"] = storage
        reasons.append(f"storage {i.storage_gb} -> {storage} GB")
    if want.max_storage_gb != i.max_storage_gb and not (want.max_storage_gb is None and i.max_storage_gb is None):
        if want.max_storage_gb is not None:
            mods["MaxAllocatedStorage"] = want.max_storage_gb
            reasons.append(f"autoscaling limit {i.max_storage_gb or 'off'} -> {want.max_storage_gb} GB")
    for key, have, wanted, label in (
        ("BackupRetentionPeriod", i.backup_retention_days, want.backup_retention_days, "backups (days)"),
        ("PreferredMaintenanceWindow", i.maintenance_window, want.maintenance_window, "maintenance window"),
        ("PreferredBackupWindow", i.backup_window, want.backup_window, "backup window"),
        ("DeletionProtection", i.deletion_protection, want.deletion_protection, "deletion protection"),
        ("DBParameterGroupName", i.parameter_group, pg, "parameter group"),
    ):
        if have != wanted:
            mods[key] = wanted
            reasons.append(f"{label} {have} -> {wanted}")
    if facts.network is not None and set(i.security_group_ids) != set(facts.network.security_group_ids):
        mods["VpcSecurityGroupIds"] = list(facts.network.security_group_ids)
        reasons.append("security groups: only the database group (5432 from the workspaces)")
    if mods:
        out.append(Change("server", target, "update", "; ".join(reasons), run=lambda m=mods: run.modify_instance(m)))
    current = i.pending_class or i.instance_class
    if current != klass:
        old, new = price(current), price(klass)
        cost = (f"{'+' if new >= old else '-'}${abs(new - old) * 24:,.0f}/day ({_money(new)})"
                if old is not None and new is not None else _money(new))
        out.append(Change("server", target, "update",
                          f"class {current} -> {klass} ({why}): a few minutes' outage while it switches; {cost}",
                          run=lambda k=klass: run.modify_instance({"DBInstanceClass": k}), destructive=True))
    if i.storage_gb > storage:
        reasons_keep = f"has {i.storage_gb} GB (storage cannot shrink; the file's {storage} GB is ignored)"
        out.append(Change("server", target, "keep", reasons_keep))
    if not mods and current == klass:
        if i.status != "available":
            out.append(Change("server", target, "start", f"status {i.status}: wait until it is available",
                              run=run.wait_available))
        else:
            out.append(Change("server", target, "keep",
                              f"{describe_wanted(want, klass, storage)}; {_money(price(klass))}"))
    return out


def final_snapshot_name(identifier: str, today: date) -> str:
    return f"{identifier}-final-{today:%Y%m%d}"


def teardown_rds(facts: RdsFacts, run: RdsRunner, *, final_snapshot: bool) -> list[Change]:
    out: list[Change] = []
    if facts.instance is not None and facts.instance.status != "deleting":
        snap = final_snapshot_name(facts.identifier, facts.today) if final_snapshot else None
        why = (f"final snapshot {snap} first (kept: delete it in the console when no longer needed)" if snap
               else "no final snapshot (--no-final-snapshot): the data is gone for good")
        out.append(Change("server", f"rds {facts.identifier}", "drop", why, destructive=True,
                          run=lambda s=snap: run.delete_instance(s)))
    if facts.parameters is not None:
        out.append(Change("server", f"parameter group {facts.parameter_group_name}", "drop", "the event's own",
                          run=run.delete_parameter_group))
    if facts.subnet_group is not None:
        out.append(Change("server", f"subnet group {facts.subnet_group_name}", "drop", "the event's own",
                          run=run.delete_subnet_group))
    return out


def leftovers_rds(facts: RdsFacts) -> list[str]:
    left = []
    if facts.instance is not None:
        left.append(f"RDS instance {facts.identifier} ({facts.instance.status})")
    if facts.parameters is not None:
        left.append(f"RDS parameter group {facts.parameter_group_name}")
    if facts.subnet_group is not None:
        left.append(f"RDS subnet group {facts.subnet_group_name}")
    return left
