"""A real prometheus-alertmanager sends its webhook to a real bridge process: alerts fired and
resolved through Alertmanager's API, and through a real Prometheus alert rule on a real scrape."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
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
