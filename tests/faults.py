"""Faults injected at the AWS boundary through botocore's event hooks: no patching."""

from __future__ import annotations

import os
import random
import signal
import threading
from dataclasses import dataclass, field
from typing import Any

import urllib3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so no `except Exception` can swallow it."""


@dataclass
class CallLog:
    """Counts the calls (one per API operation, retries not counted) and names them."""

    names: list[str] = field(default_factory=list)

    def __call__(self, model: Any, **_: Any) -> None:
        self.names.append(model.name)


@dataclass
class FailAt:
    """Fails the `index`-th call (1-based) before it is sent: AWS never sees it."""

    index: int
    count: int = 0

    def __call__(self, model: Any, **_: Any) -> None:
        self.count += 1
        if self.count == self.index:
            raise EndpointConnectionError(endpoint_url=f"injected fault before {model.name}")


@dataclass
class CrashAfter:
    """Dies right after the `index`-th call has been answered: AWS did it, the job never heard."""

    index: int
    count: int = 0
    event: str = "after-call"

    def __call__(self, model: Any, **_: Any) -> None:
        self.count += 1
        if self.count == self.index:
            raise Crash(f"killed after {model.name}")


def client_error(code: str, operation: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message or code}}, operation)


@dataclass
class FailTimes:
    """Answers the first `times` calls of `operations` with error `code`, as AWS does while a new
    key or a new attachment has not reached every endpoint."""

    operations: set[str]
    code: str
    times: int
    seen: int = 0

    def __call__(self, model: Any, **_: Any) -> None:
        if model.name in self.operations and self.seen < self.times:
            self.seen += 1
            raise client_error(self.code, model.name)


@dataclass
class StrictAws:
    """What AWS refuses and moto allows, enforced at the client boundary: deleting a user that
    still has credentials, groups or policies; a policy still attached or with old versions; a
    bucket that still holds object versions. It also answers ListServiceSpecificCredentials,
    which moto does not implement. Every refusal is kept in `refused`."""

    iam: Any  # admin clients, not hooked, to look at the emulator's state
    s3: Any
    refused: list[str] = field(default_factory=list)

    def __call__(self, model: Any, context: dict[str, Any], **_: Any) -> Any:
        name, params = model.name, context["arguments"]
        if name == "ListServiceSpecificCredentials":
            return AWSResponse("", 200, {}, None), {"ServiceSpecificCredentials": []}
        blockers: list[str] = []
        if name == "DeleteUser":
            blockers = self._user_blockers(params["UserName"])
        elif name == "DeletePolicy":
            arn = params["PolicyArn"]
            entities = self.iam.list_entities_for_policy(PolicyArn=arn)
            if any(entities[k] for k in ("PolicyUsers", "PolicyGroups", "PolicyRoles")):
                blockers.append("attached")
            versions = self.iam.list_policy_versions(PolicyArn=arn)["Versions"]
            if any(not v["IsDefaultVersion"] for v in versions):
                blockers.append("non-default versions")
        elif name == "DeleteBucket":
            answer = self.s3.list_object_versions(Bucket=params["Bucket"])
            if answer.get("Versions") or answer.get("DeleteMarkers"):
                self.refused.append(name)
                raise client_error("BucketNotEmpty", name)
        if blockers:
            self.refused.append(name)
            raise client_error("DeleteConflict", name, f"still has: {', '.join(blockers)}")
        return None

    def _user_blockers(self, user: str) -> list[str]:
        iam = self.iam
        checks = {
            "access keys": iam.list_access_keys(UserName=user)["AccessKeyMetadata"],
            "managed policies": iam.list_attached_user_policies(UserName=user)["AttachedPolicies"],
            "inline policies": iam.list_user_policies(UserName=user)["PolicyNames"],
            "groups": iam.list_groups_for_user(UserName=user)["Groups"],
            "MFA devices": iam.list_mfa_devices(UserName=user)["MFADevices"],
            "signing certificates": iam.list_signing_certificates(UserName=user)["Certificates"],
            "SSH keys": iam.list_ssh_public_keys(UserName=user)["SSHPublicKeys"],
        }
        blockers = [what for what, found in checks.items() if found]
        try:
            iam.get_login_profile(UserName=user)
            blockers.append("login profile")
        except ClientError:
            pass
        return blockers


@dataclass
class KillAt:
    """SIGKILLs this very process right before (event "before-call") or right after ("after-call":
    AWS has answered, the job has not seen it) the `index`-th AWS call: no cleanup of any kind."""

    event: str
    index: int
    count: int = 0

    def __call__(self, **_: Any) -> None:
        self.count += 1
        if self.count == self.index:
            os.kill(os.getpid(), signal.SIGKILL)


class _Body:
    """What botocore reads an HTTP response's body from."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Any:
        yield self._content


def _throttled(service: str) -> tuple[int, bytes]:
    if service == "s3":
        return (
            503,
            b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>",
        )
    return 400, (
        b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
        b"<Message>Rate exceeded</Message></Error><RequestId>f</RequestId></ErrorResponse>"
    )


@dataclass
class Flaky:
    """Transient faults at the HTTP boundary (botocore's before-send), at `rate`: throttling,
    500s, connections dropped before sending, and responses lost after AWS did the work."""

    rate: float
    seed: int
    only: frozenset[str] = frozenset()  # operation names; empty: every operation
    event: str = "before-send"
    injected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def __call__(self, request: Any, **kwargs: Any) -> Any:
        _, service, operation = kwargs["event_name"].split(".")
        if self.only and operation not in self.only:
            return None
        with self._lock:
            if self._random.random() >= self.rate:
                return None
            fault = self._random.choice(["throttle", "500", "reset", "lost"])
            self.injected.append(fault)
        if fault == "throttle":
            status, body = _throttled(service)
            return AWSResponse(request.url, status, {}, _Body(body))
        if fault == "500":
            # As a web server or proxy in front of the service answers it (moto's werkzeug does):
            # an HTML page that botocore cannot parse as the protocol's error document.
            page = b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
            return AWSResponse(request.url, 500, {}, _Body(page))
        if fault == "reset":
            raise ConnectionClosedError(endpoint_url=request.url)
        # Lost: AWS gets the request and acts on it, the answer never arrives.
        urllib3.request(
            request.method, request.url, body=request.body, headers=dict(request.headers)
        )
        raise ReadTimeoutError(endpoint_url=request.url)
