"""What a hostile (or unlucky) user can hand the job: each ends in one line and the contract's
exit code, never a traceback, and nothing is created in AWS by a command that refused to start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import update
from sqlalchemy.pool import NullPool

from job.emulator import EmulatorCredentials
from job.ledger.models import Run, utcnow
from job.policy_files import MAX_POLICY_FILE_BYTES
from job.scenario_file import MAX_SCENARIO_BYTES, seed_source
from tests.faults import CallLog, FailTimes
from tests.helpers import Result, invoke, leftovers, open_store

BAD_BYTES = b"\xff\xfe".decode("utf-8", "surrogateescape")  # what Python makes of $'\xff\xfe'


def one_line_error(result: Result, code: int, *words: str) -> str:
    """The error's one line, from stderr (text) or from the one JSON object (json)."""
    assert result.exit_code == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    if result.stdout.startswith("{"):
        document = result.json()
        assert document["status"] == "error" and document["exit_code"] == code
        line = document["error"]
    else:
        lines = [line for line in result.stderr.splitlines() if line.startswith("job: error:")]
        assert len(lines) == 1, result.stderr
        line = lines[0]
    for word in words:
        assert word in line
    return str(line)


@pytest.mark.parametrize("where", ["flag", "environment"])
def test_a_port_that_is_not_a_number(where: str, capsys, monkeypatch) -> None:
    url = "postgresql://postgres:hunter2@127.0.0.1:notaport/db"
    if where == "flag":
        result = invoke(capsys, "runs", "list", "--database-url", url)
    else:
        monkeypatch.setenv("JOB_DATABASE_URL", url)
        result = invoke(capsys, "runs", "list")
    line = one_line_error(result, 2, "invalid port")
    assert "hunter2" not in line


@pytest.mark.parametrize("command", [["runs", "show"], ["verify", "--run-id"]])
def test_a_run_id_that_is_not_text(command: list[str], database_url: str, capsys) -> None:
    # Both ledgers: PostgreSQL would otherwise refuse to encode it, SQLite to bind it.
    invoke(capsys, "db", "upgrade", "--database-url", database_url)
    result = invoke(capsys, *command, BAD_BYTES, "--database-url", database_url)
    one_line_error(result, 2, "unknown run id")


