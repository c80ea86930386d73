"""Faults injected at the AWS boundary through botocore's event hooks: no patching."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, EndpointConnectionError


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
