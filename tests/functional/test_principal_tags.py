"""A principal's own tags from the scenario reach IAM beside the job's, and a condition on
aws:PrincipalTag reads them (on the emulator as on AWS)."""

from __future__ import annotations

from pathlib import Path

from job.emulator import EmulatorCredentials
from tests.helpers import admin_client, invoke

SCENARIO = """
version: 1
buckets:
  data:
    objects: {k.txt: "x"}
users:
  steward:
    tags: {team: data}
    policy:
      Version: "2012-10-17"
      Statement:
        Effect: Allow
        Action: s3:GetObject
        Resource: "bucket:data/*"
        Condition: {StringEquals: {"aws:PrincipalTag/team": data}}
expect:
  - {principal: steward, action: s3:GetObject, resource: "bucket:data/k.txt", result: allow}
"""


def test_a_principals_tags_are_the_scenarios_and_the_jobs(
    aws: EmulatorCredentials, sqlite_url: str, tmp_path: Path, capsys
) -> None:
    scenario = tmp_path / "tags.yaml"
    scenario.write_text(SCENARIO)
    result = invoke(capsys, "provision", "--scenario", str(scenario), "--database-url", sqlite_url)
    assert result.exit_code == 0, result.stderr
    run_id = result.stdout.strip()
    tags = admin_client(aws, "iam").list_user_tags(UserName=f"job-{run_id}-steward")["Tags"]
    assert {tag["Key"]: tag["Value"] for tag in tags} == {
        "job:managed-by": "job",
        "job:run-id": run_id,
        "team": "data",
    }
    for phase in ("verify", "teardown"):
        done = invoke(capsys, phase, "--run-id", run_id, "--database-url", sqlite_url)
        assert done.exit_code == 0, done.stderr
