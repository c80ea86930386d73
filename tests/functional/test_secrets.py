"""Secret access keys, and role sessions' secrets and tokens, never reach the ledger, stdout,
stderr (at the most verbose log level) or an error message: every secret the emulator hands out
is captured and looked for everywhere."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from job.aws.iam.roles import RoleSession
from job.aws.session import make_aws
from job.config import parse_database_url
from job.emulator import EmulatorCredentials
from job.phases.provision import provision, start_run
from job.phases.teardown import teardown
from job.phases.verify import verify
from job.report import run_dict, run_text
from tests.faults import client_error
from tests.helpers import EMULATED, ROLE_SCENARIO, invoke, open_store

pytestmark = pytest.mark.usefixtures("aws")


class SecretCatcher:
    """Keeps the secret of every access key AWS creates (botocore's after-call)."""

    event = "after-call"

    def __init__(self) -> None:
        self.secrets: list[str] = []

    def __call__(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if model.name == "CreateAccessKey" and "AccessKey" in parsed:
            self.secrets.append(parsed["AccessKey"]["SecretAccessKey"])


class FailAfterKeys:
    """Fails the reader's probe with an odd error, to make verify take its error paths too."""

    def __call__(self, model: Any, **_: Any) -> None:
        if model.name == "DeleteObject":
            raise client_error("InternalError", model.name, "something odd")


def _ledger_text(database_url: str) -> str:
    url = parse_database_url(database_url)
    if url.get_backend_name() == "sqlite":
        files = [Path(url.database or ""), Path(f"{url.database}-wal")]
        return b"".join(p.read_bytes() for p in files if p.exists()).decode("latin-1")
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tables = ("runs", "resources", "phase_attempts", "checks")
            return "\n".join(
                str(row)
                for table in tables
                for row in connection.execute(text(f"SELECT * FROM {table}"))
            )
    finally:
        engine.dispose()


def test_no_secret_anywhere(aws: EmulatorCredentials, database_url: str, capsys) -> None:
    catcher = SecretCatcher()
    outputs = []
    for output in ("text", "json"):
        result = invoke(
            capsys,
            *("-vv", "run", "--output", output, "--database-url", database_url),
            hooks=[catcher, FailAfterKeys()],
        )
        # The odd DeleteObject errors leave those checks unanswered: incomplete, exit 4.
        assert result.exit_code == 4, result.stderr
        outputs += [result.stdout, result.stderr]
    assert len(catcher.secrets) == 4  # two runs, two users each
    assert "DEBUG" in "".join(outputs), "the most verbose level was really on"

    secrets = [*catcher.secrets, aws.secret_access_key]
    ledger = _ledger_text(database_url)
    for secret in secrets:
        assert len(secret) >= 20
        for place in outputs:
            assert secret not in place
        assert secret not in ledger


class SessionCatcher:
    """Keeps the secret and the session token of every role session STS hands out, and the
    secret of every access key."""

    event = "after-call"

    def __init__(self) -> None:
        self.secrets: list[str] = []

    def __call__(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if model.name == "AssumeRole" and "Credentials" in parsed:
            credentials = parsed["Credentials"]
            self.secrets += [credentials["SecretAccessKey"], credentials["SessionToken"]]
        elif model.name == "CreateAccessKey" and "AccessKey" in parsed:
            self.secrets.append(parsed["AccessKey"]["SecretAccessKey"])


def test_no_session_token_anywhere(
    aws: EmulatorCredentials, database_url: str, capsys, caplog
) -> None:
    """A role principal's temporary credentials live in memory only, like a user's key."""
    caplog.set_level(logging.DEBUG, logger="job")
    catcher = SessionCatcher()
    job_aws = make_aws("us-east-1", call_hooks=[catcher, FailAfterKeys()])
    with open_store(database_url) as store:
        run = start_run(store, job_aws, "job", EMULATED, ROLE_SCENARIO)
        provision(store, job_aws, run_id=run.id)
        run = verify(store, job_aws, run_id=run.id, measure_revocation=True)
        # The odd DeleteObject answers fail the auditor's checks: the error paths were taken.
        assert not all(check.passed for check in store.latest_checks(run))
        teardown(store, job_aws, run_id=run.id)
        shown = [json.dumps(run_dict(run, store.latest_checks(run))), run_text(run, run.checks)]
    assert len(catcher.secrets) == 3  # the auditor's secret and token, the writer's secret
    assert any(r.levelno == logging.DEBUG or r.name.startswith("job") for r in caplog.records)
    captured = capsys.readouterr()
    places = [captured.out, captured.err, caplog.text, *shown]
    ledger = _ledger_text(database_url)
    for secret in catcher.secrets:
        assert len(secret) >= 20
        for place in places:
            assert secret not in place
        assert secret not in ledger


def test_a_role_session_does_not_show_its_secrets() -> None:
    session = RoleSession("ASIAEXAMPLE", "s" * 40, "t" * 300)
    assert "s" * 40 not in repr(session) and "t" * 300 not in repr(session)
