"""The kinds' declarations (job.kinds, and the scopes beside each handler's actions) are what
scenario compilation, teardown, sweep and the runner policy read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from job.aws.handler import Scope
from job.aws.kinds import HANDLERS, _check
from job.kinds import (
    KINDS,
    AccessKeyAttributes,
    BucketAttributes,
    Kind,
    ObjectAttributes,
    PrincipalAttributes,
    Reference,
    attributes_of,
    carried,
    needs,
    read_as,
    sweep_kinds,
    sweep_waves,
    teardown_needs,
    with_verify_kinds,
)
from job.kinds import _check as check_kinds
from job.vocabulary import ResourceKind


@dataclass
class Row:
    kind: ResourceKind
    logical_name: str
    name: str
    attributes: dict[str, Any] = field(default_factory=dict)
    physical_id: str | None = None


POLICY_ARN = "arn:aws:iam::123456789012:policy/job/job-r-writer"
ROWS = [
    Row(ResourceKind.S3_BUCKET, "data", "job-r-data"),
    Row(ResourceKind.S3_OBJECT, "data/k", "k", {"bucket": "job-r-data", "key": "k"}),
    Row(ResourceKind.IAM_USER, "writer", "job-r-writer"),
    # Created: attachments name it by the ARN it has.
    Row(ResourceKind.IAM_POLICY, "writer-policy", "job-r-writer", physical_id=POLICY_ARN),
    Row(
        ResourceKind.IAM_USER_POLICY_ATTACHMENT,
        "writer-attachment",
        "job-r-writer",
        {"user_name": "job-r-writer", "policy_arn": POLICY_ARN},
    ),
    Row(ResourceKind.IAM_ACCESS_KEY, "writer-key-1", "key", {"user_name": "job-r-writer"}),
]


def test_what_each_resource_needs_is_read_from_its_kind_and_attributes() -> None:
    assert needs(ROWS) == {
        "data": [],
        "data/k": ["data"],
        "writer": [],
        "writer-policy": [],
        "writer-attachment": ["writer", "writer-policy"],
        "writer-key-1": ["writer"],
    }


def test_a_policy_not_created_yet_is_found_by_the_last_part_of_the_arn() -> None:
    rows = [Row(r.kind, r.logical_name, r.name, r.attributes) for r in ROWS]  # no physical ids
    assert needs(rows)["writer-attachment"] == ["writer", "writer-policy"]


GROUP_POLICY_ARN = "arn:aws:iam::123456789012:policy/job/job-r-readers"
GROUP_ROWS = [
    *ROWS,
    Row(ResourceKind.IAM_GROUP, "readers", "job-r-readers"),
    # Pending: named by the name the ARN ends with.
    Row(ResourceKind.IAM_POLICY, "readers-policy", "job-r-readers"),
    Row(
        ResourceKind.IAM_GROUP_POLICY_ATTACHMENT,
        "readers-attachment",
        "job-r-readers",
        {"group_name": "job-r-readers", "policy_arn": GROUP_POLICY_ARN},
    ),
    # An existing policy: nothing of the run's to wait for but the group.
    Row(
        ResourceKind.IAM_GROUP_POLICY_ATTACHMENT,
        "readers-managed-0",
        "job-r-readers",
        {"group_name": "job-r-readers", "policy_arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"},
    ),
    Row(
        ResourceKind.IAM_GROUP_MEMBERSHIP,
        "writer-group-0",
        "job-r-writer in job-r-readers",
        {"user_name": "job-r-writer", "group_name": "job-r-readers"},
    ),
]


def test_a_group_is_made_before_its_attachments_and_memberships_and_deleted_after() -> None:
    needed = needs(GROUP_ROWS)
    assert needed["readers"] == []
    assert needed["readers-attachment"] == ["readers", "readers-policy"]
    assert needed["readers-managed-0"] == ["readers"]
    assert needed["writer-group-0"] == ["writer", "readers"]
    blockers = teardown_needs(GROUP_ROWS)
    assert blockers["readers"] == {"readers-attachment", "readers-managed-0", "writer-group-0"}
    assert blockers["readers-policy"] == {"readers-attachment"}
    # The user outlives its membership: AWS refuses DeleteUser while it is in a group.
    assert blockers["writer"] == {"writer-attachment", "writer-key-1", "writer-group-0"}


def test_teardown_deletes_what_hangs_off_a_resource_before_it() -> None:
    blockers = teardown_needs(ROWS)
    assert blockers["writer"] == {"writer-attachment", "writer-key-1"}
    assert blockers["writer-policy"] == {"writer-attachment"}
    assert blockers["data"] == {"data/k"}


def test_an_object_goes_with_its_bucket_and_nothing_else_is_carried() -> None:
    bucket, obj = ROWS[0], ROWS[1]
    assert carried(ROWS) == [(bucket, obj)]
    # A bucket that is not the run's (no row) carries nothing away.
    assert carried(ROWS[1:]) == []


def test_verify_adds_keys_for_users_and_revocations_for_roles() -> None:
    assert with_verify_kinds({ResourceKind.IAM_USER}) == {
        ResourceKind.IAM_USER,
        ResourceKind.IAM_ACCESS_KEY,
    }
    assert ResourceKind.IAM_ROLE_SESSION_REVOCATION in with_verify_kinds({ResourceKind.IAM_ROLE})
    assert with_verify_kinds({ResourceKind.S3_BUCKET}) == {ResourceKind.S3_BUCKET}


def test_sweep_deletes_principals_before_policies_and_buckets_last() -> None:
    # Groups with the users: each one's delete takes the members out or the user out of it.
    assert sweep_waves() == [
        {ResourceKind.IAM_USER, ResourceKind.IAM_ROLE, ResourceKind.IAM_GROUP},
        {ResourceKind.IAM_POLICY},
        {ResourceKind.S3_BUCKET},
    ]


def test_every_kind_is_declared_and_handled() -> None:
    assert set(KINDS) == set(HANDLERS) == set(ResourceKind)


def test_a_scope_for_an_action_the_kind_does_not_declare_is_refused() -> None:
    class Renamed:
        kind: ClassVar[ResourceKind] = ResourceKind.IAM_POLICY
        permissions: ClassVar[dict[str, tuple[str, ...]]] = {"delete": ("iam:DeletePolicy",)}
        scope: ClassVar[Scope] = Scope.JOB_POLICIES
        scopes: ClassVar[dict[str, Scope]] = {"iam:DetachRolePolicy": Scope.JOB_POLICY_ATTACHMENTS}

    with pytest.raises(ImportError, match="iam:DetachRolePolicy"):
        _check({**HANDLERS, ResourceKind.IAM_POLICY: Renamed()})  # type: ignore[dict-item]
    without = {k: v for k, v in HANDLERS.items() if k is not ResourceKind.S3_OBJECT}
    with pytest.raises(ImportError, match="s3_object"):
        _check(without)


def test_a_kind_sweep_looks_for_must_be_findable() -> None:
    assert sweep_kinds() == [
        ResourceKind.IAM_USER,
        ResourceKind.IAM_ROLE,
        ResourceKind.IAM_GROUP,
        ResourceKind.IAM_POLICY,
        ResourceKind.S3_BUCKET,
    ]

    class Unfindable:
        kind: ClassVar[ResourceKind] = ResourceKind.IAM_ROLE
        permissions: ClassVar[dict[str, tuple[str, ...]]] = {}
        scope: ClassVar[Scope] = Scope.JOB_ROLES
        scopes: ClassVar[dict[str, Scope]] = {}

    with pytest.raises(ImportError, match="iam_role is swept"):
        _check({**HANDLERS, ResourceKind.IAM_ROLE: Unfindable()})  # type: ignore[dict-item]


def test_a_reference_by_an_attribute_the_kind_does_not_have_is_refused() -> None:
    """A field renamed in an attributes class would otherwise drop an order without a sound."""
    renamed = Kind(
        ResourceKind.IAM_ACCESS_KEY,
        AccessKeyAttributes,
        hangs_off=(Reference(ResourceKind.IAM_USER, "user"),),
    )
    with pytest.raises(ImportError, match=r"iam_user by 'user'.*AccessKeyAttributes"):
        check_kinds({**KINDS, ResourceKind.IAM_ACCESS_KEY: renamed})
    with pytest.raises(ImportError, match="s3_object"):
        check_kinds({k: v for k, v in KINDS.items() if k is not ResourceKind.S3_OBJECT})


def test_attributes_go_to_the_ledger_as_json_and_come_back_typed() -> None:
    bucket = BucketAttributes(require_tls=False, keys=["a.txt"])
    assert bucket.to_json() == {"require_tls": False, "keys": ["a.txt"]}
    assert BucketAttributes.of(bucket.to_json()) == bucket
    # Unset fields are left out, so a row says only what was chosen.
    assert PrincipalAttributes().to_json() == {}
    # A key an older job wrote and this one no longer reads is passed over.
    assert ObjectAttributes.of({"bucket": "b", "key": "k", "etag": "x"}) == ObjectAttributes(
        bucket="b", key="k"
    )
    with pytest.raises(TypeError, match="key"):
        ObjectAttributes.of({"bucket": "b"})


def test_a_row_is_read_as_its_own_kinds_attributes() -> None:
    row = Row(ResourceKind.IAM_ACCESS_KEY, "writer-key-1", "key", {"user_name": "job-r-writer"})
    assert attributes_of(row) == AccessKeyAttributes(user_name="job-r-writer")
    assert read_as(attributes_of(row), AccessKeyAttributes).user_name == "job-r-writer"
    with pytest.raises(TypeError, match="ObjectAttributes expected, not AccessKeyAttributes"):
        read_as(attributes_of(row), ObjectAttributes)
    # Nothing known but the name (a bucket sweep found): the kind's defaults, where it has them.
    assert read_as(None, BucketAttributes) == BucketAttributes(require_tls=True, keys=None)
    with pytest.raises(TypeError):
        read_as(None, ObjectAttributes)
