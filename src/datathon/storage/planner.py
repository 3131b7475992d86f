"""The storage part's decisions, as pure functions of what was observed (`StorageFacts`): the plan of `up`, the
teardown of `down`, what is left after it, and `status`. No I/O here: the work is done at apply time by the
`Runner` the changes call (`storage/sync.py`), and a push re-checks the store when it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from datathon.core.plan import Change
from datathon.core.status import ComponentStatus
from datathon.storage.facts import DatasetFacts, PolicyFacts, StorageFacts


class Runner(Protocol):
    """What the changes do when they are applied."""

    def ensure_store(self) -> None: ...
    def apply_policies(self) -> None: ...
    def push(self, dataset: str, known: Mapping[str, list]) -> None: ...
    def remove_read_policy(self) -> None: ...
    def remove_store(self) -> None: ...
    def remove_prefixes(self, prefixes: list[str]) -> None: ...
    def remove_group(self, group: str) -> None: ...


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# -- up ----------------------------------------------------------------------------------------------------------

def plan_changes(facts: StorageFacts | None, run: Runner) -> list[Change]:
    """The store (made, private, encrypted, marked as this event's), its policies, one push per dataset."""
    if facts is None:
        return []
    s = facts.store
    if s.blocked:
        return [Change("storage", s.location, "blocked", s.blocked)]
    todo = [*s.drift, *([] if s.ours or not s.exists else ["not yet marked as this event file's store"])]
    if not s.exists:
        action, reason = "create", f"{s.create}: {s.settings}"
    elif todo:
        action, reason = "update", f"{'; '.join(todo)}: set {s.settings}"
    else:
        action, reason = "keep", f"{s.location} exists, {s.settings}"
    changes = [Change("storage", s.location, action, reason, run=run.ensure_store)]  # type: ignore[arg-type]
    if facts.policies is not None:
        changes.append(_policy_change(facts.policies, s.location, run))
    changes += [_dataset_change(d, run) for d in facts.datasets]
    return changes


def pending_policies(p: PolicyFacts) -> list[str]:
    todo = []
    if p.bucket_policy in ("missing", "differs"):
        todo.append(f"bucket policy on {p.bucket}: only {p.organizer_arn} writes ({p.bucket_policy})")
    if p.read_policy in ("missing", "differs"):
        todo.append(f"read policy {p.read_policy_name} on role {p.workspace_role}: GetObject/ListBucket on this "
                    f"bucket only ({p.read_policy})")
    return todo


def policy_note(p: PolicyFacts) -> str:
    bucket = (f"bucket policy: only {p.organizer_arn} writes" if p.organizer_arn
              else "no bucket policy (no organizer_role_arn): who writes is left to IAM")
    read = (f"role {p.workspace_role} reads this bucket only" if p.workspace_role
            else "no workspace_role_name: no read policy made")
    return f"{bucket}; {read}"


def _policy_change(p: PolicyFacts, location: str, run: Runner) -> Change:
    target = f"read-only for teams on {location}"
    if p.error:
        return Change("policy", target, "blocked", f"the policies cannot be read: {p.error}")
    todo = pending_policies(p)
    return Change("policy", target, "update" if todo else "keep", "; ".join(todo) or policy_note(p),
                  run=run.apply_policies)


def _dataset_change(d: DatasetFacts, run: Runner) -> Change:
    if d.folder_error:
        return Change("dataset", d.name, "blocked", f"{d.folder_error}; check storage.datasets[].path")
    n, size = d.files, human(d.bytes)
    if d.todo_files:
        action, reason = "load", (f"push {d.todo_files} of {n} files ({human(d.todo_bytes)} of {size}), "
                                  f"{n - d.todo_files} already there")
    elif not d.manifest_current:
        action, reason = "load", f"all {n} files ({size}) are there; write the manifest"
    else:
        action, reason = "keep", f"all {n} files ({size}) in the store with matching sha256"
    return Change("dataset", d.name, action, reason, run=lambda: run.push(d.name, d.hashes))  # type: ignore[arg-type]


# -- down --------------------------------------------------------------------------------------------------------

def adopted_keys(facts: StorageFacts) -> list[str]:
    """In a bucket an organizer tagged for the event (not one datathon made): this event's datasets and manifests
    that are still there."""
    s = facts.store
    if s.kind != "s3" or not s.ours or s.made_by_datathon:
        return []
    return [k for d in facts.datasets for k in d.keys]


def teardown_changes(facts: StorageFacts | None, run: Runner) -> list[Change]:
    """Remove the store (only one made for this event; from an adopted bucket only this event's datasets), the
    teams' read policy, and the group datathon made once nobody is in it."""
    if facts is None:
        return []
    s = facts.store
    if s.error:
        return [Change("storage", s.location, "blocked", f"cannot be observed: {s.error}")]
    changes = []
    p = facts.policies
    if p is not None and p.read_policy in ("in place", "differs"):
        changes.append(Change("policy", f"read policy on role {p.workspace_role}", "drop",
                              "teams lose read access to the datasets", run=run.remove_read_policy, destructive=True))
    adopted = adopted_keys(facts)
    if s.exists and s.made_by_datathon:
        changes.append(Change("storage", s.location, "drop", f"delete {s.location} and every dataset in it",
                              run=run.remove_store, destructive=True))
    elif adopted:
        changes.append(Change("storage", s.location, "drop",
                              f"adopted bucket: delete this event's datasets ({', '.join(adopted)}), keep the bucket",
                              run=lambda: run.remove_prefixes(adopted), destructive=True))
    elif s.exists and s.ours:
        changes.append(Change("storage", s.location, "keep", "adopted, none of this event's datasets in it: left "
                                                             "as found"))
    elif s.exists:
        changes.append(Change("storage", s.location, "keep", "not made by datathon for this event: left alone"))
    else:
        changes.append(Change("storage", s.location, "keep", "no store"))
    g = facts.group
    if g is not None and g.made_by_datathon and g.exists:
        if g.members:
            changes.append(Change("group", f"unix group {g.name}", "keep",
                                  f"still has members: {', '.join(g.members)}"))
        else:
            changes.append(Change("group", f"unix group {g.name}", "drop", "made by datathon for the teams, now empty",
                                  run=lambda: run.remove_group(g.name), destructive=True))
    return changes


def leftovers(facts: StorageFacts | None) -> list[str]:
    """What of the storage part is still there after `down` (empty: proven gone)."""
    if facts is None:
        return []
    s = facts.store
    if s.error:
        return [f"{s.location}: cannot be observed ({s.error})"]
    left = [s.name or s.location] if s.exists and s.made_by_datathon else []
    left += [f"objects under {k}" for k in adopted_keys(facts)]
    p = facts.policies
    if p is not None and p.read_policy in ("in place", "differs", "unknown"):
        left.append(f"read policy {p.read_policy_name} on role {p.workspace_role}")
    g = facts.group
    if g is not None and g.made_by_datathon and g.exists and not g.members:
        left.append(f"unix group {g.name}")
    return left


# -- status ------------------------------------------------------------------------------------------------------

def status_rows(facts: StorageFacts | None) -> list[ComponentStatus]:
    """The store, whether teams are kept read-only (as observed), and each dataset against its manifest."""
    if facts is None:
        return []
    s = facts.store
    if s.error:
        return [ComponentStatus("storage", s.location, "error", s.error, healthy=False)]
    if s.blocked:
        return [ComponentStatus("storage", s.location, "blocked", s.blocked, healthy=False)]
    if not s.exists:
        return [ComponentStatus("storage", s.location, "missing", "run `datathon up`", healthy=False)]
    out = [ComponentStatus("storage", s.location, "ok", s.describe, extra={"backend": s.kind, "location": s.location}),
           _read_only_row(facts)]
    for d in facts.datasets:
        out.append(_dataset_row(d))
    return out


def _read_only_row(facts: StorageFacts) -> ComponentStatus:
    s, p, g = facts.store, facts.policies, facts.group
    name = "read-only for teams"
    if p is not None:
        if p.error:
            return ComponentStatus("storage", name, "error", f"the policies cannot be read: {p.error}", healthy=False)
        enforced = p.bucket_policy == "in place"
        bucket = {"in place": f"bucket policy in place: only {p.organizer_arn} writes",
                  "not wanted": "no bucket policy (no organizer_role_arn): who writes is left to IAM",
                  }.get(p.bucket_policy, f"bucket policy {p.bucket_policy}: run `datathon up`")
        read = {"in place": f"role {p.workspace_role} reads this bucket only",
                "not wanted": "no workspace_role_name: no read policy made",
                }.get(p.read_policy, f"read policy on role {p.workspace_role} {p.read_policy}: run `datathon up`")
        return ComponentStatus("storage", name, "enforced" if enforced else "not enforced", f"{bucket}; {read}",
                               healthy=enforced and p.read_policy in ("in place", "not wanted"))
    group = g.name if g is not None else "the teams' group"
    if s.drift:
        return ComponentStatus("storage", name, "not enforced", f"{'; '.join(s.drift)}: run `datathon up`",
                               healthy=False)
    return ComponentStatus("storage", name, "enforced", f"by Unix permissions: root:{group} 0750/0640")


def _dataset_row(d: DatasetFacts) -> ComponentStatus:
    if d.stored_error:
        return ComponentStatus("dataset", d.name, "error", d.stored_error, healthy=False)
    if d.stored_files is None:
        return ComponentStatus("dataset", d.name, "not pushed", f"`datathon data push {d.name}`", healthy=False)
    total = d.stored_files
    return ComponentStatus(
        "dataset", d.name, "complete" if d.present == total else "incomplete",
        f"{d.present}/{total} files of the manifest present ({human(d.stored_bytes)}); "
        f"`datathon data verify {d.name}` checks every sha256",
        healthy=d.present == total, extra={"files": total, "present": d.present})
