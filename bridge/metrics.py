"""The bridge's own Prometheus metrics, on a registry per bridge so tests can run several."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bridge.clock import utc_iso
from bridge.tickets.changes import Attachment, Change, Suppression

# One INFO line per ticket opened, reopened, escalated or resolved, written where the change is
# counted (after its transaction committed), so each is logged once.
ticket_log = logging.getLogger("bridge.tickets")
LOGGED_CHANGES = frozenset({"opened", "reopened", "escalated", "resolved"})


class _ReadAtScrape(Collector):
    """A gauge family read at scrape time (from the engine or the store), so the hot path pays
    nothing: ``read()`` returns {label values: value}."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: list[str],
        read: Callable[[], Mapping[tuple[str, ...], float]],
    ) -> None:
        self.name, self.documentation, self.labels, self.read = name, documentation, labels, read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, value in sorted(self.read().items()):
            family.add_metric(list(values), value)
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
            "Numbered agent batches, by outcome (accepted; duplicate: a retry already taken; "
            "anomaly: a batch number too far ahead, taken without advancing the stream; "
            "foreign: refused, the stream belongs to another token).",
            ["outcome"],
            registry=r,
        )
        self.agent_events_rejected = Counter(
            "dyzur_agent_events_rejected",
            "Audit events sent by agents and refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.refusals = Counter(
            "dyzur_refused_requests",
            "Refused requests by kind: token (401), role (403), agent (another token's stream).",
            ["kind"],
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
        self.alertmanager_stale = Counter(
            "dyzur_alertmanager_stale",
            "Firing notifications from Alertmanager not newer than the alert's recorded "
            "resolution (a late HA copy, a replay): no ticket opened or reopened, by client.",
            ["client"],
            registry=r,
        )
        self.incident_alerts = Counter(
            "dyzur_incident_alerts",
            "Alerts without a ticket of their own (README: Incidents and storms): held (for "
            "their root cause), attached (to a root's or a storm's ticket), refired and "
            "recovered there, released (into a ticket of their own).",
            ["action"],
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
        self.sink_deliveries = Counter(
            "dyzur_sink_deliveries",
            "Ticket changes handled by a helpdesk sink, by outcome: delivered; retried (a "
            "failed attempt, offered again); failed (refused by the helpdesk, parked); held "
            "(parked behind a failed change of the same ticket).",
            ["sink", "outcome"],
            registry=r,
        )
        self.sink_backlog = Gauge(
            "dyzur_sink_backlog",
            "Audit events of a helpdesk sink's hospitals after its cursor, at its last round.",
            ["sink"],
            registry=r,
        )
        self.oncall_pages = Counter(
            "dyzur_oncall_pages",
            "On-call pages by channel and outcome: delivered; retried (a failed attempt, sent "
            "again later); failed (refused for good); skipped (the ticket was acknowledged or "
            "resolved before the page went).",
            ["channel", "outcome"],
            registry=r,
        )
        self.oncall_escalations = Counter(
            "dyzur_oncall_escalations",
            "Tickets escalated because nobody acknowledged their pages in time, by escalation "
            "(1: the first, oncall.escalation.0, after the person on duty; 2: the next, ...).",
            ["step"],
            registry=r,
        )
        self.time_to_acknowledge = Histogram(
            "dyzur_time_to_acknowledge_seconds",
            "From a ticket opening to its first response, in real time, by category and the "
            "hour of day (Europe/Warsaw, 00-23) it opened.",
            ["category", "hour"],
            buckets=(60, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400),
            registry=r,
        )
        self.oncall_links = Counter(
            "dyzur_oncall_links",
            "Uses of the one-time links in on-call pages, by outcome: opened (the page shown, "
            "nothing changed), acknowledged, and refused as invalid (malformed, forged, of an "
            "unknown ticket or person), expired, used (a second time) or foreign (a form posted "
            "from another site).",
            ["outcome"],
            registry=r,
        )
        self.alert_to_ticket = Histogram(
            "dyzur_alert_to_ticket_seconds",
            "From an alert firing to its ticket opened (longer when a maintenance window held "
            "it), by source: rules (dyzur's own) or alertmanager.",
            ["source"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 14400),
            registry=r,
        )
        self.shard_moves = Counter(
            "dyzur_cluster_shard_moves",
            "Hospitals this bridge took (taken), let go to balance or at its stop (released), "
            "or lost (its lease ran out or moved while it was away).",
            ["change"],
            registry=r,
        )
        self.handovers = Counter(
            "dyzur_cluster_handovers",
            "Pushed batches of a hospital another bridge holds, by outcome: taken (answered "
            "by it), refused (403), failed (its store failed: 503), timeout (no answer in "
            "handover_timeout: 503), dead_letter (failed too often, read by this bridge).",
            ["outcome"],
            registry=r,
        )
        self.ingest_seconds = Histogram(
            "dyzur_ingest_batch_seconds",
            "Time to validate and evaluate one pushed batch.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )

    def count_changes(self, changes: Iterable[Change | Suppression | Attachment]) -> list[Change]:
        """Count what the lifecycle did with alerts; returns the ticket changes."""
        tickets = []
        for change in changes:
            if isinstance(change, Suppression):
                self.alerts_in_windows.labels(change.action).inc()
            elif isinstance(change, Attachment):
                self.incident_alerts.labels(change.action).inc()
            else:
                tickets.append(change)
                self.count_change(change)
        return tickets

    def count_change(self, change: Change) -> None:
        """A ticket change made by the lifecycle, whatever its source (once its transaction
        committed): counted, and logged at INFO when a ticket opened, reopened, was escalated
        or resolved."""
        self.ticket_changes.labels(change.action).inc()
        if change.action in LOGGED_CHANGES:
            log_change(change)
        if change.action == "opened":
            self.tickets_opened.labels(change.ticket.category.value).inc()
        if change.latency is not None:
            source = "alertmanager" if change.ticket.rule.startswith("alertmanager:") else "rules"
            self.alert_to_ticket.labels(source).observe(max(change.latency, 0.0))

    def watch(
        self,
        name: str,
        documentation: str,
        labels: list[str],
        read: Callable[[], Mapping[tuple[str, ...], float]],
    ) -> None:
        """Export what ``read`` returns at every scrape as the gauge ``name``."""
        self.registry.register(_ReadAtScrape(name, documentation, labels, read))


def log_change(change: Change) -> None:
    """``ticket DZ-2026-000123 opened: awaria, szpital-a srv-a1, rule disk_usage, reaction due
    2026-11-30T09:00:00Z``: one line, times in UTC marked Z."""
    t = change.ticket
    if change.action == "resolved":
        ticket_log.info(
            "ticket %s resolved: %s, %s %s, rule %s, at %s",
            t.number,
            t.category.value,
            t.client,
            t.asset or "-",
            t.rule,
            utc_iso(t.resolved_at),
        )
        return
    due = f"reaction due {utc_iso(t.reaction_due)}" if t.reaction_due else "no reaction deadline"
    ticket_log.info(
        "ticket %s %s: %s, %s %s, rule %s, %s",
        t.number,
        change.action,
        t.category.value,
        t.client,
        t.asset or "-",
        t.rule,
        due,
    )
