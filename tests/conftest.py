"""Shared fixtures: an IAM-enforcing AWS emulator, PostgreSQL and SQLite ledgers, a clean env.

Fixture names are a contract for every test module:

- ``moto_endpoint`` (session): URL of the emulator every test talks to: the one moto server of
  this session behind the AWS-like layer (tests/awslike.py), which adds what AWS does and moto
  does not (NoSuchBucket before authorization, paged ListBuckets only, propagation windows).
- ``moto_upstream`` (session): URL of the moto server itself, without the layer.
- ``aws_like`` (session): the layer's ``AwsLike``, whose knobs a test may turn.
- ``aws``: the emulator and the layer reset (the layer's knobs to their defaults) and a fresh
  admin runner whose keys boto3's default chain now uses; returns its ``EmulatorCredentials``.
- ``aws_lag``: ``aws``, then AWS's propagation delays in small: a new bucket is not found for
  1 s, a new key is unknown for 1 s, a new policy is not effective for 2 s, a new role cannot be
  assumed for 4 s (longer than a provision takes, so verify meets it), a new role session is
  unknown for 1 s; returns the ``AwsLike``.
- ``postgres_server`` (session): admin SQLAlchemy URL of the one PostgreSQL server.
- ``postgres_url``: URL of a new empty database, dropped after the test.
- ``sqlite_url``: URL of a SQLite file in the test's tmp_path.
- ``database_url``: parametrized, the test runs once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import gc
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import FrameType

import boto3
import pytest

import job.phases.verify as verify_phase
from job.emulator import EmulatorCredentials, add_existing_resources, bootstrap_runner, reset
from tests.awslike import AwsLike, layer
from tests.services.moto_server import moto_server
from tests.services.postgres import postgres_server as start_postgres_server
from tests.services.postgres import temporary_database

REGION = "us-east-1"

# The job's own settings: a developer's shell must not steer what a test provisions or where it
# records it.
JOB_VARIABLES = (
    "JOB_DATABASE_URL",
    "JOB_PREFIX",
    "JOB_OUTPUT",
    "JOB_EMULATOR",
    "JOB_LOG_LEVEL",
    "JOB_LOG_FORMAT",
    "JOB_METRICS_FILE",
    "JOB_CONCURRENCY",
    "JOB_PROPAGATION_TIMEOUT",
    "JOB_DENY_SETTLE",
    "JOB_PERMISSIONS_BOUNDARY",
    "JOB_REQUIRE_TLS",
    "JOB_SCENARIO",
    "AWS_ENDPOINT_URL",
    # A test that forgets the `aws` fixture must fail for want of credentials, never reach a real
    # account with a developer's.
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
)
# Would make boto3 sign as someone other than the runner (a profile, a session's token).
AWS_IDENTITY_VARIABLES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")

DATABASE_FIXTURES = {"sqlite": "sqlite_url", "postgresql": "postgres_url"}
# The `aws_lag` fixture's windows, in seconds.
LAGS = {
    "bucket_creation_lag": 1.0,
    "new_key_lag": 1.0,
    "new_policy_lag": 2.0,
    "new_role_lag": 4.0,
    "new_session_lag": 1.0,
}
# Several times the longest of them.
TEST_PROPAGATION_TIMEOUT = "20s"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The long sweeps first (in their order): started last, one would keep a test process busy
    # after the others ran out of tests.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def spare_the_collector() -> None:
    """Python's cyclic garbage collector, at its default thresholds, walks the whole heap of a
    long-lived test process (botocore's models, SQLAlchemy's, what every test made) again and
    again: measured, an eighth of a crash sweep's CPU (16.2 s against 18.4, three runs each).
    What is loaded by now is left out of its walks (it stays for the session), and the young
    generation is collected after 50,000 allocations rather than 700. Cycles are still freed.
    Forked runs inherit it; the moto server does the same (moto_main.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def pytest_configure(config: pytest.Config) -> None:
    # `timeout`, CI cancellation and IDE stop buttons send SIGTERM, which would kill pytest
    # without teardown and orphan the moto server and the PostgreSQL cluster (pg_ctl detaches
    # it). As a KeyboardInterrupt, pytest still tears the session fixtures down.
    signal.signal(signal.SIGTERM, _interrupt)
    spare_the_collector()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in JOB_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    # No instance metadata service here: asking it only costs time-outs.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # boto3.client() goes through a module-level default session that caches the credentials and
    # config it resolved first; a fresh one per test sees this test's environment.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    # The default ledger, sqlite:///job.db, and any other relative path land in the test's tmp.
    monkeypatch.chdir(tmp_path)
    # The layer propagates nothing late unless a test turns a lag on, so a denial with no witness
    # in its service need not wait AWS's settle interval (ten seconds) in every run: not in the
    # job's processes (the variable), nor where a test makes its Aws itself (the default). The
    # tests of that wait set them back (tests/functional/test_verdicts.py).
    monkeypatch.setenv("JOB_DENY_SETTLE", "0s")
    monkeypatch.setattr(verify_phase, "DENY_SETTLE", timedelta(0))
    # What the job waits for AWS to show a change is two minutes by default; the emulator shows
    # every change at once, and the lags a test turns on last a few seconds (LAGS), so a wait
    # for what never comes (a check that fails as the test intends) need not last two minutes.
    # A test that needs it otherwise sets it and says why.
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", TEST_PROPAGATION_TIMEOUT)


@pytest.fixture(scope="session")
def moto_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # The log stays in pytest's basetemp (the last 3 runs are kept) for post-mortems.
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture(scope="session")
def aws_like() -> AwsLike:
    return AwsLike()


@pytest.fixture(scope="session")
def moto_endpoint(moto_upstream: str, aws_like: AwsLike) -> Iterator[str]:
    # Every test talks to moto through the layer: the layer learns which buckets and keys exist
    # from that traffic, and the job is held to what AWS does rather than to what moto lets by.
    with layer(moto_upstream, aws_like) as proxy:
        yield proxy.url


@pytest.fixture
def aws(
    moto_endpoint: str, aws_like: AwsLike, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> EmulatorCredentials:
    # Scrub first: bootstrap_runner builds a boto3 client itself, and a stale AWS_PROFILE would
    # break even a client given explicit keys (ProfileNotFound).
    for name in AWS_IDENTITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    # Nonexistent files: no profile, region or credential_process from ~/.aws can apply.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    # Before bootstrapping: a lag an earlier test set would otherwise hold up the runner's key.
    aws_like.reset()
    reset(moto_endpoint)
    credentials = bootstrap_runner(moto_endpoint)
    for name, value in credentials.environment(REGION).items():
        monkeypatch.setenv(name, value)
    return credentials


@pytest.fixture
def existing_resources(aws: EmulatorCredentials) -> EmulatorCredentials:
    """The role and bucket someone else made in the account, as `job run --emulator` has them
    (job.emulator.add_existing_resources). Ask for it before `aws_lag`: they are old, not new."""
    add_existing_resources(aws)
    return aws


@pytest.fixture
def aws_lag(aws: EmulatorCredentials, aws_like: AwsLike) -> Iterator[AwsLike]:
    # Set after `aws` has bootstrapped: the runner's key and policy predate the windows, and
    # are usable at once, like an operator's long-standing credentials.
    for name, seconds in LAGS.items():
        setattr(aws_like, name, seconds)
    yield aws_like
    # Not for the next test (whose `aws` resets them anyway) nor for one that uses the emulator
    # without `aws`: only the lags go, the layer's view of what exists stays true.
    for name in LAGS:
        setattr(aws_like, name, 0.0)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    with start_postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    with temporary_database(postgres_server) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/job.db"


@pytest.fixture(params=list(DATABASE_FIXTURES), ids=list(DATABASE_FIXTURES))
def database_url(request: pytest.FixtureRequest) -> str:
    # getfixturevalue: PostgreSQL starts only if a test actually needs it (e.g. not with -k sqlite).
    url: str = request.getfixturevalue(DATABASE_FIXTURES[request.param])
    return url
