"""Tools the tests share: running the CLI in-process, opening a ledger, reading the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from job.cli import main
from job.config import parse_database_url
from job.emulator import EmulatorCredentials
from job.ledger.store import Store
from job.runtime import Ledger


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def invoke(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run `job ARGS` as the console script would, in this process."""
    capsys.readouterr()
    try:
        main(list(args))
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    else:  # pragma: no cover - main always exits
        code = 0
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


@contextmanager
def open_store(url: str) -> Iterator[Store]:
    ledger = Ledger(parse_database_url(url)).open()
    try:
        with ledger.session() as session:
            yield Store(session)
    finally:
        ledger.dispose()


def admin_client(credentials: EmulatorCredentials, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=credentials.endpoint_url,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        region_name="us-east-1",
    )


def leftovers(credentials: EmulatorCredentials, run_id: str) -> list[str]:
    """Everything in the emulator whose name carries the run id: must be empty after teardown."""
    iam = admin_client(credentials, "iam")
    s3 = admin_client(credentials, "s3")
    found = [
        f"user {user['UserName']}"
        for page in iam.get_paginator("list_users").paginate()
        for user in page["Users"]
        if run_id in user["UserName"]
    ]
    for page in iam.get_paginator("list_users").paginate():
        for user in page["Users"]:
            if run_id in user["UserName"]:
                keys = iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]
                found += [f"access key {key['AccessKeyId']}" for key in keys]
    found += [
        f"policy {policy['PolicyName']}"
        for page in iam.get_paginator("list_policies").paginate(Scope="Local")
        for policy in page["Policies"]
        if run_id in policy["PolicyName"]
    ]
    found += [
        f"bucket {bucket['Name']}"
        for bucket in s3.list_buckets().get("Buckets", [])
        if run_id in bucket["Name"]
    ]
    return found
