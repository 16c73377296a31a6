"""Stat mounted filesystems without letting a hung one stop the collector.

A stat of a filesystem whose server is gone (NFS, SMB) or whose disk stopped answering can
block for minutes, uninterruptibly. As node_exporter does, the stats run in a worker thread;
when one gives no answer within the timeout, that mountpoint is marked stuck and skipped until
the hung call finally returns (the worker then clears the mark and exits). So a hung mount
costs one timeout, once, and one parked daemon thread, not one per collection.

The worker waits for the next collection instead of ending: starting a thread costs more CPU
than the stats themselves. It ends after ``idle_exit`` seconds without work, and a worker
stuck in a stat is replaced by a new one at the next collection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sized
from functools import partial
from typing import Any

# A worker with nothing to do for this long ends (the next collection starts another).
IDLE_EXIT = 300.0


class _Round:
    """One call's mountpoints, answered one by one by the worker."""

    __slots__ = ("abandoned", "current", "results", "todo")

    def __init__(self, todo: list[str]) -> None:
        self.todo = todo
        self.results: dict[str, Any] = {}
        self.current: str | None = None  # the mountpoint being stat'ed
        self.abandoned = False  # the caller stopped waiting


class MountProber:
    """Runs ``stat(mountpoint)`` for many mountpoints in one daemon worker thread."""

    def __init__(
        self, stat: Callable[[str], Any], timeout: float, idle_exit: float = IDLE_EXIT
    ) -> None:
        self._stat = stat
        self._timeout = timeout
        self._idle_exit = idle_exit
        self._run_lock = threading.Lock()  # one call at a time shares the worker
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)
        self._answered = threading.Condition(self._lock)
        self._round: _Round | None = None  # handed to the worker, not taken yet
        self._generation = 0  # the live worker's; a stuck or idle one has an older one
        self._live = False  # a worker of the current generation runs or waits for work
        #: Mountpoints whose stat is still hanging in an abandoned worker.
        self.stuck: set[str] = set()

    def run(self, mountpoints: Iterable[str]) -> tuple[dict[str, Any], str | None]:
        """Stat each mountpoint that is not stuck.

        Returns ``(results, hung)``: each answered mountpoint with what ``stat`` returned or
        the exception it raised, and the mountpoint that gave no answer within the timeout
        (``None`` when all answered; the ones after a hung one wait for the next call).
        """
        with self._run_lock, self._lock:
            todo = [mp for mp in mountpoints if mp not in self.stuck]
            if not todo:
                return {}, None
            job = self._round = _Round(todo)
            if self._live:
                self._work_ready.notify()
            else:
                self._live = True
                worker = threading.Thread(
                    target=self._work, args=(self._generation,), name="dyzur-host-statfs"
                )
                worker.daemon = True
                worker.start()
            results = job.results
            while len(results) < len(todo):
                if not self._answered.wait_for(
                    partial(_grew, results, len(results)), self._timeout
                ):
                    # That worker is stuck (or has not even woken): leave it, and let the
                    # next call start another.
                    job.abandoned = True
                    self._round = None
                    self._generation += 1
                    self._live = False
                    hung = job.current
                    if hung is not None and hung not in results:
                        self.stuck.add(hung)
                        return dict(results), hung
                    return dict(results), None
            return dict(results), None

    def _work(self, generation: int) -> None:
        stat, lock = self._stat, self._lock
        with lock:
            while True:
                while self._round is None:
                    if generation != self._generation:
                        return
                    if not self._work_ready.wait(self._idle_exit) and self._round is None:
                        if generation == self._generation:  # idle: end, the next call starts one
                            self._generation += 1
                            self._live = False
                        return
                if generation != self._generation:
                    return
                job, self._round = self._round, None
                for mp in job.todo:
                    job.current = mp
                    lock.release()
                    try:
                        answer: Any = stat(mp)
                    except Exception as exc:  # handed to the caller, which decides
                        answer = exc
                    finally:
                        lock.acquire()
                    if job.abandoned:
                        self.stuck.discard(mp)  # it answered at last: stat it again next time
                        return
                    job.results[mp] = answer
                    self._answered.notify()


def _grew(results: Sized, answered: int) -> bool:
    """Whether ``results`` holds more than the ``answered`` it held when the wait began."""
    return len(results) > answered
