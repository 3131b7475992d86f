"""What every AWS part shares: the event, the session, calls through core/aws.py (bounded retry of listed transient
errors, one clear error otherwise) and finding the event's resources by tag."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from datathon.aws.names import EVENT_TAG
from datathon.aws.session import AwsSession
from datathon.core.aws import call, error_code, fail, retry
from datathon.core.part import Part

T = TypeVar("T")
GONE = frozenset({"terminated", "shutting-down"})


class AwsPart(Part):
    """An AWS part. Its observe() sees nothing (None) and its plan, status and teardown say nothing while the
    account part has found that datathon cannot act here (the one reason is said once, by that part)."""

    def __init__(self, session: AwsSession, event: str) -> None:
        self.session = session
        self.event = event

    def __init_subclass__(cls, **kw) -> None:
        super().__init_subclass__(**kw)
        if cls.__dict__.get("name") == "aws account":
            return
        for method in ("observe", "plan", "status", "teardown", "leftovers"):
            if method in cls.__dict__:
                setattr(cls, method, _gated(cls.__dict__[method], method))

    @property
    def ec2(self):
        return self.session.client("ec2")

    @property
    def iam(self):
        return self.session.client("iam")

    def call(self, what: str, fn: Callable[[], T]) -> T:
        return call(what, fn)

    def maybe(self, fn: Callable[[], T], *missing: str, what: str = "reading from AWS") -> T | None:
        """A read that may find nothing: None for the listed error codes, a clear error for any other."""
        try:
            return retry(fn, what=what)
        except ClientError as exc:
            if error_code(exc) in missing:
                return None
            raise fail(exc, what) from exc
        except BotoCoreError as exc:
            raise fail(exc, what) from exc

    def event_filter(self, **more: str) -> list[dict]:
        out = [{"Name": f"tag:{EVENT_TAG}", "Values": [self.event]}]
        out += [{"Name": f"tag:{k}", "Values": [v]} for k, v in more.items()]
        return out

    def pages(self, client, operation: str, key: str, what: str, **kwargs) -> list:
        """Every item of a paginated describe/list call."""
        def run() -> list:
            out: list = []
            for page in client.get_paginator(operation).paginate(**kwargs):
                out += page.get(key, [])
            return out
        return self.call(what, run)


def _gated(fn, method: str):
    import functools

    from datathon.core.part import PartStatus

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        if self.session.blocked:
            return {"observe": None, "plan": [], "teardown": [], "leftovers": [], "status": PartStatus()}[method]
        if method in ("plan", "status", "teardown") and args and args[0] is None:
            return {"plan": [], "teardown": [], "status": PartStatus()}[method]
        return fn(self, *args, **kwargs)

    return wrapper
