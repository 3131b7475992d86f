"""One boto3 session per command, with boto3's own credential chain (environment, AWS_PROFILE or the file's
profile, an instance role) and the standard AWS_ENDPOINT_URL (a moto server in tests, LocalStack for an
organizer) honoured by botocore itself. Every request is counted by operation, so tests and the benchmark can
prove that a second `up` makes no mutating call."""

from __future__ import annotations

from collections import Counter
from functools import cached_property

import boto3
from botocore.config import Config

# Read-only API operations start with these words; everything else changes something.
READ_PREFIXES = ("Describe", "Get", "List", "Lookup", "Search")
_RETRIES = Config(retries={"mode": "standard", "max_attempts": 1})  # core/aws.py retries, with its own bound


def mutating(operation: str) -> bool:
    return not operation.startswith(READ_PREFIXES)


class AwsSession:
    def __init__(self, *, region: str, profile: str | None = None) -> None:
        self.region = region
        self.profile = profile
        self.calls: Counter[str] = Counter()  # "ec2.RunInstances" -> times made
        self._clients: dict[str, object] = {}
        # Set by the account part when datathon cannot act in this account and region (refused credentials, an
        # unknown region): the other AWS parts then observe and plan nothing, so the one clear reason is all
        # that is said.
        self.blocked = ""

    @cached_property
    def boto(self) -> boto3.session.Session:
        return boto3.session.Session(profile_name=self.profile, region_name=self.region)

    def client(self, service: str):
        if service not in self._clients:
            c = self.boto.client(service, config=_RETRIES)
            c.meta.events.register("before-call", self._count)
            self._clients[service] = c
        return self._clients[service]

    def _count(self, model, **_) -> None:
        self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    @property
    def mutating_calls(self) -> dict[str, int]:
        return {k: n for k, n in self.calls.items() if mutating(k.split(".", 1)[1])}

    def has_credentials(self) -> bool:
        """Whether boto3's chain finds credentials (a named profile that does not exist raises ProfileNotFound)."""
        return self.boto.get_credentials() is not None
