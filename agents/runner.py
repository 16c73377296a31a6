"""Running one collector on its interval, with a timeout, isolated from the others.

Each collector has its own thread and its own worker: a collector that hangs (a stuck network
mount, say) holds only its own worker, is reported down, and is not called again until the
hung call returns. Failures are logged once when they start and once when they end.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from agents.config import CollectorSpec
from agents.metrics import AgentMetrics
from collectors import Collector, Sample

log = logging.getLogger(__name__)

# (collector name, samples, when, whether the run worked, audit events the run recorded)
Sink = Callable[[str, list[Sample], float, bool, list[dict[str, Any]]], None]


class CollectorRunner:
    def __init__(
        self,
        collector: Collector,
        spec: CollectorSpec,
        sink: Sink,
        metrics: AgentMetrics,
        jitter: float = 0.1,
    ) -> None:
        self.collector = collector
        self.spec = spec
        self.sink = sink
        self.metrics = metrics
        self.jitter = jitter
        self.up: bool | None = None  # unknown until the first run
        self._worker = _Worker(collector.collect, f"collect-{spec.name}")
        self._thread: threading.Thread | None = None

    def run_once(self) -> bool:
        """One run: collect (bounded by the timeout), hand the samples on. True when it worked."""
        name = self.spec.name
        now = time.time()
        if self._worker.busy():
            return self._failed(now, f"still hanging after {self.spec.timeout:g}s")
        started = time.perf_counter()
        try:
            samples = self._worker.run(now, self.spec.timeout)
        except TimeoutError:
            return self._failed(now, f"timed out after {self.spec.timeout:g}s")
        except Exception as exc:
            return self._failed(now, f"{type(exc).__name__}: {exc}")
        finally:
            self.metrics.collector_duration.labels(name).set(time.perf_counter() - started)
        self._set_state(True, "")
        self.sink(name, samples, now, True, self.collector.drain_events())
        return True

    def _failed(self, now: float, reason: str) -> bool:
        self._set_state(False, reason)
        # The bridge hears of it too, with whatever the collector recorded before failing.
        self.sink(self.spec.name, [], now, False, self.collector.drain_events())
        return False

    def _set_state(self, up: bool, reason: str) -> None:
        name = self.spec.name
        self.metrics.collector_up.labels(name).set(1 if up else 0)
        if not up:
            self.metrics.collector_failures.labels(name).inc()
            if self.up is not False:
                log.error("collector %s is failing: %s", name, reason)
        elif self.up is False:
            log.warning("collector %s recovered", name)
        self.up = up

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(
            target=self._loop, args=(stop,), name=f"run-{self.spec.name}", daemon=True
        )
        self._thread.start()

    def _loop(self, stop: threading.Event) -> None:
        interval = self.spec.interval
        # A random first delay spreads the agents of a site over the interval.
        due = time.monotonic() + random.uniform(0, self.jitter * interval)  # noqa: S311
        while not stop.wait(max(0.0, due - time.monotonic())):
            try:
                self.run_once()
            except Exception:  # the sink failing (disk full) must not end the loop
                log.exception("collector %s: cannot keep its samples", self.spec.name)
            spread = self.jitter * interval / 2
            due += interval + random.uniform(-spread, spread)  # noqa: S311
            due = max(due, time.monotonic())  # after a long stall, do not run in a burst

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
        self._worker.stop()


class _Worker:
    """The thread a collector runs in, handed each run through two plain locks.

    Not a ThreadPoolExecutor: its futures, conditions and queue cost the agent more CPU per
    run than the spool's write. And its threads are joined at interpreter exit, so a
    collector hanging on a dead mount kept the agent from exiting; this one is a daemon.
    """

    def __init__(self, collect: Callable[[float], list[Sample]], name: str) -> None:
        self._collect = collect
        self._go = threading.Lock()  # released: a run is handed over
        self._go.acquire()
        self._done = threading.Lock()  # released: the run handed over has ended
        self._done.acquire()
        self._running = False  # a run was handed over and not yet collected
        self._stopped = False
        self._now = 0.0
        self._samples: list[Sample] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            if self._stopped:
                return
            try:
                self._samples, self._error = self._collect(self._now), None
            except BaseException as exc:  # handed to the runner, which reports it
                self._samples, self._error = [], exc
            self._done.release()
            if self._stopped:  # a hung run that returned after the agent stopped
                return

    def busy(self) -> bool:
        """Whether the last run is still going (it timed out and has not returned yet)."""
        if self._running and self._done.acquire(blocking=False):
            self._running = False  # it returned at last; what it measured is too late
        return self._running

    def run(self, now: float, timeout: float) -> list[Sample]:
        """One run; its samples, or what it raised, or TimeoutError after ``timeout``."""
        self._now = now
        self._running = True
        self._go.release()
        if not self._done.acquire(timeout=timeout):
            raise TimeoutError
        self._running = False
        samples, error = self._samples, self._error
        self._samples, self._error = [], None
        if error is not None:
            raise error
        return samples

    def stop(self) -> None:
        """The thread ends now if idle, or when its hung run returns."""
        if self._stopped:
            return
        self._stopped = True
        if not self.busy():
            self._go.release()
