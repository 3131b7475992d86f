"""What datathon calls its AWS resources and how it tags them: every resource carries datathon:event (found by
it, and `down` proves nothing carrying it is left); a team's carry datathon:team too."""

from __future__ import annotations

EVENT_TAG = "datathon:event"  # the same key the storage part tags its bucket with
TEAM_TAG = "datathon:team"
PROFILE_TAG = "datathon:profile"
BATCH_TAG = "datathon:batch"  # what one RunInstances launched: the user data's hash, so only a twin is adopted
SSH_KEY_TAG = "datathon:ssh-key"  # a team's public key, for machines launched in a batch (no EC2 key of their own)
KIND_TAG = "datathon:kind"  # vpc, subnet, route-table, gateway, endpoint, sg-workspaces, sg-database, role ...


def prefix(event: str) -> str:
    return f"datathon-{event}"


def machine_name(event: str, team: str) -> str:
    return f"{prefix(event)}-{team}"


def key_name(event: str, team: str) -> str:
    return f"{prefix(event)}-{team}"


def role_name(event: str) -> str:
    return f"{prefix(event)}-machines"


def workspace_sg(event: str) -> str:
    return f"{prefix(event)}-workspaces"


def database_sg(event: str) -> str:
    return f"{prefix(event)}-database"


def tags(event: str, kind: str, **more: str) -> list[dict[str, str]]:
    out = {EVENT_TAG: event, KIND_TAG: kind, **more}
    return [{"Key": k, "Value": v} for k, v in out.items()]


def spec(resource: str, event: str, kind: str, **more: str) -> list[dict]:
    """TagSpecifications: the tags come with the resource, in the same call (never an untagged one)."""
    return [{"ResourceType": resource, "Tags": tags(event, kind, **more)}]


def tag_dict(items: list[dict] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}
