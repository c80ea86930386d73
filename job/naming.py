"""How the job names what it makes: a run id, "<prefix>-<run id>-<name>", and the ARNs those names
have. Strings only, no AWS client: a scenario is compiled, shown and reported from here without
credentials, and the AWS layer names things by the same rules.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass

# A run id the job makes: ten characters, a letter first. Short enough for every AWS name, safe
# inside all of them, and 36^9 * 26 ways to differ, since bucket names are global.
RUN_ID_LENGTH = 10
RUN_ID_PATTERN = rf"[a-z][a-z0-9]{{{RUN_ID_LENGTH - 1}}}"
# A run id the job accepts (the contract: at most 32 characters, lowercase, safe in AWS names):
# wider than what it makes, so that an id from any version of it is found again.
ACCEPTED_RUN_ID = re.compile(r"[a-z0-9]{1,32}")
# Every IAM entity and policy the job makes is under this path: listing it finds only the job's.
IAM_PATH = "/job/"
# What `job scenario show` puts where a run's own values will be, for a scenario not yet run.
PLACEHOLDER_RUN_ID, PLACEHOLDER_ACCOUNT_ID = "<run-id>", "<account-id>"

_ALPHABET = string.ascii_lowercase + string.digits


def new_run_id() -> str:
    return secrets.choice(string.ascii_lowercase) + "".join(
        secrets.choice(_ALPHABET) for _ in range(RUN_ID_LENGTH - 1)
    )


def iam_arn(partition: str, account_id: str, resource_type: str, name: str) -> str:
    return f"arn:{partition}:iam::{account_id}:{resource_type}{IAM_PATH}{name}"


def s3_arn(partition: str, bucket: str, key: str | None = None) -> str:
    """A bucket's ARN, or an object's (or a pattern of them: "*") with `key`."""
    return f"arn:{partition}:s3:::{bucket}" + (f"/{key}" if key is not None else "")


@dataclass(frozen=True)
class Naming:
    """What names one run's resources: its prefix, id, account and partition."""

    prefix: str
    run_id: str
    account_id: str
    partition: str

    @classmethod
    def placeholder(cls, prefix: str, partition: str) -> Naming:
        """For a scenario not yet run: its names as they will be, with placeholders."""
        return cls(prefix, PLACEHOLDER_RUN_ID, PLACEHOLDER_ACCOUNT_ID, partition)

    def name(self, logical_name: str) -> str:
        """The AWS name of what a scenario calls `logical_name`."""
        return f"{self.prefix}-{self.run_id}-{logical_name}"

    def iam_arn(self, resource_type: str, name: str) -> str:
        return iam_arn(self.partition, self.account_id, resource_type, name)

    def s3_arn(self, bucket: str, key: str | None = None) -> str:
        return s3_arn(self.partition, bucket, key)
