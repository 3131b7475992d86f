"""A key pair per team. The key is made here (ed25519), its private half written 0600 into the state folder
before the public half is imported into EC2: an `up` killed in between has lost nothing, and the private key never
crosses the network. It goes into that team's handout folder only (0600 too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from datathon.aws import names
from datathon.aws.base import AwsPart
from datathon.aws.session import AwsSession
from datathon.core import faults
from datathon.core.part import PartStatus, Purpose
from datathon.core.plan import Change, Component
from datathon.core.status import ComponentStatus
from datathon.core.state import write_private


def new_private_key() -> bytes:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption())


def public_of(private_pem: bytes, comment: str) -> bytes:
    key = serialization.load_ssh_private_key(private_pem, password=None)
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return pub + b" " + comment.encode()


@dataclass
class KeyFacts:
    in_aws: dict[str, dict] = field(default_factory=dict)  # key name -> {"id", "team", "ours"}
    local: set[str] = field(default_factory=set)  # teams whose private key is in the state folder


class KeysPart(AwsPart):
    name = "aws keys"
    after = ("aws account",)

    def __init__(self, session: AwsSession, event: str, *, teams: list[str], keys_dir: Path) -> None:
        super().__init__(session, event)
        self.teams = teams
        self.keys_dir = keys_dir  # in the state folder's secrets (0700)

    def key_file(self, team: str) -> Path:
        return self.keys_dir / f"aws-key-{team}.pem"

    def private_key(self, team: str) -> bytes | None:
        path = self.key_file(team)
        return path.read_bytes() if path.exists() else None

    def observe(self, purpose: Purpose = "plan") -> KeyFacts:
        f = KeyFacts()
        ec2 = self.ec2
        wanted = {names.key_name(self.event, t) for t in self.teams}
        tagged = self.call("listing the event's key pairs", lambda: ec2.describe_key_pairs(
            Filters=self.event_filter())["KeyPairs"])
        for k in tagged:
            tags = names.tag_dict(k.get("Tags"))
            f.in_aws[k["KeyName"]] = {"id": k.get("KeyPairId"), "team": tags.get(names.TEAM_TAG), "ours": True}
        if purpose == "plan":  # a same-named key that is not ours blocks its team
            taken = self.call("looking for same-named key pairs", lambda: ec2.describe_key_pairs(
                Filters=[{"Name": "key-name", "Values": sorted(wanted - set(f.in_aws))}])["KeyPairs"]) if (
                wanted - set(f.in_aws)) else []
            for k in taken:
                f.in_aws[k["KeyName"]] = {"id": k.get("KeyPairId"), "team": None, "ours": False}
        f.local = {t for t in self.teams if self.key_file(t).exists()}
        return f

    def plan(self, f: KeyFacts) -> list[Change]:
        out = []
        for team in self.teams:
            name = names.key_name(self.event, team)
            k = f.in_aws.get(name)
            if k is not None and not k["ours"]:
                out.append(Change(Component.KEY_PAIR, name, "blocked", f"a key pair with this name exists and is not "
                                  f"tagged {names.EVENT_TAG}={self.event}: delete or rename it"))
            elif k is None:
                why = "the team's SSH key" + (" (the private key made earlier is in the state folder)"
                                              if team in f.local else "")
                out.append(Change(Component.KEY_PAIR, name, "create", why, run=lambda t=team: self._create(t)))
            elif team not in f.local:
                out.append(Change(Component.KEY_PAIR, name, "update", "its private key is not in the state folder "
                                  "(lost, or the state was rebuilt from tags): a new key pair replaces it; a machine "
                                  "launched with the old one keeps it until it is launched again",
                                  run=lambda t=team: self._replace(t)))
            else:
                out.append(Change(Component.KEY_PAIR, name, "keep", "in EC2, private key in the state folder"))
        wanted = {names.key_name(self.event, t) for t in self.teams}
        for name, k in sorted(f.in_aws.items()):
            if k["ours"] and name not in wanted:
                out.append(Change(Component.KEY_PAIR, name, "drop", "its team left the event file (its private "
                                  "key goes too)", destructive=True,
                                  run=lambda n=name, t=k["team"]: self._delete(n, team=t)))
        return out

    def _create(self, team: str) -> None:
        path = self.key_file(team)
        if not path.exists():
            write_private(path, new_private_key())
        faults.point("aws.key_written")
        name = names.key_name(self.event, team)
        self.call(f"importing key pair {name}", lambda: self.ec2.import_key_pair(
            KeyName=name, PublicKeyMaterial=public_of(path.read_bytes(), name),
            TagSpecifications=names.spec("key-pair", self.event, "key-pair", **{names.TEAM_TAG: team})))

    def _replace(self, team: str) -> None:
        self._delete(names.key_name(self.event, team))
        self._create(team)

    def _delete(self, name: str, *, team: str | None = None) -> None:
        self.call(f"deleting key pair {name}", lambda: self.ec2.delete_key_pair(KeyName=name))
        if team and team not in self.teams and "/" not in team:  # a team that left: nothing may log in as it
            self.key_file(team).unlink(missing_ok=True)

    def status(self, f: KeyFacts) -> PartStatus:
        missing = [t for t in self.teams if names.key_name(self.event, t) not in f.in_aws or t not in f.local]
        return PartStatus([ComponentStatus("key pairs", f"{len(self.teams)} teams", "ok" if not missing else "missing",
                                           ", ".join(missing), healthy=not missing)])

    def teardown(self, f: KeyFacts) -> list[Change]:
        return [Change(Component.KEY_PAIR, n, "drop", "the event ends", destructive=True,
                       run=lambda n=n: self._delete(n)) for n, k in sorted(f.in_aws.items()) if k["ours"]]

    def leftovers(self) -> list[str]:
        return []  # the account part lists everything still tagged with the event
