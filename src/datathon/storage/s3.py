"""The `s3` store: one bucket per event (or an S3-compatible store through endpoint_url).

The bucket is tagged `datathon:event=<event>`; a bucket without that tag is never adopted or deleted. Public
access is blocked, default encryption is AES256, every object carries its sha256 as metadata
(`x-amz-meta-sha256`). Only a listed set of transient errors is retried, with bounded backoff.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from datathon.core.aws import call, error_code, fail, partition, retry
from datathon.errors import DatathonError, ProvisionError
from datathon.storage.base import ObjectInfo, ObjectStore, Progress
from datathon.storage.facts import StoreFacts

MANAGED_TAG = "datathon:managed-by"  # set only on buckets datathon created
EVENT_TAG = "datathon:event"
T = TypeVar("T")
class S3Store(ObjectStore):
    kind = "s3"

    def __init__(self, *, bucket: str, prefix: str = "", region: str = "us-east-1", endpoint_url: str | None = None,
                 event: str | None = None, concurrency: int = 16, part_size: int = 64 * 2**20) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.region = region
        self.endpoint_url = endpoint_url
        self.event = event  # None: a reader (pull) that never creates or deletes
        self.concurrency = concurrency
        self.part_size = part_size

    @cached_property
    def session(self) -> boto3.session.Session:
        return boto3.session.Session(region_name=self.region)

    @cached_property
    def client(self):
        # Retries are ours (listed errors only, bounded). Checksums: a PUT carries the file's sha256 (the store
        # refuses bytes that do not match it) and a pull hashes what arrives, so botocore's CRC32 is not needed.
        config = Config(max_pool_connections=self.concurrency * 2 + 4, connect_timeout=10, read_timeout=120,
                        retries={"total_max_attempts": 1}, request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")
        return self.session.client("s3", endpoint_url=self.endpoint_url, config=config)

    @cached_property
    def transfer_config(self) -> TransferConfig:
        return TransferConfig(multipart_threshold=self.part_size, multipart_chunksize=self.part_size,
                              max_concurrency=min(8, self.concurrency), use_threads=True)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def bucket_arn(self) -> str:
        return f"arn:{partition(self.region)}:s3:::{self.bucket}"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return call(what, fn)

    # -- the bucket ---------------------------------------------------------------------------------
    def _bucket_state(self) -> str:
        """missing, ours (tagged for this event) or foreign."""
        try:
            retry(lambda: self.client.head_bucket(Bucket=self.bucket), what="head bucket")
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                return "missing"
            if error_code(exc) in ("403", "AccessDenied"):
                return "foreign"
            raise fail(exc, f"bucket {self.bucket}") from exc
        except BotoCoreError as exc:
            raise fail(exc, f"bucket {self.bucket}") from exc
        return "ours" if self.event and self._tags().get(EVENT_TAG) == self.event else "foreign"

    def _tags(self) -> dict[str, str]:
        try:
            tags = retry(lambda: self.client.get_bucket_tagging(Bucket=self.bucket), what="tags")["TagSet"]
        except ClientError as exc:
            if error_code(exc) in ("NoSuchTagSet", "NoSuchTagSetError"):
                return {}
            raise fail(exc, f"reading the tags of bucket {self.bucket}") from exc
        return {t["Key"]: t["Value"] for t in tags}

    def _foreign(self) -> ProvisionError:
        return ProvisionError(
            f"bucket {self.bucket} exists and is not tagged {EVENT_TAG}={self.event}: datathon does not adopt it",
            hint="choose another storage.bucket (names are global), or, if the bucket is this event's, tag it "
                 f"{EVENT_TAG}={self.event}")

    def _settings_drift(self) -> list[str]:
        drift = []
        try:
            pab = self.client.get_public_access_block(Bucket=self.bucket)["PublicAccessBlockConfiguration"]
            if not all(pab.get(k) for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                                            "RestrictPublicBuckets")):
                drift.append("public access not fully blocked")
        except ClientError:
            drift.append("no public access block")
        try:
            rules = self.client.get_bucket_encryption(Bucket=self.bucket)["ServerSideEncryptionConfiguration"]["Rules"]
            if not rules:
                drift.append("no default encryption")
        except ClientError:
            drift.append("no default encryption")
        return drift

    def exists(self) -> bool:
        return self._bucket_state() != "missing"

    def observe(self) -> StoreFacts:
        what = f"private (public access blocked), AES256 encryption, tagged {EVENT_TAG}={self.event}"
        base = dict(settings=what, create=f"make bucket {self.bucket} in {self.region}", describe=self.describe(),
                    name=f"bucket {self.bucket}")
        try:
            state = self._bucket_state()
            if state == "missing":
                return StoreFacts("s3", self.location, exists=False, **base)
            if state == "foreign":
                return StoreFacts("s3", self.location, exists=True, blocked=self._foreign().message, **base)
            return StoreFacts("s3", self.location, exists=True, ours=True, made_by_datathon=self.made_by_datathon(),
                              drift=tuple(self._settings_drift()), **base)
        except DatathonError as exc:
            return StoreFacts("s3", self.location, exists=False, blocked=str(exc), error=exc.message, **base)

    def ensure(self) -> dict:
        state = self._bucket_state()
        if state == "foreign":
            raise self._foreign()
        created = state == "missing"
        c, b = self.client, self.bucket
        if created:
            extra = {} if self.region == "us-east-1" else {
                "CreateBucketConfiguration": {"LocationConstraint": self.region}}
            self._call(f"creating bucket {b}", lambda: c.create_bucket(Bucket=b, **extra))
            self._call(f"tagging bucket {b}", lambda: c.put_bucket_tagging(Bucket=b, Tagging={"TagSet": [
                {"Key": EVENT_TAG, "Value": self.event}, {"Key": MANAGED_TAG, "Value": "datathon"}]}))
        self._call(f"blocking public access to {b}", lambda: c.put_public_access_block(
            Bucket=b, PublicAccessBlockConfiguration={"BlockPublicAcls": True, "IgnorePublicAcls": True,
                                                      "BlockPublicPolicy": True, "RestrictPublicBuckets": True}))
        self._call(f"encrypting {b}", lambda: c.put_bucket_encryption(Bucket=b, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}))
        self._call(f"lifecycle of {b}", lambda: c.put_bucket_lifecycle_configuration(
            Bucket=b, LifecycleConfiguration={"Rules": [{
                "ID": "datathon-abort-incomplete-uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}]}))
        return {"bucket_created": created}

    # -- objects --------------------------------------------------------------------------------------
    def list(self, prefix: str = "") -> dict[str, ObjectInfo]:
        out: dict[str, ObjectInfo] = {}
        token: dict = {}
        n = len(self.prefix)
        while True:
            page = self._call(f"listing {self.location}{prefix}", lambda t=token: self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=self.prefix + prefix, MaxKeys=1000, **t))
            for obj in page.get("Contents", []):
                key = obj["Key"][n:]
                out[key] = ObjectInfo(key, obj["Size"], obj["ETag"].strip('"'))
            if not page.get("IsTruncated"):
                return out
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def checksum(self, key: str) -> str | None:
        try:
            head = retry(lambda: self.client.head_object(Bucket=self.bucket, Key=self.prefix + key), what="head")
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise fail(exc, f"reading {self.location}{key}") from exc
        return head.get("Metadata", {}).get("sha256")

    def put_file(self, key: str, path: Path, *, sha256: str, progress: Progress | None = None) -> str:
        full = self.prefix + key
        size = path.stat().st_size
        if size < self.part_size:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != sha256:
                raise ProvisionError(f"{path} changed while it was being pushed",
                                     hint="wait until nothing writes into the dataset folder, then push again")
            return self.put_bytes(key, data, sha256=sha256, progress=progress)
        self._call(f"uploading {path}", lambda: self.client.upload_file(
            str(path), self.bucket, full, ExtraArgs={"Metadata": {"sha256": sha256}}, Config=self.transfer_config,
            Callback=progress))
        head = self._call(f"reading {full}", lambda: self.client.head_object(Bucket=self.bucket, Key=full))
        return head["ETag"].strip('"')

    def put_bytes(self, key: str, data: bytes, *, sha256: str, progress: Progress | None = None) -> str:
        full = self.prefix + key
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        resp = self._call(f"uploading {full}", lambda: self.client.put_object(
            Bucket=self.bucket, Key=full, Body=data, Metadata={"sha256": sha256}, ChecksumSHA256=checksum))
        if progress:
            progress(len(data))
        return resp["ETag"].strip('"')

    def read_bytes(self, key: str) -> bytes | None:
        try:
            resp = retry(lambda: self.client.get_object(Bucket=self.bucket, Key=self.prefix + key), what="get")
            return resp["Body"].read()
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise fail(exc, f"reading {self.location}{key}") from exc

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        resp = self._call(f"reading {self.location}{key}",
                          lambda: self.client.get_object(Bucket=self.bucket, Key=self.prefix + key))
        yield from resp["Body"].iter_chunks(2**20)

    def get_file(self, key: str, dest: Path, *, size: int, progress: Progress | None = None) -> None:
        full = self.prefix + key
        if size < self.part_size:
            data = self._call(f"reading {full}",
                              lambda: self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read())
            with open(dest, "xb") as out:
                out.write(data)
            if progress:
                progress(len(data))
            return
        self._call(f"downloading {full}", lambda: self.client.download_file(
            self.bucket, full, str(dest), Config=self.transfer_config, Callback=progress))

    # -- removing it ------------------------------------------------------------------------------
    def made_by_datathon(self) -> bool:
        """True for a bucket datathon created (tagged so at creation); one an organizer tagged for the event is
        adopted: `down` then removes only this event's datasets from it, never the bucket."""
        return self._tags().get(MANAGED_TAG) == "datathon"

    def delete_prefixes(self, prefixes: list[str]) -> None:
        """Delete every version of every object under these key prefixes (inside the store's own prefix)."""
        c, b = self.client, self.bucket
        for prefix in prefixes:
            while True:
                page = self._call(f"listing {b}/{self.prefix}{prefix}", lambda p=prefix: c.list_object_versions(
                    Bucket=b, Prefix=self.prefix + p, MaxKeys=1000))
                objects = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                           for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
                if not objects:
                    break
                self._delete(objects)

    def _delete(self, objects: list[dict]) -> None:
        resp = self._call(f"deleting from {self.bucket}", lambda: self.client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}))
        if resp.get("Errors"):
            err = resp["Errors"][0]
            raise ProvisionError(f"deleting from bucket {self.bucket}: {err.get('Key')}: {err.get('Code')} "
                                 f"{err.get('Message')}", hint="run `datathon down` as the organizer role (the "
                                                               "bucket policy refuses deletes from anyone else)")

    def teardown(self) -> None:
        state = self._bucket_state()
        if state == "missing":
            return
        if state == "foreign" or not self.made_by_datathon():
            raise self._foreign()
        c, b = self.client, self.bucket
        uploads = self._call("listing unfinished uploads", lambda: c.list_multipart_uploads(Bucket=b))
        for up in uploads.get("Uploads", []):
            self._call("aborting an unfinished upload", lambda u=up: c.abort_multipart_upload(
                Bucket=b, Key=u["Key"], UploadId=u["UploadId"]))
        while True:
            page = self._call(f"listing {b}", lambda: c.list_object_versions(Bucket=b, MaxKeys=1000))
            objects = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                       for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if not objects:
                break
            self._delete(objects)
        self._call(f"deleting bucket {b}", lambda: c.delete_bucket(Bucket=b))

    def leftovers(self) -> list[str]:
        return [f"bucket {self.bucket}"] if self._bucket_state() == "ours" and self.made_by_datathon() else []

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else f" ({self.region})"
        return f"{self.location}{where}: private, AES256, objects carry sha256; teams read, only the organizer writes"
