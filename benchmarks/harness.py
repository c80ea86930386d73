"""What every benchmark shares: an IAM-enforcing moto server behind the latency proxy, the `job`
command as a subprocess, and timing.

`job` is timed as a real process, the console script an operator runs: its wall time includes the
interpreter's start-up and imports, which the report shows separately (`job --help`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.proxy import Behaviour, LatencyProxy
from job.emulator import EmulatorCredentials, bootstrap_runner
from tests.services.moto_server import moto_server

REGION = "us-east-1"
# The repository: `python -m benchmarks...` runs from here, so that `tests` and `benchmarks` import.
ROOT = Path(__file__).resolve().parents[1]


def job_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m job`."""
    script = Path(sys.executable).with_name("job")
    return [str(script)] if script.exists() else [sys.executable, "-m", "job"]


def clean_environment() -> dict[str, str]:
    """This process's environment without anything that steers job or boto3: a developer's
    shell must not decide what is measured (or reach a real account)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("JOB_", "AWS_", "BOTO_"))
    }
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # no instance metadata service here
    return env


@dataclass(frozen=True)
class Timed:
    wall_s: float
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_timed(
    command: Sequence[str], env: Mapping[str, str], cwd: Path, *, expect: int | None = 0
) -> Timed:
    """Run `command` to its end; its wall time from start to exit. Fails loudly when the exit
    code is not `expect`: a benchmark of a failed run measures nothing."""
    started = time.perf_counter()
    done = subprocess.run(
        list(command),
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    if expect is not None and done.returncode != expect:
        raise RuntimeError(
            f"{' '.join(command)} exited {done.returncode}, not {expect}:\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return Timed(wall, done.returncode, done.stdout, done.stderr)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def progress(message: str) -> None:
    """Progress goes to stderr: stdout carries only the results table."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass
class Bench:
    """One moto server (IAM enforced, an admin runner) and the latency proxy in front of it; a
    second proxy, without latency, for setting up what is not measured."""

    folder: Path
    proxy: LatencyProxy
    setup_proxy: LatencyProxy
    runner: EmulatorCredentials
    # JOB_CONCURRENCY for the runs that are not meant to be sequential; None: job's default.
    concurrency: int | None

    def env(
        self, *, database: Path | None = None, setup: bool = False, sequential: bool = False
    ) -> dict[str, str]:
        """The environment of a job (or script) process acting as the runner: through the latency
        proxy, or for `setup` that is not measured through the other. `sequential`:
        JOB_CONCURRENCY=1, job's one-call-at-a-time mode (ignored by a job without the option)."""
        env = clean_environment()
        env.update(self.runner.environment(REGION))
        env["AWS_ENDPOINT_URL"] = (self.setup_proxy if setup else self.proxy).url
        # moto speaks plain HTTP: a TLS-only bucket policy would deny every request.
        env["JOB_REQUIRE_TLS"] = "0"
        env["JOB_OUTPUT"] = "json"
        if database is not None:
            env["JOB_DATABASE_URL"] = f"sqlite:///{database}"
        if sequential:
            env["JOB_CONCURRENCY"] = "1"
        elif self.concurrency is not None:
            env["JOB_CONCURRENCY"] = str(self.concurrency)
        return env


@contextmanager
def bench(
    folder: Path,
    latency: float,
    concurrency: int | None,
    behaviour: Behaviour | None = None,
    log_name: str = "moto.log",
) -> Iterator[Bench]:
    """`behaviour` (an AwsLike, say) acts on the measured proxy's traffic, not on the setup's."""
    with ExitStack() as stack:
        moto_url = stack.enter_context(moto_server(folder / log_name))
        runner = bootstrap_runner(moto_url, region=REGION)
        # Requests reach moto one at a time (see benchmarks.proxy): it is not thread-safe.
        proxy = stack.enter_context(
            LatencyProxy(moto_url, latency, serialize_upstream=True, behaviour=behaviour)
        )
        setup = stack.enter_context(LatencyProxy(moto_url, 0.0))
        setup.upstream_lock = proxy.upstream_lock  # one moto: one turn for both
        yield Bench(folder, proxy, setup, runner, concurrency)
