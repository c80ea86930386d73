"""Faults injected at the AWS boundary through botocore's event hooks: no patching."""

from __future__ import annotations

import json
import os
import random
import re
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
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __call__(self, model: Any, **_: Any) -> None:
        with self._lock:  # one call is the index-th, even from many threads
            self.count += 1
            if self.count != self.index:
                return
        raise EndpointConnectionError(endpoint_url=f"injected fault before {model.name}")


@dataclass
class CrashAfter:
    """Dies right after the `index`-th call has been answered: AWS did it, the job never heard."""

    index: int
    count: int = 0
    event: str = "after-call"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __call__(self, model: Any, **_: Any) -> None:
        with self._lock:  # one call is the index-th, even from many threads
            self.count += 1
            if self.count != self.index:
                return
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
    still has credentials, groups or policies; a group that still has users or policies; a role
    that still has policies or instance profiles; a policy still attached or with old versions;
    a bucket that still holds object versions or unfinished multipart uploads. It also answers
    ListServiceSpecificCredentials, which moto does not implement. Every refusal is kept in
    `refused`."""

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
        elif name == "DeleteRole":
            blockers = self._role_blockers(params["RoleName"])
        elif name == "DeleteGroup":
            blockers = self._group_blockers(params["GroupName"])
        elif name == "DeletePolicy":
            arn = params["PolicyArn"]
            entities = self.iam.list_entities_for_policy(PolicyArn=arn)
            if any(entities[k] for k in ("PolicyUsers", "PolicyGroups", "PolicyRoles")):
                blockers.append("attached")
            versions = self.iam.list_policy_versions(PolicyArn=arn)["Versions"]
            if any(not v["IsDefaultVersion"] for v in versions):
                blockers.append("non-default versions")
        elif name == "DeleteBucket":
            bucket = params["Bucket"]
            try:
                answer = self.s3.list_object_versions(Bucket=bucket)
                # Unfinished multipart uploads too. AWS documents this for directory buckets
                # (https://docs.aws.amazon.com/AmazonS3/latest/userguide/directory-bucket-delete.html);
                # for general purpose ones users report both answers (cloud-custodian#545 was
                # refused, ceph/ceph#15630 was not). The stricter is modelled: the job aborts
                # them when refused, and when not refused they went with the bucket.
                uploads = self.s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
            except ClientError:  # no such bucket: DeleteBucket itself will say so
                return None
            if answer.get("Versions") or answer.get("DeleteMarkers") or uploads:
                self.refused.append(name)
                raise client_error("BucketNotEmpty", name)
        if blockers:
            self.refused.append(name)
            raise client_error("DeleteConflict", name, f"still has: {', '.join(blockers)}")
        return None

    def _role_blockers(self, role: str) -> list[str]:
        # "you must delete the items attached to the role manually, or the deletion fails":
        # inline policies, attached managed policies, instance profiles.
        # https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteRole.html
        iam = self.iam
        try:
            checks = {
                "managed policies": iam.list_attached_role_policies(RoleName=role)[
                    "AttachedPolicies"
                ],
                "inline policies": iam.list_role_policies(RoleName=role)["PolicyNames"],
                "instance profiles": iam.list_instance_profiles_for_role(RoleName=role)[
                    "InstanceProfiles"
                ],
            }
        except ClientError:  # no such role: DeleteRole itself will say so
            return []
        return [what for what, found in checks.items() if found]

    def _group_blockers(self, group: str) -> list[str]:
        # "Before you can delete a group, you must remove all users from the group, delete
        # inline policies, and detach managed policies"; moto deletes it regardless.
        # https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteGroup.html
        iam = self.iam
        try:
            checks = {
                "users": iam.get_group(GroupName=group)["Users"],
                "managed policies": iam.list_attached_group_policies(GroupName=group)[
                    "AttachedPolicies"
                ],
                "inline policies": iam.list_group_policies(GroupName=group)["PolicyNames"],
            }
        except ClientError:  # no such group: DeleteGroup itself will say so
            return []
        return [what for what, found in checks.items() if found]

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
class WithoutJanitorGrant:
    """What AWS answers a runner holding `job runner-policy` without `--janitor`: the calls that
    take a job principal out of someone else's group or instance profile, or off an MFA device,
    are refused (AccessDenied). IAM authorizes them on that group, profile, device or (for
    DeactivateMFADevice) user, and the default policy names none of those for them. moto, which
    authorizes against "*", refuses them only to a runner whose policy lacks the actions; this
    hook shows the refusal to any runner, an administrator included. Every refusal is kept.
    https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html
    """

    operations: frozenset[str] = frozenset(
        {
            "RemoveUserFromGroup",
            "DeactivateMFADevice",
            "DeleteVirtualMFADevice",
            "RemoveRoleFromInstanceProfile",
        }
    )
    refused: list[str] = field(default_factory=list)

    def __call__(self, model: Any, **_: Any) -> None:
        if model.name in self.operations:
            self.refused.append(model.name)
            raise client_error(
                "AccessDenied",
                model.name,
                f"User: arn:aws:iam::123456789012:user/runner is not authorized to perform: "
                f"iam:{model.name} because no identity-based policy allows the iam:{model.name} "
                "action",
            )


@dataclass
class SentTrustPolicies:
    """Keeps the trust policies the job sends (CreateRole, UpdateAssumeRolePolicy) in `sent`, as
    sent. The session's emulator honours a trust naming an account as AWS does (every principal
    of that account whose own identity policy allows sts:AssumeRole on the role may assume it:
    job.emulator.trust_account_principals, tests/services/moto_main.py), so what the job sends is
    what moto decides on. It once put "*" in place of the account, which a decision reading the
    trust as AWS does takes for what it is: anyone may assume the role.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html#principal-accounts
    """

    event: str = "before-parameter-build"
    sent: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name not in ("CreateRole", "UpdateAssumeRolePolicy"):
            return
        key = "AssumeRolePolicyDocument" if model.name == "CreateRole" else "PolicyDocument"
        self.sent.append(json.loads(params[key]))


# The run id inside the job's names ("<prefix>-<run id>-<name>", new_run_id's ten characters),
# which is all that differs between the calls of two runs of one scenario.
_RUN_ID_IN_NAME = re.compile(r"(?<=-)[a-z][a-z0-9]{9}(?=-)")
# The arguments that say what a call is about.
_SUBJECT_ARGUMENTS = (
    "Bucket",
    "Key",
    "UserName",
    "RoleName",
    "GroupName",
    "PolicyName",
    "PolicyArn",
    "RoleArn",
)


def call_label(model: Any, context: dict[str, Any]) -> str:
    """What a call does and to what, the same in every run of a scenario: "DeleteUser
    UserName=job-RUN-writer"."""
    arguments = context.get("arguments", {})
    subject = [f"{name}={arguments[name]}" for name in _SUBJECT_ARGUMENTS if name in arguments]
    return _RUN_ID_IN_NAME.sub("RUN", " ".join([model.name, *subject]))


