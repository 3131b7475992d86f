"""Imaging datasets: push -> verify -> pull against a moto server (boto3 over HTTP), resume after a kill, corrupted
objects named, the read-only policies as documents and through the API, and the local store's permissions."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import boto3
import pytest
import yaml
from moto_server import CREDENTIALS, moto_server
from policy_eval import decide

from conftest import make_context
from datathon.core import unix
from datathon.core.context import Context
from datathon.core.state import StateStore
from datathon.errors import ProvisionError
from datathon.storage import get_store
from datathon.storage.manifest import manifest_key
from datathon.storage.policies import Policies, bucket_policy, read_policy, read_policy_name
from datathon.storage.sync import (
    apply_storage,
    ensure_store,
    plan_storage,
    state_dir,
    storage_leftovers,
    storage_status,
    teardown_storage,
)
from datathon.storage.transfer import pull, push, verify

MB = 2**20
SMALL_FILES = 2000
BIG_FILES = 3
PART_MB = 8


# -- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_url():
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(moto_url, monkeypatch):
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    return moto_url


def make_dataset(root: Path, small: int, big: int) -> Path:
    rng = random.Random(7)
    for i in range(small):
        folder = root / "files" / f"p1{i % 10}" / f"p{i % 97:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img{i:05d}.jpg").write_bytes(rng.randbytes(rng.randint(1024, 4096)))
    for i in range(big):
        (root / f"big{i}.dcm").write_bytes(os.urandom(9 * MB + 12345 * i))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """The acceptance data: 2,000 files of 1-4 KB in nested folders plus 3 files of ~9 MB (two 8 MB parts)."""
    return make_dataset(tmp_path_factory.mktemp("cxr"), SMALL_FILES, BIG_FILES)


@pytest.fixture(scope="module")
def few(tmp_path_factory) -> Path:
    """A smaller dataset of the same shape for the failure tests: 300 small files and 2 multipart-sized ones."""
    return make_dataset(tmp_path_factory.mktemp("few"), 300, 2)


def test_an_adopted_bucket_loses_only_the_events_datasets_at_down(aws, small_dataset, tmp_path):
    """A bucket the organizer tagged for the event (datathon did not create it): `down` removes what datathon
    pushed and keeps the bucket and everything else in it."""
    ctx = s3_context(tmp_path, aws, small_dataset)
    s3, bucket = plain_client(aws), ctx.config.storage.bucket
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "datathon:event", "Value": ctx.config.event}]})
    s3.put_object(Bucket=bucket, Key="theirs.txt", Body=b"someone else's")
    apply_storage(ctx, plan_storage(ctx))
    assert s3.list_objects_v2(Bucket=bucket, Prefix="imaging/cxr/")["KeyCount"] > 0
    changes = [c for c in teardown_storage(ctx) if c.component == "storage"]
    assert [c.action for c in changes] == ["drop"] and "keep the bucket" in changes[0].reason
    apply_storage(ctx, changes)
    assert storage_leftovers(ctx) == []
    assert s3.list_objects_v2(Bucket=bucket, Prefix="imaging/")["KeyCount"] == 0
    assert s3.get_object(Bucket=bucket, Key="theirs.txt")["Body"].read() == b"someone else's"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def event_text(event: str, storage: dict) -> str:
    return yaml.safe_dump({"event": event, "teams": {"count": 2}, "databases": [{"name": f"{event}db"}],
                           "storage": storage}, sort_keys=False)


def s3_context(folder: Path, url: str, dataset: Path, **extra) -> Context:
    storage = {"backend": "s3", "bucket": unique("dt-test-"), "endpoint_url": url, "prefix": "imaging",
               "concurrency": 16, "part_size_mb": PART_MB, "datasets": [{"name": "cxr", "path": str(dataset)}],
               **extra}
    return make_context(folder, event_text(unique("ev"), storage))


def count_requests(store, names=("PutObject", "UploadPart", "CreateMultipartUpload", "HeadObject")) -> Counter:
    """Requests the store's client sends, by operation (boto3's own event hooks: nothing is faked)."""
    counts: Counter = Counter()
    keys: dict[str, list[str]] = {n: [] for n in names}

    def hook(params, model, **_):
        counts[model.name] += 1
        keys[model.name].append(params.get("Key", ""))

    for n in names:
        store.client.meta.events.register(f"before-parameter-build.s3.{n}", hook)
    counts.keys_by_op = keys  # type: ignore[attr-defined]
    return counts


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def plain_client(url: str):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1")


# -- S3 round trip ----------------------------------------------------------------------------------------
def test_s3_round_trip_is_byte_identical_and_a_second_push_sends_nothing(aws, dataset, tmp_path):
    ctx = s3_context(tmp_path, aws, dataset)
    store = get_store(ctx)
    plan = plan_storage(ctx)
    assert [(c.component, c.action) for c in plan] == [("storage", "create"), ("policy", "keep"),
                                                      ("dataset", "load")]
    assert f"push {SMALL_FILES + BIG_FILES} of {SMALL_FILES + BIG_FILES} files" in plan[2].reason
    apply_storage(ctx, plan[:2])  # the bucket; the push itself runs here so that its requests can be counted
    counts = count_requests(store)
    first = push(store, "cxr", dataset, workers=16, state_dir=state_dir(ctx))
    assert first.sent_files == SMALL_FILES + BIG_FILES
    assert counts["PutObject"] == SMALL_FILES + 1  # every small file and the manifest, once
    assert counts["CreateMultipartUpload"] == BIG_FILES and counts["UploadPart"] == 2 * BIG_FILES

    s3, bucket = plain_client(aws), ctx.config.storage.bucket
    pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(pab.values()) and len(pab) == 4
    enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert enc["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags["datathon:event"] == ctx.config.event
    head = s3.head_object(Bucket=bucket, Key="imaging/cxr/big1.dcm")
    assert head["Metadata"]["sha256"] == hashlib.sha256((dataset / "big1.dcm").read_bytes()).hexdigest()
    assert head["ETag"].strip('"').endswith("-2")  # went up in two parts

    result = verify(store, "cxr")
    assert result.ok and result.files == SMALL_FILES + BIG_FILES and not result.extra

    out = tmp_path / "pulled"
    pulled = pull(store, "cxr", out, workers=16)
    assert pulled.ok and pulled.fetched == SMALL_FILES + BIG_FILES
    assert tree_digest(out) == tree_digest(dataset)

    again = plan_storage(ctx)
    assert [c.action for c in again] == ["keep", "keep", "keep"], [(c.target, c.reason) for c in again]
    counts.clear()
    second = push(store, "cxr", dataset, workers=16, state_dir=state_dir(ctx))
    assert second.sent_files == 0 and counts["PutObject"] == 0 and counts["UploadPart"] == 0
    assert counts["HeadObject"] == 0  # the journal of the first push answers for every object
    store.teardown()
    assert store.leftovers() == []


def test_push_killed_midway_finishes_without_resending_completed_files(aws, dataset, tmp_path):
    ctx = s3_context(tmp_path, aws, dataset)
    store = get_store(ctx)
    ensure_store(ctx, store)
    env = {**os.environ, **CREDENTIALS}
    proc = subprocess.Popen([sys.executable, "-m", "datathon.cli", "data", "push", "-c", str(ctx.loaded.path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    s3, bucket = plain_client(aws), ctx.config.storage.bucket
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            n = s3.list_objects_v2(Bucket=bucket, Prefix="imaging/cxr/").get("KeyCount", 0)
            if n >= 300:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    present = {o.key for o in store.list("cxr/").values()}
    total = SMALL_FILES + BIG_FILES
    assert 300 <= len(present) < total, "the push must be killed midway"
    assert store.read_bytes(manifest_key("cxr")) is None  # the manifest goes last

    counts = count_requests(store)
    result = push(store, "cxr", dataset, workers=16, state_dir=state_dir(ctx))
    sent = {k.removeprefix("imaging/") for op in ("PutObject", "CreateMultipartUpload")
            for k in counts.keys_by_op[op]} - {manifest_key("cxr")}
    assert not sent & present, "a file completed before the kill was sent again"
    assert sent | present == {f"cxr/{p.relative_to(dataset).as_posix()}" for p in dataset.rglob("*") if p.is_file()}
    assert result.sent_files == total - len(present) == len(sent)
    assert counts["HeadObject"] <= len(present)  # only objects the killed run's journal did not record
    assert verify(store, "cxr").ok
    store.teardown()


def test_verify_names_missing_and_corrupted_objects(aws, few, tmp_path):
    ctx = s3_context(tmp_path, aws, few)
    store = get_store(ctx)
    apply_storage(ctx, plan_storage(ctx))
    s3, bucket = plain_client(aws), ctx.config.storage.bucket
    victim, twin, gone = "files/p10/p00000/img00000.jpg", "files/p11/p00001/img00001.jpg", "big0.dcm"
    s3.put_object(Bucket=bucket, Key=f"imaging/cxr/{victim}", Body=b"not an image")
    original = (few / twin).read_bytes()
    meta = s3.head_object(Bucket=bucket, Key=f"imaging/cxr/{twin}")["Metadata"]
    s3.put_object(Bucket=bucket, Key=f"imaging/cxr/{twin}", Body=bytes(len(original)), Metadata=meta)  # same size
    s3.delete_object(Bucket=bucket, Key=f"imaging/cxr/{gone}")

    result = verify(store, "cxr")
    assert not result.ok and result.missing == [gone]
    assert [p for p, _ in result.different] == [victim]  # size differs
    deep = verify(store, "cxr", deep=True)  # reading the bytes back also finds the same-size, same-metadata one
    assert sorted(p for p, _ in deep.different) == sorted([victim, twin])
    assert "content sha256" in dict(deep.different)[twin]

    redo = push(store, "cxr", few, workers=8, state_dir=state_dir(ctx))  # push repairs what it can see
    assert redo.sent_files == 2
    store.teardown()


def test_pull_with_checksum_failure_names_the_file_and_keeps_no_partial_file(aws, few, tmp_path):
    ctx = s3_context(tmp_path, aws, few)
    store = get_store(ctx)
    apply_storage(ctx, plan_storage(ctx))
    s3, bucket = plain_client(aws), ctx.config.storage.bucket
    bad = "files/p13/p00003/img00003.jpg"
    good = (few / bad).read_bytes()
    meta = s3.head_object(Bucket=bucket, Key=f"imaging/cxr/{bad}")["Metadata"]
    s3.put_object(Bucket=bucket, Key=f"imaging/cxr/{bad}", Body=good[::-1], Metadata=meta)  # same size, same metadata

    out = tmp_path / "team"
    result = pull(store, "cxr", out, prefix="files/p13/", workers=8)
    wanted = sorted(p.relative_to(few).as_posix() for p in (few / "files" / "p13").rglob("*.jpg"))
    assert result.files == len(wanted) == 30
    assert [p for p, _ in result.failed] == [bad] and "sha256" in result.failed[0][1]
    assert not (out / bad).exists()
    assert not [p for p in out.rglob("*") if "datathon-part" in p.name]  # no partial file anywhere
    assert result.fetched == len(wanted) - 1

    (out / wanted[0]).unlink()  # resumable: only what is not there (or wrong) is fetched again
    again = pull(store, "cxr", out, prefix="files/p13/", workers=8)
    assert again.skipped == len(wanted) - 2 and again.fetched == 1 and [p for p, _ in again.failed] == [bad]

    only = pull(store, "cxr", tmp_path / "glob", pattern="big*.dcm", workers=4)
    assert only.ok and only.fetched == 2
    assert tree_digest(tmp_path / "glob") == {f"big{i}.dcm": tree_digest(few)[f"big{i}.dcm"] for i in range(2)}
    store.teardown()


# -- read-only policies ---------------------------------------------------------------------------------
ORGANIZER = "arn:aws:iam::123456789012:role/organizers"
TEAM_ROLE = "arn:aws:iam::123456789012:role/workspaces"


def test_read_policy_allows_reading_this_bucket_only():
    doc = read_policy("sg-imaging", "imaging/")
    team = {"principal": TEAM_ROLE}
    assert decide([doc], action="s3:GetObject", resource="arn:aws:s3:::sg-imaging/imaging/cxr/a.jpg", **team) == "allow"
    assert decide([doc], action="s3:ListBucket", resource="arn:aws:s3:::sg-imaging", prefix="imaging/cxr/",
                  **team) == "allow"
    assert decide([doc], action="s3:ListBucket", resource="arn:aws:s3:::sg-imaging", prefix="other/",
                  **team) == "implicit-deny"
    for action, resource in [("s3:GetObject", "arn:aws:s3:::sg-imaging/secret.txt"),
                             ("s3:GetObject", "arn:aws:s3:::another-bucket/imaging/x"),
                             ("s3:ListBucket", "arn:aws:s3:::another-bucket"),
                             ("s3:PutObject", "arn:aws:s3:::sg-imaging/imaging/cxr/a.jpg"),
                             ("s3:DeleteObject", "arn:aws:s3:::sg-imaging/imaging/cxr/a.jpg"),
                             ("s3:PutBucketPolicy", "arn:aws:s3:::sg-imaging")]:
        assert decide([doc], action=action, resource=resource, **team) == "implicit-deny", (action, resource)
    actions = {a for s in doc["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {"s3:GetObject", "s3:ListBucket"}  # not AmazonS3ReadOnlyAccess's s3:Get*/s3:List* on *
    assert all("*" != r and "sg-imaging" in r for s in doc["Statement"] for r in [s["Resource"]])


def test_bucket_policy_refuses_writes_from_everyone_but_the_organizer():
    doc = bucket_policy("sg-imaging", ORGANIZER)
    obj, bucket = "arn:aws:s3:::sg-imaging/imaging/cxr/a.jpg", "arn:aws:s3:::sg-imaging"
    for who in (TEAM_ROLE, "arn:aws:iam::123456789012:user/alice", "arn:aws:iam::999999999999:root"):
        for action, res in [("s3:PutObject", obj), ("s3:DeleteObject", obj), ("s3:PutObjectAcl", obj),
                            ("s3:PutBucketPolicy", bucket), ("s3:DeleteBucketPolicy", bucket),
                            ("s3:DeleteBucket", bucket), ("s3:PutBucketAcl", bucket),
                            ("s3:PutBucketOwnershipControls", bucket), ("s3:PutObjectVersionAcl", obj),
                            ("s3:PutBucketVersioning", bucket), ("s3:AbortMultipartUpload", obj),
                            ("s3:PutReplicationConfiguration", bucket), ("s3:BypassGovernanceRetention", obj)]:
            assert decide([doc], principal=who, action=action, resource=res) == "deny", (who, action)
        assert decide([doc], principal=who, action="s3:GetObject", resource=obj) == "implicit-deny"  # IAM decides
    for action, res in [("s3:PutObject", obj), ("s3:DeleteObject", obj), ("s3:DeleteBucket", bucket)]:
        assert decide([doc], principal=ORGANIZER, action=action, resource=res) == "implicit-deny"  # not refused
    assert decide([doc], principal=ORGANIZER, action="s3:PutObject", resource=obj, secure=False) == "deny"
    # together: a team's role reads with its IAM policy, and still cannot write whatever it is granted
    docs = [doc, read_policy("sg-imaging", "imaging/"), {"Statement": [{"Effect": "Allow", "Action": "s3:*",
                                                                        "Resource": "*"}]}]
    assert decide(docs, principal=TEAM_ROLE, action="s3:GetObject", resource=obj) == "allow"
    assert decide(docs, principal=TEAM_ROLE, action="s3:PutObject", resource=obj) == "deny"
    assert "TLSOnly" not in json.dumps(bucket_policy("b-x-y", ORGANIZER, tls_only=False))


def test_policies_are_applied_through_the_api_read_back_and_removed(aws, dataset, tmp_path):
    ctx = s3_context(tmp_path, aws, dataset, organizer_role_arn=ORGANIZER, workspace_role_name=unique("ws-"))
    cfg = ctx.config.storage
    store = get_store(ctx)
    ensure_store(ctx, store)
    s3, iam = plain_client(aws), boto3.client("iam", endpoint_url=aws, region_name="us-east-1")
    applied = json.loads(s3.get_bucket_policy(Bucket=cfg.bucket)["Policy"])
    assert applied == bucket_policy(cfg.bucket, ORGANIZER, tls_only=False)  # moto speaks http: no TLS-only rule
    role_doc = iam.get_role_policy(RoleName=cfg.workspace_role_name, PolicyName=read_policy_name(ctx.config.event))
    doc = role_doc["PolicyDocument"]
    assert (json.loads(doc) if isinstance(doc, str) else doc) == read_policy(cfg.bucket, "imaging/")
    tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=cfg.workspace_role_name)["Tags"]}
    assert tags["datathon:event"] == ctx.config.event
    pol = Policies(store, event=ctx.config.event, organizer_arn=ORGANIZER, workspace_role=cfg.workspace_role_name)
    assert pol.pending() == []  # idempotent: a second `up` changes nothing
    assert [c.action for c in plan_storage(ctx)[:2]] == ["keep", "keep"]
    assert {r.name: r.state for r in storage_status(ctx)}["read-only for teams"] == "enforced"
    s3.delete_bucket_policy(Bucket=cfg.bucket)  # behind datathon's back: status reads the policy, not the file
    row = {r.name: r for r in storage_status(ctx)}["read-only for teams"]
    assert (row.state, row.healthy) == ("not enforced", False) and "bucket policy missing" in row.detail
    plan = plan_storage(ctx)
    assert [c.action for c in plan[:2]] == ["keep", "update"]
    apply_storage(ctx, plan[:2])
    assert {r.name: r.state for r in storage_status(ctx)}["read-only for teams"] == "enforced"

    changes = teardown_storage(ctx)
    assert {(c.component, c.action) for c in changes} == {("policy", "drop"), ("storage", "drop")}
    apply_storage(ctx, changes)
    assert storage_leftovers(ctx) == []
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName=cfg.workspace_role_name)  # storage made it, nothing else used it: gone


def test_a_bucket_not_tagged_for_the_event_is_neither_adopted_nor_deleted(aws, dataset, tmp_path):
    ctx = s3_context(tmp_path, aws, dataset)
    s3, bucket = plain_client(aws), ctx.config.storage.bucket
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="theirs.txt", Body=b"someone else's")
    plan = plan_storage(ctx)
    assert plan[0].action == "blocked" and "not tagged datathon:event" in plan[0].reason
    with pytest.raises(ProvisionError, match="does not adopt it"):
        apply_storage(ctx, plan)
    assert [c.action for c in teardown_storage(ctx)] == ["keep"] and storage_leftovers(ctx) == []
    assert s3.get_object(Bucket=bucket, Key="theirs.txt")["Body"].read() == b"someone else's"


# -- local backend ---------------------------------------------------------------------------------------
def _local_context(folder: Path, dataset: Path) -> Context:
    """A local store where teams could reach it (a pytest folder is 0700, which the store's plan refuses):
    /var/lib/datathon/pytest-<event>/store, removed by the test. `folder` gets a link `store` to it."""
    from datathon.core.state import SYSTEM_ROOT

    event = unique("lt")
    base = SYSTEM_ROOT / f"pytest-{event}"
    base.mkdir(parents=True, mode=0o755)
    os.symlink(base / "store", folder / "store")  # the tests' own shortcut; the event file names the real path
    return make_context(folder, event_text(event, {"path": str(base / "store"),
                                                   "datasets": [{"name": "scans", "path": str(dataset)}]}))


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    root = tmp_path / "scans"
    for i in range(30):
        f = root / f"s{i % 3}" / f"{i}.jpg"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(os.urandom(100 + i))
    return root


@pytest.mark.skipif(os.geteuid() != 0, reason="the local store belongs to root")
def test_local_store_is_root_owned_group_readable_and_refuses_links(tmp_path, small_dataset):
    ctx = _local_context(tmp_path, small_dataset)
    group = f"{ctx.config.event}_teams"
    store = get_store(ctx)
    try:
        apply_storage(ctx, plan_storage(ctx))
        gid = unix.group_gid(group)
        root = get_store(ctx).root
        for p in [root, *root.rglob("*")]:
            st = p.lstat()
            assert (st.st_uid, st.st_gid) == (0, gid), p
            assert stat.S_IMODE(st.st_mode) == (0o750 if p.is_dir() else 0o640), p
            assert not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        assert tree_digest(root / "scans") == tree_digest(small_dataset)
        assert verify(store, "scans").ok

        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (root / "scans" / "s1" / "1.jpg").unlink()
        os.rename(root / "scans" / "s1", root.parent / "moved")
        os.symlink(elsewhere, root / "scans" / "s1")  # a planted link where a folder belongs
        with pytest.raises(ProvisionError, match="symbolic link"):
            push(store, "scans", small_dataset, workers=4)
        assert list(elsewhere.iterdir()) == []
        os.unlink(root / "scans" / "s1")
        os.rename(root.parent / "moved", root / "scans" / "s1")

        target = tmp_path / "target.txt"
        target.write_text("keep me")
        os.symlink(target, root / "scans" / "s1" / "1.jpg")  # a planted link where a file belongs
        (root / "scans" / "s2" / "2.jpg").write_bytes(b"changed")
        result = push(store, "scans", small_dataset, workers=4, state_dir=state_dir(ctx))
        assert result.sent_files == 2
        assert target.read_text() == "keep me" and not (root / "scans" / "s1" / "1.jpg").is_symlink()
        assert verify(store, "scans").ok

        made = ctx.state.load()["storage"]["group_created"]
        assert made is True
        apply_storage(ctx, teardown_storage(ctx))
        assert not root.exists() and not unix.group_exists(group) and storage_leftovers(ctx) == []
    finally:
        shutil.rmtree(get_store(ctx).root.parent, ignore_errors=True)
        unix.remove_group(group)


def snapshot(*roots: Path) -> dict:
    """Every path under the roots with its mode, size, mtime and sha256: a write of any kind changes it."""
    out = {}
    for root in roots:
        for p in [root, *sorted(root.rglob("*"))] if root.exists() else []:
            st = p.lstat()
            out[str(p)] = (st.st_mode, st.st_size, st.st_mtime_ns,
                           hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else "")
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="the local store belongs to root")
def test_plan_writes_nothing_neither_in_the_state_folder_nor_in_the_store(tmp_path, small_dataset, monkeypatch):
    from datathon.storage import manifest
    from datathon.storage.part import StoragePart

    ctx = _local_context(tmp_path, small_dataset)
    part = StoragePart(ctx)
    base = part.store.root.parent
    try:
        before = snapshot(ctx.state.root, base)
        changes = part.plan(part.observe())
        assert snapshot(ctx.state.root, base) == before and not ctx.state.root.exists()  # a fresh event: nothing
        assert [(c.component, c.action) for c in changes] == [("storage", "create"), ("dataset", "load")]
        hashed, sha256 = [], manifest.file_sha256
        monkeypatch.setattr(manifest, "file_sha256", lambda p: hashed.append(p) or sha256(p))
        apply_storage(ctx, changes)
        assert hashed == []  # the push took the hashes the plan observed: one `up` reads the dataset once
        monkeypatch.undo()
        assert (state_dir(ctx) / "scans.hashes.json").exists()  # the push wrote the cache, at apply time

        (small_dataset / "s0" / "new.jpg").write_bytes(b"new")
        (small_dataset / "s1" / "1.jpg").write_bytes(b"changed")
        before = snapshot(ctx.state.root, base)
        changes = part.plan(part.observe())
        assert snapshot(ctx.state.root, base) == before  # cache, journal, state.json and store untouched
        assert [c.reason for c in changes if c.component == "dataset"] == [
            "push 2 of 31 files (10 B of 3.3 KB), 29 already there"]
        part.status(part.observe())
        part.teardown(part.observe())
        part.leftovers()
        assert snapshot(ctx.state.root, base) == before  # nor do status, teardown planning and leftovers
        apply_storage(ctx, changes)
        assert [c.action for c in part.plan(part.observe())] == ["keep", "keep"]
    finally:
        shutil.rmtree(base, ignore_errors=True)
        unix.remove_group(f"{ctx.config.event}_teams")


@pytest.mark.skipif(os.geteuid() != 0, reason="the local store belongs to root")
def test_a_folder_datathon_did_not_make_is_never_taken_over_nor_deleted(tmp_path, small_dataset):
    ctx = _local_context(tmp_path, small_dataset)
    root = get_store(ctx).root
    try:
        root.mkdir()
        (root / "precious.txt").write_text("not datathon's")
        plan = plan_storage(ctx)
        assert plan[0].action == "blocked" and "was not made by datathon" in plan[0].reason
        with pytest.raises(ProvisionError, match="was not made by datathon"):
            apply_storage(ctx, plan)
        assert [c.action for c in teardown_storage(ctx) if c.component == "storage"] == ["keep"]
        assert (root / "precious.txt").read_text() == "not datathon's" and storage_leftovers(ctx) == []
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)
        unix.remove_group(f"{ctx.config.event}_teams")


@pytest.mark.skipif(os.geteuid() != 0, reason="the local store belongs to root")
def test_a_dataset_file_swapped_for_a_link_or_changed_after_hashing_is_not_stored(tmp_path, small_dataset):
    ctx = _local_context(tmp_path, small_dataset)
    store = get_store(ctx)
    secret = tmp_path / "secret.txt"
    secret.write_text("root's secret")
    try:
        apply_storage(ctx, plan_storage(ctx))
        victim = small_dataset / "s0" / "0.jpg"
        victim.unlink()
        os.symlink(secret, victim)
        with pytest.raises(ProvisionError):
            store.put_file("scans/s0/0.jpg", victim, sha256="0" * 64)
        victim.unlink()
        victim.write_bytes(b"new bytes")
        with pytest.raises(ProvisionError, match="changed since it was hashed"):
            store.put_file("scans/s0/0.jpg", victim, sha256="0" * 64)
        assert b"secret" not in (store.read_bytes("scans/s0/0.jpg") or b"")
    finally:
        shutil.rmtree(store.root.parent, ignore_errors=True)
        unix.remove_group(f"{ctx.config.event}_teams")


@pytest.mark.skipif(os.geteuid() != 0, reason="the local store belongs to root")
def test_cli_push_verify_pull_on_the_local_backend(tmp_path, small_dataset):
    from typer.testing import CliRunner

    from datathon.cli import app

    ctx = _local_context(tmp_path, small_dataset)
    cfg = str(ctx.loaded.path)
    group = f"{ctx.config.event}_teams"
    runner = CliRunner()
    try:
        res = runner.invoke(app, ["data", "push", "-c", cfg, "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["datasets"][0]["sent_files"] == 30
        res = runner.invoke(app, ["data", "push", "scans", "-c", cfg, "--json"])
        assert json.loads(res.output)["datasets"][0]["sent_files"] == 0
        res = runner.invoke(app, ["data", "push", "nope", "-c", cfg])
        assert res.exit_code == 1 and "no dataset 'nope'" in res.output

        res = runner.invoke(app, ["data", "verify", "-c", cfg, "--json"])
        assert res.exit_code == 0 and json.loads(res.output)["ok"] is True
        (tmp_path / "store" / "scans" / "s0" / "0.jpg").write_bytes(b"tampered")
        res = runner.invoke(app, ["data", "verify", "-c", cfg])
        assert res.exit_code == 1 and "s0/0.jpg" in res.output and "different" in res.output

        res = runner.invoke(app, ["data", "pull", "scans", "--to", str(tmp_path / "out"), "--prefix", "s1/",
                                  "--from", str(tmp_path / "store"), "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["fetched"] == 10
        assert tree_digest(tmp_path / "out") == {k: v for k, v in tree_digest(small_dataset).items()
                                                 if k.startswith("s1/")}
        res = runner.invoke(app, ["data", "pull", "scans", "--to", str(tmp_path / "out0"), "-c", cfg,
                                  "--manifest-filter", "s0/*"])
        assert res.exit_code == 1 and "s0/0.jpg" in res.output and not (tmp_path / "out0" / "s0" / "0.jpg").exists()
    finally:
        import shutil

        shutil.rmtree(get_store(ctx).root.parent, ignore_errors=True)
        unix.remove_group(group)


def test_handouts_name_the_location_and_the_exact_pull_command(tmp_path, small_dataset):
    from datathon.core.roster import people
    from datathon.storage.handout import storage_section
    from datathon.storage.manifest import hash_folder

    text = event_text("hand", {"backend": "s3", "bucket": "sg-imaging", "prefix": "v1", "region": "eu-west-2",
                               "endpoint_url": "http://minio:9000",
                               "datasets": [{"name": "mimic-cxr-jpg", "path": str(small_dataset)}]})
    ctx = make_context(tmp_path, text)
    member = people(ctx.config)[0]
    # the examples select real files of the dataset, from its manifest (a folder that exists, its file type)
    manifest, _ = hash_folder("mimic-cxr-jpg", small_dataset, known={})
    section = storage_section(ctx.config, member, {"mimic-cxr-jpg": manifest})
    code = section.snippets[0].code
    assert ("datathon data pull mimic-cxr-jpg --from s3://sg-imaging/v1/ --region eu-west-2 "
            "--endpoint-url http://minio:9000 --to ~/data/mimic-cxr-jpg --prefix s0/") in code, code
    assert "# 10 of 30 files" in code and "--manifest-filter '*.jpg'" in code and "(30):" in code
    assert "aws s3 sync s3://sg-imaging/v1/mimic-cxr-jpg/s0/ ~/data/mimic-cxr-jpg/s0/" in section.snippets[1].code
    # not pushed yet: only the line that fetches everything, no made-up subset
    code = storage_section(ctx.config, member).snippets[0].code
    assert "--prefix" not in code and "--manifest-filter" not in code
    assert {i.label: i.value for i in section.items}["Imaging data (read-only)"] == "s3://sg-imaging/v1/"
    local = make_context(tmp_path, event_text("hand", {"datasets": [{"name": "cxr", "path": str(small_dataset)}]}))
    where = str(StateStore(tmp_path, "hand").system_dir("-datasets"))
    section = storage_section(local.config, member)
    assert f"datathon data pull cxr --from {where} --to ~/data/cxr" in section.snippets[0].code

