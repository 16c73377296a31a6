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
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
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
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"collect-{spec.name}")
        self._pending: Future[list[Sample]] | None = None
        self._thread: threading.Thread | None = None

    def run_once(self) -> bool:
        """One run: collect (bounded by the timeout), hand the samples on. True when it worked."""
        name = self.spec.name
        now = time.time()
        if self._pending is not None and not self._pending.done():
            return self._failed(now, f"still hanging after {self.spec.timeout:g}s")
        started = time.perf_counter()
        self._pending = self._worker.submit(self.collector.collect, now)
        try:
            samples = self._pending.result(timeout=self.spec.timeout)
        except FutureTimeout:
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
        self._worker.shutdown(wait=False, cancel_futures=True)