# The operations that only read: a kill right after one is the kill right before it (AWS
# changed nothing, and the job had not yet seen the answer), so a sweep need not make both.
_READS = re.compile(r"(Get|List|Head|Describe)[A-Za-z0-9]*\b")


def only_reads(label: str) -> bool:
    """Whether the call a `call_label` names changes nothing in the account."""
    return _READS.match(label) is not None


def append_line(path: str, line: str) -> None:
    """One line, in one write to a file opened for appending: whole lines from any thread or
    process, and in the file before a SIGKILL that may follow at once."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, f"{line}\n".encode())
    finally:
        os.close(descriptor)


@dataclass
class LabelCalls:
    """Writes the label of each AWS call (`call_label`) to the file `path` as it is sent: what a
    forked `job` did, for the test that forked it."""

    path: str

    def __call__(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        append_line(self.path, call_label(model, context))


@dataclass
class KillAt:
    """SIGKILLs this very process right before (event "before-call") or right after ("after-call":
    AWS has answered, the job has not seen it) the `index`-th AWS call: no cleanup of any kind.
    Calls are counted under a lock, so that the index is one call even when the job makes them
    from many threads; with `labels`, "EVENT INDEX LABEL" is written there first, to show which
    call it was."""

    event: str
    index: int
    labels: str | None = None
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __call__(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self.count += 1
            if self.count != self.index:
                return
        if self.labels:
            append_line(self.labels, f"{self.event} {self.index} {call_label(model, context)}")
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


class DieAfter:
    """The process dies as AWS answers `operation` (the first time), and makes no call after
    that: what a kill right after the call leaves, without a fork."""

    event = "after-call"

    def __init__(self, operation: str) -> None:
        self.operation, self.dead = operation, False

    def __call__(self, model: Any, **_: Any) -> None:
        if self.dead or model.name == self.operation:
            self.dead = True
            raise Crash(f"dead at {model.name}")
