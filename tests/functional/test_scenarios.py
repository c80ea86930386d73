"""Scenario files through the command line: `job scenario validate/show/schema`, runs of an
operator's file on both ledgers, a run keeping the scenario it started with whatever the file says
later, and runs from before scenario files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from job.emulator import EmulatorCredentials
from job.ledger.models import Resource, ResourceState
from job.scenario_file import read_source
from tests.faults import StrictAws
from tests.helpers import admin_client, invoke, leftovers, open_store

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
THREE = EXAMPLES / "three-principals.yaml"


def test_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = invoke(capsys, "scenario", "validate", str(THREE))
    assert good.exit_code == 0, good.stderr
    assert good.stdout == f"{THREE}: valid (2 buckets, 3 users, 0 groups, 0 roles, 13 checks)\n"

    document = yaml.safe_load(THREE.read_text())
    document["expect"][3]["principal"] = "auditr"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(document))
    result = invoke(capsys, "scenario", "validate", str(bad))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f'job: error: {bad}: expect[3].principal: unknown principal "auditr"; the users and '
        "roles are: auditor, outsider, uploader\n"
    )
    as_json = invoke(capsys, "scenario", "validate", str(bad), "--output", "json")
    assert as_json.exit_code == 2
    assert as_json.json()["error"].startswith(f"{bad}: expect[3].principal: unknown principal")

    missing = invoke(capsys, "scenario", "validate", str(tmp_path / "missing.yaml"))
    assert missing.exit_code == 2
    assert "cannot read scenario file" in missing.stderr


def test_show_a_file_with_placeholder_names(capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(
        capsys, "scenario", "show", str(THREE), "--prefix", "canary", "--output", "json"
    )
    assert result.exit_code == 0, result.stderr
    document = result.json()
    assert document["status"] == "ok" and document["run_id"] is None
    assert document["scenario_sha256"] == hashlib.sha256(THREE.read_bytes()).hexdigest()
    names = {r["logical_name"]: r["name"] for r in document["scenario"]["resources"]}
    assert names["inbox"] == "canary-<run-id>-inbox"
    assert names["auditor-attachment"] == "canary-<run-id>-auditor"
    assert "outsider-policy" not in names
    cells = document["scenario"]["expectations"]
    assert len(cells) == 13
    assert cells[0] == {
        "principal": "uploader",
        "principal_kind": "iam_user",
        "action": "s3:PutObject",
        "resource": "arn:aws:s3:::canary-<run-id>-inbox/incoming/uploader.txt",
        "context": None,
        "expected": "allow",
    }

    text = invoke(capsys, "scenario", "show")  # no file: the built-in seed
    assert text.exit_code == 0, text.stderr
    assert "built-in seed scenario: prefix job, run id <run-id>" in text.stdout
    assert "arn:aws:s3:::job-<run-id>-elsewhere/probe/fixture.txt" in text.stdout


def test_schema_is_a_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    from jsonschema import Draft202012Validator

    for args in (("scenario", "schema"), ("scenario", "schema", "--output", "json")):
        result = invoke(capsys, *args)
        assert result.exit_code == 0, result.stderr
        schema = json.loads(result.stdout)
        Draft202012Validator.check_schema(schema)
        assert schema["additionalProperties"] is False
        Draft202012Validator(schema).validate(yaml.safe_load(THREE.read_text()))


def test_a_scenario_file_from_the_environment_must_not_be_empty(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result = invoke(capsys, "run", "--scenario", "")
    assert result.exit_code == 2
    assert "empty --scenario" in result.stderr


@pytest.mark.usefixtures("aws")
def test_an_invalid_scenario_starts_no_run(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nexpect: []\n")
    for command in ("run", "provision"):
        result = invoke(capsys, command, "--scenario", str(bad), "--database-url", sqlite_url)
        assert result.exit_code == 2
        assert result.stderr == f"job: error: {bad}: expect: [] should be non-empty\n"
    with open_store(sqlite_url) as store:
        assert store.list_runs() == []


def test_run_three_principals_on_both_ledgers(
    aws: EmulatorCredentials, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = invoke(
        capsys, "run", "--scenario", str(THREE), "--database-url", database_url, "--output", "json"
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    document = result.json()
    run_id = document["run_id"]
    assert document["status"] == "torn_down"
    assert len(document["checks"]) == 13
    assert all(check["passed"] for check in document["checks"]), document["checks"]
    assert {check["principal"] for check in document["checks"]} == {
        "uploader",
        "auditor",
        "outsider",
    }
    assert {r["state"] for r in document["resources"]} == {"deleted"}
    assert leftovers(aws, run_id) == []

    shown = invoke(
        capsys, "runs", "show", run_id, "--database-url", database_url, "--output", "json"
    )
    assert shown.json()["scenario_sha256"] == hashlib.sha256(THREE.read_bytes()).hexdigest()
    with open_store(database_url) as store:
        assert store.get_run(run_id).scenario == THREE.read_text()


def test_a_wrong_expectation_fails_exactly_that_check(
    aws: EmulatorCredentials, tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    document = yaml.safe_load((EXAMPLES / "seed.yaml").read_text())
    flipped = document["expect"][0]  # the writer's policy grants it s3:PutObject
    assert (flipped["principal"], flipped["action"], flipped["result"]) == (
        "writer",
        "s3:PutObject",
        "allow",
    )
    flipped["result"] = "deny"
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(document, sort_keys=False))

    result = invoke(
        capsys, "run", "--scenario", str(wrong), "--database-url", sqlite_url, "--output", "json"
    )

    assert result.exit_code == 1, result.stderr
    failed = [check for check in result.json()["checks"] if not check["passed"]]
    assert [(c["principal"], c["action"], c["expected"], c["actual"]) for c in failed] == [
        ("writer", "s3:PutObject", "deny", "allow")
    ]
    assert len(result.json()["checks"]) == 12
    assert leftovers(aws, result.json()["run_id"]) == []


def test_verify_and_teardown_use_the_stored_scenario(
    aws: EmulatorCredentials,
    tmp_path: Path,
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(THREE.read_text())
    provisioned = invoke(capsys, "provision", "--scenario", str(mine), "--database-url", sqlite_url)
    assert provisioned.exit_code == 0, provisioned.stderr
    run_id = provisioned.stdout.strip()

    # The file changes on disk: another scenario, then not even a valid one.
    mine.write_text((EXAMPLES / "seed.yaml").read_text())
    shown = invoke(capsys, "scenario", "show", "--run-id", run_id, "--database-url", sqlite_url)
    assert shown.exit_code == 0, shown.stderr
    assert f"arn:aws:s3:::job-{run_id}-inbox/incoming/uploader.txt" in shown.stdout
    mine.write_text("version: 2\n")

    verified = invoke(
        capsys, "verify", "--run-id", run_id, "--database-url", sqlite_url, "--output", "json"
    )
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert len(verified.json()["checks"]) == 13
    torn = invoke(capsys, "teardown", "--run-id", run_id, "--database-url", sqlite_url)
    assert torn.exit_code == 0, torn.stderr
    assert leftovers(aws, run_id) == []


def test_a_run_keeps_the_policy_files_it_was_provisioned_with(
    aws: EmulatorCredentials,
    tmp_path: Path,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The policy files' texts are stored with the run: verify and teardown use them after the
    file has changed on disk, and after it is gone (another machine has none)."""
    mine = tmp_path / "policy-file.yaml"
    mine.write_text((EXAMPLES / "policy-file.yaml").read_text())
    policy = tmp_path / "policies" / "ingest.json"
    policy.parent.mkdir()
    read_then = (EXAMPLES / "policies" / "ingest.json").read_text()
    policy.write_text(read_then)
    ledger = ("--database-url", database_url)
    provisioned = invoke(capsys, "provision", "--scenario", str(mine), *ledger)
    assert provisioned.exit_code == 0, provisioned.stderr
    run_id = provisioned.stdout.strip()
    with open_store(database_url) as store:
        run = store.get_run(run_id)
        assert run.scenario_files == {"policies/ingest.json": read_then}
        assert run.scenario_sha256 == read_source(str(mine)).sha256
        # The SHA-256 covers the policy file: it is not the scenario file's alone.
        assert run.scenario_sha256 != hashlib.sha256(mine.read_bytes()).hexdigest()

    # The file changes: now it grants ingest listing only, and every cell but the deny of
    # reading the archive would fail were it read again.
    policy.write_text(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"},
            }
        )
    )
    verified = invoke(capsys, "verify", "--run-id", run_id, *ledger, "--output", "json")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    checks = verified.json()["checks"]
    assert len(checks) == 4 and all(check["passed"] for check in checks), checks

    # Then it is gone.
    policy.unlink()
    shown = invoke(capsys, "scenario", "show", "--run-id", run_id, *ledger)
    assert shown.exit_code == 0, shown.stderr
    assert f"arn:aws:s3:::job-{run_id}-landing/incoming/batch-1.csv" in shown.stdout
    torn = invoke(capsys, "teardown", "--run-id", run_id, *ledger)
    assert torn.exit_code == 0, torn.stderr
    assert leftovers(aws, run_id) == []
    # Read now, the scenario is refused for the file it names, as it should be.
    missing = invoke(capsys, "scenario", "validate", str(mine))
    assert missing.exit_code == 2
    assert "users.ingest.policy_file: policies/ingest.json: cannot read it" in missing.stderr


