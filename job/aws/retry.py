"""Bounded waiting for IAM's eventual consistency.

botocore's retry modes cover throttling and transient faults. They do not cover AWS answering
"no such user" for a user created a moment ago, or "invalid access key" for a key a few seconds
old: those are ordinary errors to botocore, and expected ones to us for a bounded while.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import TypeVar

from botocore.exceptions import ClientError

from job.aws.session import error_code
from job.logs import WAITING

T = TypeVar("T")
log = logging.getLogger(__name__)


def until_consistent(
    call: Callable[[], T],
    *,
    retry_on: Collection[str],
    timeout: timedelta,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call until it stops failing with one of `retry_on`'s error codes or `timeout` has passed,
    backing off from 0.5 s to 5 s; then the last error is raised as it is."""
    deadline = clock() + timeout.total_seconds()
    delay = 0.5
    while True:
        try:
            return call()
        except ClientError as error:
            code = error_code(error)
            if code not in retry_on or clock() + delay > deadline:
                raise
            log.info(
                "waiting for AWS to see %s (%s); retrying in %.1fs",
                what,
                code,
                delay,
                extra=WAITING,
            )
            sleep(delay)
            delay = min(delay * 2, 5.0)
