"""`dyzur incidents list` as a user runs it: the real CLI in its own process, on a config and
the real SQLite store file a bridge (fixed clock) wrote an incident into."""

from __future__ import annotations

import json

import pytest
import yaml

from bridge.clock import FixedClock
from bridge.config import load_config
from bridge.service import Bridge
from tests.conftest import START
from tests.test_cli import dyzur
from tests.test_incidents import SERVERS, heartbeat, incident_config, on_battery, step


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "dyzur.yaml"
    path.write_text(yaml.safe_dump(incident_config(), allow_unicode=True))
    return path


def test_incidents_list_shows_the_held_alerts_then_the_incident_that_claimed_them(config):
    clock = FixedClock(START)
    bridge = Bridge.open(load_config(config), clock)
    bridge.start(ticker=False)
    try:
        heartbeat(bridge, SERVERS)
        step(bridge, clock, 270)
        on_battery(bridge)
        step(bridge, clock, 30)  # the servers silent: held for their UPS
        r = dyzur("incidents", "list", "--config", config)
        assert r.returncode == 0, r.stderr
        assert "no open incidents" in r.stdout
        rows = [line.split() for line in r.stdout.splitlines() if line.startswith("klinika-b")]
        assert sorted(row[1] for row in rows) == SERVERS
        assert {(row[2], row[-1]) for row in rows} == {("agent_silent", "sw-1,ups-1")}

        step(bridge, clock, 30)
        on_battery(bridge)  # the UPS's alert fires: one ticket, the servers attached
        [ticket] = [t.number for t in bridge.store.open_tickets()]
        r = dyzur("incidents", "list", "--config", config)
        assert r.returncode == 0, r.stderr
        [row] = [line.split() for line in r.stdout.splitlines() if line.startswith(ticket)]
        assert row[1:8] == ["klinika-b", "dependency", "ups-1", "awaria", "6", "0", "0"]
        assert "no alerts held for a root cause" in r.stdout

        r = dyzur("incidents", "list", "--config", config, "--json")
        assert r.returncode == 0, r.stderr
        found = json.loads(r.stdout)
        assert found["held"] == []
        [incident] = found["incidents"]
        assert incident["ticket"]["number"] == ticket and incident["kind"] == "dependency"
        dependents = [a["asset"] for a in incident["attached"] if a["reason"] == "dependency"]
        assert sorted(dependents) == SERVERS
        assert incident["counts"] == {"firing": 6, "recovered": 0, "released": 0}

        r = dyzur("incidents", "list", "--config", config, "--client", "szpital-a")
        assert r.returncode == 0 and ticket not in r.stdout and "no open incidents" in r.stdout
        r = dyzur("incidents", "list", "--config", config, "--client", "nope")
        assert r.returncode == 2 and "--client: no client 'nope'" in r.stderr
    finally:
        bridge.close()