def test_a_run_from_before_scenario_files(
    aws: EmulatorCredentials,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A run recorded before scenario files stored none, and named its buckets' and objects'
    rows otherwise: it still verifies (as the seed) and tears down from its rows alone."""
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "5s")
    provisioned = invoke(capsys, "provision", "--database-url", sqlite_url)
    assert provisioned.exit_code == 0, provisioned.stderr
    run_id = provisioned.stdout.strip()
    old_names = {
        "data": "bucket",
        "data/probe/fixture.txt": "fixture",
        "elsewhere/probe/fixture.txt": "elsewhere-fixture",
    }
    with open_store(sqlite_url) as store:
        run = store.get_run(run_id)
        run.scenario = run.scenario_sha256 = None
        row: Resource
        for row in run.resources:
            row.logical_name = old_names.get(row.logical_name, row.logical_name)
            if row.logical_name == "fixture":
                # Killed before it heard its object's put had worked.
                row.state = ResourceState.PENDING
        store.session.commit()
        rows_before = len(run.resources)

    # Resumed, it finishes what the old names say, and records nothing twice.
    resumed = invoke(
        capsys, "provision", "--run-id", run_id, "--database-url", sqlite_url, "--output", "json"
    )
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    with open_store(sqlite_url) as store:
        rows = store.get_run(run_id).resources
        assert len(rows) == rows_before
        [fixture] = [row for row in rows if row.logical_name == "fixture"]
        assert fixture.state is ResourceState.CREATED

    shown = invoke(
        capsys,
        "scenario",
        "show",
        "--run-id",
        run_id,
        "--database-url",
        sqlite_url,
        "--output",
        "json",
    )
    assert shown.exit_code == 0, shown.stderr
    assert shown.json()["scenario_sha256"] is None
    assert shown.json()["source"].endswith("(the seed: it predates scenarios)")

    verified = invoke(
        capsys, "verify", "--run-id", run_id, "--database-url", sqlite_url, "--output", "json"
    )
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert len(verified.json()["checks"]) == 12
    # Under AWS's deletion rules (no bucket deleted with objects in it, no user or policy with
    # an attachment), side by side: the order must come from the rows, whatever their names.
    strict = StrictAws(admin_client(aws, "iam"), admin_client(aws, "s3"))
    torn = invoke(
        capsys,
        "teardown",
        "--run-id",
        run_id,
        "--database-url",
        sqlite_url,
        "--output",
        "json",
        hooks=[strict],
    )
    assert torn.exit_code == 0, torn.stdout + torn.stderr
    assert strict.refused == []
    assert {r["state"] for r in torn.json()["resources"]} == {"deleted"}
    assert {"bucket", "fixture"} <= {r["logical_name"] for r in torn.json()["resources"]}
    assert leftovers(aws, run_id) == []


@pytest.mark.usefixtures("aws")
def test_runner_policy_for_a_scenario(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    buckets_only = tmp_path / "buckets.yaml"
    buckets_only.write_text(
        "version: 1\nbuckets: {data: {}}\nroles: {auditor: {}}\n"
        "expect: [{principal: auditor, action: s3:ListBucket, resource: 'bucket:data', "
        "result: deny}]\n"
    )
    full = json.loads(invoke(capsys, "runner-policy").stdout)
    narrow = invoke(capsys, "runner-policy", "--scenario", str(buckets_only))
    assert narrow.exit_code == 0, narrow.stderr
    actions = {a for s in json.loads(narrow.stdout)["Statement"] for a in s["Action"]}
    every = {a for s in full["Statement"] for a in s["Action"]}
    assert actions < every
    assert "s3:CreateBucket" in actions
    assert not {"iam:CreateUser", "iam:CreateAccessKey", "iam:CreatePolicy"} & actions
    seed = invoke(capsys, "runner-policy", "--scenario", str(EXAMPLES / "seed.yaml"))
    seed_actions = {a for s in json.loads(seed.stdout)["Statement"] for a in s["Action"]}
    assert {"iam:CreateUser", "iam:CreateAccessKey", "s3:PutObject"} <= seed_actions <= every


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_every_example_runs_through_aws_lags_on_both_ledgers(
    example: Path,
    aws: EmulatorCredentials,
    existing_resources: EmulatorCredentials,
    aws_lag: object,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each shipped example proves every cell it writes and leaves nothing, through what AWS does
    that moto does not (a new bucket, key, attachment or role not seen for a while), in an
    account that holds what the examples of existing resources name."""
    result = invoke(
        capsys,
        *("run", "--scenario", str(example), "--database-url", database_url, "--output", "json"),
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    document = result.json()
    cells = yaml.safe_load(example.read_text())["expect"]
    assert len(document["checks"]) == len(cells)
    assert all(check["passed"] for check in document["checks"]), document["checks"]
    assert leftovers(aws, document["run_id"]) == []
