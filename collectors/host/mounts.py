"""Stat mounted filesystems without letting a hung one stop the collector.

A stat of a filesystem whose server is gone (NFS, SMB) or whose disk stopped answering can
block for minutes, uninterruptibly. As node_exporter does, the stats run in a worker thread;
when one gives no answer within the timeout, that mountpoint is marked stuck and skipped until
the hung call finally returns (the worker then clears the mark and exits). So a hung mount
costs one timeout, once, and one parked daemon thread, not one per collection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sized
from functools import partial
from typing import Any


class MountProber:
    """Runs ``stat(mountpoint)`` for many mountpoints in one daemon thread per call."""

    def __init__(self, stat: Callable[[str], Any], timeout: float) -> None:
        self._stat = stat
        self._timeout = timeout
        self._lock = threading.Lock()
        #: Mountpoints whose stat is still hanging in an abandoned worker.
        self.stuck: set[str] = set()

    def run(self, mountpoints: Iterable[str]) -> tuple[dict[str, Any], str | None]:
        """Stat each mountpoint that is not stuck.

        Returns ``(results, hung)``: each answered mountpoint with what ``stat`` returned or
        the exception it raised, and the mountpoint that gave no answer within the timeout
        (``None`` when all answered; the ones after a hung one wait for the next call).
        """
        with self._lock:
            todo = [mp for mp in mountpoints if mp not in self.stuck]
        results: dict[str, Any] = {}
        if not todo:
            return results, None
        cond = threading.Condition(self._lock)
        state: dict[str, Any] = {"current": None, "abandoned": False}
        stat, stuck = self._stat, self.stuck

        def work() -> None:
            for mp in todo:
                with cond:
                    if state["abandoned"]:
                        return
                    state["current"] = mp
                try:
                    answer: Any = stat(mp)
                except Exception as exc:  # handed to the caller, which decides
                    answer = exc
                with cond:
                    if state["abandoned"]:
                        stuck.discard(mp)  # it answered at last: stat it again next time
                        return
                    results[mp] = answer
                    cond.notify()

        threading.Thread(target=work, name="dyzur-host-statfs", daemon=True).start()
        with cond:
            while len(results) < len(todo):
                if not cond.wait_for(partial(_grew, results, len(results)), self._timeout):
                    state["abandoned"] = True
                    hung = state["current"]
                    if hung is not None and hung not in results:
                        stuck.add(hung)
                        return dict(results), hung
                    return dict(results), None
            return dict(results), None


def _grew(results: Sized, answered: int) -> bool:
    """Whether ``results`` holds more than the ``answered`` it held when the wait began."""
    return len(results) > answered
