"""The AWS example's way, for comparison: the seed scenario in plain boto3, one call after another.

    python -m benchmarks.sequential [NAME]

Creates a bucket, a writer and a reader user, a read-write and a read-only policy, attaches them,
gives each user an access key, waits for each key to work, checks put, get and delete with each
user's own key, then deletes everything in the order AWS requires. Names and policies are job's
(`<name>-data`, `<name>-writer`, `s3:PutObject` + `s3:GetObject` on the bucket's objects...), so
both do the same work; job's extras (tags, the bucket's lockdown, the negative-space checks, the
look before each delete) are left out, as the example leaves them out.

Credentials, region and endpoint come from boto3's standard chain, like job's. Prints one JSON
object: the wall time, the calls by operation (counted with a botocore hook) and the checks.
Exit code 1 if a check differs from what was expected.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

# principal -> what its policy allows on the bucket's objects; the rest of PROBED is denied.
GRANTS = {"writer": ("s3:PutObject", "s3:GetObject"), "reader": ("s3:GetObject",)}
PROBED = ("s3:PutObject", "s3:GetObject", "s3:DeleteObject")
OBJECT_KEY = "demo/object.txt"
# What AWS answers while a new key or attachment has not reached every endpoint yet; the example
# waits a second and tries again.
NOT_YET = {"InvalidAccessKeyId", "AccessDenied"}
PROPAGATION_TIMEOUT = 60.0
# path-style: an emulator answers on an address, not on a bucket's DNS name
CONFIG = Config(s3={"addressing_style": "path"}, retries={"mode": "standard"})


@dataclass
class Check:
    principal: str
    action: str
    expected: str
    actual: str

    @property
    def passed(self) -> bool:
        return self.expected == self.actual


class Calls:
    """Counts every API call of the clients it is attached to, as "service:Operation"."""

    def __init__(self) -> None:
        self.by_operation: Counter[str] = Counter()

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-call", self._count)
        return client

    def _count(self, model: Any, **_: Any) -> None:
        self.by_operation[f"{model.service_model.endpoint_prefix}:{model.name}"] += 1


def _object_call(s3: Any, action: str, bucket: str) -> None:
    if action == "s3:PutObject":
        s3.put_object(Bucket=bucket, Key=OBJECT_KEY, Body=b"AWS IAM demo object content!")
    elif action == "s3:GetObject":
        s3.get_object(Bucket=bucket, Key=OBJECT_KEY)["Body"].read()
    else:
        s3.delete_object(Bucket=bucket, Key=OBJECT_KEY)


def _try(s3: Any, action: str, bucket: str, *, wait: bool) -> str:
    """'allow' or 'deny'; with `wait`, denials are retried until the key and policy have
    propagated (or the timeout passes), as the example retries its first call."""
    deadline = time.monotonic() + PROPAGATION_TIMEOUT
    while True:
        try:
            _object_call(s3, action, bucket)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if wait and code in NOT_YET and time.monotonic() < deadline:
                time.sleep(1)
                continue
            if code in ("AccessDenied", "403"):
                return "deny"
            raise
        return "allow"


def run_scenario(name: str, calls: Calls) -> list[Check]:
    session = boto3.Session()
    iam = calls.attach(session.client("iam", config=CONFIG))
    s3 = calls.attach(session.client("s3", config=CONFIG))
    bucket = f"{name}-data"
    create: dict[str, Any] = {"Bucket": bucket}
    if session.region_name != "us-east-1":  # the one region that rejects naming itself
        create["CreateBucketConfiguration"] = {"LocationConstraint": session.region_name}
    s3.create_bucket(**create)

    users = {principal: f"{name}-{principal}" for principal in GRANTS}
    for user in users.values():
        iam.create_user(UserName=user)
    policies = {}
    for principal, actions in GRANTS.items():
        document = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": list(actions), "Resource": f"arn:aws:s3:::{bucket}/*"}
            ],
        }
        policies[principal] = iam.create_policy(
            PolicyName=f"{name}-{principal}", PolicyDocument=json.dumps(document)
        )["Policy"]["Arn"]
    for principal, user in users.items():
        iam.attach_user_policy(UserName=user, PolicyArn=policies[principal])
    keys = {
        principal: iam.create_access_key(UserName=user)["AccessKey"]
        for principal, user in users.items()
    }

    checks = []
    # The writer first: its put makes the object the reader then gets.
    for principal, granted in GRANTS.items():
        key = keys[principal]
        user_s3 = calls.attach(
            session.client(
                "s3",
                config=CONFIG,
                aws_access_key_id=key["AccessKeyId"],
                aws_secret_access_key=key["SecretAccessKey"],
            )
        )
        # Allowed actions first: only once one works is a denial proof of anything.
        ordered = sorted(PROBED, key=lambda action: action not in granted)
        for number, action in enumerate(ordered):
            expected = "allow" if action in granted else "deny"
            actual = _try(user_s3, action, bucket, wait=number == 0)
            checks.append(Check(principal, action, expected, actual))

    for principal, user in reversed(users.items()):
        iam.delete_access_key(UserName=user, AccessKeyId=keys[principal]["AccessKeyId"])
        iam.detach_user_policy(UserName=user, PolicyArn=policies[principal])
        iam.delete_policy(PolicyArn=policies[principal])
        iam.delete_user(UserName=user)
    # bucket.objects.delete() in the example: a listing, then one batch delete.
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    if listed:
        s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": item["Key"]} for item in listed]}
        )
    s3.delete_bucket(Bucket=bucket)
    return checks


def main(argv: list[str]) -> int:
    name = argv[0] if argv else f"seq-{time.time_ns() % 10**10}"
    calls = Calls()
    started = time.perf_counter()
    checks = run_scenario(name, calls)
    wall = time.perf_counter() - started
    passed = all(check.passed for check in checks)
    print(
        json.dumps(
            {
                "wall_s": round(wall, 4),
                "calls": sum(calls.by_operation.values()),
                "by_operation": dict(sorted(calls.by_operation.items())),
                "checks": [asdict(check) for check in checks],
                "passed": passed,
            }
        )
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
