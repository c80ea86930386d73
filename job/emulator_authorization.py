"""moto, deciding each signed request as AWS documents it (job.policy_evaluation), in whatever
process serves the emulator: `job --emulator`, `python -m job.emulator --serve`, and the test
session's server (tests/services/moto_main.py).

moto's own decision differs from AWS's where real policies live: an Allow whose Condition does not
match is an explicit deny there (on AWS the statement just does not apply, and another may allow);
it knows few condition keys, matches actions with their case, and ignores permissions boundaries,
session policies and bucket policies. Here moto still authenticates the request (its signature and
key) and names the action and resource; the policies that apply are gathered from its backends and
the decision is AWS's. A role's trust is still moto's check (with job.emulator's account
principals), made after the decision as moto makes it; the decision reads the trust as the role's
resource policy, so that a trust naming the caller lets it in without an identity policy, as AWS
does in the role's account.

The request context holds what the emulator can know: the caller (aws:username, aws:userid,
aws:PrincipalArn, aws:PrincipalAccount, aws:PrincipalType, aws:PrincipalTag/*, and for a role
session aws:TokenIssueTime), the time
(aws:CurrentTime, aws:EpochTime), aws:RequestedRegion, aws:SecureTransport (false: the emulator
speaks plain HTTP); for S3 the request's s3:prefix, s3:delimiter, s3:max-keys,
s3:x-amz-server-side-encryption and s3:RequestObjectTag/* (as the request carries them); for IAM
iam:PolicyARN and iam:PermissionsBoundary from the call's parameters.
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html#amazons3-policy-keys
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

from job.policy_evaluation import Decision, Request, decide
from job.policy_language import PolicyError, Statement, read_document

log = logging.getLogger(__name__)

# The request parameters S3 exposes as condition keys, by the key's name.
_S3_QUERY_KEYS = {"prefix": "s3:prefix", "delimiter": "s3:delimiter", "max-keys": "s3:max-keys"}
_S3_HEADER_KEYS = {
    "x-amz-server-side-encryption": "s3:x-amz-server-side-encryption",
    "x-amz-acl": "s3:x-amz-acl",
}


@functools.lru_cache(maxsize=1024)
def _read(text: str, resource_policy: bool, trust_policy: bool) -> tuple[Statement, ...]:
    """A document's statements, read once per text: every signed request gathers its caller's
    policies again (AWS's managed ones run to thousands of actions)."""
    document = json.loads(text)
    return tuple(
        read_document(document, resource_policy=resource_policy, trust_policy=trust_policy)
    )


def _statements(
    document: str | bytes, *, resource_policy: bool = False, trust_policy: bool = False
) -> tuple[Statement, ...]:
    """A document's JSON text as moto keeps it (a bucket's policy is bytes)."""
    text = document.decode() if isinstance(document, bytes) else document
    return _read(text, resource_policy, trust_policy)


def _trust(iam_request: Any, role_arn: str) -> Sequence[Statement]:
    """The trust policy of the role AssumeRole names: the role's resource policy. In the
    role's account, a trust naming the caller itself lets it in without an identity policy; one
    naming the account leaves it to the caller's identity policy.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html
    """
    from moto.iam.exceptions import NotFoundException

    try:
        role = iam_request.backend.get_role_by_arn(role_arn)
    except NotFoundException:
        return ()
    return _statements(role.assume_role_policy_document, trust_policy=True)


def _text_of(policy: Any) -> str:
    """The JSON text of a policy as moto's collect_policies gives it: a managed Policy (its
    default version's document), an inline policy's dict, or the text itself."""
    from moto.iam.models import Policy

    if isinstance(policy, Policy):
        return str(next(v.document for v in policy.versions if v.is_default))
    if isinstance(policy, dict):
        return str(policy["policy_document"])
    return str(policy)


def _boundary(backend: Any, arn: str | None) -> Sequence[Statement] | None:
    """The statements of the permissions boundary at `arn`, if one is set. moto takes a
    boundary ARN that names no policy (IAM refuses it: NoSuchEntity); such a boundary allows
    nothing here, rather than failing every request of its principal."""
    from moto.iam.exceptions import NotFoundException

    if not arn:
        return None
    try:
        return _statements(_text_of(backend.get_policy(arn)))
    except NotFoundException:
        return ()


def _caller(iam_request: Any) -> tuple[Request, dict[str, Any]]:
    """The request as job.policy_evaluation takes it, and the policies that apply to its caller:
    identity, boundary and session (by name)."""
    from moto.iam.access_control import AssumedRoleAccessKey
    from moto.sts.models import sts_backends

    key = iam_request._access_key
    backend = iam_request.backend
    account = iam_request.account_id
    identity = [_statements(_text_of(policy)) for policy in key.collect_policies()]
    now = datetime.now(UTC)
    context: dict[str, list[str]] = {
        "aws:PrincipalAccount": [account],
        "aws:CurrentTime": [now.strftime("%Y-%m-%dT%H:%M:%SZ")],
        "aws:EpochTime": [str(int(now.timestamp()))],
        "aws:SecureTransport": ["false"],
        "aws:RequestedRegion": [iam_request._region],
    }
    boundary_arn: str | None
    session: Sequence[Statement] | None = None
    role_arn: str | None = None
    if isinstance(key, AssumedRoleAccessKey):
        role = backend.get_role(key._owner_role_name)
        role_arn = role.arn
        boundary_arn = role.permissions_boundary_arn
        tags = {tag["Key"]: tag["Value"] for tag in backend.list_role_tags(role.name, None)[0]}
        for assumed in sts_backends[account][key.partition].assumed_roles:
            if assumed.access_key_id != key._access_key_id:
                continue
            if assumed.policy:
                session = _statements(assumed.policy)
            issued = getattr(assumed, "issued_at", None)
            if issued is not None:
                context["aws:TokenIssueTime"] = [issued.strftime("%Y-%m-%dT%H:%M:%SZ")]
        context |= {
            "aws:PrincipalArn": [role.arn],
            "aws:PrincipalType": ["AssumedRole"],
            "aws:userid": [f"{role.id}:{key._session_name}"],
        }
    else:
        user = backend.get_user(key._owner_user_name)
        boundary_arn = getattr(user, "permissions_boundary_arn", None)
        tags = {tag["Key"]: tag["Value"] for tag in backend.list_user_tags(user.name)}
        context |= {
            "aws:PrincipalArn": [user.arn],
            "aws:PrincipalType": ["User"],
            "aws:username": [user.name],
            "aws:userid": [user.id],
        }
    for name, value in tags.items():
        context[f"aws:PrincipalTag/{name}"] = [value]
    boundary = _boundary(backend, boundary_arn)
    # A user as AWS names it, with its path (moto's key names it without); a role session as
    # STS names it (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION, no path).
    caller = context["aws:PrincipalArn"][0] if role_arn is None else key.arn
    request = Request(iam_request._action, "*", caller, account, role_arn, context)
    return request, {"identity": identity, "boundary": boundary, "session": session}


def _s3_context(
    iam_request: Any, resource: str
) -> tuple[dict[str, list[str]], Sequence[Statement]]:
    """The S3 request's own condition keys, and its bucket's policy."""
    from moto.s3.models import s3_backends

    context: dict[str, list[str]] = {}
    query = parse_qs(urlparse(iam_request._path).query, keep_blank_values=True)
    for parameter, key in _S3_QUERY_KEYS.items():
        if parameter in query:
            context[key] = query[parameter]
    headers = {name.lower(): value for name, value in iam_request._headers.items()}
    for header, key in _S3_HEADER_KEYS.items():
        if header in headers:
            context[key] = [headers[header]]
    if "x-amz-tagging" in headers:
        tags = parse_qs(headers["x-amz-tagging"], keep_blank_values=True)
        for name, values in tags.items():
            context[f"s3:RequestObjectTag/{name}"] = values
        context["s3:RequestObjectTagKeys"] = list(tags)
    bucket_name = resource.split(":::", 1)[-1].split("/", 1)[0]
    bucket_policy: Sequence[Statement] = ()
    partition = resource.split(":", 2)[1] if resource.startswith("arn:") else "aws"
    buckets = s3_backends[iam_request.account_id][partition].buckets
    bucket = buckets.get(bucket_name) if bucket_name and bucket_name != "*" else None
    if bucket is not None and bucket.policy:
        bucket_policy = _statements(bucket.policy, resource_policy=True)
    return context, bucket_policy


def _keep_user_boundaries() -> None:
    """moto drops CreateUser's PermissionsBoundary (it keeps a role's): keep it on the user, as
    `permissions_boundary_arn` like a role's, so that the decision can read it."""
    from moto.iam.responses import IamResponse

    create_user = IamResponse.create_user
    if getattr(create_user, "keeps_boundary", False):
        return

    def create_user_keeping_boundary(self: Any) -> Any:
        result = create_user(self)
        boundary = self._get_param("PermissionsBoundary")
        if boundary:
            self.backend.get_user(self._get_param("UserName")).permissions_boundary_arn = boundary
        return result

    create_user_keeping_boundary.keeps_boundary = True  # type: ignore[attr-defined]
    IamResponse.create_user = create_user_keeping_boundary  # type: ignore[method-assign]


def _no_second_bucket_policy_check() -> None:
    """moto reads a bucket's policy again for object requests, with no principal: a Deny naming
    one user refuses everyone, with an empty 403. The decision above has read the bucket policy
    for the caller already, so moto's own reading says nothing (nor lets anonymous requests in:
    the job blocks public access to its buckets)."""
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket

    def no_opinion(self: Any, action: str, resource: str) -> Any:
        return PermissionResult.NEUTRAL

    FakeBucket.get_permission = no_opinion  # type: ignore[method-assign]


# IAM's request parameters that are condition keys of the call.
# https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html#awsidentityandaccessmanagementiam-policy-keys
_IAM_PARAMETER_KEYS = {
    "PolicyArn": "iam:PolicyARN",
    "PermissionsBoundary": "iam:PermissionsBoundary",
}


def _iam_context(iam_request: Any) -> dict[str, list[str]]:
    context: dict[str, list[str]] = {}
    for parameter, key in _IAM_PARAMETER_KEYS.items():
        value = (iam_request._data or {}).get(parameter)
        if value:
            context[key] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return context


def _keep_session_issue_times() -> None:
    """moto keeps a role session's expiry, not when it was issued: keep that too, for
    aws:TokenIssueTime (AWS's "revoke older sessions" policy denies by it)."""
    from moto.sts.models import AssumedRole

    init = AssumedRole.__init__
    if getattr(init, "keeps_issue_time", False):
        return

    def init_keeping_issue_time(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.issued_at = datetime.now(UTC)

    init_keeping_issue_time.keeps_issue_time = True  # type: ignore[attr-defined]
    AssumedRole.__init__ = init_keeping_issue_time  # type: ignore[method-assign]


def decide_as_aws() -> None:
    """Replace moto's decision, in this process, by AWS's documented one. Idempotent."""
    from moto.iam.access_control import IAMRequestBase, S3IAMRequest

    _keep_user_boundaries()
    _keep_session_issue_times()
    _no_second_bucket_policy_check()

    moto_decision = IAMRequestBase.check_action_permitted
    if getattr(moto_decision, "as_aws", False):
        return

    def check_action_permitted(self: Any, resource: str) -> None:
        if self._action == "sts:GetCallerIdentity":
            return  # AWS answers it for any valid credentials, whatever a policy says
        try:
            request, policies = _caller(self)
            resource_policy: Sequence[Statement] = ()
            request = replace(request, resource=resource)
            if isinstance(self, S3IAMRequest):
                extra, resource_policy = _s3_context(self, resource)
            else:
                extra = _iam_context(self)
                if self._action == "sts:AssumeRole":
                    resource_policy = _trust(self, resource)
            request = replace(request, context={**request.context, **extra})
        except PolicyError as error:
            # A document IAM would have refused cannot be in IAM: moto accepted it. Decide as
            # moto does, and say so.
            log.warning("emulator: a policy AWS would refuse (%s); moto decides", error)
            moto_decision(self, resource)
            return
        decision = decide(request, resource=resource_policy, **policies)
        if decision is not Decision.ALLOW:
            self._raise_access_denied()
        if self._is_assuming_role_operation(resource) and not self._check_role_trust_relationship(
            resource
        ):
            self._raise_access_denied()

    check_action_permitted.as_aws = True  # type: ignore[attr-defined]
    IAMRequestBase.check_action_permitted = check_action_permitted  # type: ignore[method-assign]
