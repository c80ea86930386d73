"""boto3 sessions and clients for one principal in one region, with retries and timeouts set once.

Nothing here runs at import time: a phase is handed an `Aws`, so tests can hand in one pointed at an
emulator or wrapped with a fault injector.
"""

from __future__ import annotations

import copy
import functools
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    UnknownRegionError,
)
from botocore.hooks import HierarchicalEmitter
from botocore.parsers import ResponseParserError

from job.config import DEFAULT_PROPAGATION_TIMEOUT, MAX_CONCURRENCY, validate_region
from job.errors import AwsError, BadInput

USER_AGENT = "job/0.1"


def error_code(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


# What AWS answers when the caller is authenticated but not authorised: S3 and IAM's AccessDenied,
# the JSON services' AccessDeniedException, EC2's UnauthorizedOperation, and a HEAD request's bare
# 403 (no body to carry a code).
DENIED = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden", "403"}
)


def is_denial(error: BaseException) -> bool:
    """Whether AWS refused the call as unauthorised (and not for any other reason)."""
    return isinstance(error, ClientError) and error_code(error) in DENIED


# S3 operations whose IAM action is not "s3:" + the operation's name.
_S3_ACTIONS = {
    "HeadBucket": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "HeadObject": "s3:GetObject",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "DeleteObjects": "s3:DeleteObject",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "ListBuckets": "s3:ListAllMyBuckets",
}
_S3_OPERATIONS = {
    *_S3_ACTIONS,
    "CreateBucket",
    "DeleteBucket",
    "PutBucketTagging",
    "GetBucketTagging",
    "PutBucketOwnershipControls",
    "PutBucketPolicy",
    "PutObject",
    "GetObject",
    "DeleteObject",
    "AbortMultipartUpload",
}


def iam_action(operation: str) -> str:
    """The IAM action that authorises an API operation the job makes."""
    if operation in _S3_OPERATIONS:
        return _S3_ACTIONS.get(operation, f"s3:{operation}")
    if operation in ("GetCallerIdentity", "AssumeRole"):
        return f"sts:{operation}"
    return f"iam:{operation}"


class ForeignBlocker(ClientError):
    """AWS refused (AccessDenied) to take off one of the job's resources something someone else
    hung on it, which the job's usual grant does not reach on purpose (job.aws.iam.common.JANITOR).
    Its message names the blocker, and `fix` the ways to remove it, in place of "grant more"."""

    def __init__(self, refused: ClientError, blocker: str, fix: str) -> None:
        answer = refused.response.get("Error", {})
        super().__init__(
            {**refused.response, "Error": {**answer, "Message": blocker}}, refused.operation_name
        )
        self.fix = fix


def describe_aws_error(error: BaseException, doing: str) -> AwsError:
    """One line that names what failed and what to do; botocore's messages carry no secrets."""
    if isinstance(error, ClientError):
        code = error_code(error)
        message = error.response.get("Error", {}).get("Message", "") or code
        hint = "run the same command again"
        if isinstance(error, ForeignBlocker):
            hint = error.fix
        elif code in DENIED:
            # S3 does not say which action it refused; name it, so the fix is obvious.
            action = iam_action(error.operation_name)
            hint = f"the job's credentials lack {action}: grant what `job runner-policy` prints"
        elif code in ("InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken"):
            hint = "check the job's AWS credentials"
        return AwsError(f"{doing} failed: {code}: {message}; {hint}")
    if isinstance(error, NoCredentialsError):
        return AwsError(
            f"{doing} failed: no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or use --emulator"
        )
    return AwsError(f"{doing} failed: {error}; check the network and run the same command again")


def _custom_endpoint(endpoint_url: str | None) -> bool:
    # botocore itself reads these variables; we only need to know whether one is set.
    return bool(
        endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )


# What an AWS call can raise: the service's answer, botocore's own failures, and an answer botocore
# could not read at all.
AWS_ERRORS = (ClientError, BotoCoreError, ResponseParserError)


