"""How `job sweep` finds the job's users, roles and policies whatever the ledger says: everything
under the job's IAM path, under the prefix, with its tags."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any, ClassVar

from job.aws.handler import Scope, Tagged, tag_dict
from job.aws.iam.common import pages, unless_gone
from job.aws.session import Aws
from job.naming import IAM_PATH

# What the listings need, beyond the kinds' own verbs.
LISTING_PERMISSIONS: Mapping[str, Scope] = {
    "iam:ListUsers": Scope.UNSCOPED,
    "iam:ListUserTags": Scope.JOB_USERS,
    "iam:ListRoles": Scope.UNSCOPED,
    "iam:ListRoleTags": Scope.JOB_ROLES,
    "iam:ListPolicies": Scope.UNSCOPED,
    "iam:ListPolicyTags": Scope.JOB_POLICIES,
}


def find_tagged(
    entities: Iterator[dict[str, Any]],
    name_key: str,
    tags_of: Callable[[dict[str, Any]], dict[str, Any]],
    prefix: str,
    skip: Callable[[str], bool],
) -> Iterator[Tagged]:
    """The entities a listing under the job's path found (`entities`, page by page) whose name
    starts with `prefix` and that `skip` does not account for, with their tags (`tags_of`, one
    call each); one gone since the listing is left out."""
    for entity in entities:
        name = entity[name_key]
        # Another prefix's resources are another job's (and outside this runner's policy).
        if not name.startswith(f"{prefix}-") or skip(name):
            continue
        answer = unless_gone(lambda: tags_of(entity))  # noqa: B023 - called at once
        if answer is not None:
            yield Tagged(name, entity["Arn"], tag_dict(answer["Tags"]), entity["CreateDate"])


class FoundUnderPath:
    """For the IAM kinds sweep looks for: found by listing the job's IAM path (`listing`: the
    call, its answer's key, the entity's name key, and the call's parameters), then one tag read
    each (`tags_of`)."""

    listing: ClassVar[tuple[str, str, str, dict[str, str]]]

    def tags_of(self, iam: Any, entity: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def find_tagged(
        self, aws: Aws, prefix: str, partition: str, skip: Callable[[str], bool]
    ) -> Iterator[Tagged]:
        iam = aws.client("iam")
        operation, key, name_key, params = self.listing
        entities = pages(iam, operation, key, PathPrefix=IAM_PATH, **params)
        return find_tagged(entities, name_key, partial(self.tags_of, iam), prefix, skip)
