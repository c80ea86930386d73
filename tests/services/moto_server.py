"""One moto server per test session, as a real subprocess.

A subprocess rather than moto's in-process ThreadedMotoServer: the job under test talks to it over
HTTP exactly like it talks to AWS, moto's global state cannot leak into the test process, and a
crash or hang in moto shows up as a dead process with a log instead of a wedged test run.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.services import free_port, log_tail

START_TIMEOUT = 30.0  # seconds; a cold start imports moto and werkzeug, about 0.5 s here
# The server's configuration; docker-compose.yml's `moto` service must match it (test_recipes.py).
SETTINGS = {
    # AWS's managed policies (ReadOnlyAccess, ...) exist like in a real account. moto loads them
    # when an account's IAM backend is created, i.e. again after every reset.
    "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
    # Enforce IAM from the first request; job.emulator.bootstrap_runner re-arms it after the few
    # unauthenticated calls that create the runner.
    "INITIAL_NO_AUTH_ACTION_COUNT": "0",
}


def _answers(host: str, port: int) -> bool:
    """Whether moto serves requests yet.

    A 200 from moto's own (tiny, while empty) state dump, so that another program that won the
    race for the port does not pass for moto.
    """
    connection = http.client.HTTPConnection(host, port, timeout=1)
    try:
        connection.request("GET", "/moto-api/data.json")
        response = connection.getresponse()
        response.read()
    except OSError:  # refused until werkzeug listens
        return False
    finally:
        connection.close()
    return response.status == 200


@contextmanager
def moto_server(
    log_path: Path,
    # moto's own server, with a reset that does half the work (moto_main.py says how).
    server: Sequence[str] = (sys.executable, str(Path(__file__).with_name("moto_main.py"))),
    environment: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Start `server` (a moto server's command line, taking moto's `-H HOST -p PORT`) on a free
    loopback port, with SETTINGS added to `environment` (default: this process's), and yield its
    endpoint URL."""
    host, port = "127.0.0.1", free_port()
    env = {**(os.environ if environment is None else environment), **SETTINGS}
    command = [*server, "-H", host, "-p", str(port)]
    # werkzeug logs every request; a file keeps the terminal readable and survives for post-mortems.
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(host, port):
            if process.poll() is not None:
                raise RuntimeError(
                    f"moto server exited with status {process.returncode} before answering;"
                    f" {log_path}:\n{log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"moto server did not answer on {host}:{port} within {START_TIMEOUT:.0f} s;"
                    f" {log_path}:\n{log_tail(log_path)}"
                )
            time.sleep(0.05)
        yield f"http://{host}:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
