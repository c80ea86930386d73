"""`make smoke-aws`, run as the Makefile runs it, against this session's moto server.

The target is for a real account, which the tests cannot reach: the command line comes from the
Makefile itself (`make -n`), and runs in a subprocess whose environment is an operator's shell
with the `aws` fixture's runner in place of the operator's credentials, AWS_ENDPOINT_URL pointing
at the emulator, and JOB_REQUIRE_TLS=0 (the emulator speaks plain HTTP, where a TLS-only bucket
policy would refuse every request). Its temporary ledger folder goes to the test's tmp_path.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from job.emulator import ADMIN_POLICY, EmulatorCredentials, bootstrap_runner
from tests.helpers import Done, admin_client, named, run_captured

ROOT = Path(__file__).resolve().parents[2]


REGION = "us-east-1"
# The virtualenv running these tests: the target runs its python, and that python's `job`.
VENV = Path(sys.executable).parent.parent
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# What the smoke names its prefix: `smoke-` and 6 random lowercase letters or digits.
SMOKE_PREFIX = re.compile(r"named (smoke-[a-z0-9]{6})-<run id>-\*")
SUCCESS = re.compile(r"smoke-aws: ok: run ([a-z0-9]+) torn down, (\d+) of \2 checks passed, .*\n")


def starting(prefix: str) -> Callable[[str], bool]:
    return lambda name: name.startswith(prefix)


def smoke_prefix(done: Done) -> str:
    match = SMOKE_PREFIX.search(done.stderr)
    assert match, done
    return match[1]


def smoke_command() -> list[str]:
    """The target's recipe as make would run it, for this virtualenv: `-n` prints it without
    running it, `-o` keeps make from (re)installing the venv first."""
    dry = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-s",
            "-n",
            "-C",
            str(ROOT),
            f"VENV={VENV}",
            "-o",
            f"{VENV}/.installed",
            "smoke-aws",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    [line] = dry.stdout.splitlines()
    return shlex.split(line)


def run_smoke(
    credentials: EmulatorCredentials, tmp_path: Path, *args: str, **variables: str
) -> Done:
    """The target's command in the checkout, as an operator's shell runs it: nothing inherited
    but what a shell has, the credentials in boto3's standard variables, and `variables`."""
    environment = {
        "PATH": SYSTEM_PATH,
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        # No instance metadata service here: asking it only costs time-outs.
        "AWS_EC2_METADATA_DISABLED": "true",
        "TMPDIR": str(tmp_path),
        "JOB_REQUIRE_TLS": "0",
        # The emulator propagates nothing late: no denial need wait the settle interval.
        "JOB_DENY_SETTLE": "0s",
        **credentials.environment(REGION),
        **variables,
    }
    return run_captured([*smoke_command(), *args], environment, ROOT)


def ledger_folders(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("smoke-aws-*"))


def test_a_clean_run_passes_and_leaves_nothing(aws: EmulatorCredentials, tmp_path: Path) -> None:
    done = run_smoke(aws, tmp_path)

    assert done.exit_code == 0, done
    match = SUCCESS.fullmatch(done.stdout)
    assert match and int(match[2]) > 0, done
    # Before starting it said where and as whom: the runner's account and ARN, the region.
    caller = admin_client(aws, "sts").get_caller_identity()
    assert f"account {caller['Account']} ({caller['Arn']}), region {REGION}" in done.stderr, done
    prefix = smoke_prefix(done)
    assert named(aws, starting(f"{prefix}-")) == []
    assert named(aws, starting("smoke-")) == [], "something of another prefix?"
    assert ledger_folders(tmp_path) == [], "a passing smoke keeps no ledger"


@pytest.mark.parametrize(
    ("args", "variables"),
    [((), {"JOB_EMULATOR": "1"}), (("--emulator",), {})],
    ids=["JOB_EMULATOR", "--emulator"],
)
def test_the_emulator_is_refused(
    aws: EmulatorCredentials, tmp_path: Path, args: tuple[str, ...], variables: dict[str, str]
) -> None:
    done = run_smoke(aws, tmp_path, *args, **variables)

    assert done.exit_code == 2, done
    assert done.stderr.count("\n") == 1 and "real AWS account" in done.stderr, done
    assert done.stdout == "", done
    assert ledger_folders(tmp_path) == [] and named(aws, starting("smoke-")) == [], (
        "it started anyway"
    )


# A runner like the operator's, except that S3 refuses it DeleteBucket: the run's teardown (and
# the smoke's second try) fail with the bucket still there.
CANNOT_DELETE_BUCKETS = {
    "Version": "2012-10-17",
    "Statement": [
        *ADMIN_POLICY["Statement"],
        {"Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"},
    ],
}


def test_a_bucket_left_behind_is_reported_with_the_commands_that_clean_it_up(
    aws: EmulatorCredentials, tmp_path: Path
) -> None:
    runner = bootstrap_runner(aws.endpoint_url, CANNOT_DELETE_BUCKETS, user_name="no-delete")

    done = run_smoke(runner, tmp_path)

    assert done.exit_code == 4, done
    prefix = smoke_prefix(done)
    header = re.search(rf"smoke-aws: FAILED: prefix {prefix}, run ([a-z0-9]+), ", done.stderr)
    assert header, done
    run_id = header[1]
    # Only DeleteBucket was refused: the buckets are left, and the report names each of them.
    remaining = named(aws, starting(f"{prefix}-"))
    assert f"bucket {prefix}-{run_id}-data" in remaining
    assert all(name.startswith("bucket ") for name in remaining), remaining
    account = admin_client(aws, "sts").get_caller_identity()["Account"]
    left = done.stderr.partition(f"LEFT IN ACCOUNT {account}")[2]
    for name in remaining:
        assert f"s3_{name} (ledger: " in left, done
    [ledger] = ledger_folders(tmp_path)
    assert f"The ledger is kept: {ledger / 'job.db'}" in done.stderr, done
    assert (ledger / "job.db").is_file()

    # The printed commands, run as printed by someone allowed to delete buckets, finish the job.
    commands = [
        shlex.split(line)
        for line in left.splitlines()
        if line.startswith("    ") and line.split()[0].endswith("/bin/job")
    ]
    assert [command[5:] for command in commands] == [
        ["teardown", "--run-id", run_id],
        ["sweep", "--older-than", "0s", "--execute"],
    ], done
    for command in commands:
        cleanup = subprocess.run(
            command,
            env={"PATH": SYSTEM_PATH, "HOME": str(tmp_path), **aws.environment(REGION)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert cleanup.returncode == 0, (command, cleanup.stdout, cleanup.stderr)
    assert named(aws, starting("smoke-")) == []
