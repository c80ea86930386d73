"""What the job creates is locked down: the bucket blocks public access, enforces the owner's
object ownership, encrypts by default and (on real AWS) refuses requests without TLS; users live
under the job's IAM path and carry the permissions boundary an operator asks for."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from job.emulator import EmulatorCredentials
from tests.helpers import admin_client, invoke, leftovers, open_store

pytestmark = pytest.mark.usefixtures("aws")
BOUNDARY = "arn:aws:iam::aws:policy/ReadOnlyAccess"


class CreateUserArguments:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if model.name == "CreateUser":
            self.calls.append(context["arguments"])


def test_bucket_and_users_are_locked_down(aws: EmulatorCredentials, capsys) -> None:
    created = CreateUserArguments()
    run_id = invoke(
        capsys, "provision", "--permissions-boundary", BOUNDARY, hooks=[created]
    ).stdout.strip()
    s3, iam = admin_client(aws, "s3"), admin_client(aws, "iam")
    for bucket in (f"job-{run_id}-data", f"job-{run_id}-elsewhere"):  # the decoy is no weaker
        assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        }
        ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
        assert ownership["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
        encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
        [rule] = encryption["Rules"]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        # The emulator speaks plain HTTP: a TLS-only policy would refuse every request, so by
        # default against such an endpoint there is none.
        with pytest.raises(ClientError, match="NoSuchBucketPolicy"):
            s3.get_bucket_policy(Bucket=bucket)
    for role in ("writer", "reader"):
        assert iam.get_user(UserName=f"job-{run_id}-{role}")["User"]["Path"] == "/job/"
    # moto keeps no permissions boundary on users (roles only), so the request is what is checked.
    assert [call["PermissionsBoundary"] for call in created.calls] == [BOUNDARY, BOUNDARY]
    with open_store("sqlite:///job.db") as store:
        assert store.get_run(run_id).options == {
            "permissions_boundary": BOUNDARY,
            "require_tls": False,
        }
    assert invoke(capsys, "teardown", "--run-id", run_id).exit_code == 0
    assert leftovers(aws, run_id) == []


class BucketPolicyCatcher:
    """Answers PutBucketPolicy itself, keeping the document: moto would apply the TLS condition
    to plain-HTTP requests (it treats any Condition as a deny) and lock everyone out."""

    def __init__(self) -> None:
        self.policies: list[dict[str, Any]] = []

    def __call__(self, model: Any, context: dict[str, Any], **_: Any) -> Any:
        if model.name == "PutBucketPolicy":
            self.policies.append(json.loads(context["arguments"]["Policy"]))
            return AWSResponse("", 204, {}, None), {}
        return None


def test_tls_only_policy_when_required(aws, capsys, monkeypatch) -> None:
    catcher = BucketPolicyCatcher()
    monkeypatch.setenv("JOB_REQUIRE_TLS", "1")
    run_id = invoke(capsys, "provision", hooks=[catcher]).stdout.strip()
    by_bucket = {p["Statement"][0]["Resource"][0]: p for p in catcher.policies}
    assert len(catcher.policies) == 2
    for name in ("data", "elsewhere"):
        bucket = f"arn:aws:s3:::job-{run_id}-{name}"
        [statement] = by_bucket[bucket]["Statement"]
        assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
        assert statement["Action"] == "s3:*"
        assert sorted(statement["Resource"]) == [bucket, f"{bucket}/*"]
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert invoke(capsys, "teardown", "--run-id", run_id).exit_code == 0


def test_invalid_boundary_is_bad_input(capsys) -> None:
    result = invoke(capsys, "provision", "--permissions-boundary", "ReadOnlyAccess")
    assert result.exit_code == 2
    assert "invalid permissions boundary 'ReadOnlyAccess'" in result.stderr
