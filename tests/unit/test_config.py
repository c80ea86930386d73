from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from job.config import (
    MAX_DURATION,
    Settings,
    parse_database_url,
    parse_duration,
    validate_prefix,
)
from job.errors import BadInput


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from("smhd"))
def test_duration_round_trip(amount: int, unit: str) -> None:
    """Every duration up to ten years reads as itself; any longer one (a billion days would
    overflow when subtracted from now) is bad input, not a crash."""
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    if amount * seconds <= MAX_DURATION.total_seconds():
        assert parse_duration(f"{amount}{unit}") == timedelta(seconds=amount * seconds)
    else:
        with pytest.raises(BadInput, match="out of range"):
            parse_duration(f"{amount}{unit}")


@pytest.mark.parametrize("text", ["", "5", "5m\n", "-5m", "1.5h", "5 m", "5w", "m", "1h30m", "٣m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(BadInput, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "prefix", ["job", "a", "canary-1", "a" * 20, "0x", "xn", "amzn-s3", "sthre"]
)
def test_good_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", "Job", "job_1", "-a", "a-", "a" * 21, "a b", "é", "job\n"])
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(BadInput, match="invalid prefix"):
        validate_prefix(prefix)


@pytest.mark.parametrize("prefix", ["xn--a", "sthree", "sthree-configurator", "amzn-s3-demo"])
def test_prefixes_that_make_reserved_bucket_names(prefix: str) -> None:
    with pytest.raises(BadInput, match="S3 reserves bucket names starting"):
        validate_prefix(prefix)


def test_the_propagation_window_is_two_minutes_unless_set() -> None:
    assert Settings.load(environ={}).propagation_timeout == timedelta(minutes=2)
    chosen = Settings.load(environ={"JOB_PROPAGATION_TIMEOUT": "5m"})
    assert chosen.propagation_timeout == timedelta(minutes=5)


def test_postgresql_urls_use_psycopg() -> None:
    for text in ("postgresql://u:p@h:5432/d", "postgres://u:p@h/d"):
        assert parse_database_url(text).drivername == "postgresql+psycopg"
    assert parse_database_url("sqlite:///x.db").database == "x.db"


def test_options_win_over_environment_and_empty_variables_are_unset() -> None:
    environ = {"JOB_PREFIX": "fromenv", "JOB_OUTPUT": "", "AWS_DEFAULT_REGION": "eu-west-1"}
    settings = Settings.load(environ=environ)
    assert (settings.prefix, settings.output, settings.region) == ("fromenv", "text", "eu-west-1")
    settings = Settings.load(prefix="fromoption", region="us-west-2", environ=environ)
    assert (settings.prefix, settings.region) == ("fromoption", "us-west-2")
    with pytest.raises(BadInput):
        Settings.load(prefix="", environ=environ)


def test_verbosity_overrides_log_level() -> None:
    assert Settings.load(environ={"JOB_LOG_LEVEL": "INFO"}).log_level == "info"
    assert Settings.load(verbosity=2, environ={"JOB_LOG_LEVEL": "warning"}).log_level == "debug"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, True),  # real AWS
        ({"AWS_ENDPOINT_URL": "https://s3.internal.example"}, True),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}, False),  # an emulator: no TLS to require
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "JOB_REQUIRE_TLS": "1"}, True),
        ({"JOB_REQUIRE_TLS": "0"}, False),
        ({"JOB_EMULATOR": "1"}, False),
    ],
)
def test_require_tls(environ: dict[str, str], expected: bool) -> None:
    assert Settings.load(environ=environ).require_tls is expected


def test_bad_require_tls() -> None:
    with pytest.raises(BadInput, match="JOB_REQUIRE_TLS"):
        Settings.load(environ={"JOB_REQUIRE_TLS": "maybe"})


@pytest.mark.parametrize("text", ["0", "101", "-1", "ten", "", " 5"])
def test_bad_concurrency(text: str) -> None:
    with pytest.raises(BadInput, match="concurrency"):
        Settings.load(database_url="sqlite://", concurrency=text, environ={})


def test_concurrency_from_option_or_environment() -> None:
    assert Settings.load(database_url="sqlite://", environ={}).concurrency == 16
    assert (
        Settings.load(database_url="sqlite://", environ={"JOB_CONCURRENCY": "4"}).concurrency == 4
    )
    assert (
        Settings.load(database_url="sqlite://", concurrency="2", environ={"JOB_CONCURRENCY": "4"})
    ).concurrency == 2


def test_bad_log_format_and_empty_metrics_file() -> None:
    with pytest.raises(BadInput, match="log format 'xml'"):
        Settings.load(database_url="sqlite://", environ={"JOB_LOG_FORMAT": "xml"})
    with pytest.raises(BadInput, match="empty --metrics-file"):
        Settings.load(database_url="sqlite://", metrics_file="", environ={})
    # An empty variable is unset, as everywhere else.
    assert (
        Settings.load(database_url="sqlite://", environ={"JOB_METRICS_FILE": ""}).metrics_file
        is None
    )


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "us-gov-west-1", "cn-north-1"])
def test_region_names(region: str) -> None:
    assert Settings.load(database_url="sqlite://", region=region, environ={}).region == region


@pytest.mark.parametrize("region", ["eu west 1!", "EU-WEST-1", "us-east", "", "us-east-1\n"])
def test_regions_that_cannot_be(region: str) -> None:
    # "" from the environment means unset; given as an option it is meant, and wrong.
    with pytest.raises(BadInput, match="invalid AWS region"):
        Settings.load(database_url="sqlite://", region=region, environ={})


@pytest.mark.parametrize(
    "url", ["postgresql://u@h:notaport/db", "postgresql://u@h:0/db", "postgresql://u@h:65536/db"]
)
def test_database_url_ports(url: str) -> None:
    with pytest.raises(BadInput, match="port"):
        parse_database_url(url)
