"""SNMP polling runs in the agent: a simulated UPS, polled by the real agent process, pushed
through the same spool to the real bridge, opens the right ticket for the right hospital."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import yaml

from tests.conftest import TOKENS, auth, config_data, free_port
from tests.processes import ROOT, RunningBridge
from tests.test_snmp_profiles import SnmpSim, need_snmpsim


@pytest.fixture(scope="module")
def ups_sim() -> Iterator[SnmpSim]:
    need_snmpsim()
    sim = SnmpSim()
    yield sim
    sim.stop()


def test_a_ups_needing_a_new_battery_opens_a_utrzymanie_ticket(tmp_path, ups_sim):
    data = config_data("sqlite:///var/dyzur.db")
    data["rule_files"] = ["builtin:hosts", "builtin:ups"]
    data["assets"].append(
        {"id": "ups-a", "client": "szpital-a", "kind": "ups", "name": "UPS serwerownia"}
    )
    bridge_config = tmp_path / "dyzur.yaml"
    bridge_config.write_text(yaml.safe_dump(data))
    port = free_port()
    (tmp_path / "agent.token").write_text(TOKENS["agent-a"])
    agent_config = tmp_path / "agent.yaml"
    agent_config.write_text(
        yaml.safe_dump(
            {
                "asset": "srv-a1",  # the host the agent runs on
                "bridge": {"url": f"http://127.0.0.1:{port}", "token_file": "agent.token"},
                "spool": {"path": "spool.db"},
                "metrics": {"listen": "off"},
                "collectors": [
                    {
                        "name": "ups",
                        "kind": "snmp",
                        "interval": "30s",
                        "options": {
                            "devices": [
                                {
                                    "asset": "ups-a",
                                    "host": "127.0.0.1",
                                    "port": ups_sim.port,
                                    "community": "apc-smartups-powernet",
                                    "profiles": ["apc-powernet"],
                                    "timeout": 2,
                                }
                            ]
                        },
                    }
                ],
            }
        )
    )
    bridge = RunningBridge(bridge_config, port)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "agents", "--config", str(agent_config), "--once"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        tickets = httpx.get(
            f"{bridge.url}/api/v1/tickets?asset=ups-a", headers=auth("engineer"), timeout=5
        ).json()
        [ticket] = [t for t in tickets if t["rule"] == "ups_battery_replace"]
        assert (ticket["client"], ticket["category"]) == ("szpital-a", "utrzymanie")
        assert ticket["title"] == "UPS ups-a: bateria do wymiany"
        assert ticket["reaction_due"] is None  # utrzymanie: no reaction clock
        # The hospital's own token sees it; the other hospital's does not.
        assert (
            httpx.get(
                f"{bridge.url}/api/v1/tickets/{ticket['number']}", headers=auth("client-b")
            ).status_code
            == 404
        )
        assert "apc-smartups-powernet" not in r.stderr  # the community never reaches a log
    finally:
        bridge.stop()
    assert "apc-smartups-powernet" not in bridge.output()
