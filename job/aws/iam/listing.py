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
    # Groups carry no tags: their path and name are read from the listing itself.
    "iam:ListGroups": Scope.UNSCOPED,
    "iam:ListPolicyTags": Scope.JOB_POLICIES,
}


class FoundUnderPath:
    """For the IAM kinds sweep looks for: found by listing the job's IAM path (`listing`: the
    call, its answer's key, the entity's name key, and the call's parameters), then one read of
    each one's tags (`tags_of`), only for those under the prefix that `skip` does not account
    for; one gone since the listing is left out."""

    listing: ClassVar[tuple[str, str, str, dict[str, str]]]

    def tags_of(self, iam: Any, entity: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def find_tagged(
        self, aws: Aws, prefix: str, partition: str, skip: Callable[[str], bool]
    ) -> Iterator[Tagged]:
        iam = aws.client("iam")
        operation, key, name_key, params = self.listing
        for entity in pages(iam, operation, key, PathPrefix=IAM_PATH, **params):
            name = entity[name_key]
            # Another prefix's resources are another job's (and outside this runner's policy).
            if not name.startswith(f"{prefix}-") or skip(name):
                continue
            tags = unless_gone(partial(self.tags_of, iam, entity))
            if tags is not None:
                yield Tagged(name, entity["Arn"], tag_dict(tags), entity["CreateDate"])
