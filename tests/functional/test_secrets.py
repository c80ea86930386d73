"""Secret access keys never reach the ledger, stdout, stderr (at the most verbose log level) or
an error message: every secret the emulator hands out is captured and looked for everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from job.config import parse_database_url
from job.emulator import EmulatorCredentials
from tests.faults import client_error
from tests.helpers import invoke

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
        assert result.exit_code == 1, result.stderr  # the odd DeleteObject errors fail the checks
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
