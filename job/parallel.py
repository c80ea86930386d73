"""Running a phase's calls concurrently, each as soon as what it depends on is done.

A phase is a small graph: the bucket, the users and the policies do not depend on each other; an
attachment needs its user and its policy. Walking it one call at a time pays every round trip in
turn; here the wall time is the longest chain of dependent calls instead, with at most
`concurrency` calls in flight (`--concurrency`, like Terraform's `-parallelism`).

Failure stops the graph from growing, not from finishing: once a task fails no new task starts,
the ones in flight finish (each has recorded what it announced, so nothing is half-known), and the
first failure is raised. With concurrency 1 everything runs in the calling thread, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


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
    else:
        running: dict[Future[object], K] = {}
        with ThreadPoolExecutor(
            max_workers=min(concurrency, len(tasks)) or 1, thread_name_prefix="job-worker"
        ) as pool:
            try:
                while True:
                    for key in ready():
                        running[pool.submit(waiting.pop(key))] = key
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
