"""The bridge's /metrics: what a Grafana panel reads, with bounded labels."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from bridge.maintenance.planning import WindowRequest
from bridge.store import TicketFilter
from tests.conftest import START, auth
from tests.test_alertmanager import am_alert, notification, post
from tests.test_lifecycle import disk


def scrape(api) -> dict[str, list]:
    text = api.get("/metrics", headers=auth("engineer")).text
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(samples, name: str, **labels) -> float | None:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def test_tickets_windows_latency_and_queues_are_exported(api, bridge, clock):
    disk(bridge, 0.95)  # a ticket from dyzur's own rule
    post(api, notification(am_alert(instance="srv-b1")))  # and one from Alertmanager
    bridge.maintenance.plan(
        WindowRequest("szpital-a", START, START + timedelta(hours=1), "prace", ["srv-a2"]), "jan"
    )
    m = scrape(api)
    tickets = m["dyzur_tickets"]
    assert value(tickets, "dyzur_tickets", client="szpital-a", category="usterka") == 1
    assert value(tickets, "dyzur_tickets", client="klinika-b", category="awaria") == 1
    active = m["dyzur_maintenance_windows_active"]
    assert value(active, "dyzur_maintenance_windows_active", client="szpital-a") == 1
    assert value(active, "dyzur_maintenance_windows_active", client="klinika-b") == 0
    latency = m["dyzur_alert_to_ticket_seconds"]
    for source in ("rules", "alertmanager"):
        count = value(latency, "dyzur_alert_to_ticket_seconds_count", source=source)
        assert count == 1, source
    assert value(m["dyzur_transition_queue"], "dyzur_transition_queue") == 0
    # The disk alert's series, kept by the engine (the Alertmanager alert is not its series).
    assert value(m["dyzur_rule_series"], "dyzur_rule_series") == 1
    assert value(m["dyzur_alertmanager_alerts"], "dyzur_alertmanager_alerts_total",
                 status="firing", outcome="accepted") == 1  # fmt: skip
    assert "dyzur_sla_open_tickets" in m and "dyzur_alerts" in m


def test_no_label_carries_a_ticket_number_or_free_text(api, bridge, clock):
    disk(bridge, 0.95)
    post(api, notification(am_alert(instance="srv-b1")))
    clock.advance(86400)
    bridge.tick()
    numbers = {t.number for t in bridge.store.list_tickets(TicketFilter())}
    for samples in scrape(api).values():
        for s in samples:
            for label_value in s.labels.values():
                assert label_value not in numbers
                assert " " not in label_value, (s.name, label_value)
