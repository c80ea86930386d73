"""An HTTP layer in front of the moto server that adds what AWS documents and moto lacks.

moto is laxer than AWS in ways that hide real bugs: it authorizes before it looks for a bucket, so
a probe on a bucket that does not exist is denied rather than told "no such bucket"; a new bucket,
key, policy, role or role session works the moment its call returns, where AWS takes a while to
propagate it; it lets anyone allowed sts:AssumeRole assume a role that does not exist; and it
serves unpaginated ListBuckets, which AWS refuses to some accounts; it applies a bucket's
configuration writes side by side where S3 refuses a second one while the first is in progress;
and a policy reaches every service at once, where AWS propagates it to each separately. `AwsLike`
is a behaviour for
benchmarks.proxy.LatencyProxy that puts those back: `layer(moto_url, AwsLike())` is the endpoint
the tests talk to (tests/conftest.py's `moto_endpoint`).

Everything it knows, it learns from the traffic going through it: which buckets exist (a
CreateBucket or DeleteBucket answered 2xx, moto's reset), which key belongs to which user (the
CreateAccessKey and AssumeRole answers), which roles exist (CreateRole, DeleteRole), which users
are in which group (AddUserToGroup, RemoveUserFromGroup), when a user's or role's policy changed
(its own, a group it joined, or its group's). All test traffic goes through the layer, so that
is complete; asking moto instead would need credentials the layer does not have.

The knobs are public attributes a test may change at any time, from any thread; each is
described, with the AWS page it models, where the class declares it:

- `no_such_bucket_first` (on): NoSuchBucket before AccessDenied for a bucket that does not exist.
- `bucket_creation_lag`: a new bucket not found for that many seconds.
- `new_key_lag`: a new access key unknown for that many seconds.
- `new_policy_lag`: a principal denied everything for that many seconds after its policy changed.
- `service_policy_lag`: {service: seconds}, "iam", "s3" or "sts": a principal denied that
  service's calls for that long after its policy changed, while other services see it at once.
- `new_role_lag`: a new role not assumable for that many seconds.
- `assume_missing_role_refused` (on): AssumeRole of a role that does not exist refused.
- `new_session_lag`: a role session's credentials unknown for that many seconds.
- `paged_list_buckets_only` (on): unpaginated ListBuckets refused.
- `bucket_configuration_conflicts` (on): a bucket configuration write refused with 409
  OperationAborted while another on the same bucket is in flight.
- `bucket_configuration_seconds`: how long each bucket configuration write stays in flight.
- `operation_aborted_next`: {operation: N}: the next N calls of each named S3 operation
  answered 409 OperationAborted, whatever else is going on.

A window (`bucket_creation_lag`, `new_key_lag`, `new_policy_lag`, `service_policy_lag`,
`new_role_lag`, `new_session_lag`) is fixed when its event happens: setting a lag affects what
is created afterwards, not what already exists (the runner the `aws` fixture made, say). Every
answer the layer makes up is logged in `refusals`, so that a test can check a knob really fired.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar, overload
from urllib.parse import parse_qs
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from benchmarks.proxy import Answer, LatencyProxy, Request

T = TypeVar("T")

# The query protocol's error documents carry the service's API namespace.
_QUERY_NAMESPACES = {
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
}
# What S3 answers to CreateBucket for a name that is taken: the bucket exists all the same.
_BUCKET_TAKEN = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}
# S3's answer to a write that conflicts with one still in progress on the same resource.
# https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList
_OPERATION_ABORTED = (
    "A conflicting conditional operation is currently in progress against this resource. "
    "Please try again."
)
# A configuration write still "in flight" after this long lost its answer on the way (the layer
# never saw one: moto failed and the client had a 502); it no longer holds its bucket.
_LOST_WRITE_SECONDS = 30.0


class _Knob(Generic[T]):
    """A setting read and written under its AwsLike's lock: a request is judged under that same
    lock, so it sees one consistent set of knobs even while a test changes them."""

    def __init__(self, default: T) -> None:
        self.default = default
        self.slot = ""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.slot = f"_{name}"

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> _Knob[T]: ...
    @overload
    def __get__(self, instance: AwsLike, owner: type[Any]) -> T: ...
    def __get__(self, instance: AwsLike | None, owner: type[Any]) -> _Knob[T] | T:
        if instance is None:
            return self
        with instance._lock:
            value: T = getattr(instance, self.slot, self.default)
            return value

    def __set__(self, instance: AwsLike, value: T) -> None:
        with instance._lock:
            setattr(instance, self.slot, value)


class AwsLike:
    """The behaviour: see the module's docstring. Thread-safe; every method may be called from
    any thread while the proxy runs."""

    # S3 answers NoSuchBucket (404) for a bucket that does not exist, to anyone: it looks for the
    # bucket before it authorizes the request. moto authorizes first and answers AccessDenied.
    # https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html (NoSuchBucket, 404)
    no_such_bucket_first = _Knob(True)
    # Seconds after a CreateBucket during which the new bucket is not found by the calls that
    # follow (tagging, public access block, objects, HEAD, delete). "Bucket configurations have an
    # eventual consistency model":
    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/Welcome.html#ConsistencyModel
    bucket_creation_lag = _Knob(0.0)
    # Seconds after a CreateAccessKey during which the new key is unknown to IAM, STS and S3.
    # IAM "uses a distributed computing model called eventual consistency": a change, a new
    # credential included, takes time to reach every endpoint.
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
    new_key_lag = _Knob(0.0)
    # Seconds after an AttachUserPolicy or PutUserPolicy for a user during which that user's keys
    # are denied everything: the new policy has not reached the endpoints yet (same page as
    # above). Coarser than AWS, where only what the new policy adds is missing; denying all is the
    # harder case for a caller, and what a brand-new user with its first policy sees. The same
    # for a role: after an AttachRolePolicy or PutRolePolicy, its sessions are denied everything.
    # And for a user after an AddUserToGroup of it, or an AttachGroupPolicy or PutGroupPolicy of
    # a group it is in: a group's policies are the user's, and propagate as its own.
    new_policy_lag = _Knob(0.0)
    # {service: seconds} ("iam", "s3", "sts", the prefix of the layer's operation names): after
    # a principal's policy changes (the same four calls as above), its calls to that service are
    # denied for that long (AccessDenied, in the service's error format), while services not named
    # see the change at once. AWS propagates a change to each service's endpoints separately:
    # "changes take time to become visible from all possible endpoints"; an S3 call that works
    # proves nothing about what IAM has seen (same page as above). sts:GetCallerIdentity is never
    # denied: it needs no permission, and "if an administrator attaches a policy to your identity
    # that explicitly denies access to the sts:GetCallerIdentity action, you can still perform this
    # operation". https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
    service_policy_lag: _Knob[Mapping[str, float]] = _Knob(MappingProxyType({}))
    # Seconds after a CreateRole during which sts:AssumeRole of the new role is refused with
    # AccessDenied (403), as AWS refuses it while the role and its trust policy have not reached
    # every endpoint: "Any change that you make in IAM ... takes time to become visible", and the
    # refusal is the one of "I can't assume a role" (the same page lists the causes; a role not
    # known yet is indistinguishable from one the caller may not assume).
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_roles.html
    new_role_lag = _Knob(0.0)
    # sts:AssumeRole of a role that does not exist refused with AccessDenied (403), never a
    # NoSuchEntity: STS does not tell a caller whether a role exists. AssumeRole's own errors
    # (MalformedPolicyDocument, PackedPolicyTooLarge, RegionDisabled, ExpiredToken) have no
    # "no such role"; the refusal is the common AccessDenied, "User: ... is not authorized to
    # perform: sts:AssumeRole on resource: <role ARN>", whatever the reason. moto issues
    # credentials for any role ARN, by design (getmoto/moto#6793).
    # https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_roles.html
    assume_missing_role_refused = _Knob(True)
    # Seconds after an AssumeRole during which the session's temporary credentials are refused
    # as a new key is (InvalidClientTokenId, InvalidAccessKeyId): a credential just issued has
    # not reached every endpoint (the eventual-consistency page above). Harder than AWS usually
    # is, where a session works at once in its own region; a caller that survives a new key's
    # lag survives this.
    new_session_lag = _Knob(0.0)
    # Unpaginated ListBuckets (no max-buckets) refused with a 400. "All unpaginated ListBuckets
    # requests will be rejected for AWS accounts with a general purpose bucket quota greater than
    # 10,000", and a job must work in such an account.
    # https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListBuckets.html
    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/BucketRestrictions.html
    paged_list_buckets_only = _Knob(True)
    # A bucket configuration write (a PUT or DELETE of a bucket subresource: ?tagging, ?policy,
    # ?publicAccessBlock, ?ownershipControls, ?encryption, ...) that arrives while another one on
    # the same bucket is in flight (forwarded by the layer, not yet answered) is answered 409
    # OperationAborted, "A conflicting conditional operation is currently in progress against this
    # resource" (ErrorResponses page above), and not applied. Real S3 gives it to concurrent
    # configuration writes on one bucket: a policy and a public access block at once
    # (terraform-provider-aws#7628, fixed by retrying it in #12949; ansible/ansible#67811 retries it
    # too). S3 does not say how long a write holds its bucket; in flight is the layer's nearest.
    bucket_configuration_conflicts = _Knob(True)
    # Seconds the layer holds each bucket configuration write, in flight, before forwarding it: as
    # S3 takes a while to apply one, and so that two sent side by side overlap surely rather than
    # as threads happen to run.
    bucket_configuration_seconds = _Knob(0.0)
    # {operation: N} ("s3:PutBucketPolicy", "s3:CreateBucket", "s3:DeleteBucket", ...): the next
    # N calls of each are answered 409 OperationAborted before they reach moto (nothing is done),
    # as S3 may answer them while something else works on the bucket (or, for CreateBucket, on a
    # name deleted a moment ago: aws/aws-cli#2593). Counted down as they fire.
    operation_aborted_next: _Knob[Mapping[str, int]] = _Knob(MappingProxyType({}))

    def __init__(self, **knobs: float | bool) -> None:
        # Re-entrant: a request is judged holding the lock, and reads the knobs through it.
        self._lock = threading.RLock()
        self._buckets: set[str] = set()  # those that exist, as the traffic told
        # Monotonic times until which a bucket, a key or a user's policies are not visible yet.
        self._bucket_visible: dict[str, float] = {}
        self._key_valid: dict[str, float] = {}
        self._policy_effective: dict[str, float] = {}  # by principal
        self._service_policy_effective: dict[tuple[str, str], float] = {}  # (principal, service)
        # Bucket -> the configuration writes on it in flight: id of the request -> when it came.
        self._configuring: dict[str, dict[int, float]] = {}
        self._role_assumable: dict[str, float] = {}  # by role name
        self._roles: set[str] = set()  # those that exist, as the traffic told
        self._members: dict[str, set[str]] = {}  # group name -> its users, as the traffic told
        # Access key id -> its principal: a user's name, or "role/NAME" for a role's session.
        self._key_principal: dict[str, str] = {}
        self._refusals: list[str] = []
        for name, value in knobs.items():
            if name not in _knobs():
                raise TypeError(f"AwsLike has no knob {name!r}")
            setattr(self, name, value)

    @property
    def refusals(self) -> list[str]:
        """A line for each answer the layer made up, oldest first (a copy)."""
        with self._lock:
            return list(self._refusals)

    def reset(self) -> None:
        """The default knobs, nothing tracked, no refusals: as new."""
        with self._lock:
            for name, knob in _knobs().items():
                setattr(self, name, knob.default)
            self._forget()
            self._refusals.clear()

    def _forget(self) -> None:
        self._buckets.clear()
        self._bucket_visible.clear()
        self._key_valid.clear()
        self._policy_effective.clear()
        self._service_policy_effective.clear()
        self._configuring.clear()
        self._role_assumable.clear()
        self._roles.clear()
        self._members.clear()
        self._key_principal.clear()

    # The behaviour

    def before(self, request: Request) -> Answer | None:
        if request.operation == "moto-api":
            return None
        now = time.monotonic()
        key = request.access_key_id
        with self._lock:
            principal = self._key_principal.get(key or "")
            if key is not None and now < self._key_valid.get(key, 0.0):
                lag = "new session lag" if _is_role(principal) else "new key lag"
                return self._refuse(f"{lag}: {request.operation} {key}", _bad_key(request))
            if principal is not None and now < self._policy_effective.get(principal, 0.0):
                return self._refuse(
                    f"new policy lag: {request.operation} {principal} ({key})",
                    _error(request, 403, "AccessDenied", _denial(request, principal)),
                )
            service = _service(request)
            if (
                principal is not None
                and request.operation != "sts:GetCallerIdentity"
                and now < self._service_policy_effective.get((principal, service), 0.0)
            ):
                return self._refuse(
                    f"service policy lag: {request.operation} {principal} ({key})",
                    _error(request, 403, "AccessDenied", _denial(request, principal)),
                )
            bucket = request.bucket
            if (
                bucket is not None
                and request.operation != "s3:CreateBucket"
                and now < self._bucket_visible.get(bucket, 0.0)
            ):
                return self._refuse(
                    f"bucket creation lag: {request.operation} {bucket}",
                    _no_such_bucket(request, bucket),
                )
            aborted = self.operation_aborted_next.get(request.operation, 0)
            if aborted > 0:
                # A new mapping: the test's own (or the default) is never changed under it.
                self.operation_aborted_next = {
                    **self.operation_aborted_next,
                    request.operation: aborted - 1,
                }
                return self._refuse(
                    f"forced OperationAborted: {request.operation} {bucket}",
                    _error(request, 409, "OperationAborted", _OPERATION_ABORTED),
                )
            if bucket is None or not _is_bucket_configuration_write(request):
                return None
            writes = self._configuring.setdefault(bucket, {})
            if self.bucket_configuration_conflicts and any(
                now - began < _LOST_WRITE_SECONDS for began in writes.values()
            ):
                return self._refuse(
                    f"concurrent configuration: {request.operation} {bucket}",
                    _error(request, 409, "OperationAborted", _OPERATION_ABORTED),
                )
            writes[id(request)] = now  # the same object comes to after() with its answer
            hold = self.bucket_configuration_seconds
        time.sleep(hold)  # outside the lock: other requests go on meanwhile
        return None

    def after(self, request: Request, answer: Answer) -> Answer | None:
        ok = 200 <= answer.status < 300
        now = time.monotonic()
        with self._lock:
            if request.bucket in self._configuring:
                writes = self._configuring[request.bucket]
                writes.pop(id(request), None)
                if not writes:
                    del self._configuring[request.bucket]
            if request.operation == "moto-api":
                if request.method == "POST" and request.path == "/moto-api/reset" and ok:
                    self._forget()  # moto forgot everything: so do we (the knobs stay)
                return None
            if request.bucket is not None:
                return self._after_s3(request, request.bucket, answer, now)
            if (
                request.operation == "s3:ListBuckets"
                and ok
                and "max-buckets" not in request.query
                and self.paged_list_buckets_only
            ):
                # Only what moto would serve: which accounts are refused depends on their bucket
                # quota, so S3 must know the account, i.e. have authenticated the key, first; a
                # principal without s3:ListAllMyBuckets keeps its AccessDenied. The code is ours:
                # AWS does not document it. InvalidRequest is S3's for a request it will not
                # serve as made; no caller should rely on it.
                return self._refuse(
                    f"unpaged ListBuckets: {request.operation}",
                    _error(
                        request,
                        400,
                        "InvalidRequest",
                        "Unpaginated ListBuckets requests are not supported for this account:"
                        " send max-buckets and follow the continuation token.",
                    ),
                )
            if not ok:
                return None
            if request.operation == "iam:CreateAccessKey":
                key = _xml_text(answer.body, "AccessKeyId")
                user = _xml_text(answer.body, "UserName")
                if key is not None and user is not None:
                    self._key_principal[key] = user
                    self._key_valid[key] = now + self.new_key_lag
            elif request.operation in ("iam:AttachUserPolicy", "iam:PutUserPolicy"):
                self._policy_changed(_form(request).get("UserName"), now)
            elif request.operation == "iam:AddUserToGroup":
                # The user has the group's policies from now: new to it, as its own would be.
                form = _form(request)
                user, group = form.get("UserName"), form.get("GroupName")
                if user is not None and group is not None:
                    self._members.setdefault(group, set()).add(user)
                    self._policy_changed(user, now)
            elif request.operation == "iam:RemoveUserFromGroup":
                form = _form(request)
                self._members.get(form.get("GroupName") or "", set()).discard(
                    form.get("UserName") or ""
                )
            elif request.operation in ("iam:AttachGroupPolicy", "iam:PutGroupPolicy"):
                # Every member's permissions change with the group's.
                for user in self._members.get(_form(request).get("GroupName") or "", set()):
                    self._policy_changed(user, now)
            elif request.operation in ("iam:AttachRolePolicy", "iam:PutRolePolicy"):
                role = _form(request).get("RoleName")
                self._policy_changed(None if role is None else f"role/{role}", now)
            elif request.operation == "iam:CreateRole":
                role = _form(request).get("RoleName")
                if role is not None:
                    self._roles.add(role)
                    self._role_assumable[role] = now + self.new_role_lag
            elif request.operation == "iam:DeleteRole":
                role = _form(request).get("RoleName")
                self._roles.discard(role or "")
                self._role_assumable.pop(role or "", None)
            elif request.operation == "sts:AssumeRole":
                return self._after_assume_role(request, answer, now)
        return None

    def _policy_changed(self, principal: str | None, now: float) -> None:
        if principal is not None:
            # A later change may not shorten the wait an earlier one is still in.
            effective = now + self.new_policy_lag
            earlier = self._policy_effective.get(principal, 0.0)
            self._policy_effective[principal] = max(earlier, effective)
            for service, lag in self.service_policy_lag.items():
                earlier = self._service_policy_effective.get((principal, service), 0.0)
                self._service_policy_effective[principal, service] = max(earlier, now + lag)

    def _after_assume_role(self, request: Request, answer: Answer, now: float) -> Answer | None:
        # Only what moto granted: a caller it refused (a key it does not know, no sts:AssumeRole
        # in the caller's policies) keeps moto's answer, as AWS authenticates first too.
        arn = _form(request).get("RoleArn", "")
        role = arn.rpartition("/")[2]  # role/NAME or role/PATH/NAME
        if role not in self._roles and self.assume_missing_role_refused:
            return self._refuse(
                f"no such role: sts:AssumeRole {role}",
                _error(request, 403, "AccessDenied", self._assume_denial(request, arn)),
            )
        if now < self._role_assumable.get(role, 0.0):
            return self._refuse(
                f"new role lag: sts:AssumeRole {role}",
                _error(request, 403, "AccessDenied", self._assume_denial(request, arn)),
            )
        key = _xml_text(answer.body, "AccessKeyId")
        if key is not None:
            self._key_principal[key] = f"role/{role}"
            self._key_valid[key] = now + self.new_session_lag
        return None

    def _assume_denial(self, request: Request, arn: str) -> str:
        caller = self._key_principal.get(request.access_key_id or "", request.access_key_id)
        return f"User: {caller} is not authorized to perform: sts:AssumeRole on resource: {arn}"

    def _after_s3(self, request: Request, bucket: str, answer: Answer, now: float) -> Answer | None:
        ok = 200 <= answer.status < 300
        code = _xml_text(answer.body, "Code")
        if request.operation == "s3:CreateBucket":
            if ok and bucket not in self._buckets:
                # Only a bucket that is new: us-east-1 answers 200 to its owner creating it again.
                self._bucket_visible[bucket] = now + self.bucket_creation_lag
            if ok or code in _BUCKET_TAKEN:
                self._buckets.add(bucket)
            return None
        if request.operation == "s3:DeleteBucket" and ok:
            self._buckets.discard(bucket)
            self._bucket_visible.pop(bucket, None)
            return None
        # Only an authorization refusal: a key S3 does not know or a bad signature is refused
        # before S3 looks for the bucket, as moto does. A HEAD's refusal has no body to name its
        # code; then a key the layer saw created stands for one that authenticated.
        if code is None and request.method == "HEAD":
            denied = answer.status == 403 and request.access_key_id in self._key_principal
        else:
            denied = answer.status == 403 and code == "AccessDenied"
        if denied and bucket not in self._buckets and self.no_such_bucket_first:
            return self._refuse(
                f"NoSuchBucket first: {request.operation} {bucket}",
                _no_such_bucket(request, bucket),
            )
        return None

    def _refuse(self, why: str, answer: Answer) -> Answer:
        self._refusals.append(why)
        return answer


def _knobs() -> dict[str, _Knob[Any]]:
    return {name: value for name, value in vars(AwsLike).items() if isinstance(value, _Knob)}


def layer(upstream: str, aws_like: AwsLike) -> LatencyProxy:
    """The AWS-like layer in front of the moto server at `upstream`, not started yet: use it as a
    context manager; its `url` is the endpoint to give clients. No added latency."""
    return LatencyProxy(upstream, 0, behaviour=aws_like)


# Answers, in each service's error format, with a request id as AWS gives every answer.


def _service(request: Request) -> str:
    """The protocol that answers: "s3", "iam", "sts" (from the operation, which names S3 even
    for an unsigned request)."""
    return request.operation.partition(":")[0]


def _error(request: Request, status: int, code: str, message: str, **extra: str) -> Answer:
    if _service(request) == "s3":
        return _s3_error(request, status, code, message, extra)
    return _query_error(request, status, code, message)


def _s3_error(
    request: Request, status: int, code: str, message: str, extra: Mapping[str, str]
) -> Answer:
    # https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html: <Error> with Code,
    # Message, RequestId and HostId, which also travel as x-amz-request-id and x-amz-id-2.
    request_id = secrets.token_hex(8).upper()
    host_id = base64.b64encode(secrets.token_bytes(48)).decode()
    headers = [("x-amz-request-id", request_id), ("x-amz-id-2", host_id)]
    if request.method == "HEAD":  # S3 answers a HEAD with the status alone, never a body
        return Answer(status, headers)
    fields = {"Code": code, "Message": message, **extra, "RequestId": request_id, "HostId": host_id}
    document = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields.items())
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{document}</Error>'.encode()
    return Answer(status, [("Content-Type", "application/xml"), *headers], body)


def _query_error(request: Request, status: int, code: str, message: str) -> Answer:
    # The query protocol's (IAM's, STS's) error document, with its request id.
    # https://docs.aws.amazon.com/IAM/latest/APIReference/CommonErrors.html
    request_id = str(uuid.uuid4())
    namespace = _QUERY_NAMESPACES.get(_service(request), _QUERY_NAMESPACES["iam"])
    body = (
        f'<ErrorResponse xmlns="{namespace}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId>"
        "</ErrorResponse>"
    ).encode()
    return Answer(status, [("x-amzn-RequestId", request_id), ("Content-Type", "text/xml")], body)


def _no_such_bucket(request: Request, bucket: str) -> Answer:
    return _s3_error(
        request, 404, "NoSuchBucket", "The specified bucket does not exist", {"BucketName": bucket}
    )


def _bad_key(request: Request) -> Answer:
    """What IAM and STS (InvalidClientTokenId), or S3 (InvalidAccessKeyId), answer to a key they
    do not know (yet)."""
    key = request.access_key_id or ""
    if _service(request) == "s3":
        message = "The AWS Access Key Id you provided does not exist in our records."
        return _s3_error(request, 403, "InvalidAccessKeyId", message, {"AWSAccessKeyId": key})
    message = "The security token included in the request is invalid."
    return _query_error(request, 403, "InvalidClientTokenId", message)


def _denial(request: Request, principal: str) -> str:
    if _service(request) == "s3":
        return "Access Denied"
    return f"User: {principal} is not authorized to perform: {request.operation}"


def _is_bucket_configuration_write(request: Request) -> bool:
    """A PUT or DELETE of one of a bucket's subresources (?tagging, ?policy, ...): not
    CreateBucket or DeleteBucket (no subresource), not an object's (a key in the path)."""
    key = request.path.strip("/").partition("/")[2]
    subresources = set(request.query) - {"x-id"}  # botocore may name the operation in the URL
    return request.method in ("PUT", "DELETE") and not key and bool(subresources)


def _is_role(principal: str | None) -> bool:
    """Whether a key's principal is a role's session (user names cannot hold a slash)."""
    return principal is not None and principal.startswith("role/")


# Reading requests and answers


def _xml_text(body: bytes, name: str) -> str | None:
    """The text of the first element called `name` in an XML document, whatever its namespace;
    None if there is none or the body is not XML (a HEAD's empty one)."""
    if not body.strip():
        return None
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if element.tag == name or element.tag.endswith("}" + name):
            return element.text
    return None


def _form(request: Request) -> dict[str, str]:
    """A query-protocol request's parameters: the form body's, else the URL's."""
    form = parse_qs(request.body.decode("utf-8", "replace"))
    merged = {**request.query, **form}
    return {name: values[0] for name, values in merged.items() if values}
