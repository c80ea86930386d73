"""Logging on stderr: lines for people, JSON objects for log shippers, and a status line for long
waits when a person is watching a terminal.

The core logs waits as ordinary records marked `extra=WAITING` (at INFO); only the status line
shows them at the default level, so cron mail, CI logs and `--output json` stay quiet.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from job.config import LogFormat, OutputFormat

# Marks a record as "what the job is waiting for now": log.info(..., extra=WAITING).
WAITING = {"waiting": True}
_NOISY = ("botocore", "boto3", "urllib3", "s3transfer", "werkzeug")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message. No tracebacks: an
    error is already one line by the time it is logged."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                    timespec="milliseconds"
                ),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


class StatusLine(logging.Handler):
    """Shows the latest wait on one terminal line, rewritten in place; cleared when the command
    ends or another log line is written."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.shown = False
        self.addFilter(lambda record: bool(getattr(record, "waiting", False)))

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        self.stream.write(f"\r\x1b[K{text}")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


class _ClearingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The ordinary handler; it wipes the status line before writing, so lines never interleave."""

    def __init__(self, stream: TextIO, status: StatusLine | None) -> None:
        super().__init__(stream)
        self.status = status

    def emit(self, record: logging.LogRecord) -> None:
        if self.status is not None:
            self.status.clear()
        # Whatever stderr is now (an embedding program or a test may have replaced it since).
        self.stream = sys.stderr
        super().emit(record)


def wants_status_line(stream: Any, output: OutputFormat, log_format: LogFormat, level: int) -> bool:
    """Only for a person at a terminal: not in CI, not for machine-read output, not when -v
    already prints every wait as a log line."""
    return (
        output is OutputFormat.TEXT
        and log_format is LogFormat.TEXT
        and level > logging.INFO
        and not os.environ.get("CI")
        and bool(getattr(stream, "isatty", lambda: False)())
    )


def configure(level_name: str, log_format: LogFormat, output: OutputFormat) -> StatusLine | None:
    """Set up the root logger; returns the status line when there is one, for clearing at exit."""
    stream = sys.stderr
    level = logging.getLevelName(level_name.upper())
    status = StatusLine(stream) if wants_status_line(stream, output, log_format, level) else None
    handler = _ClearingHandler(stream, status)
    handler.setLevel(level)
    handler.setFormatter(
        JsonFormatter()
        if log_format is LogFormat.JSON
        else logging.Formatter("job: %(levelname)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler] if status is None else [handler, status]
    root.setLevel(min(level, logging.INFO) if status is not None else level)
    # botocore's debug logs print response bodies, CreateAccessKey's secret among them.
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(logging.INFO, level))
    return status
