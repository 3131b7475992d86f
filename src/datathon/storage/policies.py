"""Read-only for teams, as AWS policy documents: pure functions build them, small functions apply them.

- The workspaces' role gets an inline policy that allows s3:GetObject and s3:ListBucket on this event's bucket
  (and prefix) only: not the account-wide AmazonS3ReadOnlyAccess.
- The bucket gets a policy that denies every action but s3:Get* and s3:List* (so every write: objects, ACLs,
  tags, ownership, versioning, the policy itself, deleting the bucket) to any principal but the organizer role,
  and every request without TLS (when the store is reached over https).
"""

from __future__ import annotations

import json
from functools import cached_property

from botocore.exceptions import ClientError

from datathon.core.aws import call, error_code, fail, partition, retry
from datathon.storage.s3 import EVENT_TAG, S3Store

VERSION = "2012-10-17"
# Everything but reading is refused to all but the organizer: a list of write actions would miss the next one
# AWS adds (PutBucketOwnershipControls, then PutObjectVersionAcl, say), so the policy names what stays allowed.
READ_ACTIONS = ["s3:Get*", "s3:List*"]
EC2_TRUST = {"Version": VERSION, "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}
MADE_BY_TAG = "datathon:made-by"


def read_policy_name(event: str) -> str:
    return f"datathon-{event}-read-datasets"


def read_policy(bucket: str, prefix: str = "", *, region: str = "us-east-1") -> dict:
    """IAM policy for the workspaces' role: list and read this bucket (under the prefix), nothing else."""
    arn = f"arn:{partition(region)}:s3:::{bucket}"
    listing: dict = {"Sid": "ListEventDatasets", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": arn}
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
    return {"Version": VERSION, "Statement": [
        listing,
        {"Sid": "ReadEventDatasets", "Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{arn}/{prefix}*"},
    ]}


def bucket_policy(bucket: str, organizer_arn: str, *, region: str = "us-east-1", tls_only: bool = True) -> dict:
    """Bucket policy: nobody but the organizer principal writes; (optionally) nothing without TLS."""
    arn = f"arn:{partition(region)}:s3:::{bucket}"
    statements = [{
        "Sid": "OnlyTheOrganizerWrites", "Effect": "Deny", "Principal": "*", "NotAction": READ_ACTIONS,
        "Resource": [arn, f"{arn}/*"], "Condition": {"ArnNotEquals": {"aws:PrincipalArn": organizer_arn}},
    }]
    if tls_only:
        statements.append({"Sid": "TLSOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                           "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
    return {"Version": VERSION, "Statement": statements}


class Policies:
    """The two documents for one event's store, and applying them (each step checks before acting)."""

    def __init__(self, store: S3Store, *, event: str, organizer_arn: str | None, workspace_role: str | None) -> None:
        self.store = store
        self.event = event
        self.organizer_arn = organizer_arn
        self.workspace_role = workspace_role

    @cached_property
    def iam(self):
        return self.store.session.client("iam", endpoint_url=self.store.endpoint_url)

    def wanted_bucket_policy(self) -> dict | None:
        """None without an organizer role: then only IAM limits who writes (status says so)."""
        if not self.organizer_arn:
            return None
        tls = not (self.store.endpoint_url or "").startswith("http://")
        return bucket_policy(self.store.bucket, self.organizer_arn, region=self.store.region, tls_only=tls)

    def wanted_read_policy(self) -> dict:
        return read_policy(self.store.bucket, self.store.prefix, region=self.store.region)

    # -- observe --------------------------------------------------------------------------------------
    def current_bucket_policy(self) -> dict | None:
        try:
            text = retry(lambda: self.store.client.get_bucket_policy(Bucket=self.store.bucket), what="policy")
        except ClientError as exc:
            if error_code(exc) in ("NoSuchBucketPolicy", "NoSuchBucket", "404"):
                return None
            raise fail(exc, f"reading the policy of bucket {self.store.bucket}") from exc
        return json.loads(text["Policy"])

    def current_read_policy(self) -> dict | None:
        if not self.workspace_role:
            return None
        try:
            doc = retry(lambda: self.iam.get_role_policy(RoleName=self.workspace_role,
                                                         PolicyName=read_policy_name(self.event)), what="role")
        except ClientError as exc:
            if error_code(exc) == "NoSuchEntity":
                return None
            raise fail(exc, f"reading the policies of role {self.workspace_role}") from exc
        d = doc["PolicyDocument"]
        return json.loads(d) if isinstance(d, str) else d

    def pending(self) -> list[str]:
        """What `apply` would change (empty: both documents are in place as wanted)."""
        todo = []
        wanted = self.wanted_bucket_policy()
        if wanted is not None and self.current_bucket_policy() != wanted:
            todo.append(f"bucket policy on {self.store.bucket}: only {self.organizer_arn} writes")
        if self.workspace_role and self.current_read_policy() != self.wanted_read_policy():
            todo.append(f"read policy {read_policy_name(self.event)} on role {self.workspace_role}: "
                        f"GetObject/ListBucket on {self.store.location} only")
        return todo

    # -- apply / remove -------------------------------------------------------------------------------
    def apply(self) -> dict:
        facts = {}
        wanted = self.wanted_bucket_policy()
        if wanted is not None and self.current_bucket_policy() != wanted:
            self.store._call(f"setting the policy of bucket {self.store.bucket}", lambda: self.store.client
                             .put_bucket_policy(Bucket=self.store.bucket, Policy=json.dumps(wanted)))
        if self.workspace_role:
            facts["role_created"] = self._ensure_role()
            doc = self.wanted_read_policy()
            if self.current_read_policy() != doc:
                self._iam(f"attaching the read policy to role {self.workspace_role}", lambda: self.iam.put_role_policy(
                    RoleName=self.workspace_role, PolicyName=read_policy_name(self.event),
                    PolicyDocument=json.dumps(doc)))
        return facts

    def _iam(self, what: str, fn):
        return call(what, fn)

    def _ensure_role(self) -> bool:
        try:
            retry(lambda: self.iam.get_role(RoleName=self.workspace_role), what="role")
            return False
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise fail(exc, f"reading role {self.workspace_role}") from exc
        self._iam(f"creating role {self.workspace_role}", lambda: self.iam.create_role(
            RoleName=self.workspace_role, AssumeRolePolicyDocument=json.dumps(EC2_TRUST),
            Description=f"datathon {self.event}: team workspaces (read-only imaging data)",
            Tags=[{"Key": EVENT_TAG, "Value": self.event}, {"Key": MADE_BY_TAG, "Value": "storage"}]))
        return True

    def remove(self) -> None:
        """Take the read policy off the workspaces' role; delete the role only if storage made it for this event
        and nothing else hangs on it. (The bucket policy goes with the bucket.)"""
        if not self.workspace_role:
            return
        iam, role = self.iam, self.workspace_role
        if self.current_read_policy() is not None:
            self._iam(f"removing the read policy from role {role}",
                      lambda: iam.delete_role_policy(RoleName=role, PolicyName=read_policy_name(self.event)))
        try:
            tags = {t["Key"]: t["Value"] for t in retry(lambda: iam.list_role_tags(RoleName=role), what="tags")["Tags"]}
        except ClientError as exc:
            if error_code(exc) == "NoSuchEntity":
                return
            raise fail(exc, f"reading role {role}") from exc
        if tags.get(EVENT_TAG) != self.event or tags.get(MADE_BY_TAG) != "storage":
            return
        others = (self._iam("listing role policies", lambda: iam.list_role_policies(RoleName=role))["PolicyNames"]
                  + self._iam("listing role policies", lambda: iam.list_attached_role_policies(RoleName=role))[
                      "AttachedPolicies"]
                  + self._iam("listing instance profiles",
                              lambda: iam.list_instance_profiles_for_role(RoleName=role))["InstanceProfiles"])
        if not others:
            self._iam(f"deleting role {role}", lambda: iam.delete_role(RoleName=role))

    def leftovers(self) -> list[str]:
        if self.workspace_role and self.current_read_policy() is not None:
            return [f"read policy {read_policy_name(self.event)} on role {self.workspace_role}"]
        return []
