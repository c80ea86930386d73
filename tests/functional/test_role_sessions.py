"""A role session lasts as long as its caller asks, within what STS grants the job's roles.

AssumeRole takes DurationSeconds from 900 up to the role's MaxSessionDuration, which the job sets
to 3600 (AWS's default, and the cap role chaining puts on any role); asking outside that fails.
https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from job.aws.handler import Target
from job.aws.iam.roles import ROLE_MAX_SESSION_SECONDS, ROLE_SESSION_SECONDS, assume_role
from job.aws.session import make_aws
from job.emulator import EmulatorCredentials
from job.phases.provision import provision, start_run
from tests.helpers import EMULATED, ROLE_SCENARIO, admin_client, open_store


@pytest.fixture
def role(aws: EmulatorCredentials, sqlite_url: str) -> tuple[Target, str]:
    """A provisioned ROLE_SCENARIO run's target, and its role's name."""
    job_aws = make_aws("us-east-1")
    with open_store(sqlite_url) as store:
        run = start_run(store, job_aws, "job", EMULATED, ROLE_SCENARIO)
        provision(store, job_aws, run_id=run.id)
    return Target(job_aws, run.id, "123456789012", "aws"), f"job-{run.id}-auditor"


def test_the_jobs_roles_allow_the_longest_session_it_asks_for(
    aws: EmulatorCredentials, role: tuple[Target, str]
) -> None:
    _, name = role
    created = admin_client(aws, "iam").get_role(RoleName=name)["Role"]
    assert created["MaxSessionDuration"] == ROLE_MAX_SESSION_SECONDS == 3600


@dataclass
class SentDurations:
    """The DurationSeconds of every AssumeRole the job sends, as it sends it."""

    event: str = "before-parameter-build"
    sent: list[int] = field(default_factory=list)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "AssumeRole":
            self.sent.append(params["DurationSeconds"])


@pytest.mark.parametrize(
    ("wanted", "asked"),
    [
        (None, ROLE_SESSION_SECONDS),  # no need named: the shortest
        (120, ROLE_SESSION_SECONDS),  # the default propagation window: below STS's minimum
        (1800.2, 1801),  # a longer window: as long, in whole seconds
        (7200, ROLE_MAX_SESSION_SECONDS),  # beyond the role's maximum: the maximum
    ],
)
def test_a_session_lasts_as_asked_within_the_roles_bounds(
    role: tuple[Target, str], wanted: float | None, asked: int
) -> None:
    provisioned, name = role
    durations = SentDurations()
    target = Target(
        make_aws("us-east-1", call_hooks=[durations]), provisioned.run_id, "123456789012", "aws"
    )
    before = datetime.now(UTC)
    if wanted is None:
        session = assume_role(target, name, "job-test")
    else:
        session = assume_role(target, name, "job-test", duration_seconds=wanted)
    assert durations.sent == [asked]
    # STS (moto) says so too: the credentials expire that long after they were issued.
    assert session.expiration is not None
    lasts = (session.expiration - before).total_seconds()
    assert asked - 5 <= lasts <= asked + 5, lasts
