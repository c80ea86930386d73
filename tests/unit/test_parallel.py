"""The task graph runner: order, bound, failure, and what happens to the calls in flight."""

from __future__ import annotations

import _thread
import threading
import time

import pytest

from job.parallel import run_each, run_graph


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.finished: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    def task(self, name: str, seconds: float = 0.02, fail: bool = False):
        def work() -> None:
            with self.lock:
                self.started.append(name)
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
            time.sleep(seconds)
            with self.lock:
                self.in_flight -= 1
                self.finished.append(name)
            if fail:
                raise RuntimeError(f"{name} failed")

        return work


GRAPH = {"attach": ("user", "policy"), "object": ("bucket",)}


@pytest.mark.parametrize("concurrency", [1, 2, 10])
def test_each_task_starts_after_what_it_needs(concurrency: int) -> None:
    recorder = Recorder()
    names = ["bucket", "user", "policy", "object", "attach"]
    run_graph({n: recorder.task(n) for n in names}, GRAPH, concurrency=concurrency)
    assert sorted(recorder.finished) == sorted(names)
    for task, needs in GRAPH.items():
        for need in needs:
            assert recorder.finished.index(need) < recorder.started.index(task)
    assert recorder.most_in_flight <= concurrency
    if concurrency == 1:
        assert recorder.started == names  # the given order, in the calling thread


def test_independent_tasks_overlap_up_to_the_bound() -> None:
    recorder = Recorder()
    run_each({str(i): recorder.task(str(i), 0.05) for i in range(12)}, concurrency=4)
    assert recorder.most_in_flight == 4


def test_a_failure_stops_new_tasks_but_lets_running_ones_finish() -> None:
    recorder = Recorder()
    tasks = {
        "user": recorder.task("user", 0.01, fail=True),
        "slow": recorder.task("slow", 0.1),
        "attach": recorder.task("attach"),
    }
    with pytest.raises(RuntimeError, match="user failed"):
        run_graph(tasks, {"attach": ("user",)}, concurrency=5)
    assert "slow" in recorder.finished, "the call in flight was waited for"
    assert "attach" not in recorder.started


@pytest.mark.parametrize("concurrency", [1, 3])
def test_keep_going_tries_everything_that_does_not_need_the_failure(concurrency: int) -> None:
    recorder = Recorder()
    tasks = {
        "key": recorder.task("key", fail=True),
        "other": recorder.task("other"),
        "user": recorder.task("user"),
    }
    with pytest.raises(RuntimeError, match="key failed"):
        run_graph(tasks, {"user": ("key",)}, concurrency=concurrency, keep_going=True)
    assert "other" in recorder.finished and "user" not in recorder.started


def test_needs_that_cannot_be_met_are_refused() -> None:
    with pytest.raises(ValueError, match="do not exist"):
        run_graph({"a": lambda: None}, {"a": ("b",)}, concurrency=2)
    with pytest.raises(ValueError, match="cycle"):
        run_graph({"a": lambda: None, "b": lambda: None}, {"a": ("b",), "b": ("a",)}, concurrency=2)


def test_an_interrupt_waits_for_the_calls_in_flight_and_starts_nothing_more() -> None:
    """Ctrl-C or SIGTERM reaches the waiting main thread: the calls in flight still finish (their
    outcome must reach the ledger), and neither queued nor waiting tasks start."""
    recorder = Recorder()

    def interrupt() -> None:
        time.sleep(0.05)  # until every ready task is submitted and the main thread waits
        _thread.interrupt_main()  # as a signal handler raising in the main thread would

    queued = [f"queued-{i}" for i in range(6)]
    tasks = {
        "slow": recorder.task("slow", 0.2),
        "interrupt": interrupt,
        **{name: recorder.task(name, 0.05) for name in queued},
        "after": recorder.task("after"),
    }
    with pytest.raises(KeyboardInterrupt):
        run_graph(tasks, {"after": ("slow",)}, concurrency=2)
    assert "slow" in recorder.finished
    # The worker freed by `interrupt` may take one queued task before the interrupt lands; the
    # rest are cancelled, not run by the pool on its way out.
    assert len(set(queued) & set(recorder.started)) <= 1
    assert "after" not in recorder.started
