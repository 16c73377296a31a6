"""The real bridge process on a free port, spoken to over HTTP like an agent and an engineer."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import auth, config_data, free_port
from tests.processes import RunningBridge


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "dyzur.yaml"
    path.write_text(yaml.safe_dump(config_data("sqlite:///var/dyzur.db")))
    return path


@pytest.fixture
def running(config_file: Path) -> Iterator[RunningBridge]:
    b = RunningBridge(config_file, free_port())
    yield b
    b.stop()


def disk(value: float) -> dict:
    return {
        "samples": [
            {
                "metric": "dz_test_disk_used_ratio",
                "labels": {"asset": "srv-a1", "mountpoint": "/var"},
                "value": value,
            }
        ]
    }


def test_samples_over_http_open_one_ticket_and_resolve_it(running):
    with httpx.Client(base_url=running.url, timeout=10) as http:
        for value in (0.95, 0.97, 0.96):
            r = http.post("/api/v1/samples", json=disk(value), headers=auth("agent"))
            assert r.status_code == 200 and r.json()["accepted"] == 1
        [ticket] = http.get("/api/v1/tickets", headers=auth("engineer")).json()
        assert ticket["status"] == "open" and ticket["category"] == "usterka"
        assert ticket["number"].startswith("DZ-")
        http.post("/api/v1/samples", json=disk(0.40), headers=auth("agent"))
        [ticket] = http.get("/api/v1/tickets", headers=auth("engineer")).json()
        assert ticket["status"] == "resolved"
        kinds = [
            e["kind"]
            for e in http.get(
                f"/api/v1/tickets/{ticket['number']}", headers=auth("engineer")
            ).json()["timeline"]
        ]
        assert kinds == ["opened", "recovered", "resolved"]
        # Garbage does not take the process down.
        r = http.post("/api/v1/samples", content=b"\xff\x00{", headers=auth("agent"))
        assert r.status_code == 400
        assert http.get("/healthz").status_code == 200


def test_two_bridge_processes_on_one_store_open_one_ticket(config_file):
    """Concurrent requests to two workers sharing the SQLite file fire the same alert."""
    bridges = [RunningBridge(config_file, free_port()) for _ in range(2)]
    try:

        def fire(i: int) -> int:
            url = bridges[i % 2].url
            return httpx.post(
                f"{url}/api/v1/samples", json=disk(0.95), headers=auth("agent"), timeout=30
            ).status_code

        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(fire, range(32))) == {200}
        tickets = httpx.get(
            f"{bridges[0].url}/api/v1/tickets", headers=auth("engineer"), timeout=10
        ).json()
        assert len(tickets) == 1
        # Each worker's engine fired once; the second worker found the first one's ticket.
        assert tickets[0]["fire_count"] == 2
    finally:
        for b in bridges:
            b.stop()
