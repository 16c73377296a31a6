"""The bridge's own Prometheus metrics, on a registry per bridge so tests can run several."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rules.model import AlertState


class _AlertStates(Collector):
    """dyzur_alerts{state}: read from the engine at scrape time, so the hot path pays nothing."""

    def __init__(self, counts: Callable[[], Mapping[AlertState, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("dyzur_alerts", "Alerts by state.", labels=["state"])
        counts = self._counts()
        for state in (AlertState.PENDING, AlertState.FIRING):
            family.add_metric([state.value], counts.get(state, 0))
        yield family


class _SlaStates(Collector):
    """dyzur_sla_open_tickets{client,category,state}: open tickets at risk or breached."""

    def __init__(self, counts: Callable[[], Mapping[tuple[str, str, str], int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "dyzur_sla_open_tickets",
            "Open tickets without a response that are at risk or past their deadline.",
            labels=["client", "category", "state"],
        )
        for (client, category, state), n in sorted(self._counts().items()):
            family.add_metric([client, category, state], n)
        yield family


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.samples_ingested = Counter(
            "dyzur_samples_ingested", "Samples accepted and evaluated.", registry=r
        )
        self.samples_rejected = Counter(
            "dyzur_samples_rejected", "Samples rejected, by reason.", ["reason"], registry=r
        )
        self.rule_evaluations = Counter(
            "dyzur_rule_evaluations", "Samples evaluated against a matching rule.", registry=r
        )
        self.tickets_opened = Counter(
            "dyzur_tickets_opened", "Tickets opened, by category.", ["category"], registry=r
        )
        self.ticket_changes = Counter(
            "dyzur_ticket_changes",
            "Ticket lifecycle actions (opened, refired, reopened, escalated, recovered, resolved).",
            ["action"],
            registry=r,
        )
        self.agent_batches = Counter(
            "dyzur_agent_batches",
            "Numbered agent batches, by outcome (accepted, duplicate: a retry already taken).",
            ["outcome"],
            registry=r,
        )
        self.transition_failures = Counter(
            "dyzur_transition_failures",
            "Alert transitions that could not be applied to a ticket at once (kept for retry).",
            registry=r,
        )
        self.alertmanager_alerts = Counter(
            "dyzur_alertmanager_alerts",
            "Alerts received from Alertmanager, by status (firing, resolved) and outcome "
            "(accepted or the reason it was refused).",
            ["status", "outcome"],
            registry=r,
        )
        self.alerts_in_windows = Counter(
            "dyzur_window_alerts",
            "Alerts of assets in a maintenance window: suppressed (recorded, no ticket), "
            "recovered (inside the window, only logged).",
            ["action"],
            registry=r,
        )
        self.sla_events = Counter(
            "dyzur_sla_events", "SLA warnings: sla_at_risk, sla_breached.", ["event"], registry=r
        )
        self.first_response = Histogram(
            "dyzur_first_response_business_seconds",
            "Time from opening to the first response, counted in the contract's service hours.",
            ["category"],
            buckets=(300, 900, 1800, 3600, 7200, 14400, 28800, 57600, 86400, 172800),
            registry=r,
        )
        self.siem_sent = Counter(
            "dyzur_siem_events_sent", "Audit events written to a SIEM.", ["destination"], registry=r
        )
        self.siem_failures = Counter(
            "dyzur_siem_send_failures",
            "Failed connections or writes to a SIEM (the events are sent again).",
            ["destination"],
            registry=r,
        )
        self.siem_dropped = Counter(
            "dyzur_siem_events_dropped",
            "Audit events a SIEM never got because its queue was full while it was away.",
            ["destination"],
            registry=r,
        )
        self.siem_backlog = Gauge(
            "dyzur_siem_backlog", "Audit events waiting for a SIEM.", ["destination"], registry=r
        )
        self.ingest_seconds = Histogram(
            "dyzur_ingest_batch_seconds",
            "Time to validate and evaluate one pushed batch.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )

    def watch_sla(self, counts: Callable[[], Mapping[tuple[str, str, str], int]]) -> None:
        self.registry.register(_SlaStates(counts))

    def watch_alerts(self, counts: Callable[[], Mapping[AlertState, int]]) -> None:
        self.registry.register(_AlertStates(counts))
