"""The command line's contract: help, global options anywhere, JSON output, and bad input that
gets one line, the documented exit code, no traceback, and nothing created."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import click
import pytest

from job.cli import _stopped, cli
from job.config import Settings
from job.emulator import EmulatorCredentials
from job.runtime import App
from tests.helpers import invoke, open_store


def _walk(group: click.Group, path: list[str]) -> list[list[str]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _walk(command, [*path, name])
        else:
            found.append([*path, name])
    return found


# Walked from the CLI itself, as sqlite-utils' docs test does: a new command is covered as soon as
# it exists.
COMMANDS = _walk(cli, [])


def test_the_walk_finds_nested_commands() -> None:
    assert ["runs", "list"] in COMMANDS and ["db", "upgrade"] in COMMANDS and [] in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "job")
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(capsys, *command, "--help")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: job")
    group = cli
    for name in command:
        group = group.commands[name]  # type: ignore[attr-defined]
    if not isinstance(group, click.Group):  # a group's help lists its commands instead
        assert "Example: job" in result.stdout
    assert not Path("job.db").exists(), "--help must not touch the ledger"


def _assert_one_line_error(result, code: int, *words: str) -> None:
    assert result.exit_code == code
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("job: error:")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


def test_unknown_run_id_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["runs", "show", "nosuchrun"], ["verify", "--run-id", "nosuchrun"]):
        result = invoke(capsys, *command)
        _assert_one_line_error(result, 2, "unknown run id 'nosuchrun'", "job runs list")


def test_unknown_run_id_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(capsys, "runs", "show", "nosuchrun", "--output", "json")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "status": "error",
        "error": "unknown run id 'nosuchrun': `job runs list` shows the runs in the ledger",
        "exit_code": 2,
    }


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("not a url", ("invalid database URL",)),
        ("mysql://db/job", ("unsupported database 'mysql'",)),
        ("postgresql+asyncpg://db/job", ("unsupported PostgreSQL driver",)),
    ],
)
def test_malformed_database_url(url: str, words: tuple[str, ...], capsys) -> None:
    _assert_one_line_error(invoke(capsys, "runs", "list", "--database-url", url), 2, *words)


def test_database_url_from_the_environment(monkeypatch, capsys) -> None:
    monkeypatch.setenv("JOB_DATABASE_URL", "nonsense")
    _assert_one_line_error(invoke(capsys, "runs", "list"), 2, "invalid database URL")


@pytest.mark.parametrize("prefix", ["Job", "job_x", "-job", "job-", "", "a" * 21])
def test_invalid_prefix_creates_nothing(prefix: str, aws: EmulatorCredentials, capsys) -> None:
    result = invoke(capsys, "provision", "--prefix", prefix)
    _assert_one_line_error(result, 2, "invalid prefix")
    assert not Path("job.db").exists()


def test_invalid_output_and_missing_option(capsys) -> None:
    result = invoke(capsys, "runs", "list", "--output", "yaml")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    result = invoke(capsys, "verify")
    assert result.exit_code == 2 and "--run-id" in result.stderr


def test_invalid_environment_values(monkeypatch, capsys) -> None:
    monkeypatch.setenv("JOB_LOG_LEVEL", "loud")
    _assert_one_line_error(invoke(capsys, "runs", "list"), 2, "JOB_LOG_LEVEL")
    monkeypatch.delenv("JOB_LOG_LEVEL")
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "-5m")
    _assert_one_line_error(invoke(capsys, "runs", "list"), 2, "invalid duration")


def test_unreachable_ledger_is_exit_4(capsys, postgres_server: str) -> None:
    # A port nothing listens on; the message names the URL but never its password.
    result = invoke(
        capsys, "runs", "list", "--database-url", "postgresql://job:hunter2@127.0.0.1:9/job"
    )
    _assert_one_line_error(result, 4, "cannot open the ledger", "127.0.0.1:9")
    assert "hunter2" not in result.stderr


def test_global_options_before_or_after_the_command(aws, capsys) -> None:
    before = invoke(capsys, "--output", "json", "--prefix", "canary", "provision")
    after = invoke(capsys, "provision", "--output", "json", "--prefix", "canary")
    for result in (before, after):
        assert result.exit_code == 0, result.stderr
        document = result.json()
        assert document["status"] == "provisioned"
        assert all(r["name"].startswith(("canary-", "probe/")) for r in document["resources"])
    listed = invoke(capsys, "runs", "list", "--output", "json").json()
    assert [r["run_id"] for r in listed["runs"]] == [
        after.json()["run_id"],
        before.json()["run_id"],
    ]


def test_no_region_and_no_credentials(monkeypatch, tmp_path, capsys) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    # Nothing may be asked of an instance metadata service that is not there.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    _assert_one_line_error(invoke(capsys, "provision"), 2, "no AWS region")
    result = invoke(capsys, "provision", "--region", "eu-west-1")
    _assert_one_line_error(result, 4, "no AWS credentials")


def test_other_accounts_credentials_are_refused(aws, capsys) -> None:
    run_id = invoke(capsys, "provision").stdout.strip()
    with open_store("sqlite:///job.db") as store:
        run = store.get_run(run_id)
        run.account_id = "999999999999"
        store.session.commit()
    for command in ("verify", "teardown"):
        result = invoke(capsys, command, "--run-id", run_id)
        _assert_one_line_error(result, 4, "account 123456789012", "account 999999999999")
    shown = invoke(capsys, "runs", "show", run_id, "--output", "json").json()
    assert {r["state"] for r in shown["resources"]} == {"created"}, "nothing was touched"


def test_db_upgrade_is_idempotent(capsys) -> None:
    for _ in range(2):
        result = invoke(capsys, "db", "upgrade", "--database-url", "sqlite:///ledger/here.db")
        assert result.exit_code == 0
    assert Path("ledger/here.db").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["teardown"], ("give either --run-id ID or --stale",)),
        (["teardown", "--run-id", "x", "--stale"], ("give either --run-id ID or --stale",)),
        (["teardown", "--stale", "--older-than", "5"], ("invalid duration '5'",)),
        (["teardown", "--stale", "--older-than", "-1h"], ("invalid duration '-1h'",)),
    ],
)
def test_teardown_needs_one_target(args: list[str], words: tuple[str, ...], capsys) -> None:
    _assert_one_line_error(invoke(capsys, *args), 2, *words)


def test_stale_teardown_with_nothing_stale(aws, capsys) -> None:
    run_id = invoke(capsys, "provision").stdout.strip()
    result = invoke(capsys, "teardown", "--stale", "--output", "json")
    assert result.exit_code == 0
    assert result.json() == {"status": "ok", "runs": []}
    result = invoke(capsys, "teardown", "--stale", "--older-than", "0s", "--output", "json")
    assert result.json() == {
        "status": "ok",
        "runs": [{"run_id": run_id, "outcome": "torn_down", "error": None}],
    }


_STATED_DEFAULT = re.compile(r"default ([^\];]+)\]")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "job")
def test_every_stated_default_is_the_real_one(command: list[str]) -> None:
    """Help that states a default ("[env JOB_CONCURRENCY; default 16]") states the one the
    settings really take when nothing is given: the help once said 10 while the default was 16."""
    settings = Settings.load(environ={})
    group: click.Command = cli
    for name in command:
        group = group.commands[name]  # type: ignore[attr-defined]
    stated = {
        param.name: match.group(1)
        for param in group.params
        if isinstance(param, click.Option)
        and (match := _STATED_DEFAULT.search(param.help or "")) is not None
    }
    assert "concurrency" in stated and "database_url" in stated
    for name, value in stated.items():
        real = getattr(settings, str(name))
        if real is None:  # described in words: "the built-in seed", "boto3's own"
            continue
        shown = real.render_as_string() if hasattr(real, "render_as_string") else str(real)
        assert value == shown, f"--{name} says default {value}, but it is {shown}"


class InterruptAt:
    """Ctrl-C while the job is at `operation`."""

    def __init__(self, operation: str) -> None:
        self.operation = operation

    def __call__(self, model: Any, **_: Any) -> None:
        if model.name == self.operation:
            raise KeyboardInterrupt


def test_an_interrupted_run_names_the_real_run_in_its_hint(aws, capsys, monkeypatch) -> None:
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "2s")
    result = invoke(capsys, "run", hooks=[InterruptAt("CreateAccessKey")])
    assert result.exit_code == 130
    with open_store("sqlite:///job.db") as store:
        [run] = store.list_runs()
    assert f"`job teardown --run-id {run.id}`" in result.stderr
    assert "--run-id ID" not in result.stderr


def test_a_stopped_read_only_command_speaks_of_no_run() -> None:
    app = App()
    app.command = "scenario validate"
    assert _stopped(app, "terminated (SIGTERM)") == "terminated (SIGTERM); nothing was changed"
    app.command = "teardown"
    assert "job teardown" not in _stopped(app, "interrupted")
    app.run_id = "abc"
    assert _stopped(app, "interrupted").endswith("`job teardown --run-id abc`")
