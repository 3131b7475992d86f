"""The storage planner as pure functions: faked StorageFacts in, expected changes (and status, leftovers) out.
No root, no moto, no filesystem: every case runs in microseconds."""

from __future__ import annotations

from dataclasses import replace

import pytest

from datathon.storage.facts import DatasetFacts, GroupFacts, PolicyFacts, StorageFacts, StoreFacts
from datathon.storage.planner import leftovers, plan_changes, status_rows, teardown_changes

LOC = "s3://ev-imaging/imaging/"
ROOT = "/var/lib/datathon/ev-abc-datasets"
ORG = "arn:aws:iam::123456789012:role/organizers"
S3_SETTINGS = "private (public access blocked), AES256 encryption, tagged datathon:event=ev"
LOCAL_SETTINGS = "owned by root, group ev_teams, folders 750, files 640"


class Recorder:
    """Stands in for StorageRunner: records what a change would do when applied."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))


def bucket(**kw) -> StoreFacts:
    base = dict(exists=True, ours=True, made_by_datathon=True, settings=S3_SETTINGS,
                create="make bucket ev-imaging in us-east-1", describe="s3://ev-imaging/imaging/: private",
                name="bucket ev-imaging")
    return StoreFacts("s3", LOC, **{**base, **kw})


def folder(**kw) -> StoreFacts:
    base = dict(exists=True, ours=True, made_by_datathon=True, settings=LOCAL_SETTINGS, create=f"make {ROOT}",
                describe=f"{ROOT}: root:ev_teams", name=f"folder {ROOT}")
    return StoreFacts("local", ROOT, **{**base, **kw})


def pols(**kw) -> PolicyFacts:
    base = dict(bucket="ev-imaging", organizer_arn=ORG, workspace_role="ws", read_policy_name="datathon-ev-read",
                bucket_policy="in place", read_policy="in place")
    return PolicyFacts(**{**base, **kw})


def pushed(name="cxr", **kw) -> DatasetFacts:
    """A dataset fully in the store, its manifest current."""
    base = dict(files=10, bytes=10_000, manifest_current=True, stored_files=10, stored_bytes=10_000, present=10,
                keys=(f"{name}/", f"{name}.manifest.json"))
    return DatasetFacts(name, **{**base, **kw})


def s3(store=None, policies=None, datasets=None) -> StorageFacts:
    return StorageFacts(store or bucket(), policies or pols(), (pushed(),) if datasets is None else datasets)


def local(store=None, group=None, datasets=None) -> StorageFacts:
    return StorageFacts(store or folder(), None, (pushed(),) if datasets is None else datasets,
                        group or GroupFacts("ev_teams", exists=True, made_by_datathon=True))


def rows(changes):
    return [(c.action, c.component, c.target, c.reason) for c in changes]


NEW = f"make bucket ev-imaging in us-east-1: {S3_SETTINGS}"


@pytest.mark.parametrize("facts, expected", [
    pytest.param(None, [], id="no storage section"),
    pytest.param(
        s3(bucket(exists=False, ours=False, made_by_datathon=False),
           pols(bucket_policy="missing", read_policy="missing"),
           (DatasetFacts("cxr", files=10, bytes=10_000, todo_files=10, todo_bytes=10_000),)),
        [("create", "storage", LOC, NEW),
         ("update", "policy", f"read-only for teams on {LOC}",
          f"bucket policy on ev-imaging: only {ORG} writes (missing); read policy datathon-ev-read on role ws: "
          "GetObject/ListBucket on this bucket only (missing)"),
         ("load", "dataset", "cxr", "push 10 of 10 files (10.0 KB of 10.0 KB), 0 already there")],
        id="new store"),
    pytest.param(
        s3(),
        [("keep", "storage", LOC, f"{LOC} exists, {S3_SETTINGS}"),
         ("keep", "policy", f"read-only for teams on {LOC}",
          f"bucket policy: only {ORG} writes; role ws reads this bucket only"),
         ("keep", "dataset", "cxr", "all 10 files (10.0 KB) in the store with matching sha256")],
        id="all current"),
    pytest.param(
        s3(bucket(drift=("no default encryption",))),
        [("update", "storage", LOC, f"no default encryption: set {S3_SETTINGS}")],
        id="existing store whose settings drifted"),
    pytest.param(
        s3(bucket(ours=False, made_by_datathon=False, blocked="bucket ev-imaging exists and is not tagged")),
        [("blocked", "storage", LOC, "bucket ev-imaging exists and is not tagged")],
        id="blocked: a bucket not ours"),
    pytest.param(
        local(folder(ours=False, made_by_datathon=False, blocked=f"{ROOT} exists, holds files")),
        [("blocked", "storage", ROOT, f"{ROOT} exists, holds files")],
        id="blocked: a folder not ours"),
    pytest.param(
        local(folder(ours=False, made_by_datathon=False)),
        [("update", "storage", ROOT, f"not yet marked as this event file's store: set {LOCAL_SETTINGS}")],
        id="an empty folder is marked as ours"),
    pytest.param(
        s3(policies=pols(bucket_policy="differs")),
        [("update", "policy", f"read-only for teams on {LOC}",
          f"bucket policy on ev-imaging: only {ORG} writes (differs)")],
        id="policies pending"),
    pytest.param(
        s3(policies=pols(organizer_arn=None, workspace_role=None, bucket_policy="not wanted",
                         read_policy="not wanted")),
        [("keep", "policy", f"read-only for teams on {LOC}",
          "no bucket policy (no organizer_role_arn): who writes is left to IAM; no workspace_role_name: no read "
          "policy made")],
        id="no policies wanted"),
    pytest.param(
        s3(policies=pols(bucket_policy="unknown", read_policy="unknown", error="AccessDenied")),
        [("blocked", "policy", f"read-only for teams on {LOC}", "the policies cannot be read: AccessDenied")],
        id="policies cannot be read"),
    pytest.param(
        s3(datasets=(pushed(todo_files=4, todo_bytes=4_000, manifest_current=False),)),
        [("load", "dataset", "cxr", "push 4 of 10 files (4.0 KB of 10.0 KB), 6 already there")],
        id="a dataset partly pushed"),
    pytest.param(
        s3(datasets=(pushed(manifest_current=False),)),
        [("load", "dataset", "cxr", "all 10 files (10.0 KB) are there; write the manifest")],
        id="fully pushed, manifest missing"),
    pytest.param(
        s3(datasets=(DatasetFacts("cxr", folder_error="dataset cxr: folder /data/cxr not found"),)),
        [("blocked", "dataset", "cxr", "dataset cxr: folder /data/cxr not found; check storage.datasets[].path")],
        id="a dataset folder that is gone"),
])
def test_plan(facts, expected):
    changes = plan_changes(facts, Recorder())
    got = rows(changes)
    if len(expected) < len(got):  # a case names only what it is about: the rest is `keep`
        assert all(r[0] == "keep" for r in got if r not in expected), got
        got = [r for r in got if r in expected or r[0] != "keep"]
    assert got == expected


def test_changes_run_the_work_at_apply_time_only():
    run = Recorder()
    hashes = {"a.jpg": [3, 1, "ab"]}
    facts = s3(bucket(exists=False), pols(bucket_policy="missing"),
               (DatasetFacts("cxr", files=1, bytes=3, todo_files=1, todo_bytes=3, hashes=hashes),))
    changes = plan_changes(facts, run)
    assert run.calls == []  # planning did nothing
    for c in changes:
        c.run()
    assert run.calls == [("ensure_store",), ("apply_policies",), ("push", "cxr", hashes)]


ADOPTED = bucket(made_by_datathon=False)


@pytest.mark.parametrize("facts, expected, left", [
    pytest.param(None, [], [], id="no storage section"),
    pytest.param(
        s3(),
        [("drop", "policy", "read policy on role ws", "teams lose read access to the datasets"),
         ("drop", "storage", LOC, f"delete {LOC} and every dataset in it")],
        ["bucket ev-imaging", "read policy datathon-ev-read on role ws"],
        id="made by datathon"),
    pytest.param(
        s3(ADOPTED, pols(read_policy="not wanted", workspace_role=None)),
        [("drop", "storage", LOC, "adopted bucket: delete this event's datasets (cxr/, cxr.manifest.json), keep "
                                  "the bucket")],
        ["objects under cxr/", "objects under cxr.manifest.json"],
        id="adopted bucket"),
    pytest.param(
        s3(ADOPTED, pols(read_policy="not wanted", workspace_role=None), (pushed(keys=()),)),
        [("keep", "storage", LOC, "adopted, none of this event's datasets in it: left as found")], [],
        id="adopted bucket, already emptied"),
    pytest.param(
        s3(bucket(ours=False, made_by_datathon=False, blocked="not tagged"), pols(read_policy="not wanted"),
           (DatasetFacts("cxr"),)),
        [("keep", "storage", LOC, "not made by datathon for this event: left alone")], [],
        id="a bucket not ours"),
    pytest.param(
        s3(bucket(exists=False, ours=False, made_by_datathon=False), pols(read_policy="missing"), ()),
        [("keep", "storage", LOC, "no store")], [],
        id="nothing there"),
    pytest.param(
        local(),
        [("drop", "storage", ROOT, f"delete {ROOT} and every dataset in it"),
         ("drop", "group", "unix group ev_teams", "made by datathon for the teams, now empty")],
        [f"folder {ROOT}", "unix group ev_teams"],
        id="local store and its group"),
    pytest.param(
        local(folder(ours=False, made_by_datathon=False, blocked="holds files"),
              GroupFacts("ev_teams", exists=True, made_by_datathon=False)),
        [("keep", "storage", ROOT, "not made by datathon for this event: left alone")], [],
        id="a folder not ours, a group not ours"),
    pytest.param(
        local(group=GroupFacts("ev_teams", exists=True, made_by_datathon=True, members=("ev_alpha",))),
        [("drop", "storage", ROOT, f"delete {ROOT} and every dataset in it"),
         ("keep", "group", "unix group ev_teams", "still has members: ev_alpha")],
        [f"folder {ROOT}"],
        id="a group that still has members"),
    pytest.param(
        StorageFacts(bucket(exists=False, blocked="no credentials", error="no credentials")),
        [("blocked", "storage", LOC, "cannot be observed: no credentials")],
        [f"{LOC}: cannot be observed (no credentials)"],
        id="cannot be observed"),
])
def test_teardown_and_leftovers(facts, expected, left):
    run = Recorder()
    changes = teardown_changes(facts, run)
    assert rows(changes) == expected
    assert all(c.destructive for c in changes if c.action == "drop")
    assert leftovers(facts) == left
    assert run.calls == []


def test_teardown_runs_remove_only_what_it_names():
    run = Recorder()
    for facts in (s3(), s3(ADOPTED, pols(read_policy="not wanted", workspace_role=None)), local()):
        for c in teardown_changes(facts, run):
            if c.mutating:
                c.run()
    assert run.calls == [("remove_read_policy",), ("remove_store",),
                         ("remove_prefixes", ["cxr/", "cxr.manifest.json"]),
                         ("remove_store",), ("remove_group", "ev_teams")]


def status(facts):
    return [(r.component, r.name, r.state, r.healthy) for r in status_rows(facts)]


@pytest.mark.parametrize("facts, expected", [
    pytest.param(s3(), [("storage", LOC, "ok", True), ("storage", "read-only for teams", "enforced", True),
                        ("dataset", "cxr", "complete", True)], id="all well"),
    pytest.param(s3(policies=pols(bucket_policy="missing")),
                 [("storage", LOC, "ok", True), ("storage", "read-only for teams", "not enforced", False),
                  ("dataset", "cxr", "complete", True)], id="the bucket policy was removed behind datathon's back"),
    pytest.param(s3(policies=pols(read_policy="differs")),
                 [("storage", LOC, "ok", True), ("storage", "read-only for teams", "enforced", False),
                  ("dataset", "cxr", "complete", True)], id="the read policy was changed"),
    pytest.param(local(folder(drift=("mode 777 instead of 750",))),
                 [("storage", ROOT, "ok", True), ("storage", "read-only for teams", "not enforced", False),
                  ("dataset", "cxr", "complete", True)], id="the folder was opened up"),
    pytest.param(local(datasets=(pushed(present=7), DatasetFacts("ct"), DatasetFacts("mr", stored_error="bad json"))),
                 [("storage", ROOT, "ok", True), ("storage", "read-only for teams", "enforced", True),
                  ("dataset", "cxr", "incomplete", False), ("dataset", "ct", "not pushed", False),
                  ("dataset", "mr", "error", False)], id="datasets as the store holds them"),
    pytest.param(s3(bucket(exists=False, ours=False)), [("storage", LOC, "missing", False)], id="missing"),
    pytest.param(s3(bucket(ours=False, blocked="not tagged")), [("storage", LOC, "blocked", False)],
                 id="not ours"),
    pytest.param(StorageFacts(bucket(error="AccessDenied", blocked="AccessDenied")),
                 [("storage", LOC, "error", False)], id="cannot be observed"),
])
def test_status_comes_from_what_was_observed(facts, expected):
    assert status(facts) == expected


def test_status_detail_says_which_policy_is_off():
    detail = {r.name: r.detail for r in status_rows(s3(policies=pols(bucket_policy="differs")))}
    assert detail["read-only for teams"].startswith("bucket policy differs: run `datathon up`")
    assert status_rows(replace(s3(), policies=pols(organizer_arn=None, bucket_policy="not wanted")))[1].state == \
        "not enforced"
