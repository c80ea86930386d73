"""Bounded waiting for AWS's eventual consistency.

botocore's retry modes cover throttling and transient faults. They do not cover AWS answering
"no such user" for a user created a moment ago, "no such bucket" for a bucket created a moment ago,
"invalid access key" for a key a few seconds old, or S3's 409 OperationAborted for a bucket write
that met another still in progress: those are ordinary errors to botocore, and expected ones to
us for a bounded while.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection, Iterator
from datetime import timedelta
from typing import TypeVar

from botocore.exceptions import ClientError

from job.aws.session import error_code
from job.logs import WAITING

T = TypeVar("T")
log = logging.getLogger(__name__)


# How often a wait asks AWS again, once past its first quick tries: what a wait can overshoot
# AWS's own lag by, at most. A refused call is one cheap round trip, and the lags waited for
# (a new key, role or session, a policy, a bucket) are seconds long. Backing off to 5 s, as this
# once did, let a run notice a working key up to 5 s late: `make bench`'s seed run with a 6 s
# key lag took 1.7 s beyond the lag.
# Throttling is not waited for here: botocore's adaptive retry mode backs off from it.
POLL_INTERVAL = 0.5
FIRST_POLL = 0.2


def _delays(jitter: Callable[[], float] = random.random) -> Iterator[float]:
    """0.2 s, then every 0.5 s, each up to a fifth shorter at random (`jitter` in [0, 1)), so
    that the waits of many threads and processes do not ask AWS in step."""
    delay = FIRST_POLL
    while True:
        yield delay * (1 - 0.2 * jitter())
        delay = POLL_INTERVAL


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
    every POLL_INTERVAL (`_delays`), the last time at the deadline itself; then the last error is
    raised as it is."""
    deadline = clock() + timeout.total_seconds()
    for delay in _delays():
        try:
            return call()
        except ClientError as error:
            code = error_code(error)
            remaining = deadline - clock()
            if code not in retry_on or remaining <= 0:
                raise
            # A wait that would pass the deadline is cut short to end at it: giving up when the
            # next full delay would not fit stopped up to five seconds early, and an allowed call
            # whose policy arrived in those seconds was reported denied.
            _wait(what, code, min(delay, remaining), sleep)
    raise AssertionError("unreachable: the delays never end")


def while_unseen(
    call: Callable[[], T],
    unseen: Callable[[T], bool],
    *,
    timeout: timedelta,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call until `unseen(answer)` is false or `timeout` has passed, polling as above (the last
    time at the deadline); then return the last answer. For looking up something that may
    exist but that AWS may not show yet: an answer of "not there" is final only once the time AWS
    may take has passed."""
    deadline = clock() + max(timeout.total_seconds(), 0.0)
    for delay in _delays():
        answer = call()
        remaining = deadline - clock()
        if not unseen(answer) or remaining <= 0:
            return answer
        _wait(what, "not found yet", min(delay, remaining), sleep)
    raise AssertionError("unreachable: the delays never end")


def until_refused(
    call: Callable[[], object],
    *,
    refused: Collection[str],
    timeout: timedelta,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> float | None:
    """The other way round: call until AWS refuses it with one of `refused`'s codes (a deleted
    credential that still worked for a while), polling as above: the seconds it reports are
    within a poll of the truth. Returns the seconds from the first call to the refusal, or None
    when `timeout` passed first. Any other error is raised as it is."""
    start = clock()
    deadline = start + max(timeout.total_seconds(), 0.0)
    for delay in _delays():
        try:
            call()
        except ClientError as error:
            if error_code(error) in refused:
                return clock() - start
            raise
        remaining = deadline - clock()
        if remaining <= 0:
            return None
        _wait(what, "still accepted", min(delay, remaining), sleep)
    raise AssertionError("unreachable: the delays never end")


def delete_clearing(
    delete: Callable[[], object],
    *clearings: Callable[[], None],
    refused: str,
    what: str,
    settle: timedelta | None = None,
) -> None:
    """`delete()`, asked first. Only when AWS refuses it with `refused` (IAM's DeleteConflict,
    S3's BucketNotEmpty) is the first of `clearings` made, which takes off what may block it,
    and the delete asked again; and so on. After the last clearing a refusal is raised, or, with
    `settle`, retried for that long first: IAM may still see, for a moment, a blocker just
    removed. AWS's refusal is the check, so the listings that find blockers cost round trips
    only when there are some, and nothing is deleted that AWS would not delete anyway."""
    for stage, clear in enumerate([None, *clearings]):
        if clear is not None:
            log.info("AWS refused to delete %s (%s); removing what blocks it", what, refused)
            clear()
        last = stage == len(clearings)
        try:
            if last and settle is not None:
                until_consistent(delete, retry_on={refused}, timeout=settle, what=what)
            else:
                delete()
            return
        except ClientError as error:
            if error_code(error) != refused or last:
                raise


def _wait(what: str, why: str, delay: float, sleep: Callable[[float], None]) -> None:
    log.info("waiting for AWS to see %s (%s); retrying in %.1fs", what, why, delay, extra=WAITING)
    sleep(delay)
