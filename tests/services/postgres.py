"""One PostgreSQL server per test session, and a throwaway database per test.

Docker (testcontainers, postgres:15) when a daemon answers; otherwise a temporary cluster from the
PostgreSQL binaries on this machine, which is what CI uses (it installs the `postgresql` package).
"""

from __future__ import annotations

import gc
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool

from tests.services import free_port, log_tail

IMAGE = "postgres:15"
SUPERUSER = "postgres"


def docker_available() -> bool:
    # docker-py leaks its socket when the daemon is unreachable (even from_env() connects, to
    # detect the API version). Under pytest's warnings-as-errors the ResourceWarning would
    # surface later as an unrelated test's error, so collect the leak here, silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            available = _ping_docker()
        finally:
            gc.collect()
    return available


def _ping_docker() -> bool:
    try:
        import docker  # type: ignore[import-untyped]  # no stubs; the SDK is optional here

        client = docker.from_env()
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no SDK, no socket, daemon down, permission denied: all mean "no docker"
        return False


def find_bindir() -> Path | None:
    """The bindir (initdb, pg_ctl) of one PostgreSQL version: PATH's, else the newest installed."""
    initdb = shutil.which("initdb")
    if initdb:
        # /usr/local/bin/initdb may be a symlink; pg_ctl must come from the same version's bindir.
        return Path(initdb).resolve().parent
    # Debian's layout when the package is installed but its bindir is not on PATH.
    bindirs = [Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    bindirs.sort(key=lambda bindir: int(bindir.parent.name) if bindir.parent.name.isdigit() else 0)
    return bindirs[-1] if bindirs else None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# How many free ports a local server tries before its start is a failure.
PORT_ATTEMPTS = 3


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield an admin SQLAlchemy URL (psycopg 3) to the `postgres` database of a fresh server."""
    if docker_available():
        with _docker_server() as url:
            yield url
        return
    bindir = find_bindir()
    if bindir is None:
        message = (
            "PostgreSQL is unavailable: no Docker daemon and no initdb on PATH or in"
            " /usr/lib/postgresql/*/bin. Install it with `apt-get install postgresql`"
            " (or start Docker)."
        )
        if in_ci():
            # A skip would let CI pass without ever exercising the PostgreSQL ledger.
            pytest.fail(f"{message} CI must not skip the PostgreSQL tests.", pytrace=False)
        pytest.skip(message)
    with _local_server(bindir) as url:
        yield url


@contextmanager
def _docker_server() -> Iterator[str]:
    # Deprecations inside testcontainers are not ours to fix; pytest turns warnings into errors.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.community.postgres import PostgresContainer

        container = PostgresContainer(IMAGE, driver="psycopg")
        container.start()
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5432)
        yield sqlalchemy.URL.create(
            "postgresql+psycopg",
            username=container.username,
            password=container.password,
            host=host,
            port=int(port),
            database="postgres",
        ).render_as_string(hide_password=False)
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            container.stop()


@contextmanager
def _local_server(bindir: Path) -> Iterator[str]:
    """A throwaway cluster: trust auth on loopback, durability off, deleted at the end."""
    as_root = os.geteuid() == 0
    # PostgreSQL refuses to run as root, so root runs it as the `postgres` user, who must be able
    # to reach the directory: /tmp, not pytest's 0700 basetemp or a TMPDIR under /root.
    base = Path(tempfile.mkdtemp(prefix="job-pg-", dir="/tmp" if as_root else None))
    data, log = base / "data", base / "server.log"
    if as_root:
        shutil.chown(base, user=SUPERUSER, group=SUPERUSER)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [str(bindir / args[0]), *args[1:]]
        if as_root:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        # cwd: the postgres user may not be allowed into ours (pytest chdirs into 0700 tmp dirs).
        return subprocess.run(command, cwd=base, capture_output=True, text=True, check=False)

    try:
        # --no-sync: initdb otherwise fsyncs every file, 5 s instead of 0.8 s here, for a
        # cluster that lives one session. C locale and UTF8 so results do not depend on the host.
        settings = ("--no-sync", "--encoding=UTF8", "--locale=C")
        init = run("initdb", "-D", str(data), "-A", "trust", "-U", SUPERUSER, *settings)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout}{init.stderr}")
        # A port found free may be taken before the server binds it (the suite's own clients
        # draw their ports from the same range): another port is tried then.
        for attempt in range(PORT_ATTEMPTS):
            port = free_port()
            options = (
                f"-p {port} -k {base} -c listen_addresses=127.0.0.1"
                # Nothing here must survive a crash; skipping durability makes DDL-heavy tests
                # fast.
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            start = run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
            if start.returncode == 0:
                break
            taken = "Address already in use" in log_tail(log)
            if not taken or attempt == PORT_ATTEMPTS - 1:
                raise RuntimeError(
                    f"pg_ctl start failed ({start.returncode}): {start.stdout}{start.stderr}\n"
                    f"{log}:\n{log_tail(log)}"
                )
        yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/postgres"
    finally:
        # Also after a failed `start -w`, which can leave a postmaster running; harmless if none.
        if (data / "postmaster.pid").exists():
            run("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def temporary_database(admin_url: str) -> Iterator[str]:
    """CREATE a uniquely named database, yield its URL, then DROP it even if sessions remain."""
    name = f"job_test_{uuid.uuid4().hex[:12]}"
    # CREATE/DROP DATABASE cannot run inside a transaction block. NullPool: nothing stays
    # connected to `postgres` between tests.
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            # render_as_string: str(URL) masks the password as ***, which would not connect.
            yield (
                sqlalchemy.make_url(admin_url)
                .set(database=name)
                .render_as_string(hide_password=False)
            )
        finally:
            # FORCE (PostgreSQL 13+) ends connections a test's engine left open.
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