def test_a_run_id_that_is_not_text_from_a_shell(tmp_path: Path) -> None:
    """The same through a real process: argv bytes a shell passed, and an error printed on a
    stream that must not choke on them."""
    env = {**os.environ, "JOB_DATABASE_URL": f"sqlite:///{tmp_path}/job.db"}
    done = subprocess.run(
        [sys.executable.encode(), b"-m", b"job", b"runs", b"show", b"\xff\xfe"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert b"Traceback" not in done.stderr
    assert b"unknown run id" in done.stderr


@pytest.mark.parametrize(
    "args", [["teardown", "--stale"], ["sweep"], ["sweep", "--execute"]], ids=" ".join
)
def test_an_enormous_duration(args: list[str], capsys) -> None:
    result = invoke(capsys, *args, "--older-than", "1000000000d", "--output", "json")
    one_line_error(result, 2, "out of range")


@pytest.mark.parametrize("command", ["run", "provision", "sweep"])
def test_a_region_that_cannot_be_one(command: str, aws: EmulatorCredentials, capsys) -> None:
    calls = CallLog()
    result = invoke(capsys, command, "--region", "eu west 1!", hooks=[calls])
    one_line_error(result, 2, "invalid AWS region")
    assert calls.names == []


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
@pytest.mark.parametrize(
    "command",
    [["run"], ["provision"], ["verify", "--run-id", "a"], ["teardown", "--stale"], ["sweep"]],
    ids=" ".join,
)
def test_an_in_memory_ledger_is_refused(
    url: str, command: list[str], aws: EmulatorCredentials, capsys
) -> None:
    """It would forget, when the process exits, whatever it recorded as created."""
    calls = CallLog()
    result = invoke(capsys, *command, "--database-url", url, hooks=[calls])
    one_line_error(result, 2, "in memory")
    assert calls.names == []


def test_a_damaged_sqlite_ledger(aws: EmulatorCredentials, sqlite_url: str, capsys) -> None:
    assert invoke(capsys, "db", "upgrade", "--database-url", sqlite_url).exit_code == 0
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    for sidecar in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        sidecar.unlink(missing_ok=True)
    pages = path.read_bytes()
    path.write_bytes(pages[:100] + b"\x5a" * (len(pages) - 100))  # the header survives
    calls = CallLog()
    result = invoke(capsys, "run", "--database-url", sqlite_url, hooks=[calls])
    one_line_error(result, 4, "malformed", "restore it from a backup")
    assert calls.names == []


def test_a_ledger_from_a_newer_job(aws: EmulatorCredentials, database_url: str, capsys) -> None:
    assert invoke(capsys, "db", "upgrade", "--database-url", database_url).exit_code == 0
    engine = sqlalchemy.create_engine(database_url.replace("postgresql:", "postgresql+psycopg:"))
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    engine.dispose()
    calls = CallLog()
    for command in (["run"], ["db", "upgrade"], ["runs", "list"]):
        result = invoke(capsys, *command, "--database-url", database_url, hooks=[calls])
        one_line_error(result, 2, "written by a newer job", "0099", "upgrade job")
    assert calls.names == []


def test_a_bad_choice_with_json_output_is_one_json_object(capsys) -> None:
    for args in (
        ["runs", "list", "--status", "bogus", "--output", "json"],
        ["--output", "json", "runs", "list", "--status", "bogus"],
        ["runs", "list", "--status", "bogus", "--output=json"],
    ):
        result = invoke(capsys, *args)
        assert result.stderr == ""
        one_line_error(result, 2, "bogus")


def test_eight_processes_open_a_fresh_ledger_at_once(tmp_path: Path) -> None:
    """Each job process upgrades a ledger it finds fresh; on SQLite as on PostgreSQL, one does
    while the others wait, rather than all but one failing on "table runs already exists"."""
    env = {**os.environ, "JOB_DATABASE_URL": f"sqlite:///{tmp_path}/fresh.db"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "job", "runs", "list", "--output", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        # --output json puts a failure's one line on stdout: both, so that a failure says why.
        assert process.returncode == 0, stdout + stderr
        assert json.loads(stdout) == {"status": "ok", "runs": []}


def _age_all_runs(database_url: str) -> None:
    with open_store(database_url) as store:
        store.session.execute(update(Run).values(updated_at=utcnow() - timedelta(hours=2)))
        store.session.commit()


def test_a_stale_teardown_that_fails_for_some_runs_says_so_on_top(
    aws: EmulatorCredentials, sqlite_url: str, capsys
) -> None:
    run_ids = [
        invoke(capsys, "provision", "--database-url", sqlite_url).stdout.strip() for _ in range(2)
    ]
    _age_all_runs(sqlite_url)
    refused = FailTimes({"DeleteBucket"}, "AccessDenied", times=1_000)
    result = invoke(
        capsys,
        *("teardown", "--stale", "--concurrency", "1", "--output", "json"),
        *("--database-url", sqlite_url),
        hooks=[refused],
    )
    line = one_line_error(result, 4, "2 of 2", "lack s3:DeleteBucket")
    assert "\n" not in line
    assert sorted(run["run_id"] for run in result.json()["runs"]) == sorted(run_ids)
    _age_all_runs(sqlite_url)  # the failed teardowns were activity
    text = invoke(capsys, "teardown", "--stale", "--database-url", sqlite_url, hooks=[refused])
    one_line_error(text, 4, "2 of 2")
    assert all(run_id in text.stdout for run_id in run_ids)  # the table, then the error
    # Without the refusal the same command finishes them.
    _age_all_runs(sqlite_url)
    assert invoke(capsys, "teardown", "--stale", "--database-url", sqlite_url).exit_code == 0
    for run_id in run_ids:
        assert leftovers(aws, run_id) == []


def test_an_unexpected_error_is_still_one_line(
    aws: EmulatorCredentials, sqlite_url: str, capsys, monkeypatch
) -> None:
    # The user the bug stopped was recorded, never created: teardown looks for it this long.
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "1s")

    def broken(model: Any, **_: Any) -> None:
        if model.name == "CreateUser":
            raise ZeroDivisionError("a bug")

    result = invoke(capsys, "provision", "--database-url", sqlite_url, hooks=[broken])
    line = one_line_error(result, 4)
    assert "ZeroDivisionError" in line and "bug" in line
    with open_store(sqlite_url) as store:
        [run] = store.list_runs()
    assert (
        invoke(capsys, "teardown", "--run-id", run.id, "--database-url", sqlite_url).exit_code == 0
    )
    assert leftovers(aws, run.id) == []


@dataclass
class LedgerGoesAway:
    """At the `at`-th AWS call, the ledger's database stops answering: its connections are ended
    and new ones refused, as when the server is stopped (but only this test's database)."""

    admin_url: str
    database: str
    at: int
    seen: int = field(default=0)

    def __call__(self, model: Any, **_: Any) -> None:
        self.seen += 1
        if self.seen == self.at:
            allow(self.admin_url, self.database, False)


def allow(admin_url: str, database: str, connections: bool) -> None:
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.exec_driver_sql(
            f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {str(connections).lower()}'
        )
        if not connections:
            connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
            )
    admin.dispose()


@pytest.mark.parametrize("command", ["provision", "run"])
def test_the_postgresql_ledger_going_away_mid_run(
    command: str,
    aws: EmulatorCredentials,
    postgres_server: str,
    postgres_url: str,
    capsys,
    monkeypatch,
) -> None:
    # Creates recorded and then cut short are looked for this long by the teardown.
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "1s")
    database = sqlalchemy.make_url(postgres_url).database
    assert database is not None
    away = LedgerGoesAway(postgres_server, database, at=8)
    try:
        result = invoke(capsys, command, "--database-url", postgres_url, hooks=[away])
    finally:
        allow(postgres_server, database, True)
    assert away.seen >= away.at, "the ledger went away during the command"
    one_line_error(result, 4, "ledger")
    # Back again: the run's own teardown finds everything from the ledger alone.
    with open_store(postgres_url) as store:
        [run] = store.list_runs()
    torn = invoke(capsys, "teardown", "--run-id", run.id, "--database-url", postgres_url)
    assert torn.exit_code == 0, torn.stderr
    assert leftovers(aws, run.id) == []