def _html_5xx_is_a_server_error(response_dict: dict[str, Any], **_: Any) -> None:
    """A 5xx whose body is an HTML page (a proxy's, a load balancer's, a web framework's) is a
    server error like any other, to be retried. botocore recognises such pages only when they
    start with "<html>"; one that starts with "<!doctype html>" would fail parsing instead, and
    parse failures are not retried. An empty body is what botocore reads as a generic error."""
    body = response_dict.get("body")
    if (
        response_dict.get("status_code", 0) >= 500
        and isinstance(body, bytes)
        and body.lstrip()[:9].lower() == b"<!doctype"
    ):
        response_dict["body"] = b""


def _keep_arguments(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context["arguments"] = dict(params)


@dataclass(frozen=True)
class Identity:
    account_id: str
    arn: str
    partition: str


class Aws:
    """Clients for one set of credentials in one region, made lazily, one per service, shared by
    the phase's worker threads. boto3 clients are thread-safe; sessions are not, so clients are
    made under a lock. One client per service also means one connection pool and one adaptive
    rate limiter: when AWS throttles, every thread slows down together."""

    def __init__(
        self,
        session: boto3.Session,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_attempts: int = 8,
        call_hooks: Sequence[Callable[..., Any]] = (),
        keys: tuple[str, str, str | None] | None = None,
        session_lock: threading.Lock | None = None,
        propagation_timeout: timedelta = DEFAULT_PROPAGATION_TIMEOUT,
        deny_settle: timedelta | None = None,
    ) -> None:
        self._session = session
        # The longest the job waits for a change it made to be visible (see the constant).
        self.propagation_timeout = propagation_timeout
        # How long after a principal's policy change a denial with no witness counts (verify's
        # job.phases.verify.deny_settle); None: verify's default for the propagation timeout.
        self.deny_settle = deny_settle
        # Guards the session, which with_keys shares: made clients are safe, making them is not.
        self._session_lock = session_lock or threading.Lock()
        # Another principal's access key id, secret and session token (temporary credentials
        # only), for its clients (see with_keys). Never shown: Aws has no repr that includes them.
        self._keys = keys
        # botocore event handlers put on every client, on the event named by their `event`
        # attribute ("before-call" when they have none): how tests count calls and inject faults
        # at the boundary, without patching.
        self.call_hooks = tuple(call_hooks)
        region = region or session.region_name
        if not region:
            raise BadInput("no AWS region: set --region, AWS_REGION or AWS_DEFAULT_REGION")
        # Checked here too: a profile's region reaches no other check before the first call.
        self.region: str = validate_region(region)
        self.endpoint_url = endpoint_url
        self._config = Config(
            region_name=region,
            # Adaptive mode retries throttling, 5xx and connection errors with backoff, and slows
            # the client down when AWS throttles instead of failing the run.
            retries={"mode": "adaptive", "max_attempts": max_attempts},
            connect_timeout=10,
            read_timeout=60,
            user_agent_extra=USER_AGENT,
            # An emulator answers on an address, not on a bucket's DNS name.
            s3={"addressing_style": "path"} if _custom_endpoint(endpoint_url) else {},
            # As many connections as --concurrency may use at once (its most).
            max_pool_connections=MAX_CONCURRENCY,
        )
        self._clients: dict[str, Any] = {}
        self._identity: Identity | None = None
        self._identity_lock = threading.Lock()

    def client(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            with self._session_lock:  # checked again: another thread may have just made it
                client = self._clients.get(service) or self._make_client(service)
        return client

    def _make_client(self, service: str) -> Any:
        try:
            session: Any = self._session  # boto3-stubs wants a literal service name
            key_id, secret, token = self._keys or (None, None, None)
            client = session.client(
                service,
                config=self._config,
                endpoint_url=self.endpoint_url,
                aws_access_key_id=key_id,
                aws_secret_access_key=secret,
                aws_session_token=token,
            )
        except NoRegionError:
            raise BadInput(
                "no AWS region: set --region, AWS_REGION or AWS_DEFAULT_REGION"
            ) from None
        client.meta.events.register("before-parse.*.*", _html_5xx_is_a_server_error)
        if self.call_hooks:
            # Hooks see the call's own arguments too, not only the serialized request.
            client.meta.events.register("before-parameter-build.*.*", _keep_arguments)
        for hook in self.call_hooks:
            event = getattr(hook, "event", "before-call")
            client.meta.events.register(f"{event}.*.*", hook)
        self._clients[service] = client
        return client

    def with_keys(
        self, access_key_id: str, secret_access_key: str, session_token: str | None = None
    ) -> Aws:
        """The same region and endpoint, as another principal: a probe user's access key, or an
        assumed role's temporary credentials (with their session token). The session is shared,
        so its clients reuse the service models already loaded."""
        return Aws(
            self._session,
            region=self.region,
            endpoint_url=self.endpoint_url,
            call_hooks=self.call_hooks,
            keys=(access_key_id, secret_access_key, session_token),
            session_lock=self._session_lock,
            propagation_timeout=self.propagation_timeout,
            deny_settle=self.deny_settle,
        )

    @property
    def partition(self) -> str:
        return partition_for(self.region)

    def identity(self) -> Identity:
        """Whose credentials these are. Asked once per Aws: `job run` checks the account before
        each phase with the same credentials, and the account behind them cannot change."""
        with self._identity_lock:  # a janitor's threads share one Aws: one of them asks
            if self._identity is None:
                self._identity = self._ask_identity()
            return self._identity

    def _ask_identity(self) -> Identity:
        try:
            answer = self.client("sts").get_caller_identity()
        except AWS_ERRORS as error:
            raise describe_aws_error(
                error, "finding the AWS account (sts:GetCallerIdentity)"
            ) from None
        return Identity(answer["Account"], answer["Arn"], self.partition)


def partition_for(region: str | None) -> str:
    """The partition whose ARNs name a region's resources: `aws`, `aws-cn` (China), `aws-us-gov`
    (GovCloud)... An ARN in the wrong partition matches nothing, so a policy would grant nothing.
    With no region given, boto3's own choice (the profile's), else the commercial partition."""
    region = region or new_session().region_name
    if not region:
        return "aws"
    return _partition_of(region)


@functools.cache
def _partition_of(region: str) -> str:
    # botocore's own endpoint data, which no setting changes: asked once per region and process.
    try:
        return str(_core_session().get_partition_for_region(region))
    except UnknownRegionError:
        raise BadInput(
            f"unknown AWS region {region!r}: give a region such as us-east-1 or eu-west-1"
        ) from None


@functools.cache
def _shared_loader() -> botocore.loaders.Loader:
    return botocore.loaders.create_loader()


def new_session(**settings: Any) -> boto3.Session:
    """A boto3 session (`settings` as boto3.Session takes them) whose service models and endpoint
    rules come from the process's one loader: read from disk and parsed once per process, not
    once per session. A session of its own reads them all again, about 0.15 s of CPU per client
    (a janitor makes a session per stale run; the emulator and the tests one per runner)."""
    return boto3.Session(botocore_session=_core_session(), **settings)


def _core_session() -> botocore.session.Session:
    # botocore's own handlers, copied rather than registered anew: registering inspects each of
    # them (about 130), most of the 17 ms a session costs; a copy costs 3. They are the same
    # module-level handlers either way (a test holds the two to the same lists).
    core = botocore.session.Session(
        event_hooks=copy.copy(_builtin_handlers()), include_builtin_handlers=False
    )
    core.register_component("data_loader", _shared_loader())
    return core


@functools.cache
def _builtin_handlers() -> HierarchicalEmitter:
    handlers = HierarchicalEmitter()
    botocore.session.Session(event_hooks=handlers)  # registers botocore's builtin handlers there
    return handlers


def make_aws(
    region: str | None,
    endpoint_url: str | None = None,
    call_hooks: Sequence[Callable[..., Any]] = (),
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    max_attempts: int = 8,
    propagation_timeout: timedelta = DEFAULT_PROPAGATION_TIMEOUT,
    deny_settle: timedelta | None = None,
) -> Aws:
    """The job's own principal, from boto3's standard chain unless credentials are given."""
    try:
        session = new_session(
            region_name=region,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
        )
    except BotoCoreError as error:  # e.g. a profile that does not exist
        raise BadInput(f"invalid AWS configuration: {error}") from None
    return Aws(
        session,
        region=region,
        endpoint_url=endpoint_url,
        call_hooks=call_hooks,
        max_attempts=max_attempts,
        propagation_timeout=propagation_timeout,
        deny_settle=deny_settle,
    )
