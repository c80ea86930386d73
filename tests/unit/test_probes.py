"""The probe registry: every action a scenario may check has one probe, which declares what a
principal needs for it to succeed."""

from __future__ import annotations

from pathlib import Path

import pytest

from job.naming import Naming
from job.probes import PROBES, Probe
from job.scenario_file import compile_source, read_source

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_each_probe_is_keyed_by_its_action_and_declares_its_needs() -> None:
    assert {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        "iam:ListUsers",
        "sts:GetCallerIdentity",
    } <= set(PROBES)
    for action, probe in PROBES.items():
        assert isinstance(probe, Probe) and probe.action == action
        if probe.always_allowed:
            assert probe.needs == (), "no permission can be needed for what none can deny"
        else:
            assert probe.needs, f"{action} declares no need"
            assert all(":" in need for need in probe.needs)


def test_get_caller_identity_cannot_be_denied() -> None:
    # https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
    assert PROBES["sts:GetCallerIdentity"].always_allowed
    assert [a for a, p in PROBES.items() if p.always_allowed] == ["sts:GetCallerIdentity"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_action_the_examples_check_has_a_probe(path: Path) -> None:
    naming = Naming("job", "abcdefghij", "123456789012", "aws")
    for expectation in compile_source(read_source(str(path)), naming).expectations:
        probe = PROBES[expectation.action]
        assert probe.on_bucket == (expectation.bucket is not None)
