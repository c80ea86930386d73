"""An AWS emulator (moto) that enforces IAM, for demos, first runs and tests.

moto allows every call unless told to authenticate after the first N requests. We spend exactly
those N requests creating a runner user with its own access key; every later request, the job's
and the probe users', is then signed and checked against IAM policies as on AWS. Without that, a
permission check would prove nothing: the reader's denied put would succeed.

moto also misreads one thing AWS does, and the job's roles rely on it: a trust policy naming an
account. `patch_moto` teaches it that, with AWS's documented policy evaluation, in whatever
process serves the emulator (this one for `--emulator`, `python -m job.emulator --serve` for
docker compose's `moto` service, the test session's server).

The in-process emulator's account is not empty: like any real account, it holds a role and a
bucket someone else made (`add_existing_resources`), which scenarios may prove permissions on
without owning them.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from job.aws.session import new_session
from job.config import DEFAULT_FLEET_ROLE
from job.emulator_authorization import decide_as_aws
from job.errors import ExitCode

RUNNER_USER = "job-emulator-runner"
ADMIN_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
# CreateUser, PutUserPolicy, CreateAccessKey: the calls bootstrap makes before enforcement starts.
BOOTSTRAP_CALLS = 3


def trusts_account_of(principal: Any, caller_arn: str) -> bool:
    """Whether a trust policy statement's `Principal` names the account `caller_arn` is in, as
    `arn:PARTITION:iam::ACCOUNT:root` or the bare account id (AWS stores it as the former; moto
    keeps what it was given).
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html#principal-accounts
    """
    if not isinstance(principal, dict):
        return False
    named = principal.get("AWS", [])
    named = [named] if isinstance(named, str) else named
    # arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE, for a user and an assumed-role session alike.
    _, partition, _, _, account, _ = caller_arn.split(":", 5)
    return f"arn:{partition}:iam::{account}:root" in named or account in named


def trust_account_principals() -> None:
    """Make moto, in this process, honour a trust policy that names an account as AWS does.

    AWS: a role trusting `arn:aws:iam::ACCOUNT:root` (or `ACCOUNT`) delegates to that account;
    any of its principals whose own identity policies allow sts:AssumeRole on the role may assume
    it (the root user is not singled out). moto 5 compares the caller's ARN with the trust
    policy's principals literally, so the job's roles, which trust their own account
    (job.aws.iam.roles.trust_policy), can be assumed by nobody: verify waits out
    JOB_PROPAGATION_TIMEOUT and blames the runner's permissions. moto already requires the
    caller's identity policy to allow sts:AssumeRole (IAMRequestBase.check_action_permitted), so
    the one fix is the principal match, `IAMPolicyStatement._check_principal`, which moto calls
    only for trust policies: the account's principals match too. Idempotent.
    """
    from moto.iam.access_control import IAMPolicyStatement

    literal = IAMPolicyStatement._check_principal
    if getattr(literal, "trusts_accounts", False):
        return

    def check_principal(statement: IAMPolicyStatement, principal: str) -> bool:
        if trusts_account_of(statement._statement.get("Principal"), principal):
            return True
        return bool(literal(statement, principal))

    check_principal.trusts_accounts = True  # type: ignore[attr-defined]
    IAMPolicyStatement._check_principal = check_principal  # type: ignore[method-assign,assignment]


def managed_policies_in_one_partition(partition: str = "aws") -> None:
    """Make moto, in this process, load AWS's managed policies into `partition`'s IAM backends
    only, the one the emulator serves (its region is us-east-1).

    moto keeps an IAM backend per account and partition, and builds one for every partition (aws,
    aws-cn, aws-us-gov, ...) the first time it looks up a key it does not know (the bootstrap's,
    a role session's); each parses and makes AWS's ~1,300 managed policies. Measured: six
    backends, 1.3 s of the 5.0 s of CPU a `job run --emulator` took. The other partitions'
    backends still exist, without AWS's policies, as nothing the emulator serves can name them.
    Idempotent.
    """
    from moto.iam.models import IAMBackend

    load = IAMBackend._init_aws_policies
    if getattr(load, "one_partition", False):
        return

    def init_aws_policies(backend: IAMBackend) -> list[Any]:
        # An IAM backend's "region" is its partition.
        return load(backend) if backend.region_name == partition else []

    init_aws_policies.one_partition = True  # type: ignore[attr-defined]
    IAMBackend._init_aws_policies = init_aws_policies  # type: ignore[method-assign,assignment]


def patch_moto() -> None:
    """Make moto, in this process, the job's emulator: it decides as AWS documents
    (job.emulator_authorization), trusts an account principal as AWS does, and loads AWS's
    managed policies where they can be used. Idempotent."""
    decide_as_aws()
    trust_account_principals()
    managed_policies_in_one_partition()


@dataclass(frozen=True)
class EmulatorCredentials:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str = ""

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"EmulatorCredentials(endpoint_url={self.endpoint_url!r}, key={self.access_key_id})"

    def environment(self, region: str = "us-east-1") -> dict[str, str]:
        """The variables that point boto3's standard chain at the emulator as the runner."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
        }


