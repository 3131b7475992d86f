"""The preflight, first of the AWS parts: who datathon acts as (STS), whether the region is one EC2 has and this
account may use, whether the instance types exist there, and the vCPU quotas the machines need (a shortfall is a
blocked change naming the quota code and the number to request). The plan's notes carry the cost estimate.

After `down` it is the one that proves the region clean: everything still tagged with the event is listed (the
tagging API, and a describe per kind it may not cover) and `down` fails while anything billable is left."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from datathon.aws import names, pricing, quotas
from datathon.aws.base import AwsPart
from datathon.aws.session import AwsSession
from datathon.config.aws import MachineProfile
from datathon.core.aws import error_code, fail, retry
from datathon.core.part import PartStatus, Purpose
from datathon.core.plan import Change, Component
from datathon.core.status import ComponentStatus


@dataclass
class TypeInfo:
    vcpus: int
    gpus: int
    scratch_gb: int  # instance-store NVMe (erased on stop)


@dataclass
class AccountFacts:
    account: str | None = None
    arn: str | None = None
    identity_error: str = ""
    region_known: bool = True
    region_error: str = ""
    types: dict[str, TypeInfo | None] = field(default_factory=dict)  # None: not offered in the region
    quotas: dict[str, quotas.QuotaFacts] = field(default_factory=dict)
    running: list[tuple[str, bool]] = field(default_factory=list)  # other machines of the region: (type, spot)


def _why(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return f"{error_code(exc)}: {exc.response.get('Error', {}).get('Message', '')}".strip(": ")
    return str(exc)


class AccountPart(AwsPart):
    name = "aws account"

    def __init__(self, session: AwsSession, event: str, *, wanted: list[tuple[str, str, MachineProfile]],
                 days: int | None, storage_gb: Callable[[], float] = lambda: 0.0,
                 rds: tuple[str, int] | None = None, delete_images: bool = False) -> None:
        super().__init__(session, event)
        self.wanted = wanted
        self.days = days
        self.storage_gb = storage_gb
        self.rds = rds  # (class, GB) of the event's RDS instance, for the estimate
        self.delete_images = delete_images

    # -- observe ------------------------------------------------------------------------------------------------
    def observe(self, purpose: Purpose = "plan") -> AccountFacts:
        f = self._observe(purpose)
        self.session.blocked = f.identity_error or f.region_error
        return f

    def _observe(self, purpose: Purpose) -> AccountFacts:
        f = AccountFacts()
        region = self.session.region
        try:
            me = retry(lambda: self.session.client("sts").get_caller_identity(), what="sts")
            f.account, f.arn = me["Account"], me["Arn"]
        except (ClientError, BotoCoreError) as exc:
            f.identity_error = _why(exc)
            return f
        known = self.session.boto.get_available_regions("ec2", partition_name=_partition(region))
        if known and region not in known:
            f.region_known = False
            f.region_error = f"{region} is not an EC2 region (known: {', '.join(sorted(known)[:6])}, ...)"
            return f
        try:
            regions = retry(lambda: self.ec2.describe_regions(AllRegions=True)["Regions"], what="regions")
            mine = next((r for r in regions if r["RegionName"] == region), None)
            if mine is None or mine.get("OptInStatus") == "not-opted-in":
                f.region_known = False
                f.region_error = f"{region} is not enabled for account {f.account}: enable it in the console " \
                                 "(Account > AWS Regions) or pick another aws.region"
                return f
        except (ClientError, BotoCoreError) as exc:
            f.region_known = False
            f.region_error = f"EC2 in {region} did not answer: {_why(exc)}"
            return f
        if purpose != "plan":
            return f
        wanted_types = sorted({spec.instance_type for _, _, spec in self.wanted})
        others = self._others()
        f.running = [(t, s) for t, s in others]
        self._types(f, sorted(set(wanted_types) | {t for t, _ in others}))
        need = self._need(f)
        for q in need:
            f.quotas[q.code] = self._quota(q, f)
        return f

    def _others(self) -> list[tuple[str, bool]]:
        """Running machines of the region that are not this event's: they count against the same quotas."""
        res = self.pages(self.ec2, "describe_instances", "Reservations", "listing the region's machines",
                         Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
        out = []
        for r in res:
            for i in r["Instances"]:
                if names.tag_dict(i.get("Tags")).get(names.EVENT_TAG) != self.event:
                    out.append((i["InstanceType"], i.get("InstanceLifecycle") == "spot"))
        return out

    def _types(self, f: AccountFacts, types: list[str]) -> None:
        for t in types:
            try:
                got = retry(lambda t=t: self.ec2.describe_instance_types(InstanceTypes=[t])["InstanceTypes"],
                            what="types")
            except ClientError as exc:
                if error_code(exc) in ("InvalidInstanceType", "InvalidParameterValue"):
                    f.types[t] = None
                    continue
                raise fail(exc, f"reading instance type {t}") from exc
            if not got:
                f.types[t] = None
                continue
            d = got[0]
            f.types[t] = TypeInfo(d["VCpuInfo"]["DefaultVCpus"],
                                  sum(g.get("Count", 0) for g in d.get("GpuInfo", {}).get("Gpus", [])),
                                  d.get("InstanceStorageInfo", {}).get("TotalSizeInGB", 0))

    def _need(self, f: AccountFacts) -> dict[quotas.Quota, int]:
        return quotas.needs([(spec.instance_type, spec.spot, f.types[spec.instance_type].vcpus)
                             for _, _, spec in self.wanted if f.types.get(spec.instance_type)])

    def _quota(self, q: quotas.Quota, f: AccountFacts) -> quotas.QuotaFacts:
        others = sum(f.types[t].vcpus for t, spot in f.running if f.types.get(t)
                     and quotas.quota_for(t, spot=spot) == q)
        sq = self.session.client("service-quotas")
        try:
            got = retry(lambda: sq.get_service_quota(ServiceCode="ec2", QuotaCode=q.code)["Quota"], what="quota")
            return quotas.QuotaFacts(q, float(got["Value"]), others)
        except (ClientError, BotoCoreError) as exc:
            return quotas.QuotaFacts(q, None, others, why_unknown=f"Service Quotas did not answer: {_why(exc)}")

    # -- plan (pure) ----------------------------------------------------------------------------------------------
    def plan(self, f: AccountFacts) -> list[Change]:
        region = self.session.region
        if f.identity_error:
            return [Change(Component.ACCOUNT, "credentials", "blocked", f"AWS refused the credentials in use "
                           f"({f.identity_error}): check AWS_PROFILE / aws.profile or the access keys")]
        out = [Change(Component.ACCOUNT, f"{f.account} in {region}", "keep" if f.region_known else "blocked",
                      f"acting as {f.arn}" if f.region_known else f.region_error + ": fix aws.region")]
        if not f.region_known:
            return out
        for _, profile, spec in _unique_profiles(self.wanted):
            info = f.types.get(spec.instance_type)
            target = f"profile {profile}: {spec.instance_type}"
            if info is None:
                out.append(Change(Component.MACHINE, target, "blocked", f"{spec.instance_type} is not offered in "
                                  f"{region}: pick another instance type or region"))
            elif spec.gpu and not info.gpus:
                out.append(Change(Component.MACHINE, target, "blocked", f"the profile says gpu: true and "
                                  f"{spec.instance_type} has no GPU"))
            else:
                out.append(Change(Component.MACHINE, target, "keep", f"{info.vcpus} vCPUs"
                                  + (f", {info.gpus} GPU(s)" if info.gpus else "")
                                  + (f", {info.scratch_gb} GB NVMe at /scratch (erased on stop)"
                                     if info.scratch_gb else "")))
        if all(f.types.get(s.instance_type) for _, _, s in self.wanted):
            out += quotas.plan_quotas(self._need(f), f.quotas, region)
        return out

    def notes(self, f: AccountFacts) -> list[str]:
        if f.identity_error or not f.region_known:
            return []
        machines = [pricing.Machine(s.instance_type, s.root_volume.size_gb, s.root_volume.type, s.spot)
                    for _, _, s in self.wanted]
        e = pricing.estimate(machines, region=self.session.region, storage_gb=self.storage_gb(), rds=self.rds)
        lines = [pricing.describe(e, self.days)]
        lines += [f"  {what}: ${usd:,.3f}/hour" for what, usd in e.lines]
        if self.days is None:
            lines.append("  add dates: {start: ..., end: ...} to the event file for the event's total")
        if all(f.types.get(s.instance_type) for _, _, s in self.wanted):
            lines += [f"quota {c.target}: {c.reason}" for c in quotas.plan_quotas(self._need(f), f.quotas,
                                                                              self.session.region)
                      if c.reason.startswith("unknown")]
        return lines

    # -- status, teardown -----------------------------------------------------------------------------------------
    def status(self, f: AccountFacts) -> PartStatus:
        ok = not f.identity_error and f.region_known
        return PartStatus([ComponentStatus("aws account", f"{f.account or '?'} in {self.session.region}",
                                           "ok" if ok else "error", f.identity_error or f.region_error or f.arn or "",
                                           healthy=ok)])

    def teardown(self, f: AccountFacts) -> list[Change]:
        return []

    def leftovers(self) -> list[str]:
        from datathon.aws.tagged import remaining

        left, _ = remaining(self.session, self.event, keep_images=not self.delete_images)
        return left


def _partition(region: str) -> str:
    from datathon.core.aws import partition

    return partition(region)


def _unique_profiles(wanted: list[tuple[str, str, MachineProfile]]) -> list[tuple[str, str, MachineProfile]]:
    seen: dict[str, tuple[str, str, MachineProfile]] = {}
    for w in wanted:
        seen.setdefault(w[1], w)
    return [seen[k] for k in sorted(seen)]
