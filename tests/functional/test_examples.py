"""Every scenario we ship passes on the emulator a newcomer runs first, and that emulator trusts a
role's account principal as AWS does (roles are what moto, as it comes, gets wrong).

`job run --emulator` is run as a user runs it: the console script in a new process, with its own
in-process moto, nothing from this session's server or the AWS-like layer. Each example's flipped
cell is run in this process, on the session's emulator behind the layer.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError

from job.emulator import EmulatorCredentials, bootstrap_runner
from tests.helpers import admin_client, client_as, invoke, run_captured
from tests.services.moto_server import moto_server

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SEED = ROOT / "job" / "scenarios" / "seed.yaml"
EXAMPLES = sorted(path for path in (ROOT / "examples").iterdir() if path.is_file())
ACCOUNT = "123456789012"  # moto's
OTHER_ACCOUNT = "111122223333"


def expected_cells(scenario: Path) -> list[tuple[str, str, str]]:
    document = yaml.safe_load(scenario.read_text())
    return sorted(
        (cell["principal"], cell["action"], cell["result"]) for cell in document["expect"]
    )


def _environment(tmp_path: Path) -> dict[str, str]:
    """A user's shell with nothing of AWS in it but the emulator `--emulator` starts."""
    return {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        # Nothing lags on the emulator: a long wait only means the scenario cannot pass there
        # (before the emulator trusted accounts, two minutes per role).
        "JOB_PROPAGATION_TIMEOUT": "10s",
        # Where the job's code is, when a checkout is tested with another's environment (a git
        # worktree with PYTHONPATH over the shared one's editable install): else nothing.
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
    }


@pytest.mark.parametrize(
    "scenario",
    [None, *EXAMPLES],
    ids=["built-in seed", *(f"examples/{path.name}" for path in EXAMPLES)],
)
def test_every_example_passes_on_the_emulator(scenario: Path | None, tmp_path: Path) -> None:
    """`job run --emulator [--scenario FILE]` exits 0, with every cell of the file proved."""
    command = ["job", "run", "--emulator", "--output", "json"]
    if scenario is not None:
        command += ["--scenario", str(scenario)]
    done = run_captured(command, _environment(tmp_path), tmp_path)
    assert done.exit_code == 0, done
    run = json.loads(done.stdout)
    assert run["status"] == "torn_down", done
    assert all(check["passed"] for check in run["checks"]), done
    proved = sorted(
        (check["principal"], check["action"], check["expected"]) for check in run["checks"]
    )
    assert proved == expected_cells(scenario or SEED)
    assert {resource["state"] for resource in run["resources"]} == {"deleted"}, done


# Each example's cell that shows what the file is for, turned around: the run must fail on it
# and on nothing else (a canary that fails for the wrong cell, or passes, proves nothing).
FLIPPED = {
    "iam-documents.yaml": 2,  # lapsed's unmet condition grants nothing
    "managed-policy.yaml": 2,  # the run's own deny takes listing back from ReadOnlyAccess
    "policy-file.yaml": 1,  # the file's policy lets ingest read what lands in incoming/
    "bucket-policy.yaml": 3,  # the bucket denies the writer what its own policy grants
    "boundary.yaml": 1,  # the boundary takes listing from ReadOnlyAccess
    "data-platform.yaml": 3,  # ReadOnlyAccess lets the auditor read the curated data
    "existing-resources.yaml": 3,  # the existing role may read the existing bucket
    "groups.yaml": 5,  # the contractor, in no group, cannot read what the group's members can
    "role-access.yaml": 1,  # the CI user may not assume the break-glass role
    "roles.yaml": 2,  # the analyst role may list the bucket
    "seed.yaml": 4,  # the writer may not read the decoy bucket
    "session-policy.yaml": 1,  # the session policy takes listing from the role
    "three-principals.yaml": 1,  # the uploader may write only under incoming/
}


