"""The agent's own /metrics: its health, and the latest samples for Prometheus to scrape."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PromCollector

from agents.spool import Spool
from collectors import Sample


class LatestSamples(PromCollector):
    """The last samples of each collector, as a node exporter would show them."""

    def __init__(self, asset: str) -> None:
        self._asset = asset
        self._lock = threading.Lock()
        self._by_collector: dict[str, list[Sample]] = {}

    def update(self, collector: str, samples: list[Sample]) -> None:
        with self._lock:
            self._by_collector[collector] = samples

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            groups = [s for samples in self._by_collector.values() for s in samples]
        families: dict[str, Metric] = {}
        for s in groups:
            family = families.get(s.metric)
            if family is None:
                kind = CounterMetricFamily if s.metric.endswith("_total") else GaugeMetricFamily
                family = families[s.metric] = kind(s.metric, "Measured by the agent.")
            family.add_sample(s.metric, {"asset": self._asset, **s.labels}, s.value)
        yield from families.values()


class SpoolStats(PromCollector):
    """Read from the spool at scrape time: what waits, and what a full spool cost."""

    def __init__(self, spool: Spool) -> None:
        self._spool = spool

    def collect(self) -> Iterator[Metric]:
        spool = self._spool
        yield GaugeMetricFamily(
            "dyzur_agent_spool_batches", "Batches waiting in the spool.", value=spool.batches
        )
        yield GaugeMetricFamily(
            "dyzur_agent_spool_samples", "Samples waiting in the spool.", value=spool.samples
        )
        yield CounterMetricFamily(
            "dyzur_agent_samples_dropped",
            "Samples dropped from the full spool, oldest first, since the spool was created.",
            value=spool.dropped,
        )


class AgentMetrics:
    def __init__(self, asset: str) -> None:
        self.registry = r = CollectorRegistry()
        self.collector_up = Gauge(
            "dyzur_collector_up",
            "1 when the collector's last run succeeded.",
            ["collector"],
            registry=r,
        )
        self.collector_duration = Gauge(
            "dyzur_collector_duration_seconds",
            "How long the last run took.",
            ["collector"],
            registry=r,
        )
        self.collector_failures = Counter(
            "dyzur_collector_failures",
            "Runs that raised or timed out.",
            ["collector"],
            registry=r,
        )
        self.collected = Counter(
            "dyzur_agent_samples_collected", "Samples measured and spooled.", registry=r
        )
        self.pushed = Counter("dyzur_agent_samples_pushed", "Samples the bridge took.", registry=r)
        self.push_failures = Counter(
            "dyzur_agent_push_failures", "Pushes that did not reach the bridge.", registry=r
        )
        self.refused = Counter(
            "dyzur_agent_samples_refused",
            "Samples in batches the bridge refused for good (400, 413, 422).",
            registry=r,
        )
        self.latest = LatestSamples(asset)
        r.register(self.latest)

    def watch_spool(self, spool: Spool) -> None:
        self.registry.register(SpoolStats(spool))


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Each scrape is not worth a line on stderr."""


class MetricsServer(ThreadingMixIn, WSGIServer):
    """The agent's /metrics, without a thread of its own: prometheus_client's server thread
    wakes twice a second to poll for a shutdown, which costs an idle agent more CPU than its
    collections. The agent's main thread waits for the listening socket beside its signals and
    calls ``handle_request`` when it is readable; each scrape is answered in a thread of its
    own, as before."""

    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, object]:
        conn, address = self.socket.accept()
        # Whether an accepted socket inherits non-blocking mode depends on the OS.
        conn.setblocking(True)
        return conn, address


def metrics_server(host: str, port: int, registry: CollectorRegistry) -> MetricsServer:
    """Listening on ``host:port`` (IPv4 or IPv6), not yet answering: see MetricsServer."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(MetricsServer):
        address_family = family

    server = make_server(
        str(address[0]), port, make_wsgi_app(registry), Server, handler_class=_QuietHandler
    )
    # A connection reset between the readiness and the accept must not block the main thread.
    server.socket.setblocking(False)
    return server
