"""The agent process: collectors on their intervals, everything spooled, pushed in order."""

from __future__ import annotations

import json
import logging
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from agents.config import AgentConfig
from agents.metrics import AgentMetrics, MetricsServer, metrics_server
from agents.push import BridgeClient, Outcome, backoff
from agents.runner import CollectorRunner
from agents.spool import Spool
from collectors import Collector, Sample
from collectors.registry import build_collectors

log = logging.getLogger(__name__)

# Compact, and without the cycle check (the agent builds these lists and dicts itself): what
# json.dumps(..., separators=(",", ":")) gives, for less CPU per batch.
_to_json = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def format_sample(metric: str, labels: dict[str, str], value: float) -> str:
    """One line of Prometheus text format, for --print."""
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{metric}{{{body}}} {value:.17g}"


class StopRequest:
    """SIGTERM and SIGINT as a request that the main thread acts on.

    A signal handler runs between any two bytecodes of the main thread, even while that thread
    holds a lock, and a second signal (GNU ``timeout`` signals the process and then its group)
    runs a second handler inside the first: a handler that takes a lock (``Event.set``) can
    deadlock the agent. So the handler only records the signal, and Python's wakeup fd writes
    its number to a socket pair that ``wait`` reads (a socket, so that it works on Windows too).
    """

    def __init__(self, signals: tuple[signal.Signals, ...]) -> None:
        self._signals = signals
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self.received: int | None = None
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for sig in signals:
            signal.signal(sig, self._record)

    def _record(self, signum: int, _frame: object) -> None:
        # Nothing else here: no lock, no logging, no I/O.
        if self.received is None:
            self.received = signum

    def wait(self, server: MetricsServer | None = None) -> int:
        """Block until one of the signals came; its number. Meanwhile ``server`` is handed
        each connection from this thread (see MetricsServer): nothing polls while idle."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._reader, selectors.EVENT_READ)
            if server is not None:
                selector.register(server.socket, selectors.EVENT_READ)
            while self.received is None:
                for key, _ in selector.select():
                    if key.fileobj is not self._reader:
                        assert server is not None
                        server.handle_request()  # accepts; a thread of its own answers
                        continue
                    # The wakeup fd carries the number of every signal: the request is seen
                    # even if the Python-level handler has not run yet.
                    for signum in self._reader.recv(64):
                        if signum in self._signals and self.received is None:
                            self.received = signum
        return self.received

    def close(self) -> None:
        """Ignore the signals from now on: the process is about to exit with its spool flushed,
        and a late second signal must not turn that clean exit into a death by signal."""
        for sig in self._signals:
            signal.signal(sig, signal.SIG_IGN)
        signal.set_wakeup_fd(self._previous_fd)
        self._reader.close()
        self._writer.close()


class Agent:
    def __init__(self, config: AgentConfig, collectors: list[Collector] | None = None) -> None:
        self.config = config
        self.metrics = AgentMetrics(config.asset)
        specs = {spec.name: spec for spec in config.collectors}
        if collectors is None:
            collectors = build_collectors([(s.name, s.kind, s.options) for s in specs.values()])
        self.runners = [
            CollectorRunner(c, specs[c.name], self._keep, self.metrics, config.jitter)
            for c in collectors
        ]
        self.spool: Spool | None = None
        self.client: BridgeClient | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._bridge_failing = False
        self._rejection_reasons: frozenset[str] = frozenset()
        self._output: Callable[..., None] | None = None

    # --- samples -> spool ------------------------------------------------------------------

    def encode(
        self, collector: str, samples: list[Sample], now: float, up: bool
    ) -> list[dict[str, Any]]:
        """The samples as the bridge takes them, tagged with this host's asset, plus the
        collector's health so the bridge's rules see a failing collector too."""
        asset = self.config.asset
        out = [
            {
                "metric": s.metric,
                "labels": s.labels if "asset" in s.labels else {**s.labels, "asset": asset},
                "value": s.value,
                "timestamp": s.timestamp,
            }
            for s in samples
        ]
        health = {"asset": asset, "collector": collector}
        out.append(
            {"metric": "dyzur_collector_up", "labels": health, "value": float(up), "timestamp": now}
        )
        if self.spool is not None:
            me = {"asset": asset}
            out.append(
                {
                    "metric": "dyzur_agent_spool_samples",
                    "labels": me,
                    "value": float(self.spool.samples),
                    "timestamp": now,
                }
            )
            out.append(
                {
                    "metric": "dyzur_agent_samples_dropped_total",
                    "labels": me,
                    "value": float(self.spool.dropped),
                    "timestamp": now,
                }
            )
        return out

    def _keep(
        self,
        collector: str,
        samples: list[Sample],
        now: float,
        up: bool,
        events: list[dict[str, Any]] | None = None,
    ) -> None:
        if up:
            self.metrics.latest.update(collector, samples)
        if self._output is not None:
            self._output(collector, samples, now, up, events or [])
            return
        assert self.spool is not None
        encoded = self.encode(collector, samples, now, up)
        body = _to_json(encoded)
        if events:
            # Audit events (SSH commands run, ...) travel in the same numbered batch: exactly once.
            body = '{"samples":' + body + ',"events":' + _to_json(events) + "}"
        self.spool.put(body.encode(), len(encoded))
        self.metrics.collected.inc(len(encoded))
        self._wake.set()

    # --- spool -> bridge -------------------------------------------------------------------

    def push_oldest(self) -> Outcome | None:
        """Push the oldest spooled batch; None when the spool is empty."""
        assert self.spool is not None and self.client is not None
        batch = self.spool.oldest()
        if batch is None:
            return None
        result = self.client.push(self.spool.agent_id, batch, self.spool.dropped)
        if result.outcome is Outcome.RETRY:
            self.metrics.push_failures.inc()
            if not self._bridge_failing:
                log.error("cannot push to the bridge, spooling: %s", result.detail)
            self._bridge_failing = True
            return result.outcome
        if self._bridge_failing:
            log.warning("bridge reachable again; %d batches to replay", self.spool.batches)
            self._bridge_failing = False
        self.spool.remove(batch)
        if result.outcome is Outcome.REFUSED:
            log.error("bridge refused batch %d for good, dropped: %s", batch.seq, result.detail)
            self.metrics.refused.inc(batch.samples)
        else:
            self.metrics.pushed.inc(batch.samples - result.rejected)
            if result.reasons != self._rejection_reasons:
                if result.reasons:
                    log.warning(
                        "bridge rejects some samples: %s", ", ".join(sorted(result.reasons))
                    )
                self._rejection_reasons = result.reasons
        return result.outcome

    def _push_loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                outcome = self.push_oldest()
            except Exception:  # a broken spool file must not end the pusher silently
                log.exception("pushing failed")
                outcome = Outcome.RETRY
            if outcome is None:
                # Woken by the next spooled batch or by stop(): no polling while idle.
                self._wake.wait()
                self._wake.clear()
            elif outcome is Outcome.RETRY:
                attempt += 1
                self._stop.wait(backoff(attempt))
            else:
                attempt = 0

    def flush(self, deadline: float) -> bool:
        """Push until the spool is empty, the bridge fails or the deadline passes."""
        while time.monotonic() < deadline:
            outcome = self.push_oldest()
            if outcome is None:
                return True
            if outcome is Outcome.RETRY:
                return False
        return False

    # --- the process ------------------------------------------------------------------------

    def open(self) -> None:
        self.spool = Spool(self.config.spool_path, self.config.spool_max_samples)
        self.metrics.watch_spool(self.spool)
        self.client = BridgeClient(self.config.bridge, self.config.bridge.token())

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.spool is not None:
            self.spool.close()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> int:
        """Run until SIGTERM or SIGINT; then finish, flush and close. This is the agent
        process's main: only the main thread may call it, and once it returns SIGTERM and
        SIGINT are ignored until the process exits."""
        stop_request = StopRequest((signal.SIGTERM, signal.SIGINT))
        try:
            return self._run(stop_request)
        finally:
            stop_request.close()

    def _run(self, stop_request: StopRequest) -> int:
        self.open()
        server = None
        if self.config.metrics_listen is not None:
            host, port = self.config.metrics_listen
            server = metrics_server(host, port, self.metrics.registry)
        assert self.spool is not None
        log.info(
            "dyzur agent for %s: %d collectors, spool %s (%d batches waiting)",
            self.config.asset,
            len(self.runners),
            self.config.spool_path,
            self.spool.batches,
        )
        for runner in self.runners:
            runner.start(self._stop)
        pusher = threading.Thread(target=self._push_loop, name="push", daemon=True)
        pusher.start()
        signum = stop_request.wait(server)
        log.info(
            "stopping on %s: finishing collections and flushing the spool",
            signal.Signals(signum).name,
        )
        self.stop()
        deadline = time.monotonic() + self.config.shutdown_timeout
        for runner in self.runners:
            runner.join(max(0.0, deadline - time.monotonic()))
        pusher.join(max(0.0, deadline - time.monotonic()))
        flushed = self.flush(deadline)
        if not flushed:
            log.warning("%d batches stay spooled for the next start", self.spool.batches)
        if server is not None:
            server.server_close()
        self.close()
        return 0

    def run_once(self, print_only: bool) -> int:
        """Run every collector once; print the samples, or spool and push them. Exit status 1
        when a collector failed or (pushing) the bridge did not take everything."""
        if print_only:
            self._output = self._print
        else:
            self.open()
        ok = all([runner.run_once() for runner in self.runners])
        if not print_only:
            ok = self.flush(time.monotonic() + self.config.shutdown_timeout) and ok
            self.close()
        return 0 if ok else 1

    def _print(
        self,
        collector: str,
        samples: list[Sample],
        now: float,
        up: bool,
        events: list[dict[str, Any]],
    ) -> None:
        for s in self.encode(collector, samples, now, up):
            sys.stdout.write(format_sample(s["metric"], s["labels"], s["value"]) + "\n")
        for event in events:
            sys.stdout.write(f"# audit {json.dumps(event, ensure_ascii=False)}\n")
