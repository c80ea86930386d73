"""An HTTP layer in front of the moto server that adds what AWS documents and moto lacks.

moto is laxer than AWS in ways that hide real bugs: it authorizes before it looks for a bucket, so
a probe on a bucket that does not exist is denied rather than told "no such bucket"; a new bucket,
key, policy, role or role session works the moment its call returns, where AWS takes a while to
propagate it; it lets anyone allowed sts:AssumeRole assume a role that does not exist, and a role
of another account whatever that role's trust policy says; it serves unpaginated ListBuckets,
which AWS refuses to some accounts; it applies a bucket's configuration writes side by side where
S3 refuses a second one while the first is in progress; and a policy reaches every service at
once, where AWS propagates it to each separately. `AwsLike` is a behaviour for
benchmarks.proxy.LatencyProxy that puts those back: `layer(moto_url, AwsLike())` is the endpoint
the tests talk to (tests/conftest.py's `moto_endpoint`).

Everything it knows, it learns from the traffic going through it: which buckets exist (a
CreateBucket or DeleteBucket answered 2xx, moto's reset), which key belongs to which user or role
session, in which account (the CreateAccessKey and AssumeRole answers), which roles exist in which
account and whom they trust (CreateRole, UpdateAssumeRolePolicy, DeleteRole), which users are in
which group (AddUserToGroup, RemoveUserFromGroup), when a user's or role's policy changed (its
own, a group it joined, or its group's). All test traffic goes through the layer, so that is
complete; asking moto instead would need credentials the layer does not have.

Accounts: moto serves many (job fleet's member accounts), and so does the layer. A request acts
in the account its `x-moto-account-id` header names (moto's server reads it before the key;
job.emulator.add_member_role sends it), else in its key's: a role session's is the account of the
role it assumed (the AssumeRole answer's ARN says it), a user's key's the account of whoever
created it; anything else is moto's default account, 123456789012. Users, groups and roles are
the account's: a role of the same name in another account is another role.

The knobs are public attributes a test may change at any time, from any thread; each is
described, with the AWS page it models, where the class declares it:

- `no_such_bucket_first` (on): NoSuchBucket before AccessDenied for a bucket that does not exist.
- `bucket_creation_lag`: a new bucket not found for that many seconds.
- `new_key_lag`: a new access key unknown for that many seconds.
- `new_policy_lag`: a principal denied everything for that many seconds after its policy changed.
- `service_policy_lag`: {service: seconds}, "iam", "s3" or "sts": a principal denied that
  service's calls for that long after its policy changed, while other services see it at once.
- `new_role_lag`: a new role not assumable for that many seconds.
- `assume_missing_role_refused` (on): AssumeRole of a role that does not exist (in the account its
  ARN names) refused.
- `assume_role_trust_checked` (on): AssumeRole refused unless the role's trust policy lets the
  caller in, with the ExternalId its condition asks for.
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
import fnmatch
import json
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
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
# moto's account when a request names none (no header, a key it does not know).
DEFAULT_ACCOUNT = "123456789012"
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


@dataclass(frozen=True)
class _Principal:
    """Whom a key belongs to, as the traffic told."""

    account: str
    name: str  # a user's name, or "role/NAME" for a role's session (user names hold no slash)
    # Its ARN (a user's, with its path, or the session's), then for a session its role's: what a
    # trust policy may name it by.
    arns: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        """What its policy windows are keyed by."""
        return (self.account, self.name)

    @property
    def is_role(self) -> bool:
        return self.name.startswith("role/")


@dataclass(frozen=True)
class _Role:
    arn: str
    trust: Any  # its trust policy, parsed; None if it was not JSON


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
    # credentials for any role ARN, by design (getmoto/moto#6793). A role exists in one account:
    # the one its ARN names, where a role of the same name in another account does not help.
    # https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_roles.html
    assume_missing_role_refused = _Knob(True)
    # sts:AssumeRole refused with the same AccessDenied when the role's trust policy (its
    # resource-based policy) does not name the caller, or does but with an sts:ExternalId
    # condition the call does not meet. In another account, the trust must name the caller, its
    # role (for a role session) or its account, whatever the caller's own policies allow:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html
    # The external id is how a role a third party assumes tells that party's customers apart; a
    # call without one does not meet `StringEquals` (a key the request lacks matches nothing):
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_common-scenarios_third-party.html
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_create_for-user_externalid.html
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
    # moto checks a trust only when the role is in the caller's own account (and there lets a
    # call with no ExternalId through); across accounts it checks none (experiment, moto 5.2).
    # The layer reads only what job fleet's roles use: Allow statements of sts:AssumeRole with a
    # Principal and at most a `StringEquals` `sts:ExternalId` condition. A trust with anything
    # else in it (Deny, NotPrincipal, another condition) is left to moto, as is a caller or a
    # role the layer has not seen made.
    assume_role_trust_checked = _Knob(True)
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
        # Users, groups and roles are an account's: keyed by (account, name), as principals are
        # by (account, user name or "role/NAME").
        self._policy_effective: dict[tuple[str, str], float] = {}  # by principal
        # (account, principal, service)
        self._service_policy_effective: dict[tuple[str, str, str], float] = {}
        # Bucket -> the configuration writes on it in flight: id of the request -> when it came.
        self._configuring: dict[str, dict[int, float]] = {}
        self._role_assumable: dict[tuple[str, str], float] = {}  # by (account, role name)
        # Those that exist, as the traffic told: (account, name) -> the role's ARN and trust.
        self._roles: dict[tuple[str, str], _Role] = {}
        self._user_arns: dict[tuple[str, str], str] = {}  # (account, name) -> ARN, with its path
        # (account, group name) -> its users, as the traffic told.
        self._members: dict[tuple[str, str], set[str]] = {}
        # Access key id -> its principal: a user, or a role's session.
        self._key_principal: dict[str, _Principal] = {}
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
        self._user_arns.clear()
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
                lag = "new session lag" if principal and principal.is_role else "new key lag"
                return self._refuse(f"{lag}: {request.operation} {key}", _bad_key(request))
            if principal is not None and now < self._policy_effective.get(principal.key, 0.0):
                return self._refuse(
                    f"new policy lag: {request.operation} {principal.name} ({key})",
                    _error(request, 403, "AccessDenied", _denial(request, principal.name)),
                )
            service = _service(request)
            if (
                principal is not None
                and request.operation != "sts:GetCallerIdentity"
                and now < self._service_policy_effective.get((*principal.key, service), 0.0)
            ):
                return self._refuse(
                    f"service policy lag: {request.operation} {principal.name} ({key})",
                    _error(request, 403, "AccessDenied", _denial(request, principal.name)),
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
            account = self._account_of(request)
            form = _form(request)
            if request.operation == "iam:CreateAccessKey":
                # The key is the account's where it was made: the caller's (or the header's).
                key = _xml_text(answer.body, "AccessKeyId")
                user = _xml_text(answer.body, "UserName")
                if key is not None and user is not None:
                    arn = self._user_arns.get((account, user), _user_arn(account, user))
                    self._key_principal[key] = _Principal(account, user, (arn,))
                    self._key_valid[key] = now + self.new_key_lag
            elif request.operation == "iam:CreateUser":
                # Its ARN, with its path, is what a trust policy names.
                user_arn = _xml_text(answer.body, "Arn")
                user = _xml_text(answer.body, "UserName")
                if user_arn is not None and user is not None:
                    self._user_arns[_account_in(user_arn, account), user] = user_arn
            elif request.operation in ("iam:AttachUserPolicy", "iam:PutUserPolicy"):
                self._policy_changed(account, form.get("UserName"), now)
            elif request.operation == "iam:AddUserToGroup":
                # The user has the group's policies from now: new to it, as its own would be.
                user, group = form.get("UserName"), form.get("GroupName")
                if user is not None and group is not None:
                    self._members.setdefault((account, group), set()).add(user)
                    self._policy_changed(account, user, now)
            elif request.operation == "iam:RemoveUserFromGroup":
                self._members.get((account, form.get("GroupName") or ""), set()).discard(
                    form.get("UserName") or ""
                )
            elif request.operation in ("iam:AttachGroupPolicy", "iam:PutGroupPolicy"):
                # Every member's permissions change with the group's.
                for user in self._members.get((account, form.get("GroupName") or ""), set()):
                    self._policy_changed(account, user, now)
            elif request.operation in ("iam:AttachRolePolicy", "iam:PutRolePolicy"):
                role = form.get("RoleName")
                self._policy_changed(account, None if role is None else f"role/{role}", now)
            elif request.operation == "iam:CreateRole":
                # The account is the one moto made it in, as its ARN says.
                role, role_arn = form.get("RoleName"), _xml_text(answer.body, "Arn")
                if role is not None and role_arn is not None:
                    where = (_account_in(role_arn, account), role)
                    trust = _document(form.get("AssumeRolePolicyDocument"))
                    self._roles[where] = _Role(role_arn, trust)
                    self._role_assumable[where] = now + self.new_role_lag
            elif request.operation == "iam:UpdateAssumeRolePolicy":
                where = (account, form.get("RoleName") or "")
                if where in self._roles:
                    trust = _document(form.get("PolicyDocument"))
                    self._roles[where] = _Role(self._roles[where].arn, trust)
            elif request.operation == "iam:DeleteRole":
                where = (account, form.get("RoleName") or "")
                self._roles.pop(where, None)
                self._role_assumable.pop(where, None)
            elif request.operation == "sts:AssumeRole":
                return self._after_assume_role(request, answer, now)
        return None

    def _policy_changed(self, account: str, principal: str | None, now: float) -> None:
        if principal is not None:
            # A later change may not shorten the wait an earlier one is still in.
            effective = now + self.new_policy_lag
            earlier = self._policy_effective.get((account, principal), 0.0)
            self._policy_effective[account, principal] = max(earlier, effective)
            for service, lag in self.service_policy_lag.items():
                key = (account, principal, service)
                earlier = self._service_policy_effective.get(key, 0.0)
                self._service_policy_effective[key] = max(earlier, now + lag)

    def _account_of(self, request: Request) -> str:
        """The account a request acts in: the header's, else its key's, else moto's default
        (moto's server reads them in that order: moto.core.responses get_current_account)."""
        named = request.headers.get("x-moto-account-id")
        if named:
            return named
        principal = self._key_principal.get(request.access_key_id or "")
        return DEFAULT_ACCOUNT if principal is None else principal.account

    def _after_assume_role(self, request: Request, answer: Answer, now: float) -> Answer | None:
        # Only what moto granted: a caller it refused (a key it does not know, no sts:AssumeRole
        # in the caller's policies) keeps moto's answer, as AWS authenticates first too.
        form = _form(request)
        arn = form.get("RoleArn", "")
        name = arn.rpartition("/")[2]  # role/NAME or role/PATH/NAME
        where = (_account_in(arn, self._account_of(request)), name)
        role = self._roles.get(where)
        caller = self._key_principal.get(request.access_key_id or "")
        if role is None and self.assume_missing_role_refused:
            return self._refuse(
                f"no such role: sts:AssumeRole {name}",
                _error(request, 403, "AccessDenied", self._assume_denial(request, arn)),
            )
        if now < self._role_assumable.get(where, 0.0):
            return self._refuse(
                f"new role lag: sts:AssumeRole {name}",
                _error(request, 403, "AccessDenied", self._assume_denial(request, arn)),
            )
        if role is not None and caller is not None and self.assume_role_trust_checked:
            rule = _trust_refuses(role.trust, caller, form.get("ExternalId"))
            if rule is not None:
                return self._refuse(
                    f"{rule}: sts:AssumeRole {arn} ({caller.arns[0]})",
                    _error(request, 403, "AccessDenied", self._assume_denial(request, arn)),
                )
        key = _xml_text(answer.body, "AccessKeyId")
        session = _xml_text(answer.body, "Arn")  # AssumedRoleUser's, the first Arn
        if key is not None and session is not None:
            # The session acts in the role's account (moto's answer names it), as the role's
            # ARN is what a trust names it by (its session's ARN too, more narrowly).
            role_arn = arn if role is None else role.arn
            self._key_principal[key] = _Principal(
                _account_in(session, where[0]), f"role/{name}", (session, role_arn)
            )
            self._key_valid[key] = now + self.new_session_lag
        return None

    def _assume_denial(self, request: Request, arn: str) -> str:
        # AWS names the caller by its ARN (a role session's, for one).
        caller = self._key_principal.get(request.access_key_id or "")
        who = request.access_key_id if caller is None else caller.arns[0]
        return f"User: {who} is not authorized to perform: sts:AssumeRole on resource: {arn}"

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


# Trust policies, as far as the layer reads them (AwsLike.assume_role_trust_checked).


class _Unreadable(Exception):
    """A trust policy with something the layer does not evaluate: moto decides alone."""


def _trust_refuses(trust: Any, caller: _Principal, external_id: str | None) -> str | None:
    """Which rule refuses `caller` sts:AssumeRole under `trust`: "trust does not allow" (no
    statement names it), "external id" (one names it, but its sts:ExternalId condition is not
    met); None when one lets it in, or when the layer cannot tell."""
    try:
        statements = _assume_statements(trust)
        named = [condition for principal, condition in statements if _names(principal, caller)]
    except _Unreadable:
        return None
    if any(_external_id_met(condition, external_id) for condition in named):
        return None
    return "external id" if named else "trust does not allow"


def _assume_statements(trust: Any) -> list[tuple[Any, Any]]:
    """The (Principal, Condition) of each statement that allows sts:AssumeRole; _Unreadable if
    the document holds what the layer leaves to moto."""
    if not isinstance(trust, dict):
        raise _Unreadable
    statements = trust.get("Statement")
    statements = [statements] if isinstance(statements, dict) else statements
    if not isinstance(statements, list):
        raise _Unreadable
    found = []
    for statement in statements:
        if not isinstance(statement, dict) or "NotAction" in statement:
            raise _Unreadable
        if not any(
            fnmatch.fnmatchcase("sts:assumerole", str(action).lower())
            for action in _listed(statement.get("Action"))
        ):
            continue  # sts:TagSession, sts:AssumeRoleWithWebIdentity, ...: not this call
        if statement.get("Effect") != "Allow" or "NotPrincipal" in statement:
            raise _Unreadable
        condition = statement.get("Condition")
        if condition is not None and _external_ids(condition) is None:
            raise _Unreadable
        found.append((statement.get("Principal"), condition))
    return found


def _names(principal: Any, caller: _Principal) -> bool:
    """Whether a statement's Principal names the caller: "*", its ARN, its role's (for a
    session), its account as `arn:PARTITION:iam::ACCOUNT:root` or bare. Service and federated
    principals never name a user or a role session.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html
    """
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        raise _Unreadable
    partition = caller.arns[0].split(":")[1] if caller.arns[0].count(":") >= 5 else "aws"
    accepted = {"*", *caller.arns, caller.account, f"arn:{partition}:iam::{caller.account}:root"}
    return any(str(named) in accepted for named in _listed(principal.get("AWS")))


def _external_ids(condition: Any) -> list[str] | None:
    """The values of a `{"StringEquals": {"sts:ExternalId": ...}}` condition (condition keys
    are case-insensitive, operators not); None for any other condition."""
    if not isinstance(condition, dict) or list(condition) != ["StringEquals"]:
        return None
    keys = condition["StringEquals"]
    if not isinstance(keys, dict) or [key.lower() for key in keys] != ["sts:externalid"]:
        return None
    return [str(value) for value in _listed(next(iter(keys.values())))]


def _external_id_met(condition: Any, external_id: str | None) -> bool:
    # No condition: nothing to meet. One, and no ExternalId in the call: the key is missing from
    # the request, and StringEquals is false (the condition operators page above).
    if condition is None:
        return True
    return external_id is not None and external_id in (_external_ids(condition) or [])


def _listed(value: Any) -> list[Any]:
    """A policy element that may be one value or a list of them, as a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _document(text: str | None) -> Any:
    """A policy document from a request's parameter; None if missing or not JSON."""
    try:
        return None if text is None else json.loads(text)
    except ValueError:
        return None


def _account_in(arn: str, default: str) -> str:
    """The account an ARN names (arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE); `default` if
    it names none."""
    parts = arn.split(":", 5)
    return parts[4] if len(parts) == 6 and parts[4] else default


def _user_arn(account: str, name: str) -> str:
    """A user's ARN when the layer did not see it made (no path known)."""
    return f"arn:aws:iam::{account}:user/{name}"


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