# Scenario files that must be refused at once, wherever the job reads one, with what the one line
# says. The seed is valid: each file is refused for the one thing done to it.
_SEED = seed_source().text
HOSTILE_SCENARIOS = {
    # A valid scenario, one byte over the cap, padded with a comment.
    "oversize": (
        _SEED + "#" + "x" * (MAX_SCENARIO_BYTES - len(_SEED.encode())) + "\n",
        ["larger than 1,048,576 bytes (1 MiB)", "keep object texts short"],
    ),
    # Anchors of aliases (nine levels of nine hung `scenario validate` for good).
    "aliases": (
        _SEED
        + "x0: &x0 [a, a, a, a, a, a, a, a, a]\n"
        + "x1: &x1 [*x0, *x0, *x0, *x0, *x0, *x0, *x0, *x0, *x0]\n"
        + "x2: [*x1, *x1, *x1, *x1, *x1, *x1, *x1, *x1, *x1]\n",
        ["YAML anchor &x0 is not allowed", "write the value out in full instead"],
    ),
    # A policy pasted as IAM writes it, with what IAM would refuse in it: the place is named.
    "a document IAM would refuse": (
        _SEED.replace(
            """      - {effect: Allow, actions: [s3:GetObject], resources: ["bucket:data/*"]}""",
            """      {Version: "2012-10-17", Statement: {Effect: Allow, Action: s3:GetObject,"""
            """ Resource: "bucket:data/*", Condition: {StringEqualz: {"s3:prefix": a}}}}""",
        ),
        ["users.reader.policy.Statement.Condition.StringEqualz: unknown condition operator"],
    ),
    "a context its probe cannot set": (
        _SEED.replace(
            'action: s3:ListBucket, resource: "bucket:data", result: deny}',
            'action: s3:ListBucket, resource: "bucket:data", result: deny, context: {tags: {}}}',
            1,
        ),
        ["expect[3].context.tags: s3:ListBucket sets no tags; it takes prefix, delimiter"],
    ),
    "a write to what the run did not create": (
        _SEED.replace(
            '"bucket:data/probe/writer-putobject.txt"', '"arn:aws:s3:::prod-data/x.txt"', 1
        ),
        ["expect[0].resource: s3:PutObject changes what it is aimed at"],
    ),
    "a managed policy that is not an ARN": (
        _SEED.replace("  reader:\n", "  reader:\n    managed_policies: [ReadOnlyAccess]\n"),
        ["users.reader.managed_policies[0]"],
    ),
    # A group has no credentials: a cell naming it could prove nothing.
    "a cell naming a group": (
        _SEED.replace("  reader:\n", "  reader:\n    groups: [team]\n")
        .replace("users:\n", "groups:\n  team: {}\nusers:\n", 1)
        .replace("{principal: reader,", "{principal: team,", 1),
        ['.principal: "team" is a group', "name a user in it (users.NAME.groups)"],
    ),
    "a membership of a group the file does not define": (
        _SEED.replace("  reader:\n", "  reader:\n    groups: [team]\n"),
        ['users.reader.groups[0]: unknown group "team"; the groups are: none'],
    ),
    # A read of a key the scenario never puts there: on AWS, 403 without s3:ListBucket, as if
    # denied. https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html (Permissions)
    "read of a missing object": (
        _SEED.replace("bucket:elsewhere/probe/fixture.txt", "bucket:elsewhere/probe/missing.txt"),
        [
            "expect[4]: writer s3:GetObject bucket:elsewhere/probe/missing.txt:",
            "S3 answers 403 AccessDenied, not 404, for a missing key",
            "create the object under buckets.elsewhere.objects",
        ],
    ),
}
# The seed with the reader's policy in a file of its own, and what each such file may hold.
_READER_POLICY = """    policy:
      - {effect: Allow, actions: [s3:GetObject], resources: ["bucket:data/*"]}
"""
_SEED_WITH_FILE = _SEED.replace(_READER_POLICY, "    policy_file: policies/reader.json\n", 1)
assert _SEED_WITH_FILE != _SEED
HOSTILE_POLICY_FILES = {
    "a policy file over its cap": (
        '{"Statement": []}' + " " * MAX_POLICY_FILE_BYTES,
        ["users.reader.policy_file: policies/reader.json: larger than 65,536 bytes (64 KiB)"],
    ),
    "a policy file of aliases": (
        "x0: &x0 [a, a, a, a, a, a, a, a, a]\nx1: [*x0, *x0, *x0, *x0, *x0, *x0, *x0, *x0]\n",
        ["users.reader.policy_file: policies/reader.json: line 1, column 5: YAML anchor &x0"],
    ),
    "a policy file IAM would refuse": (
        '{"Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "bucket:nope"}}',
        [
            "users.reader.policy_file: policies/reader.json: Statement.Resource: unknown bucket"
            ' "nope"'
        ],
    ),
    "a policy file that is not there": (
        None,
        ["users.reader.policy_file: policies/reader.json: cannot read it: No such file"],
    ),
}
for _name, (_text, _words) in HOSTILE_POLICY_FILES.items():
    HOSTILE_SCENARIOS[_name] = (_SEED_WITH_FILE, _words)
