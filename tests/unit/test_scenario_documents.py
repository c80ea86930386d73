"""A principal's policy written as an IAM policy document (job.scenario_documents): compiled with
the scenario's references resolved and everything else as written; refused, at validation, where
IAM would refuse it, with the place."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from job.errors import BadInput
from job.kinds import BucketAttributes, PolicyAttributes, PrincipalAttributes, read_as
from job.naming import Naming
from job.scenario import RunOptions
from job.scenario_file import ScenarioSource, boundary_conflict, compile_source, validate

NAMING = Naming("job", "r123456789", "123456789012", "aws")


def scenario(policy: Any, **more: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "buckets": {"data": {"objects": {"k.txt": "x"}}},
        "users": {"alice": {"policy": policy}},
        "roles": {"auditor": {}},
        "expect": [
            {
                "principal": "alice",
                "action": "s3:GetObject",
                "resource": "bucket:data/k.txt",
                "result": "allow",
            }
        ],
        **more,
    }


def source(document: dict[str, Any]) -> ScenarioSource:
    return ScenarioSource(yaml.safe_dump(document, sort_keys=False), "s.yaml")


def compiled_document(policy: Any) -> dict[str, Any]:
    resources = compile_source(source(scenario(policy)), NAMING).resources
    [spec] = [spec for spec in resources if spec.logical_name == "alice-policy"]
    return read_as(spec.attributes, PolicyAttributes).document


def refusal(document: dict[str, Any]) -> str:
    """Validation's one line for `document`, exit 2, less the file's name."""
    with pytest.raises(BadInput) as raised:
        validate(source(document))
    assert raised.value.exit_code == 2 and "\n" not in raised.value.message
    return raised.value.message.removeprefix("s.yaml: ")


def error_of(policy: Any) -> str:
    return refusal(scenario(policy))


def test_a_document_goes_to_iam_as_written_with_its_references_resolved() -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": {
            "Sid": "OwnPrefix",
            "Effect": "Allow",
            "NotAction": "s3:Delete*",
            "Resource": ["bucket:data", "bucket:data/raw/*", "arn:aws:s3:::shared/*"],
            "Condition": {
                "StringLike": {"s3:prefix": ["raw/*"]},
                "ArnEquals": {"aws:PrincipalArn": ["principal:alice", "role:auditor"]},
                "Bool": {"aws:SecureTransport": True},
            },
        },
    }
    assert compiled_document(policy) == {
        "Version": "2012-10-17",
        "Statement": {
            "Sid": "OwnPrefix",
            "Effect": "Allow",
            "NotAction": "s3:Delete*",
            "Resource": [
                "arn:aws:s3:::job-r123456789-data",
                "arn:aws:s3:::job-r123456789-data/raw/*",
                "arn:aws:s3:::shared/*",
            ],
            "Condition": {
                "StringLike": {"s3:prefix": ["raw/*"]},
                "ArnEquals": {
                    "aws:PrincipalArn": [
                        "arn:aws:iam::123456789012:user/job/job-r123456789-alice",
                        "arn:aws:iam::123456789012:role/job/job-r123456789-auditor",
                    ]
                },
                "Bool": {"aws:SecureTransport": True},
            },
        },
    }


def test_the_short_form_takes_a_service_prefix_in_any_case() -> None:
    statement = {"effect": "Allow", "actions": ["S3:GetObject"], "resources": ["bucket:data/*"]}
    document = compiled_document([statement])
    assert document["Statement"][0]["Action"] == ["S3:GetObject"]


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "bucket:nope/*"},
            'users.alice.policy.Statement[0].Resource: unknown bucket "nope"; the buckets '
            "are: data",
        ),
        (
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "*",
                "Condition": {"ArnEquals": {"aws:PrincipalArn": "role:alice"}},
            },
            "users.alice.policy.Statement[0].Condition.ArnEquals.aws:PrincipalArn: unknown role"
            ' "alice"; they are: auditor',
        ),
        (
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Principal": "*"},
            "users.alice.policy.Statement[0].Principal: unknown element; an identity policy "
            "names no principal (a bucket policy does)",
        ),
        (
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "*",
                "Condition": {"StringEqualz": {"s3:prefix": "a"}},
            },
            "users.alice.policy.Statement[0].Condition.StringEqualz: unknown condition operator "
            "'StringEqualz'",
        ),
        (
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "my-bucket/*"},
            'users.alice.policy.Statement[0].Resource[0]: "my-bucket/*" is not an ARN '
            '(arn:partition:service:region:account:resource) or "*"',
        ),
        (
            {"Effect": "Allow", "Action": "s3:GetObject"},
            "users.alice.policy.Statement[0]: no Resource or NotResource",
        ),
    ],
)
def test_what_iam_would_refuse_is_refused_with_its_place(
    statement: dict[str, Any], expected: str
) -> None:
    assert error_of({"Version": "2012-10-17", "Statement": [statement]}) == expected


def test_a_document_over_iams_size_is_refused_counting_the_longest_names() -> None:
    """6,144 characters without whitespace for a managed policy; a run's longest names count:
    a document that fits under the default prefix may not fit under a 20-character one."""
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
    statement = {"Effect": "Allow", "Action": "s3:GetObject"}
    many = [{**statement, "Resource": f"bucket:data/{index:04}"} for index in range(140)]
    message = error_of({"Version": "2012-10-17", "Statement": many})
    assert message.startswith("users.alice.policy: the document is ")
    assert "AWS takes at most 6,144 in a managed policy" in message
    assert validate(source(scenario({"Version": "2012-10-17", "Statement": many[:40]})))


def test_a_document_must_have_statements() -> None:
    assert "users.alice.policy" in error_of({"Version": "2012-10-17"})


def bucket_scenario(policy: Any) -> dict[str, Any]:
    document = scenario([{"effect": "Allow", "actions": ["s3:*"], "resources": ["*"]}])
    document["buckets"]["data"]["policy"] = policy
    return document


def bucket_error_of(policy: Any) -> str:
    return refusal(bucket_scenario(policy))


def test_a_bucket_policy_names_the_runs_principals_and_the_bucket_waits_for_them() -> None:
    """S3 refuses a bucket policy naming a principal that does not exist: the bucket is made
    after the users and roles its policy names, and before nothing else."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": {"AWS": ["principal:alice", "role:auditor", "111122223333"]},
                "Action": "s3:DeleteObject",
                "Resource": "bucket:data/*",
            }
        ],
    }
    resources = compile_source(source(bucket_scenario(policy)), NAMING).resources
    bucket = next(spec for spec in resources if spec.logical_name == "data")
    attributes = read_as(bucket.attributes, BucketAttributes)
    alice = "arn:aws:iam::123456789012:user/job/job-r123456789-alice"
    auditor = "arn:aws:iam::123456789012:role/job/job-r123456789-auditor"
    assert attributes.principals == [alice, auditor]
    assert attributes.policy is not None
    assert attributes.policy["Statement"][0]["Principal"] == {
        "AWS": [alice, auditor, "111122223333"]
    }
    assert attributes.policy["Statement"][0]["Resource"] == "arn:aws:s3:::job-r123456789-data/*"
    assert set(bucket.needs) == {"alice", "auditor"}


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"},
            "buckets.data.policy.Statement[0]: an Allow for everyone would open the bucket "
            "publicly",
        ),
        (
            {
                "Effect": "Allow",
                "Principal": {"AWS": ["principal:alice", "*"]},
                "Action": "s3:GetObject",
                "Resource": "bucket:data/*",
            },
            "an Allow for everyone would open the bucket publicly",
        ),
        (
            {
                "Effect": "Allow",
                "NotPrincipal": {"AWS": "principal:alice"},
                "Action": "s3:GetObject",
                "Resource": "bucket:data/*",
            },
            "an Allow for everyone would open the bucket publicly",
        ),
        (
            {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "bucket:data/*"},
            "buckets.data.policy.Statement[0]: no Principal or NotPrincipal",
        ),
        (
            {
                "Effect": "Deny",
                "Principal": {"AWS": "principal:alice"},
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::someone-elses/*",
            },
            "arn:aws:s3:::someone-elses/* is not bucket data or in it",
        ),
        (
            {
                "Sid": "DenyWithoutTLS",
                "Effect": "Deny",
                "Principal": {"AWS": "principal:alice"},
                "Action": "s3:GetObject",
                "Resource": "bucket:data/*",
            },
            "DenyWithoutTLS is the job's own statement's; choose another",
        ),
        (
            {
                "Effect": "Deny",
                "Principal": {"AWS": "principal:nobody"},
                "Action": "s3:GetObject",
                "Resource": "bucket:data/*",
            },
            'buckets.data.policy.Statement[0].Principal.AWS: unknown user or role "nobody"',
        ),
    ],
)
def test_a_bucket_policy_that_would_open_or_miss_the_bucket_is_refused(
    statement: dict[str, Any], expected: str
) -> None:
    assert expected in bucket_error_of({"Version": "2012-10-17", "Statement": [statement]})


def test_a_roles_session_policy_is_kept_for_verify_resolved_and_bounded() -> None:
    """AssumeRole's Policy: at most 2,048 characters, sent as compact JSON.
    https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html"""
    session = {
        "Version": "2012-10-17",
        "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "bucket:data/*"},
    }
    document = scenario([])
    document["roles"]["auditor"] = {"session_policy": session}
    compiled = compile_source(source(document), NAMING)
    assert compiled.session_policies == {
        "auditor": {
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::job-r123456789-data/*",
            },
        }
    }
    many = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"bucket:data/{i:03}"}
            for i in range(40)
        ],
    }
    document["roles"]["auditor"] = {"session_policy": many}
    with pytest.raises(BadInput, match=r"roles\.auditor\.session_policy: the document is .* 2,048"):
        validate(source(document))
    # Users have no sessions to cut down.
    document["roles"]["auditor"] = {}
    document["users"]["alice"]["session_policy"] = session
    with pytest.raises(BadInput, match=r"users\.alice"):
        validate(source(document))


def test_a_boundary_document_is_a_policy_of_the_run_made_before_its_principal() -> None:
    boundary = {
        "Version": "2012-10-17",
        "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "bucket:data/*"},
    }
    document = scenario([])
    document["users"]["alice"]["boundary"] = boundary
    document["roles"]["auditor"] = {"boundary": "arn:aws:iam::aws:policy/ReadOnlyAccess"}
    specs = {s.logical_name: s for s in compile_source(source(document), NAMING).resources}
    arn = "arn:aws:iam::123456789012:policy/job/job-r123456789-alice-boundary"
    assert specs["alice-boundary"].name == "job-r123456789-alice-boundary"
    assert read_as(specs["alice-boundary"].attributes, PolicyAttributes).document == {
        "Version": "2012-10-17",
        "Statement": {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::job-r123456789-data/*",
        },
    }
    alice = read_as(specs["alice"].attributes, PrincipalAttributes)
    assert alice.permissions_boundary == arn
    assert specs["alice"].needs == ("alice-boundary",)
    auditor = read_as(specs["auditor"].attributes, PrincipalAttributes)
    assert auditor.permissions_boundary == "arn:aws:iam::aws:policy/ReadOnlyAccess"
    assert specs["auditor"].needs == ()
    assert error_of_document_boundary({"Version": "2012-10-17"}).startswith("users.alice.boundary")


def error_of_document_boundary(boundary: Any) -> str:
    document = scenario([])
    document["users"]["alice"]["boundary"] = boundary
    return refusal(document)


def test_a_scenarios_boundary_and_the_run_wide_one_cannot_both_apply() -> None:
    document = scenario([])
    document["users"]["alice"]["boundary"] = "arn:aws:iam::aws:policy/ReadOnlyAccess"
    assert boundary_conflict(document, RunOptions()) is None
    conflict = boundary_conflict(document, RunOptions("arn:aws:iam::123456789012:policy/b"))
    assert conflict is not None and conflict.startswith("users.alice.boundary: ")


def test_a_principals_own_tags_go_beside_the_jobs_and_cannot_be_its() -> None:
    """IAM takes 50 tags per user or role; the job's two are among them. Keys the job or AWS
    reserve are refused. https://docs.aws.amazon.com/IAM/latest/UserGuide/id_tags.html"""
    document = scenario([])
    document["users"]["alice"]["tags"] = {"team": "data", "cost-center": "42"}
    specs = {s.logical_name: s for s in compile_source(source(document), NAMING).resources}
    assert read_as(specs["alice"].attributes, PrincipalAttributes).tags == {
        "team": "data",
        "cost-center": "42",
    }
    for tags in ({"job:run-id": "x"}, {"aws:team": "x"}, {f"k{i}": "v" for i in range(49)}):
        document["users"]["alice"]["tags"] = tags
        with pytest.raises(BadInput, match=r"users\.alice\.tags"):
            validate(source(document))


def cell_scenario(**cell: Any) -> dict[str, Any]:
    document = scenario([])
    document["expect"] = [
        {"principal": "alice", "action": "s3:ListBucket", "resource": "bucket:data", **cell}
    ]
    return document


def test_a_cells_context_is_part_of_the_cell_and_reaches_its_check() -> None:
    """Two cells that differ only in their request context are two cells."""
    document = cell_scenario(result="allow", context={"prefix": "raw/"})
    document["expect"].append({**document["expect"][0], "context": {"prefix": "x/"}})
    document["expect"][1]["result"] = "deny"
    [allowed, denied] = compile_source(source(document), NAMING).expectations
    assert allowed.context_values == {"prefix": "raw/"}
    assert denied.context_values == {"prefix": "x/"}
    assert allowed != denied
    document["expect"][1]["context"] = {"prefix": "raw/"}
    assert refusal(document) == "expect[1]: the same cell as expect[0]"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (
            {"context": {"server_side_encryption": "AES256"}},
            "expect[0].context.server_side_encryption: s3:ListBucket sets no "
            "server_side_encryption; it takes prefix, delimiter",
        ),
        (
            {"action": "s3:GetObject", "resource": "bucket:data/k.txt", "context": {"prefix": "a"}},
            "expect[0].context.prefix: s3:GetObject sets no prefix; it takes no context",
        ),
        ({"context": {"colour": "red"}}, "expect[0].context: Additional properties"),
        ({"context": {}}, "expect[0].context"),
    ],
)
def test_a_context_the_probe_cannot_set_is_refused(cell: dict[str, Any], expected: str) -> None:
    assert refusal(cell_scenario(result="allow", **cell)).startswith(expected)
