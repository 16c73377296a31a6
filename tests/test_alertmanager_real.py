"""A real prometheus-alertmanager sends its webhook to a real bridge process: alerts fired and
resolved through Alertmanager's API, and through a real Prometheus alert rule on a real scrape."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import TOKENS, auth, config_data, free_port
from tests.processes import RunningBridge, wait_for
from tests.promstack import Alertmanager, Prometheus


@pytest.fixture
def bridge(tmp_path: Path):
    path = tmp_path / "dyzur.yaml"
    path.write_text(yaml.safe_dump(config_data("sqlite:///var/dyzur.db")))
    running = RunningBridge(path, free_port())
    yield running
    running.stop()


@pytest.fixture
def alertmanager(tmp_path: Path, bridge):
    am = Alertmanager(tmp_path / "am", f"{bridge.url}/api/v1/alertmanager", TOKENS["agent"])
    yield am
    am.stop()


def tickets(bridge, **params) -> list[dict]:
    r = httpx.get(f"{bridge.url}/api/v1/tickets", params=params, headers=auth("engineer"))
    return r.json()


def test_alerts_fired_and_resolved_through_alertmanager(bridge, alertmanager):
    start = datetime.now(UTC)
    alert = {
        "labels": {"alertname": "AmmsDbDown", "severity": "critical", "instance": "srv-a1:9100"},
        "annotations": {"summary": "Baza AMMS nie odpowiada"},
        "startsAt": start.isoformat(),
    }
    warning = {
        "labels": {"alertname": "DiskSlow", "severity": "warning", "asset": "srv-b1"},
        "annotations": {"summary": "Disk latency high"},
        "startsAt": start.isoformat(),
    }
    alertmanager.post_alerts(alert, warning)
    found = wait_for(lambda: len(tickets(bridge)) == 2 and tickets(bridge), what="two tickets")
    by_asset = {t["asset"]: t for t in found}
    assert by_asset["srv-a1"]["category"] == "awaria"
    assert by_asset["srv-a1"]["title"] == "Baza AMMS nie odpowiada na srv-a1 (Alertmanager)"
    assert by_asset["srv-b1"]["category"] == "usterka"
    assert by_asset["srv-b1"]["title"] == "Disk latency high on srv-b1 (Alertmanager)"  # en
    # firing again changes nothing; resolving through Alertmanager resolves the ticket
    alertmanager.post_alerts(alert)
    ended = datetime.now(UTC)
    alertmanager.post_alerts({**alert, "endsAt": ended.isoformat()})
    wait_for(
        lambda: tickets(bridge, asset="srv-a1")[0]["status"] == "resolved",
        what="the srv-a1 ticket resolved by Alertmanager",
    )
    assert len(tickets(bridge)) == 2
    assert tickets(bridge, asset="srv-a1")[0]["fire_count"] == 1
    assert tickets(bridge, asset="srv-b1")[0]["status"] == "open"


def timeline(bridge, number: str) -> list[dict]:
    r = httpx.get(f"{bridge.url}/api/v1/tickets/{number}", headers=auth("engineer"))
    return r.json()["timeline"]


def metrics(bridge) -> str:
    return httpx.get(f"{bridge.url}/metrics", headers=auth("engineer")).text


def test_a_replayed_firing_reopens_nothing_and_a_new_one_does(bridge, alertmanager):
    start = datetime.now(UTC) - timedelta(minutes=5)
    alert = {
        "labels": {"alertname": "UpsOnBattery", "severity": "critical", "asset": "srv-a1"},
        "annotations": {"summary": "UPS na baterii"},
        "startsAt": start.isoformat(),
    }
    alertmanager.post_alerts(alert)
    [ticket] = wait_for(lambda: tickets(bridge, asset="srv-a1"), what="the ticket")
    alertmanager.post_alerts({**alert, "endsAt": datetime.now(UTC).isoformat()})
    wait_for(
        lambda: tickets(bridge, asset="srv-a1")[0]["status"] == "resolved", what="the resolution"
    )
    # the old firing told again (a replay: the same startsAt): Alertmanager notifies it, and
    # dyzur notes it on the resolved ticket without reopening it
    alertmanager.post_alerts(alert)
    wait_for(
        lambda: timeline(bridge, ticket["number"])[-1]["kind"] == "stale",
        what="the stale notification on the timeline",
    )
    [ticket] = tickets(bridge, asset="srv-a1")
    assert ticket["status"] == "resolved" and ticket["fire_count"] == 1
    assert timeline(bridge, ticket["number"])[-1]["message"].startswith("Pominięto nieaktualne")
    assert 'dyzur_alertmanager_stale_total{client="szpital-a"} 1.0' in metrics(bridge)
    # the replay ends (Alertmanager tells dyzur); the alert fires anew, after the resolution:
    # the ticket reopens
    alertmanager.post_alerts({**alert, "endsAt": datetime.now(UTC).isoformat()})
    resolved = 'dyzur_alertmanager_alerts_total{outcome="accepted",status="resolved"} 2.0'
    wait_for(lambda: resolved in metrics(bridge), what="the replay's resolution notified")
    alertmanager.post_alerts({**alert, "startsAt": datetime.now(UTC).isoformat()})
    wait_for(
        lambda: tickets(bridge, asset="srv-a1")[0]["status"] == "open",
        what="the ticket reopened by a new firing",
    )
    [ticket] = tickets(bridge, asset="srv-a1")
    assert ticket["fire_count"] == 2
    assert timeline(bridge, ticket["number"])[-1]["kind"] == "reopened"


class _Exporter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"amms_up 1\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_a_prometheus_rule_on_a_real_scrape_opens_and_resolves_a_ticket(
    tmp_path, bridge, alertmanager
):
    exporter_port = free_port()  # nothing listens yet: the scrape fails, up == 0
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [alertmanager.url.removeprefix("http://")]}]}
            ]
        },
        "scrape_configs": [
            {
                "job_name": "amms",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{exporter_port}"], "labels": {"asset": "srv-a2"}}
                ],
            }
        ],
    }
    rules = {
        "groups": [
            {
                "name": "dyzur-test",
                "rules": [
                    {
                        "alert": "AmmsExporterDown",
                        "expr": 'up{job="amms"} == 0',
                        "labels": {"severity": "critical"},
                        "annotations": {"summary": "Eksporter AMMS nie odpowiada"},
                    }
                ],
            }
        ]
    }
    prometheus = Prometheus(tmp_path / "prom", config, rules)
    server = None
    try:
        [ticket] = wait_for(
            lambda: tickets(bridge, asset="srv-a2"), timeout=60, what="the rule's ticket"
        )
        assert ticket["category"] == "awaria" and ticket["rule"] == "alertmanager:AmmsExporterDown"
        assert ticket["title"] == "Eksporter AMMS nie odpowiada na srv-a2 (Alertmanager)"
        server = ThreadingHTTPServer(("127.0.0.1", exporter_port), _Exporter)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        wait_for(
            lambda: tickets(bridge, asset="srv-a2")[0]["status"] == "resolved",
            timeout=60,
            what="the ticket resolved once the scrape works",
        )
        assert len(tickets(bridge, asset="srv-a2")) == 1
    finally:
        if server is not None:
            server.shutdown()
        prometheus.stop()
