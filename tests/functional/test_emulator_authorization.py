"""The emulator decides as AWS documents (job.emulator_authorization), where moto alone answers
otherwise: each test makes real signed calls, as a user of its own, to the session's moto server
(which runs `decide_as_aws`, as `job --emulator` and `python -m job.emulator --serve` do)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from job.emulator import EmulatorCredentials
from tests.helpers import admin_client, client_as

ACCOUNT = "123456789012"


def _document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _user(
    aws: EmulatorCredentials,
    name: str,
    *statements: dict[str, Any],
    boundary: list[dict[str, Any]] | None = None,
    tags: dict[str, str] | None = None,
) -> Callable[[str], Any]:
    """A user with `statements` as its inline policy; returns a client factory with its keys."""
    iam = admin_client(aws, "iam")
    params: dict[str, Any] = {"UserName": name}
    if tags:
        params["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    if boundary is not None:
        arn = iam.create_policy(PolicyName=f"{name}-boundary", PolicyDocument=_document(*boundary))[
            "Policy"
        ]["Arn"]
        params["PermissionsBoundary"] = arn
    iam.create_user(**params)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=_document(*statements))
    key = iam.create_access_key(UserName=name)["AccessKey"]

    def client(service: str) -> Any:
        return client_as(aws.endpoint_url, service, key)

    return client


def _allowed(call: Callable[[], Any]) -> bool:
    try:
        call()
    except ClientError as error:
        if error.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException"):
            return False
        raise
    return True


@pytest.fixture
def bucket(aws: EmulatorCredentials) -> str:
    s3 = admin_client(aws, "s3")
    s3.create_bucket(Bucket="evaluated")
    s3.put_object(Bucket="evaluated", Key="raw/a.txt", Body=b"a")
    return "evaluated"


def test_an_allow_whose_condition_does_not_hold_grants_nothing_and_denies_nothing(
    aws: EmulatorCredentials, bucket: str
) -> None:
    """On AWS such a statement does not apply: alone it grants nothing, and beside another Allow
    it takes nothing away (moto grants with it: it reads no aws:username)."""
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition.html
    unmet = {
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:username": "somebody-else"}},
    }
    alone = _user(aws, "alice", unmet)("s3")
    beside = _user(
        aws, "amy", unmet, {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
    )("s3")
    assert not _allowed(lambda: alone.get_object(Bucket=bucket, Key="raw/a.txt"))
    assert _allowed(lambda: beside.get_object(Bucket=bucket, Key="raw/a.txt"))


def test_actions_are_matched_without_regard_to_case(aws: EmulatorCredentials, bucket: str) -> None:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html
    s3 = _user(aws, "ann", {"Effect": "Allow", "Action": "S3:getobject", "Resource": "*"})("s3")
    assert _allowed(lambda: s3.get_object(Bucket=bucket, Key="raw/a.txt"))


def test_conditions_on_the_request_and_the_principal_are_read(
    aws: EmulatorCredentials, bucket: str
) -> None:
    # s3:prefix: https://docs.aws.amazon.com/AmazonS3/latest/userguide/amazon-s3-policy-keys.html
    # aws:PrincipalTag: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principaltag
    client = _user(
        aws,
        "bob",
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"arn:aws:s3:::{bucket}",
            "Condition": {
                "StringLike": {"s3:prefix": "raw/*"},
                "StringEquals": {"aws:PrincipalTag/team": "data"},
            },
        },
        tags={"team": "data"},
    )
    s3 = client("s3")
    assert _allowed(lambda: s3.list_objects_v2(Bucket=bucket, Prefix="raw/2026"))
    assert not _allowed(lambda: s3.list_objects_v2(Bucket=bucket, Prefix="cooked/"))
    assert not _allowed(lambda: s3.list_objects_v2(Bucket=bucket))


def test_a_permissions_boundary_cuts_the_identity_policy_down(
    aws: EmulatorCredentials, bucket: str
) -> None:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html
    client = _user(
        aws,
        "carol",
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        boundary=[{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}],
    )
    s3 = client("s3")
    assert _allowed(lambda: s3.list_objects_v2(Bucket=bucket))
    assert not _allowed(lambda: s3.get_object(Bucket=bucket, Key="raw/a.txt"))


def test_a_bucket_policy_denies_and_grants(aws: EmulatorCredentials, bucket: str) -> None:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-basics.html
    denied = _user(aws, "dave", {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})
    granted = _user(aws, "erin", {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"})
    admin_client(aws, "s3").put_bucket_policy(
        Bucket=bucket,
        Policy=_document(
            {
                "Effect": "Deny",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/dave"},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            },
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/erin"},
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/raw/*",
            },
        ),
    )
    assert not _allowed(lambda: denied("s3").get_object(Bucket=bucket, Key="raw/a.txt"))
    assert _allowed(lambda: granted("s3").get_object(Bucket=bucket, Key="raw/a.txt"))


def test_a_session_policy_cuts_a_role_session_down(aws: EmulatorCredentials, bucket: str) -> None:
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session
    iam = admin_client(aws, "iam")
    trust = _document(
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/frank"},
            "Action": "sts:AssumeRole",
        }
    )
    role = iam.create_role(RoleName="reader", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.put_role_policy(
        RoleName="reader",
        PolicyName="p",
        PolicyDocument=_document({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
    )
    frank = _user(aws, "frank", {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role})
    sts = frank("sts")

    def session(policy: str | None) -> Any:
        params: dict[str, Any] = {"RoleArn": role, "RoleSessionName": "canary"}
        if policy:
            params["Policy"] = policy
        return client_as(aws.endpoint_url, "s3", sts.assume_role(**params)["Credentials"])

    whole = session(None)
    listing = session(_document({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}))
    assert _allowed(lambda: whole.get_object(Bucket=bucket, Key="raw/a.txt"))
    assert _allowed(lambda: listing.list_objects_v2(Bucket=bucket))
    assert not _allowed(lambda: listing.get_object(Bucket=bucket, Key="raw/a.txt"))


def test_a_boundary_naming_no_policy_allows_nothing_and_breaks_nothing(
    aws: EmulatorCredentials, bucket: str
) -> None:
    """IAM refuses such a boundary (NoSuchEntity); moto takes it. The emulator then refuses the
    principal everything, as a boundary allowing nothing would, instead of failing with a 500."""
    iam = admin_client(aws, "iam")
    iam.create_user(
        UserName="gina", PermissionsBoundary=f"arn:aws:iam::{ACCOUNT}:policy/no-such-policy"
    )
    iam.put_user_policy(
        UserName="gina",
        PolicyName="p",
        PolicyDocument=_document({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
    )
    key = iam.create_access_key(UserName="gina")["AccessKey"]
    s3 = client_as(aws.endpoint_url, "s3", key)
    assert not _allowed(lambda: s3.list_objects_v2(Bucket=bucket))


# A role's trust is its resource policy: in the role's account, a trust naming the caller lets it
# in with no identity policy; one naming the account leaves it to the caller's identity policy;
# one naming someone else keeps it out whatever its identity policy says.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html
@pytest.mark.parametrize(
    ("trusted", "own_policy", "assumable"),
    [
        ("the caller", False, True),
        ("the account", False, False),
        ("the account", True, True),
        ("someone else", True, False),
    ],
)
def test_a_roles_trust_is_its_resource_policy(
    aws: EmulatorCredentials, trusted: str, own_policy: bool, assumable: bool
) -> None:
    grant = {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}
    other = {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}
    caller = _user(aws, "caller", grant if own_policy else other)
    principal = {
        "the caller": f"arn:aws:iam::{ACCOUNT}:user/caller",
        "the account": f"arn:aws:iam::{ACCOUNT}:root",
        "someone else": f"arn:aws:iam::{ACCOUNT}:user/someone-else",
    }[trusted]
    trust = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
    arn = admin_client(aws, "iam").create_role(
        RoleName="trusting", AssumeRolePolicyDocument=_document(trust)
    )["Role"]["Arn"]
    sts = caller("sts")
    assert _allowed(lambda: sts.assume_role(RoleArn=arn, RoleSessionName="probe")) is assumable
