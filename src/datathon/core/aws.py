"""Calls to AWS, whichever part makes them (the object store today; machines, network, IAM next): only a listed
set of transient errors is retried, with capped exponential backoff and a bound; every other failure becomes one
clear ProvisionError that names the resource and the next step."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from datathon.errors import ProvisionError

TRANSIENT_CODES = frozenset({
    "RequestTimeout", "RequestTimeoutException", "SlowDown", "Throttling", "ThrottlingException",
    "RequestLimitExceeded", "InternalError", "ServiceUnavailable", "500", "502", "503", "504",
})
TRANSIENT_ERRORS = (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, ConnectTimeoutError)
ATTEMPTS = 5
T = TypeVar("T")


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def retry(fn: Callable[[], T], *, what: str, attempts: int = ATTEMPTS) -> T:
    """Run fn, retrying only listed transient errors with capped exponential backoff (full jitter)."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except ClientError as exc:
            if error_code(exc) not in TRANSIENT_CODES or attempt == attempts:
                raise
        except TRANSIENT_ERRORS:
            if attempt == attempts:
                raise
        time.sleep(random.uniform(0, min(8.0, 0.2 * 2**attempt)))
    raise AssertionError("unreachable")


def call(what: str, fn: Callable[[], T]) -> T:
    """An AWS call with the bounded retry of transient errors; any failure becomes a clear ProvisionError."""
    try:
        return retry(fn, what=what)
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        raise fail(exc, what) from exc


def fail(exc: Exception, what: str) -> ProvisionError:
    """A boto error as a message that names the resource and the next step."""
    if isinstance(exc, NoCredentialsError):
        return ProvisionError(f"{what}: no AWS credentials found",
                              hint="set AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on a "
                                   "machine with an instance role")
    if isinstance(exc, ClientError):
        code = error_code(exc)
        msg = exc.response.get("Error", {}).get("Message", "") or str(exc)
        hint = {"AccessDenied": "the credentials in use may not do this; use the organizer role",
                "InvalidAccessKeyId": "check AWS_PROFILE / AWS_ACCESS_KEY_ID",
                "SignatureDoesNotMatch": "check the secret key and the region"}.get(code, "run the command again; "
                                                                                        "see the log for details")
        return ProvisionError(f"{what}: {code}: {msg}", hint=hint)
    if isinstance(exc, ResponseParserError):  # HTML from a proxy, or an emulator without this operation
        return ProvisionError(f"{what}: the endpoint's answer is not AWS's API ({str(exc).splitlines()[0][:120]})",
                              hint="check AWS_ENDPOINT_URL and any proxy in between; an emulator may lack "
                                   "this operation")
    if isinstance(exc, TRANSIENT_ERRORS):
        return ProvisionError(f"{what}: cannot reach the service: {exc}",
                              hint="check the network (and storage.endpoint_url or AWS_ENDPOINT_URL if set), then "
                                   "run the command again")
    return ProvisionError(f"{what}: {exc}", hint="run the command again; see the log for details")



def partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"