@pytest.mark.parametrize("name", sorted(FLIPPED))
def test_a_flipped_cell_fails_and_only_it(
    name: str,
    tmp_path: Path,
    existing_resources: EmulatorCredentials,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In this process, against the session's emulator behind the AWS-like layer (the examples'
    other run, above, is on the emulator a user starts): the examples hold there too, and a new
    emulator per flip would cost more than the run itself."""
    # The flipped cell's allow never comes, and the job waits for it as for AWS's propagation;
    # nothing lags here (no test lag is on), so a short wait decides as well as a long one.
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "3s")
    assert {path.name for path in EXAMPLES} == set(FLIPPED), "every example has its flip"
    document = yaml.safe_load((ROOT / "examples" / name).read_text())
    cell = document["expect"][FLIPPED[name]]
    cell["result"] = {"allow": "deny", "deny": "allow"}[cell["result"]]
    flipped = tmp_path / name
    flipped.write_text(yaml.safe_dump(document))
    # The policy files examples name, relative to the flipped copy as to the example.
    shutil.copytree(ROOT / "examples" / "policies", tmp_path / "policies")
    done = invoke(capsys, "run", "--output", "json", "--scenario", str(flipped))
    assert done.exit_code == 1, done
    failed = [check for check in json.loads(done.stdout)["checks"] if not check["passed"]]
    assert [(c["principal"], c["action"], c["expected"]) for c in failed] == [
        (cell["principal"], cell["action"], cell["result"])
    ], done


# --- the emulator's account trust -----------------------------------------------------------------


def client(
    credentials: EmulatorCredentials, service: str, key: dict[str, Any] | None = None
) -> Any:
    """A client of the emulator signing as the runner, or with `key`."""
    if key is None:
        return admin_client(credentials, service)
    return client_as(credentials.endpoint_url, service, key)


def trusting(principal: Any) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
            ],
        }
    )


# Principal of the role's trust policy -> whether a principal of moto's account whose own policy
# allows sts:AssumeRole may assume it. AWS: naming an account (its root ARN, or the bare id, which
# IAM turns into the root ARN) delegates to that account's identity policies; another account or
# partition lets nobody of this one in.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html#principal-accounts
# https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_compare-resource-policies.html
TRUSTS = {
    "account root": (f"arn:aws:iam::{ACCOUNT}:root", True),
    "account id": (ACCOUNT, True),
    "one of the accounts": (
        [f"arn:aws:iam::{OTHER_ACCOUNT}:root", f"arn:aws:iam::{ACCOUNT}:root"],
        True,
    ),
    "another account": (f"arn:aws:iam::{OTHER_ACCOUNT}:root", False),
    "another partition": (f"arn:aws-cn:iam::{ACCOUNT}:root", False),
    "another user": (f"arn:aws:iam::{ACCOUNT}:user/someone-else", False),
}


@pytest.fixture(scope="module")
def served_emulator(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`python -m job.emulator --serve`, what docker compose's `moto` service runs, with an
    administrator runner: the same patch as `--emulator`'s, in a server process of its own."""
    log = tmp_path_factory.mktemp("served-emulator") / "moto.log"
    with moto_server(log, (sys.executable, "-m", "job.emulator", "--serve")) as endpoint:
        yield bootstrap_runner(endpoint)


@pytest.mark.parametrize(("principal", "assumable"), TRUSTS.values(), ids=list(TRUSTS))
def test_the_emulator_trusts_an_account_as_aws_does(
    served_emulator: EmulatorCredentials, principal: Any, assumable: bool, request: Any
) -> None:
    iam, sts = client(served_emulator, "iam"), client(served_emulator, "sts")
    name = f"trust-{request.node.callspec.id.replace(' ', '-')}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trusting(principal))["Role"][
        "Arn"
    ]
    # A principal of the account with no policy at all: the account's trust delegates to its
    # identity policy, so it never gets in, whatever the trust policy names.
    iam.create_user(UserName=f"{name}-nobody")
    nobody = client(
        served_emulator, "sts", iam.create_access_key(UserName=f"{name}-nobody")["AccessKey"]
    )

    for caller, allowed in ((sts, assumable), (nobody, False)):
        try:
            caller.assume_role(RoleArn=arn, RoleSessionName="job-test")
            outcome = "assumed"
        except ClientError as error:
            outcome = error.response["Error"]["Code"]
        assert outcome == ("assumed" if allowed else "AccessDenied"), (principal, caller)
