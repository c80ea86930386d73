"""The task graph runner: order, bound, failure, and what happens to the calls in flight."""

from __future__ import annotations

import _thread
import threading
import time

import pytest

from job.parallel import fan_out, run_each, run_graph


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


def _fanning(recorder: Recorder, name: str, calls: int, seconds: float = 0.05):
    """A task that makes `calls` independent calls of its own, with fan_out."""

    def work() -> list[str]:
        return fan_out([recorder.task(f"{name}.{i}", seconds) for i in range(calls)])

    return work


@pytest.mark.parametrize("concurrency", [2, 3, 8])
def test_a_tasks_fan_out_and_the_graph_share_one_bound(concurrency: int) -> None:
    """Three tasks of four calls each: never more than `concurrency` calls in flight, and, with
    room, a task's calls overlap (the wall is not the calls one after another)."""
    recorder = Recorder()
    started = time.monotonic()
    run_each({t: _fanning(recorder, t, 4) for t in "abc"}, concurrency=concurrency)
    wall = time.monotonic() - started
    assert len(recorder.finished) == 12
    assert recorder.most_in_flight <= concurrency
    if concurrency == 8:
        assert recorder.most_in_flight >= 5, "the free slots were used"
        assert wall < 12 * 0.05 * 0.7


def test_fan_out_outside_a_graph_makes_the_calls_in_order_in_this_thread() -> None:
    recorder = Recorder()
    assert fan_out([lambda: 1, lambda: 2, lambda: 3]) == [1, 2, 3]
    fan_out([recorder.task(str(i), 0.01) for i in range(3)])
    assert recorder.started == ["0", "1", "2"] and recorder.most_in_flight == 1


def test_fan_out_makes_every_call_then_raises_the_first_failure() -> None:
    recorder = Recorder()

    def task() -> None:
        fan_out(
            [
                recorder.task("ok-0"),
                recorder.task("bad-1", fail=True),
                recorder.task("ok-2"),
                recorder.task("bad-3", fail=True),
            ]
        )

    with pytest.raises(RuntimeError, match="bad-1 failed"):
        run_each({"t": task}, concurrency=4)
    assert sorted(recorder.finished) == ["bad-1", "bad-3", "ok-0", "ok-2"]


def test_a_graph_inside_a_task_runs_in_its_thread_and_cannot_deadlock() -> None:
    """`teardown --stale`: each run's teardown is a graph inside a task of the outer one."""
    recorder = Recorder()

    def inner(name: str):
        def work() -> None:
            run_graph(
                {f"{name}.{i}": _fanning(recorder, f"{name}.{i}", 3, 0.01) for i in range(3)},
                {},
                concurrency=4,
            )

        return work

    run_each({name: inner(name) for name in "abcd"}, concurrency=2)
    assert len(recorder.finished) == 4 * 3 * 3
    assert recorder.most_in_flight <= 2


def test_a_slot_freed_during_a_fan_out_takes_on_calls_left() -> None:
    """No slot is free when the fan-out starts (the other task holds it); once that task is done,
    its slot makes some of the calls left, in a thread of its own."""
    threads: list[str] = []

    def call(seconds: float):
        def work() -> None:
            threads.append(threading.current_thread().name)
            time.sleep(seconds)

        return work

    run_each(
        {
            "fanning": lambda: fan_out([call(0.05), call(0.05), call(0.05), call(0.05)]),
            "short": lambda: time.sleep(0.01),
        },
        concurrency=2,
    )
    assert len(threads) == 4
    assert "job-fan-out" in threads