# A policy file named by an absolute path (here, one that never ends): refused before it is read.
HOSTILE_SCENARIOS["a policy file named by an absolute path"] = (
    _SEED.replace(_READER_POLICY, "    policy_file: /dev/zero\n", 1),
    ["users.reader.policy_file: /dev/zero: an absolute path"],
)


@pytest.mark.parametrize("name", list(HOSTILE_SCENARIOS))
def test_a_hostile_scenario_is_refused_wherever_it_is_read(
    name: str, aws: EmulatorCredentials, sqlite_url: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    text, words = HOSTILE_SCENARIOS[name]
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    policy_file = HOSTILE_POLICY_FILES.get(name, (None,))[0]
    if policy_file is not None:
        (tmp_path / "policies").mkdir()
        (tmp_path / "policies" / "reader.json").write_text(policy_file)
    calls = CallLog()
    ledger = ("--database-url", sqlite_url)
    for args in (
        ["scenario", "validate", str(path)],
        ["scenario", "validate", str(path), "--output", "json"],
        ["scenario", "show", str(path)],
        ["run", "--scenario", str(path), *ledger],
        ["provision", "--scenario", str(path), *ledger, "--output", "json"],
        ["runner-policy", "--scenario", str(path)],
    ):
        line = one_line_error(invoke(capsys, *args, hooks=[calls]), 2, str(path), *words)
        assert len(line) < 600
    monkeypatch.setenv("JOB_SCENARIO", str(path))
    for args in (["run", *ledger], ["scenario", "show"]):
        one_line_error(invoke(capsys, *args, hooks=[calls]), 2, str(path), *words)
    assert calls.names == []
    with open_store(sqlite_url) as store:
        assert store.list_runs() == []
