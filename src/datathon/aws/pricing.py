"""What the event costs, from a price table shipped with datathon (prices.json: the region's hourly prices, with
the date they were read and where from); no network call. Pure functions: the plan's estimate and the status's
cost so far are computed from facts and this table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files

HOURS_PER_MONTH = 730  # AWS's own convention for monthly prices


@dataclass(frozen=True)
class PriceTable:
    read: str
    source: str
    regions: dict

    def region(self, name: str) -> dict | None:
        return self.regions.get(name)


@cache
def table() -> PriceTable:
    data = json.loads(files("datathon.aws").joinpath("prices.json").read_text())
    return PriceTable(read=data["read"], source=data["source"], regions=data["regions"])


@dataclass(frozen=True)
class Machine:
    instance_type: str
    volume_gb: int
    volume_type: str = "gp3"
    spot: bool = False


@dataclass
class Estimate:
    per_hour: float
    unknown: list[str] = field(default_factory=list)  # what has no price in the table (not counted)
    lines: list[tuple[str, float]] = field(default_factory=list)  # (what, USD per hour)
    prices_read: str = ""

    @property
    def per_day(self) -> float:
        return self.per_hour * 24

    def for_days(self, days: int) -> float:
        return self.per_day * days


def estimate(machines: list[Machine], *, region: str, storage_gb: float = 0, rds: tuple[str, int] | None = None,
             prices: PriceTable | None = None) -> Estimate:
    """USD per hour of running every machine (EC2 + its EBS), the imaging store (S3 standard) and an RDS instance
    (class, GB). Spot machines are counted at the On-Demand price (the most they cost)."""
    prices = prices or table()
    p = prices.region(region)
    out = Estimate(0.0, prices_read=prices.read)
    if p is None:
        out.unknown.append(f"every price: the table (read {prices.read}) has no region {region}")
        return out
    by_type: dict[str, list[Machine]] = {}
    for m in machines:
        by_type.setdefault(m.instance_type, []).append(m)
    for itype, ms in sorted(by_type.items()):
        hour = p["ec2_hour"].get(itype)
        if hour is None:
            out.unknown.append(f"{len(ms)} x {itype} (no price in the table read {prices.read})")
        else:
            out.lines.append((f"EC2 {len(ms)} x {itype}", hour * len(ms)))
    ebs: dict[str, int] = {}
    for m in machines:
        ebs[m.volume_type] = ebs.get(m.volume_type, 0) + m.volume_gb
    for vtype, gb in sorted(ebs.items()):
        month = p["ebs_gb_month"].get(vtype)
        if month is None:
            out.unknown.append(f"EBS {vtype}")
        else:
            out.lines.append((f"EBS {vtype} {gb} GB", gb * month / HOURS_PER_MONTH))
    if storage_gb:
        out.lines.append((f"S3 {storage_gb:g} GB", storage_gb * p["s3_standard_gb_month"] / HOURS_PER_MONTH))
    if rds is not None:
        cls, gb = rds
        hour = p["rds_postgres_hour"].get(cls)
        if hour is None:
            out.unknown.append(f"RDS {cls}")
        else:
            out.lines.append((f"RDS {cls} + {gb} GB", hour + gb * p["rds_gp3_gb_month"] / HOURS_PER_MONTH))
    out.per_hour = sum(v for _, v in out.lines)
    return out


def cost_so_far(instance_type: str, hours: float, *, region: str, prices: PriceTable | None = None) -> float | None:
    """What one machine's compute cost since it was last started (None: no price for its type)."""
    prices = prices or table()
    p = prices.region(region)
    hour = p["ec2_hour"].get(instance_type) if p else None
    return None if hour is None else round(hour * hours, 2)


def describe(e: Estimate, days: int | None) -> str:
    text = f"cost estimate: ${e.per_hour:,.2f}/hour, ${e.per_day:,.2f}/day"
    if days:
        text += f", ${e.for_days(days):,.2f} for the event's {days} day(s) running day and night"
    text += f" (prices read {e.prices_read}"
    if e.unknown:
        text += "; not counted: " + "; ".join(e.unknown)
    return text + ")"
