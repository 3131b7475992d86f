"""The team machines' role and instance profile: the read-only policy of the event's bucket (handed in by the
provider: the storage part's own document, never AmazonS3ReadOnlyAccess) and AmazonSSMManagedInstanceCore (SSM
sessions and port forwarding without an open port). Nothing account-wide: any other policy found on the role is
taken off."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import unquote

from datathon.aws import names
from datathon.aws.base import AwsPart
from datathon.aws.session import AwsSession
from datathon.core.aws import partition
from datathon.core.part import PartStatus, Purpose
from datathon.core.plan import Change, Component
from datathon.core.status import ComponentStatus

EC2_TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}
SSM_POLICY = "AmazonSSMManagedInstanceCore"


def ssm_arn(region: str) -> str:
    return f"arn:{partition(region)}:iam::aws:policy/{SSM_POLICY}"


@dataclass
class IamFacts:
    role: bool = False
    ours: bool = False
    inline: dict[str, dict] = field(default_factory=dict)  # policy name -> document
    attached: set[str] = field(default_factory=set)  # policy ARNs
    profile: bool = False
    profile_roles: list[str] = field(default_factory=list)


class IamPart(AwsPart):
    name = "aws iam"
    after = ("aws account",)

    def __init__(self, session: AwsSession, event: str, *, inline: dict[str, dict]) -> None:
        super().__init__(session, event)
        self.role = names.role_name(event)
        self.inline = inline  # policy name -> document (the bucket's read policy, when the event has one)

    def observe(self, purpose: Purpose = "plan") -> IamFacts:
        iam, role, f = self.iam, self.role, IamFacts()
        got = self.maybe(lambda: iam.get_role(RoleName=role), "NoSuchEntity", what=f"reading role {role}")
        if got:
            f.role = True
            tags = names.tag_dict(self.call("reading the role's tags", lambda: iam.list_role_tags(RoleName=role))[
                "Tags"])
            f.ours = tags.get(names.EVENT_TAG) == self.event
            for pname in self.call("listing the role's policies", lambda: iam.list_role_policies(RoleName=role))[
                    "PolicyNames"]:
                doc = self.call("reading a role policy", lambda p=pname: iam.get_role_policy(
                    RoleName=role, PolicyName=p))["PolicyDocument"]
                f.inline[pname] = json.loads(unquote(doc)) if isinstance(doc, str) else doc
            f.attached = {p["PolicyArn"] for p in self.call("listing attached policies", lambda: iam
                          .list_attached_role_policies(RoleName=role))["AttachedPolicies"]}
        prof = self.maybe(lambda: iam.get_instance_profile(InstanceProfileName=role), "NoSuchEntity",
                          what=f"reading instance profile {role}")
        if prof:
            f.profile = True
            f.profile_roles = [r["RoleName"] for r in prof["InstanceProfile"].get("Roles", [])]
        return f

    def plan(self, f: IamFacts) -> list[Change]:
        role, out = self.role, []
        if f.role and not f.ours:
            return [Change(Component.IAM_ROLE, role, "blocked", f"a role named {role} exists and is not tagged "
                           f"{names.EVENT_TAG}={self.event}: datathon does not adopt it; delete or rename it")]
        if not f.role:
            out.append(Change(Component.IAM_ROLE, role, "create", "the team machines' role (EC2 may assume it)",
                              run=self._create_role))
        else:
            out.append(Change(Component.IAM_ROLE, role, "keep", "exists, tagged for the event"))
        arn = ssm_arn(self.session.region)
        for pname, doc in sorted(self.inline.items()):
            if f.inline.get(pname) != doc:
                out.append(Change(Component.POLICY, f"{role}/{pname}", "update" if pname in f.inline else "create",
                                  "read the event's bucket only", run=lambda p=pname, d=doc: self._put(p, d)))
            else:
                out.append(Change(Component.POLICY, f"{role}/{pname}", "keep", "reads the event's bucket only"))
        for pname in sorted(set(f.inline) - set(self.inline)):
            out.append(Change(Component.POLICY, f"{role}/{pname}", "drop", "not datathon's: the machines get "
                              "nothing beyond the event's bucket and SSM", destructive=True,
                              run=lambda p=pname: self._delete_inline(p)))
        if arn in f.attached:
            out.append(Change(Component.POLICY, f"{role}/{SSM_POLICY}", "keep", "SSM sessions and port forwarding"))
        else:
            out.append(Change(Component.POLICY, f"{role}/{SSM_POLICY}", "create", "SSM sessions and port forwarding "
                              "(no open port needed)", run=lambda: self._attach(arn)))
        for other in sorted(f.attached - {arn}):
            out.append(Change(Component.POLICY, f"{role}/{other.rsplit('/', 1)[-1]}", "drop", "nothing account-wide "
                              "on the machines' role", destructive=True, run=lambda a=other: self._detach(a)))
        if not f.profile:
            out.append(Change(Component.INSTANCE_PROFILE, role, "create", "carries the role to the machines",
                              run=self._create_profile))
        elif f.profile_roles != [role]:
            out.append(Change(Component.INSTANCE_PROFILE, role, "update", f"holds {f.profile_roles or 'no role'}: "
                              f"put {role} in it", run=self._create_profile))
        else:
            out.append(Change(Component.INSTANCE_PROFILE, role, "keep", f"carries {role}"))
        return out

    # -- apply -----------------------------------------------------------------------------------------------
    def _create_role(self) -> None:
        iam, role = self.iam, self.role
        if self.maybe(lambda: iam.get_role(RoleName=role), "NoSuchEntity"):
            return
        self.call(f"creating role {role}", lambda: iam.create_role(
            RoleName=role, AssumeRolePolicyDocument=json.dumps(EC2_TRUST),
            Description=f"datathon {self.event}: team machines (the event's bucket read-only, SSM)",
            Tags=names.tags(self.event, "role")))

    def _put(self, pname: str, doc: dict) -> None:
        self.call(f"putting policy {pname} on role {self.role}", lambda: self.iam.put_role_policy(
            RoleName=self.role, PolicyName=pname, PolicyDocument=json.dumps(doc)))

    def _delete_inline(self, pname: str) -> None:
        self.call(f"removing policy {pname} from role {self.role}", lambda: self.iam.delete_role_policy(
            RoleName=self.role, PolicyName=pname))

    def _attach(self, arn: str) -> None:
        self.call(f"attaching {arn} to role {self.role}", lambda: self.iam.attach_role_policy(
            RoleName=self.role, PolicyArn=arn))

    def _detach(self, arn: str) -> None:
        self.call(f"detaching {arn} from role {self.role}", lambda: self.iam.detach_role_policy(
            RoleName=self.role, PolicyArn=arn))

    def _create_profile(self) -> None:
        iam, role = self.iam, self.role
        prof = self.maybe(lambda: iam.get_instance_profile(InstanceProfileName=role), "NoSuchEntity",
                          what=f"reading instance profile {role}")
        if prof is None:
            self.call(f"creating instance profile {role}", lambda: iam.create_instance_profile(
                InstanceProfileName=role, Tags=names.tags(self.event, "instance-profile")))
            roles: list[str] = []
        else:
            roles = [r["RoleName"] for r in prof["InstanceProfile"].get("Roles", [])]
        for other in roles:
            if other != role:
                self.call("taking a role out of the instance profile", lambda o=other: iam
                          .remove_role_from_instance_profile(InstanceProfileName=role, RoleName=o))
        if role not in roles:
            self.call(f"putting role {role} in its instance profile", lambda: iam.add_role_to_instance_profile(
                InstanceProfileName=role, RoleName=role))

    # -- status, teardown --------------------------------------------------------------------------------------
    def status(self, f: IamFacts) -> PartStatus:
        ok = f.role and f.ours and f.profile
        detail = ", ".join(sorted([*f.inline, *(a.rsplit("/", 1)[-1] for a in f.attached)]))
        return PartStatus([ComponentStatus("iam role", self.role, "ok" if ok else "missing", detail, healthy=ok)])

    def teardown(self, f: IamFacts) -> list[Change]:
        if not f.role and not f.profile:
            return []
        if f.role and not f.ours:
            return []  # not datathon's: left as found
        return [Change(Component.IAM_ROLE, self.role, "drop", "the event ends (with its instance profile and "
                       "policies)", destructive=True, run=lambda: self._delete(f))]

    def _delete(self, f: IamFacts) -> None:
        iam, role = self.iam, self.role
        if f.profile:
            for r in f.profile_roles:
                self.call("emptying the instance profile", lambda r=r: iam.remove_role_from_instance_profile(
                    InstanceProfileName=role, RoleName=r))
            self.call(f"deleting instance profile {role}",
                      lambda: iam.delete_instance_profile(InstanceProfileName=role))
        if f.role:
            for arn in f.attached:
                self.call(f"detaching {arn}", lambda a=arn: iam.detach_role_policy(RoleName=role, PolicyArn=a))
            for pname in f.inline:
                self.call(f"removing policy {pname}", lambda p=pname: iam.delete_role_policy(RoleName=role,
                                                                                              PolicyName=p))
            self.call(f"deleting role {role}", lambda: iam.delete_role(RoleName=role))

    def leftovers(self) -> list[str]:
        f = self.observe("teardown")
        return [f"iam role {self.role}"] * (f.role and f.ours) + [f"instance profile {self.role}"] * f.profile
