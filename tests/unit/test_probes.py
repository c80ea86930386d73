"""The probe registry: every action a scenario may check has one probe, which declares what a
principal needs for it to succeed."""

from __future__ import annotations

from job.aws.handler import Target
from job.aws.probes import PROBES, Probe
from job.aws.session import make_aws
from job.scenario import seed_scenario


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


def test_every_action_the_seed_checks_has_a_probe(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    target = Target(make_aws("us-east-1"), "abcdefghij", "123456789012", "aws")
    for expectation in seed_scenario("job", target).expectations:
        probe = PROBES[expectation.action]
        assert probe.on_bucket == (expectation.bucket is not None)
