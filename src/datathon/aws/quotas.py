"""Service Quotas the team machines need: each EC2 instance family counts against one vCPU quota per region. Pure
functions of facts, so a plan is the same whether AWS answered or not.

Where the codes come from (2026-12-02): L-DB2E81BA (G and VT), L-1216C47A (Standard) and L-3819A6DF (G and VT
spot) from the project's AWS reference notes (shared/reference/aws.md), checked against the Service Quotas
console's EC2 list as the author knows it; the others (P, Inf, Trn, F, X, DL, and the other spot codes) were
written from that same memory of the console and are not verified here: the plan names the code, and where AWS
answers, its own value is what counts. EC2 counts running On-Demand instances in vCPUs per family class, and
spot requests apart."""

from __future__ import annotations

from dataclasses import dataclass

from datathon.core.plan import Change, Component

# family letter(s) -> (on-demand quota code, spot quota code, name)
_CLASSES: list[tuple[tuple[str, ...], str, str, str]] = [
    (("g", "vt"), "L-DB2E81BA", "L-3819A6DF", "Running On-Demand G and VT instances"),
    (("p",), "L-417A185B", "L-7212CCBC", "Running On-Demand P instances"),
    (("inf",), "L-1945791B", "L-B5D1601B", "Running On-Demand Inf instances"),
    (("trn",), "L-2C3B7624", "L-6B0D517C", "Running On-Demand Trn instances"),
    (("f",), "L-74FC7D96", "L-88CF9481", "Running On-Demand F instances"),
    (("x",), "L-7295265B", "L-E3A00192", "Running On-Demand X instances"),
    (("dl",), "L-6E869C2A", "L-85EED4F7", "Running On-Demand DL instances"),
    (("a", "c", "d", "h", "i", "m", "r", "t", "z"), "L-1216C47A", "L-34B43A08",
     "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
]
CONSOLE = "https://console.aws.amazon.com/servicequotas/home/services/ec2/quotas/{code}"


@dataclass(frozen=True)
class Quota:
    code: str
    name: str


def family(instance_type: str) -> str:
    """The letters a type's family starts with: g4dn.12xlarge -> g, inf2.xlarge -> inf, m5.8xlarge -> m."""
    head = instance_type.split(".", 1)[0]
    letters = ""
    for ch in head:
        if not ch.isalpha():
            break
        letters += ch
    return letters


def quota_for(instance_type: str, *, spot: bool = False) -> Quota:
    fam = family(instance_type)
    # the longest matching prefix wins (inf before i, dl before d, trn before t, vt before v)
    best = max(((p, c) for c in _CLASSES for p in c[0] if fam.startswith(p)), key=lambda x: len(x[0]), default=None)
    if best is None:
        return Quota("unknown", f"the vCPU quota of {instance_type}'s family")
    _, (_, od, sp, name) = best
    if spot:
        return Quota(sp, name.replace("Running On-Demand", "All") + " Spot Instance Requests")
    return Quota(od, name)


@dataclass(frozen=True)
class QuotaFacts:
    """One quota as observed: its value (None: AWS did not say) and the vCPUs already in use by machines that are
    not this event's (None: unknown)."""

    quota: Quota
    value: float | None
    used_by_others: int | None = 0
    why_unknown: str = ""


def needs(machines: list[tuple[str, bool, int]]) -> dict[Quota, int]:
    """vCPUs per quota for the event's machines: (instance type, spot, vCPUs) each."""
    out: dict[Quota, int] = {}
    for itype, spot, vcpus in machines:
        q = quota_for(itype, spot=spot)
        out[q] = out.get(q, 0) + vcpus
    return out


def plan_quotas(need: dict[Quota, int], observed: dict[str, QuotaFacts], region: str) -> list[Change]:
    """A blocked change per quota too small for the event (naming the code and the number to request), a keep
    per quota that is large enough, and a keep that says 'unknown: check by hand' where AWS gave no value."""
    out = []
    for q, want in sorted(need.items(), key=lambda x: x[0].code):
        f = observed.get(q.code)
        target = f"{q.code} {q.name} ({region})"
        if f is None or f.value is None:
            why = f" ({f.why_unknown})" if f and f.why_unknown else ""
            out.append(Change(Component.QUOTA, target, "keep",
                              f"unknown: check by hand{why}: the event needs {want} vCPUs; see "
                              f"{CONSOLE.format(code=q.code)}"))
            continue
        others = f.used_by_others or 0
        total = want + others
        if f.value >= total:
            out.append(Change(Component.QUOTA, target, "keep",
                              f"{f.value:g} vCPUs >= {want} for the event" + (f" + {others} in use" if others else "")))
        else:
            out.append(Change(Component.QUOTA, target, "blocked",
                              f"the quota is {f.value:g} vCPUs and the event needs {want}"
                              + (f" (+ {others} in use by other machines)" if others else "")
                              + f": request {total} (aws service-quotas request-service-quota-increase --region "
                                f"{region} --service-code ec2 --quota-code {q.code} --desired-value {total}); "
                                "increases can take days"))
    return out