def _post(endpoint_url: str, path: str, body: bytes = b"") -> None:
    # moto reads the raw body; a form content type (urllib's default) would hide it.
    request = urllib.request.Request(
        endpoint_url + path, data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def reset(endpoint_url: str) -> None:
    """Forget every resource the emulator holds (tests call this between tests)."""
    _post(endpoint_url, "/moto-api/reset")


def bootstrap_runner(
    endpoint_url: str,
    policy: dict[str, Any] | None = None,
    user_name: str = RUNNER_USER,
    region: str = "us-east-1",
) -> EmulatorCredentials:
    """Create the runner user with `policy` (default: administrator) and turn enforcement on.

    After this returns, every request to the emulator must be signed by a known key and allowed by
    its user's policies.
    """
    _post(endpoint_url, "/moto-api/reset-auth", str(BOOTSTRAP_CALLS).encode())
    iam = _bootstrap_client(endpoint_url, region)
    iam.create_user(UserName=user_name)
    iam.put_user_policy(
        UserName=user_name,
        PolicyName="job-runner",
        PolicyDocument=json.dumps(policy or ADMIN_POLICY),
    )
    key = iam.create_access_key(UserName=user_name)["AccessKey"]
    return EmulatorCredentials(endpoint_url, key["AccessKeyId"], key["SecretAccessKey"])


# CreateRole, PutRolePolicy: the calls add_member_role makes before enforcement starts again.
MEMBER_ROLE_CALLS = 2


def member_trust_policy(trusted_arn: str, external_id: str | None = None) -> dict[str, Any]:
    """The trust policy of a member account's role: `trusted_arn` (a user, a role, or an account
    as `arn:aws:iam::ACCOUNT:root`) may assume it, and with `external_id` only when it says that
    ExternalId, as AWS recommends for a role a third party assumes.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_common-scenarios_third-party.html
    https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_create_for-user_externalid.html
    """
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": trusted_arn},
        "Action": "sts:AssumeRole",
    }
    if external_id is not None:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return {"Version": "2012-10-17", "Statement": [statement]}


def add_member_role(
    endpoint_url: str,
    account_id: str,
    *,
    role_name: str = DEFAULT_FLEET_ROLE,
    trusted_arn: str,
    policy: dict[str, Any] | None = None,
    external_id: str | None = None,
    region: str = "us-east-1",
) -> str:
    """Create, in the emulator's account `account_id`, the role `role_name` that `trusted_arn`
    may assume (with `external_id`, only saying it: member_trust_policy), with `policy` (default:
    administrator) as its inline policy; return the role's ARN.

    The runner lives in moto's default account (123456789012); its key cannot act in another
    one. Like bootstrap_runner, this lets the next two requests to the emulator through
    unauthenticated (/moto-api/reset-auth) and spends them on CreateRole and PutRolePolicy,
    which moto files under the account the `x-moto-account-id` header names. Enforcement is on
    again once they are answered. The allowance is the whole server's: nothing else may send the
    emulator a request meanwhile (a test does this in its setup, before it starts anything), and
    the emulator must not run with MOTO_ACCOUNT_ID set, which outranks the header.
    """
    _post(endpoint_url, "/moto-api/reset-auth", str(MEMBER_ROLE_CALLS).encode())
    iam = _bootstrap_client(endpoint_url, region, account_id)
    trust = member_trust_policy(trusted_arn, external_id)
    role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(
        RoleName=role_name,
        PolicyName="job-member",
        PolicyDocument=json.dumps(policy or ADMIN_POLICY),
    )
    return str(role["Role"]["Arn"])


@functools.cache
def _bootstrap_client(endpoint_url: str, region: str, account_id: str | None = None) -> Any:
    """The client of the calls that need no key: one per emulator, account and process (the test
    suite bootstraps a runner per test; making the client costs more than its three calls).
    With `account_id`, its calls land in that account: moto's server takes a request's account
    from the `x-moto-account-id` header before the key."""
    iam = new_session().client(
        "iam",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    if account_id is not None:

        def name_the_account(request: Any, **_: Any) -> None:
            request.headers["x-moto-account-id"] = account_id

        iam.meta.events.register("before-sign.iam.*", name_the_account)
    return iam


# What the in-process emulator's account holds before any run, as a real account holds what
# others made: a role and a bucket the job did not create, for the scenarios that prove
# permissions on existing resources (examples/existing-resources.yaml, data-platform.yaml). Not
# the job's: no tags of its, not under its path or prefix, so teardown and sweep never touch them.
EXISTING_ACCOUNT = "123456789012"  # moto's one account
EXISTING_ROLE_NAME = "prod-reader"
EXISTING_ROLE_ARN = f"arn:aws:iam::{EXISTING_ACCOUNT}:role/ops/{EXISTING_ROLE_NAME}"
EXISTING_BUCKET = "emulator-prod-data"
EXISTING_OBJECT = "ledger.csv"


def add_existing_resources(credentials: EmulatorCredentials, region: str = "us-east-1") -> None:
    """Make, as the runner (an administrator), the role and bucket someone else owns: the role
    trusts its account (whoever its own policy lets assume it gets in) and may read the bucket.
    Again on an emulator that has them already (compose's, at each `python -m job.emulator`):
    what exists is left, the rest made."""

    session = new_session(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        region_name=region,
    )
    s3 = session.client("s3", endpoint_url=credentials.endpoint_url)
    iam = session.client("iam", endpoint_url=credentials.endpoint_url)
    with _already_there("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
        s3.create_bucket(Bucket=EXISTING_BUCKET)
    s3.put_object(Bucket=EXISTING_BUCKET, Key=EXISTING_OBJECT, Body=b"existing, read-only\n")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{EXISTING_ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    with _already_there("EntityAlreadyExists"):
        iam.create_role(
            RoleName=EXISTING_ROLE_NAME, Path="/ops/", AssumeRolePolicyDocument=json.dumps(trust)
        )
    reads = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": [
                    f"arn:aws:s3:::{EXISTING_BUCKET}",
                    f"arn:aws:s3:::{EXISTING_BUCKET}/*",
                ],
            }
        ],
    }
    iam.put_role_policy(
        RoleName=EXISTING_ROLE_NAME, PolicyName="reads-prod", PolicyDocument=json.dumps(reads)
    )


