"""Settings from options and environment, validated once, before anything is created."""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from job.errors import BadInput

if TYPE_CHECKING:  # SQLAlchemy is imported only when a URL is parsed: `job --help` stays quick
    from sqlalchemy.engine import URL

DEFAULT_DATABASE_URL = "sqlite:///job.db"
DEFAULT_PREFIX = "job"
# The role `job fleet` assumes in each account (deploy/aws/canary-role.yaml makes it).
DEFAULT_FLEET_ROLE = "job-canary"


class OutputFormat(enum.StrEnum):
    """What a command prints on stdout: a summary and tables for people, or one JSON object."""

    TEXT = "text"
    JSON = "json"


class LogFormat(enum.StrEnum):
    """How the logs on stderr are written: lines, or one JSON object each."""

    TEXT = "text"
    JSON = "json"


DEFAULT_OUTPUT = OutputFormat.TEXT
DEFAULT_LOG_FORMAT = LogFormat.TEXT
# Room for "-<run id>-<role>" within AWS's shortest limit we use (bucket names: 63 characters).
MAX_PREFIX_LENGTH = 20
# Starts of bucket names S3 refuses (sthree-configurator is within sthree-).
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_PREFIX = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_DURATION = re.compile(r"([0-9]+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# Longer than any run should sit idle, far short of what a datetime can hold (a billion days
# would overflow when subtracted from now).
MAX_DURATION = timedelta(days=3650)
# What every AWS region name looks like (us-east-1, us-gov-west-1, cn-north-1, eusc-de-east-1):
# checked before any call, so that a typo is bad input and not a connection error from an endpoint
# built out of it. A new region of this shape needs no change here.
_REGION = re.compile(r"[a-z]{2,}(?:-[a-z0-9]+)*-[0-9]+")
_BOUNDARY = re.compile(r"arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/[A-Za-z0-9+=,.@_/-]+")
_YES, _NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
LOG_LEVELS = ("debug", "info", "warning")
# Terraform's default parallelism: enough to hide round trips, few enough not to provoke IAM's
# throttling (its mutating calls are limited to a handful per second per account).
# The seed's widest step (teardown's listings of two users, two policies and two buckets) is
# 16 calls: fewer, and it takes two round trips instead of one.
DEFAULT_CONCURRENCY = 16
MAX_CONCURRENCY = 100
# How long AWS may take to make a change visible everywhere: a new user, policy, attachment or key
# (IAM: "usually seconds", and AWS advises building for longer), a new bucket (S3 answers
# NoSuchBucket for a while after CreateBucket). Two minutes, as terraform-provider-aws waits for
# both; JOB_PROPAGATION_TIMEOUT changes it.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
DEFAULT_PROPAGATION_TIMEOUT = timedelta(minutes=2)


def parse_duration(text: str) -> timedelta:
    """`0s`, `90s`, `30m`, `6h`, `2d`; anything else is bad input."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise BadInput(
            f"invalid duration {text!r}: use a whole number and a unit (s, m, h, d), e.g. 30m"
        )
    number, unit = int(match.group(1)), _UNITS[match.group(2)]
    if number > MAX_DURATION.total_seconds() or timedelta(**{unit: number}) > MAX_DURATION:
        raise BadInput(f"duration {text!r} is out of range: give at most {MAX_DURATION.days}d")
    return timedelta(**{unit: number})


def validate_region(region: str) -> str:
    if not _REGION.fullmatch(region):
        raise BadInput(
            f"invalid AWS region {region!r}: give a region such as us-east-1 or eu-west-1"
        )
    return region


def parse_database_url(text: str) -> URL:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    # The URL is not repeated in these messages: it may hold a password.
    try:
        url = make_url(text)
    except ArgumentError:
        raise BadInput(
            "invalid database URL: use sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    except ValueError:  # SQLAlchemy reads the port as a number while parsing
        raise BadInput(
            "invalid port in the database URL: give a number from 1 to 65535, e.g. "
            "postgresql://USER:PASSWORD@HOST:5432/DATABASE"
        ) from None
    if url.port is not None and not 1 <= url.port <= 65535:
        raise BadInput(
            f"invalid port {url.port} in the database URL: give a number from 1 to 65535"
        )
    if url.drivername == "postgres":  # Heroku's and libpq's spelling
        url = url.set(drivername="postgresql")
    backend = url.get_backend_name()
    if backend == "postgresql":
        # psycopg (3) is the driver we ship; a plain postgresql:// URL means it too.
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        if url.drivername != "postgresql+psycopg":
            raise BadInput(
                f"unsupported PostgreSQL driver {url.drivername!r}: use postgresql:// "
                "or postgresql+psycopg://"
            )
    elif backend == "sqlite":
        if url.drivername != "sqlite":
            raise BadInput(f"unsupported SQLite driver {url.drivername!r}: use sqlite:///PATH")
    else:
        raise BadInput(
            f"unsupported database {backend!r} in the database URL: use sqlite:///PATH "
            "or postgresql://..."
        )
    return url


def validate_prefix(prefix: str) -> str:
    if len(prefix) > MAX_PREFIX_LENGTH or not _PREFIX.fullmatch(prefix):
        raise BadInput(
            f"invalid prefix {prefix!r}: use 1 to {MAX_PREFIX_LENGTH} lowercase letters, digits "
            "and '-', starting and ending with a letter or digit"
        )
    # Bucket names are "<prefix>-<run id>-...", and a run id has no '-': a reserved start that
    # "<prefix>-" does not already hold cannot be completed by the run id.
    reserved = next((r for r in RESERVED_BUCKET_PREFIXES if f"{prefix}-".startswith(r)), None)
    if reserved is not None:
        raise BadInput(
            f"invalid prefix {prefix!r}: S3 reserves bucket names starting {reserved!r}, and the "
            "job's buckets start with the prefix; choose another --prefix"
        )
    return prefix


def _first(option: str | None, *environment: str | None) -> str | None:
    """An option given on the command line, even empty, is meant; an empty variable is unset."""
    if option is not None:
        return option
    return next((value for value in environment if value), None)


def validate_boundary(arn: str) -> str:
    if not _BOUNDARY.fullmatch(arn):
        raise BadInput(
            f"invalid permissions boundary {arn!r}: give a managed policy's ARN, e.g. "
            "arn:aws:iam::123456789012:policy/job-boundary"
        )
    return arn


def _require_tls(env: Mapping[str, str], emulator: bool) -> bool:
    """On unless turned off, or unless the endpoint speaks plain HTTP (an emulator): a bucket
    policy denying non-TLS requests would then deny every request."""
    value = env.get("JOB_REQUIRE_TLS", "").lower()
    if value in _YES:
        return True
    if value in _NO:
        return False
    if value:
        raise BadInput(f"invalid JOB_REQUIRE_TLS {value!r}: use 1 or 0")
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
    return not (emulator or endpoint.startswith("http://"))


def _optional(validate: Callable[[str], str], value: str | None) -> str | None:
    return None if value is None else validate(value)


def _or_default(value: str | None, default: str) -> str:
    return default if value is None else value


E = TypeVar("E", bound=enum.Enum)


def _choice(kind: type[E], value: str, what: str) -> E:
    try:
        return kind(value)
    except ValueError:
        names = " or ".join(member.value for member in kind)
        raise BadInput(f"invalid {what} {value!r}: use {names}") from None


@dataclass
class CommandLine:
    """The global options as given on the command line (None: not given), before the
    environment and the defaults are applied (Settings.load)."""

    database_url: str | None = None
    prefix: str | None = None
    region: str | None = None
    output: str | None = None
    emulator: bool | None = None
    permissions_boundary: str | None = None
    log_format: str | None = None
    metrics_file: str | None = None
    concurrency: str | None = None
    scenario: str | None = None
    verbosity: int = 0


@dataclass(frozen=True)
class Settings:
    database_url: URL
    prefix: str = DEFAULT_PREFIX
    region: str | None = None
    output: OutputFormat = DEFAULT_OUTPUT
    emulator: bool = False
    log_level: str = "warning"
    propagation_timeout: timedelta = DEFAULT_PROPAGATION_TIMEOUT
    # JOB_DENY_SETTLE: how long after a principal's policy change a denial with no witness in its
    # service counts (job.phases.verify.deny_settle); None: verify's default.
    deny_settle: timedelta | None = None
    permissions_boundary: str | None = None
    require_tls: bool = True
    log_format: LogFormat = DEFAULT_LOG_FORMAT
    # Where to write Prometheus text-format metrics after the command (node_exporter's textfile
    # collector reads them), or None.
    metrics_file: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    # The scenario file a new run proves (read by the commands that start runs), or None: the
    # built-in seed.
    scenario: str | None = None

    @classmethod
    def of(cls, command_line: CommandLine, environ: Mapping[str, str] | None = None) -> Settings:
        return cls.load(**asdict(command_line), environ=environ)

    @classmethod
    def load(
        cls,
        *,
        database_url: str | None = None,
        prefix: str | None = None,
        region: str | None = None,
        output: str | None = None,
        emulator: bool | None = None,
        permissions_boundary: str | None = None,
        log_format: str | None = None,
        metrics_file: str | None = None,
        concurrency: str | int | None = None,
        scenario: str | None = None,
        verbosity: int = 0,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Options win over the environment, which wins over defaults."""
        env = os.environ if environ is None else environ
        output_value = _choice(
            OutputFormat,
            _or_default(_first(output, env.get("JOB_OUTPUT")), DEFAULT_OUTPUT),
            "output",
        )
        if verbosity:
            log_level = "info" if verbosity == 1 else "debug"
        else:
            log_level = (env.get("JOB_LOG_LEVEL") or "warning").lower()
            if log_level not in LOG_LEVELS:
                raise BadInput(f"invalid JOB_LOG_LEVEL {log_level!r}: use debug, info or warning")
        timeout_text = env.get("JOB_PROPAGATION_TIMEOUT")
        settle_text = env.get("JOB_DENY_SETTLE")
        use_emulator = bool(emulator) or env.get("JOB_EMULATOR", "") in ("1", "true", "yes")
        boundary = _first(permissions_boundary, env.get("JOB_PERMISSIONS_BOUNDARY"))
        log_format_value = _choice(
            LogFormat,
            _or_default(_first(log_format, env.get("JOB_LOG_FORMAT")), DEFAULT_LOG_FORMAT),
            "log format",
        )
        metrics_path = _first(metrics_file, env.get("JOB_METRICS_FILE"))
        if metrics_path == "":
            raise BadInput("empty --metrics-file: give a file path, e.g. /var/lib/job/job.prom")
        scenario_path = _first(scenario, env.get("JOB_SCENARIO"))
        if scenario_path == "":
            raise BadInput("empty --scenario: give a scenario file, e.g. examples/seed.yaml")
        return cls(
            database_url=parse_database_url(
                _or_default(_first(database_url, env.get("JOB_DATABASE_URL")), DEFAULT_DATABASE_URL)
            ),
            prefix=validate_prefix(
                _or_default(_first(prefix, env.get("JOB_PREFIX")), DEFAULT_PREFIX)
            ),
            region=_optional(
                validate_region,
                _first(region, env.get("AWS_REGION"), env.get("AWS_DEFAULT_REGION")),
            ),
            output=output_value,
            emulator=use_emulator,
            permissions_boundary=_optional(validate_boundary, boundary),
            require_tls=_require_tls(env, use_emulator),
            log_level=log_level,
            propagation_timeout=(
                parse_duration(timeout_text) if timeout_text else DEFAULT_PROPAGATION_TIMEOUT
            ),
            deny_settle=parse_duration(settle_text) if settle_text else None,
            log_format=log_format_value,
            metrics_file=metrics_path,
            concurrency=parse_concurrency(
                _first(
                    None if concurrency is None else str(concurrency), env.get("JOB_CONCURRENCY")
                )
            ),
            scenario=scenario_path,
        )


def parse_concurrency(text: str | None) -> int:
    if text is None:
        return DEFAULT_CONCURRENCY
    if not text.isdigit() or not 1 <= int(text) <= MAX_CONCURRENCY:
        raise BadInput(
            f"invalid concurrency {text!r}: use a whole number from 1 to {MAX_CONCURRENCY}"
        )
    return int(text)
