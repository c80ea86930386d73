"""Running a phase's calls concurrently, each as soon as what it depends on is done.

A phase is a small graph: the bucket, the users and the policies do not depend on each other; an
attachment needs its user and its policy. Walking it one call at a time pays every round trip in
turn; here the wall time is the longest chain of dependent calls instead, with at most
`concurrency` calls in flight (`--concurrency`, like Terraform's `-parallelism`).

Failure stops the graph from growing, not from finishing: once a task fails no new task starts,
the ones in flight finish (each has recorded what it announced, so nothing is half-known), and the
first failure is raised. With concurrency 1 everything runs in the calling thread, in order.

Inside a task, `fan_out` makes a resource's own independent calls (a bucket's lock-down, a user's
listings before it can be deleted) at once. The graph's tasks and those calls share one set of
`concurrency` slots, so the limit holds for both: a task holds a slot while it runs, and each
extra call of a fan-out takes a free one or, when there is none, runs in the task's own thread
after the others. A fan-out never waits for a slot, so it cannot deadlock the graph that runs it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

# The slots of the graph whose task this thread is running; unset outside any graph.
_current = threading.local()


def _slots() -> threading.BoundedSemaphore | None:
    return getattr(_current, "slots", None)


def _holding(slots: threading.BoundedSemaphore | None, task: Callable[[], T]) -> Callable[[], T]:
    """`task`, run in a worker thread that holds one of `slots` (waiting for it) meanwhile."""

    def run() -> T:
        if slots is None:
            return task()
        with slots:
            _current.slots = slots
            try:
                return task()
            finally:
                _current.slots = None

    return run


def fan_out(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Make independent calls at once, within the running graph's concurrency; their results in
    order. Every call is made, even when one fails; then the first failure is raised. Outside a
    graph, or with no slot free, calls run one after another in this thread; a slot freed
    meanwhile takes on some of those left."""
    slots = _slots()
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException | None] = [None] * len(calls)
    left = list(range(len(calls)))
    lock = threading.Lock()
    helpers: list[threading.Thread] = []

    def take() -> int | None:
        with lock:
            return left.pop(0) if left else None

    def make(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as error:  # raised below, in the caller's thread
            errors[index] = error

    def helper(first: int) -> None:
        assert slots is not None
        _current.slots = slots
        try:
            make(first)
            while (index := take()) is not None:
                make(index)
        finally:
            _current.slots = None
            slots.release()

    def call_for_help() -> None:
        # The caller's own slot makes the call it took; each free slot, one of the others.
        while slots is not None and left and slots.acquire(blocking=False):
            index = take()
            if index is None:
                slots.release()
                return
            thread = threading.Thread(target=helper, args=(index,), name="job-fan-out")
            thread.start()
            helpers.append(thread)

    while (index := take()) is not None:
        call_for_help()
        make(index)
    for thread in helpers:
        thread.join()
    failure = next((error for error in errors if error is not None), None)
    if failure is not None:
        raise failure
    return results


def run_graph(
    tasks: Mapping[K, Callable[[], object]],
    needs: Mapping[K, Collection[K]],
    *,
    concurrency: int,
    keep_going: bool = False,
) -> None:
    """Run every task once all the tasks it `needs` have succeeded. `tasks` is in a valid order
    (each after what it needs); that order is kept when concurrency is 1.

    `keep_going`: a failure does not stop the tasks that do not need the failed one (clean-up,
    where every deletion should be tried); the first failure is still raised at the end.
    """
    unknown = {need for key in tasks for need in needs.get(key, ()) if need not in tasks}
    if unknown:
        raise ValueError(f"tasks need tasks that do not exist: {sorted(map(str, unknown))}")
    waiting = dict(tasks)
    done: set[K] = set()
    failure: BaseException | None = None

    def ready() -> list[K]:
        if failure is not None and not keep_going:
            return []
        return [key for key in waiting if set(needs.get(key, ())) <= done]

    if concurrency <= 1:
        while batch := ready()[:1]:
            key = batch[0]
            try:
                waiting.pop(key)()
            except Exception as error:
                failure = failure or error
                if not keep_going:
                    raise
            else:
                done.add(key)
    elif _slots() is not None:
        # A graph inside a task of another: its tasks one by one in this thread, which holds a
        # slot of the outer graph already (their fan-outs may still use the outer graph's free
        # slots). Waiting here for slots of the outer graph could deadlock it.
        return run_graph(tasks, needs, concurrency=1, keep_going=keep_going)
    else:
        slots = threading.BoundedSemaphore(concurrency)
        running: dict[Future[object], K] = {}
        with ThreadPoolExecutor(
            max_workers=min(concurrency, len(tasks)) or 1, thread_name_prefix="job-worker"
        ) as pool:
            try:
                while True:
                    for key in ready():
                        running[pool.submit(_holding(slots, waiting.pop(key)))] = key
                    if not running:
                        break
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        key = running.pop(future)
                        raised = future.exception()
                        if raised is None:
                            done.add(key)
                        elif failure is None:
                            failure = raised
            except BaseException:
                # Interrupted while waiting (Ctrl-C, SIGTERM): start nothing more; leaving the
                # pool waits for the calls in flight, whose outcome the ledger must hear.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    if failure is not None:
        raise failure
    if waiting:  # nothing failed, yet some never became ready: their needs go round in a circle
        raise ValueError(f"tasks need each other in a cycle: {sorted(map(str, waiting))}")


def run_each(
    tasks: Mapping[K, Callable[[], object]], *, concurrency: int, keep_going: bool = False
) -> None:
    """Independent tasks, at most `concurrency` at a time."""
    run_graph(tasks, {}, concurrency=concurrency, keep_going=keep_going)