@contextmanager
def _already_there(*codes: str) -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in codes:
            raise


class InProcessEmulator:
    """moto's threaded server on a free loopback port, living as long as this process."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer  # optional dependency: job[emulator]

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    def start(self) -> EmulatorCredentials:
        import logging
        import os

        # werkzeug logs every request on stderr; our stderr is for the job's own logs.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        # Read by moto at reset time: AWS's managed policies exist, as they do in a real account.
        os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        patch_moto()
        self._server.start()
        host, port = self._server.get_host_and_port()
        credentials = bootstrap_runner(f"http://{host}:{port}")
        add_existing_resources(credentials)
        return credentials

    def stop(self) -> None:
        self._server.stop()


# Variables that would make boto3 sign as someone other than the runner the exec'd command gets.
_OTHER_IDENTITIES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
USAGE = (
    "usage: python -m job.emulator COMMAND [ARGS...]   (with AWS_ENDPOINT_URL set),"
    " or python -m job.emulator --serve [--host HOST] [--port PORT]"
)


def serve(moto_args: list[str]) -> NoReturn:
    """`python -m job.emulator --serve ARGS`: moto's server (`python -m moto.server ARGS`) trusting
    account principals as AWS does (trust_account_principals), which a plain moto server does not:
    docker compose's `moto` service runs this, so roles work there as with `--emulator`."""
    from moto import server  # optional dependency: job[emulator]

    patch_moto()
    sys.argv = ["python -m job.emulator --serve", *moto_args]  # what moto's argparse reads
    server.main()
    sys.exit(0)


def main(argv: list[str] | None = None) -> NoReturn:
    """`python -m job.emulator job run`: run a command as a new runner of a moto server.

    For an IAM-enforcing moto server in another process or container (docker compose's `moto`
    service): each use creates a new administrator user there (under a fresh name: an earlier one
    may exist, and its secret is gone with the process that made it), then replaces this process
    with COMMAND, whose environment carries that user's key, AWS_ENDPOINT_URL and the region. The
    secret lives only in that environment. Exit 2 on usage errors, 4 if the emulator cannot be
    reached or bootstrapped; otherwise the exit code is COMMAND's.

    Two bootstraps must not overlap each other's three unauthenticated calls (see
    bootstrap_runner), nor another client's requests made while those three are allowed: run one
    at a time against a quiet emulator, as a one-off `docker compose run` does.

    `python -m job.emulator --serve [--host HOST] [--port PORT]` is that moto server itself
    (serve).
    """
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--serve"]:
        serve(args[1:])
    endpoint_url = os.environ.get("AWS_ENDPOINT_URL", "")
    if not args or args[0].startswith("-") or not endpoint_url:
        print(USAGE, file=sys.stderr)
        sys.exit(ExitCode.BAD_INPUT)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    environment = {
        name: value for name, value in os.environ.items() if name not in _OTHER_IDENTITIES
    }
    try:
        credentials = bootstrap_runner(
            endpoint_url, user_name=f"{RUNNER_USER}-{secrets.token_hex(4)}", region=region
        )
        # As `--emulator`'s account has them: the examples of existing resources run here too.
        add_existing_resources(credentials, region)
    except (OSError, urllib.error.URLError, BotoCoreError, ClientError) as error:
        message = " ".join(str(error).split())
        print(
            f"job.emulator: cannot bootstrap a runner at {endpoint_url}: {message}", file=sys.stderr
        )
        sys.exit(ExitCode.NOT_FINISHED)
    environment.update(credentials.environment(region))
    try:
        os.execvpe(args[0], args, environment)
    except OSError as error:
        print(f"job.emulator: cannot run {args[0]!r}: {error.strerror}", file=sys.stderr)
        sys.exit(ExitCode.BAD_INPUT)


if __name__ == "__main__":
    main()
