from __future__ import annotations

from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from job.aws.retry import (
    FIRST_POLL,
    POLL_INTERVAL,
    _delays,
    delete_clearing,
    until_consistent,
    until_refused,
    while_unseen,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def failing(codes: list[str], result: str = "ok"):
    remaining = list(codes)

    def call() -> str:
        if remaining:
            raise ClientError({"Error": {"Code": remaining.pop(0), "Message": ""}}, "Op")
        return result

    return call


def polls(sleeps: list[float]) -> bool:
    """Whether the waits are the poll's: the first try soon, then every POLL_INTERVAL, each up
    to a fifth shorter (jitter), never longer."""
    bounds = [FIRST_POLL] + [POLL_INTERVAL] * (len(sleeps) - 1)
    return all(0.8 * bound <= sleep <= bound for sleep, bound in zip(sleeps, bounds, strict=True))


def test_the_polls_are_a_short_first_then_a_steady_interval_with_jitter() -> None:
    never_short = _delays(lambda: 0.0)
    assert [next(never_short) for _ in range(4)] == [0.2, 0.5, 0.5, 0.5]
    most_short = _delays(lambda: 0.999)
    assert [round(next(most_short), 3) for _ in range(3)] == [0.16, 0.4, 0.4]
    # The default jitter is random: not every wait alike (waits of many threads spread out).
    randomly = _delays()
    assert len({next(randomly) for _ in range(20)}) > 1


def test_retries_the_named_codes_polling() -> None:
    clock = FakeClock()
    answer = until_consistent(
        failing(["InvalidAccessKeyId"] * 4),
        retry_on={"InvalidAccessKeyId"},
        timeout=timedelta(seconds=60),
        what="a key",
        sleep=clock.sleep,
        clock=clock,
    )
    assert answer == "ok"
    assert len(clock.sleeps) == 4 and polls(clock.sleeps), clock.sleeps


def test_the_poll_never_backs_off_and_is_bounded_by_the_timeout() -> None:
    clock = FakeClock()
    with pytest.raises(ClientError, match="AccessDenied"):
        until_consistent(
            failing(["AccessDenied"] * 100),
            retry_on={"AccessDenied"},
            timeout=timedelta(seconds=20),
            what="a policy",
            sleep=clock.sleep,
            clock=clock,
        )
    assert max(clock.sleeps) <= POLL_INTERVAL
    assert polls(clock.sleeps[:-1])
    # The last wait is cut short to end at the deadline, and the call is asked once more there.
    assert clock.now == pytest.approx(20)


def test_the_last_call_is_made_at_the_deadline_not_a_backoff_early() -> None:
    """What a canary with a 3 s window met, when waits backed off: refused at 0, 0.5 and 1.5 s,
    allowed from 2.9 s. The next full delay (2 s) would have passed the deadline; giving up then
    reported a denial the policy did not make. The last call is at the deadline at the latest."""
    clock = FakeClock()

    def allowed_from_2_9() -> str:
        if clock() < 2.9:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": ""}}, "GetObject")
        return "allowed"

    answer = until_consistent(
        allowed_from_2_9,
        retry_on={"AccessDenied"},
        timeout=timedelta(seconds=3),
        what="a policy",
        sleep=clock.sleep,
        clock=clock,
    )
    assert answer == "allowed"
    # Noticed within one poll of 2.9 s, or at the deadline, never past it.
    assert 2.9 <= clock.now <= min(2.9 + POLL_INTERVAL, 3.0)


def test_other_errors_are_raised_at_once() -> None:
    clock = FakeClock()
    with pytest.raises(ClientError, match="Throttling"):
        until_consistent(
            failing(["Throttling"]),
            retry_on={"AccessDenied"},
            timeout=timedelta(seconds=60),
            what="x",
            sleep=clock.sleep,
            clock=clock,
        )
    assert clock.sleeps == []


class Deletes:
    """A delete that AWS refuses with `codes`, one per call, then allows; and the clearings made."""

    def __init__(self, codes: list[str]) -> None:
        self.delete = failing(codes)
        self.cleared: list[str] = []

    def clearing(self, name: str):
        return lambda: self.cleared.append(name)


def test_a_delete_not_refused_clears_nothing() -> None:
    deletes = Deletes([])
    delete_clearing(
        deletes.delete, deletes.clearing("usual"), refused="DeleteConflict", what="user u"
    )
    assert deletes.cleared == []


def test_each_refusal_makes_the_next_clearing_then_asks_again() -> None:
    deletes = Deletes(["DeleteConflict", "DeleteConflict"])
    delete_clearing(
        deletes.delete,
        deletes.clearing("usual"),
        deletes.clearing("rare"),
        deletes.clearing("never needed"),
        refused="DeleteConflict",
        what="user u",
    )
    assert deletes.cleared == ["usual", "rare"]


def test_a_refusal_after_the_last_clearing_is_raised_or_settled() -> None:
    deletes = Deletes(["BucketNotEmpty", "BucketNotEmpty"])
    with pytest.raises(ClientError, match="BucketNotEmpty"):
        delete_clearing(
            deletes.delete, deletes.clearing("empty"), refused="BucketNotEmpty", what="bucket b"
        )
    assert deletes.cleared == ["empty"]
    # With a settling window, IAM's view of a blocker just removed is waited out (0.5 s here).
    deletes = Deletes(["DeleteConflict", "DeleteConflict"])
    delete_clearing(
        deletes.delete,
        deletes.clearing("usual"),
        refused="DeleteConflict",
        what="role r",
        settle=timedelta(seconds=2),
    )
    assert deletes.cleared == ["usual"]


def test_any_other_error_is_raised_before_any_clearing() -> None:
    deletes = Deletes(["AccessDenied"])
    with pytest.raises(ClientError, match="AccessDenied"):
        delete_clearing(
            deletes.delete, deletes.clearing("usual"), refused="DeleteConflict", what="user u"
        )
    assert deletes.cleared == []


def test_a_lookup_looks_once_more_at_the_deadline() -> None:
    """Teardown's "not there" is final only when the window has passed: a resource AWS shows
    from 2.9 s of a 3 s window is found, not taken for gone at 1.5 s."""
    clock = FakeClock()
    answer = while_unseen(
        lambda: "found" if clock() >= 2.9 else "absent",
        lambda seen: seen == "absent",
        timeout=timedelta(seconds=3),
        what="a bucket",
        sleep=clock.sleep,
        clock=clock,
    )
    assert answer == "found"
    assert 2.9 <= clock.now <= min(2.9 + POLL_INTERVAL, 3.0)


def test_a_revocation_is_timed_up_to_the_deadline_and_no_further() -> None:
    clock = FakeClock()

    def refused_from(moment: float):
        def call() -> None:
            if clock() >= moment:
                raise ClientError({"Error": {"Code": "InvalidClientTokenId", "Message": ""}}, "Op")

        return call

    seconds = until_refused(
        refused_from(2.9),
        refused={"InvalidClientTokenId"},
        timeout=timedelta(seconds=3),
        what="a deleted key",
        sleep=clock.sleep,
        clock=clock,
    )
    # Refused from 2.9 s: noticed within one poll of it, and never past the deadline.
    assert seconds is not None and 2.9 <= seconds <= 3.0
    assert polls(clock.sleeps[:-1]) and clock.sleeps[-1] <= POLL_INTERVAL
    clock = FakeClock()
    never = until_refused(
        refused_from(99),
        refused={"InvalidClientTokenId"},
        timeout=timedelta(seconds=3),
        what="a deleted key",
        sleep=clock.sleep,
        clock=clock,
    )
    assert never is None and clock.now == pytest.approx(3.0)
