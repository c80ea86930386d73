"""Each probe's declared needs are what a principal needs: granted exactly those, the call works;
granted nothing, AWS refuses it (unless no policy can refuse it at all)."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from job.aws.probes import probe
from job.aws.session import is_denial, make_aws
from job.probes import PROBES, Aim
from tests.helpers import admin_client

BUCKET = "probe-needs-bucket"


def _principal(aws, name: str, actions: tuple[str, ...]) -> object:
    iam = admin_client(aws, "iam")
    iam.create_user(UserName=name)
    if actions:
        statements = [
            {
                "Effect": "Allow",
                "Action": list(actions),
                "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]
                if all(PROBES[a].on_bucket for a in actions if a in PROBES)
                and all(a.startswith("s3:") for a in actions)
                else "*",
            }
        ]
        iam.put_user_policy(
            UserName=name,
            PolicyName="needs",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return make_aws("us-east-1").with_keys(key["AccessKeyId"], key["SecretAccessKey"])


def _role(aws) -> str:
    """A role its account trusts: its account's principals get in by their own policies."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = admin_client(aws, "iam").create_role(
        RoleName="probe-target", Path="/ops/", AssumeRolePolicyDocument=json.dumps(trust)
    )
    return str(role["Role"]["Arn"])


@pytest.mark.parametrize("action", sorted(PROBES))
def test_a_probe_needs_what_it_declares(action: str, aws) -> None:
    s3 = admin_client(aws, "s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="fixture.txt", Body=b"x")
    declared = PROBES[action]
    key = "fixture.txt" if declared.reads_object else "other.txt"
    aim = Aim(role_arn=_role(aws)) if declared.on_role else Aim(BUCKET, key)
    granted = _principal(aws, "granted", declared.needs)
    probe(granted, action, aim)  # type: ignore[arg-type]

    nothing = _principal(aws, "nothing", ())
    if declared.always_allowed:
        probe(nothing, action, aim)  # type: ignore[arg-type]
        return
    with pytest.raises(ClientError) as refused:
        probe(nothing, action, aim)  # type: ignore[arg-type]
    assert is_denial(refused.value)


def _conditioned(aws, name: str, action: str, resource: str, condition: dict) -> object:
    iam = admin_client(aws, "iam")
    iam.create_user(UserName=name)
    statement = {"Effect": "Allow", "Action": action, "Resource": resource, "Condition": condition}
    iam.put_user_policy(
        UserName=name,
        PolicyName="conditioned",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return make_aws("us-east-1").with_keys(key["AccessKeyId"], key["SecretAccessKey"])


# Each context a probe declares is what its request carries, and a condition on its key decides:
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/amazon-s3-policy-keys.html
@pytest.mark.parametrize(
    ("action", "key", "condition", "allowed", "refused"),
    [
        (
            "s3:ListBucket",
            None,
            {"StringLike": {"s3:prefix": "raw/*"}},
            {"prefix": "raw/2026/"},
            {"prefix": "cooked/"},
        ),
        (
            "s3:ListBucket",
            None,
            {"StringEquals": {"s3:delimiter": "/"}},
            {"delimiter": "/"},
            {"delimiter": "|"},
        ),
        (
            "s3:PutObject",
            "other.txt",
            {"StringEquals": {"s3:x-amz-server-side-encryption": "AES256"}},
            {"server_side_encryption": "AES256"},
            {"server_side_encryption": "aws:kms"},
        ),
        (
            "s3:PutObject",
            "other.txt",
            {"StringEquals": {"s3:RequestObjectTag/class": "public"}},
            {"tags": {"class": "public"}},
            {"tags": {"class": "secret"}},
        ),
    ],
)
def test_a_probes_context_is_what_its_request_carries(
    action: str, key: str | None, condition: dict, allowed: dict, refused: dict, aws
) -> None:
    assert set(allowed) <= set(PROBES[action].context)
    admin_client(aws, "s3").create_bucket(Bucket=BUCKET)
    resource = f"arn:aws:s3:::{BUCKET}" + ("/*" if key else "")
    principal = _conditioned(aws, "conditioned", action, resource, condition)
    probe(principal, action, Aim(BUCKET, key), allowed)  # type: ignore[arg-type]
    with pytest.raises(ClientError) as denied:
        probe(principal, action, Aim(BUCKET, key), refused)  # type: ignore[arg-type]
    assert is_denial(denied.value)
