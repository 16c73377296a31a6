"""Incidents (issue 18) through the agent's SNMP polling: a simulated UPS (snmpsim serving a
data file that the test rewrites as the power fails and comes back), polled by the real agent
process and pushed to the real bridge process, with three servers behind the UPS whose agents
never report. One problem, one ticket: the UPS's power group, with the servers attached.

The shipped builtin:ups pack's grouping is checked twice: in the real bridge, where its
ups_battery_low, ups_low_runtime and ups_low_charge join the ticket that this file's no-wait
variants of ups_on_battery and ups_input_voltage_low (tests/data/incident_power_rules.yaml,
group `power`) opened; and in process with a controlled clock, on samples the ups-mib profile
takes from the same simulated UPS, with the pack alone (its 60 s and 5 min waits stepped)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from bridge.clock import FixedClock
from bridge.config import parse_config
from bridge.models import Category, MemberReason, MemberState, Ticket, TicketStatus
from bridge.service import Bridge
from bridge.store import Store, TicketFilter
from bridge.store.sqlite import SQLiteStore
from collectors.snmp import SnmpCollector
from tests.conftest import AGENT, DATA, TOKENS, auth, config_data, free_port
from tests.processes import RunningAgent, RunningBridge, wait_for
from tests.test_snmp_profiles import SnmpSim, need_snmpsim

POWER_RULES = DATA / "incident_power_rules.yaml"
SERVERS = ["srv-1", "srv-2", "srv-3"]
COMMUNITY = "ups-1"  # snmpsim: the data file's name

# What the UPS answers (UPS-MIB, RFC 1628: the OIDs the ups-mib profile reads), as snmprec
# (OID -> (type, value); 2 INTEGER, 4 OCTET STRING, 6 OBJECT IDENTIFIER, 66 Gauge32), in
# each state of the power failure.
UPS_MIB = "1.3.6.1.2.1.33.1"
ALARM_ON_BATTERY, ALARM_LOW_BATTERY = f"{UPS_MIB}.6.3.2", f"{UPS_MIB}.6.3.3"
State = dict[str, tuple[int, str]]
MAINS: State = {
    "1.3.6.1.2.1.1.1.0": (4, "Test UPS 10 kVA"),  # sysDescr: snmpsim's readiness check
    "1.3.6.1.2.1.1.2.0": (6, "1.3.6.1.2.1.33"),
    f"{UPS_MIB}.2.1.0": (2, "2"),  # upsBatteryStatus: batteryNormal(2)
    f"{UPS_MIB}.2.3.0": (2, "45"),  # upsEstimatedMinutesRemaining
    f"{UPS_MIB}.2.4.0": (2, "100"),  # upsEstimatedChargeRemaining, percent
    f"{UPS_MIB}.2.7.0": (2, "24"),  # upsBatteryTemperature
    f"{UPS_MIB}.3.3.1.2.1": (2, "500"),  # upsInputFrequency.1, 0.1 Hz
    f"{UPS_MIB}.3.3.1.3.1": (2, "230"),  # upsInputVoltage.1
    f"{UPS_MIB}.4.1.0": (2, "3"),  # upsOutputSource: normal(3)
    f"{UPS_MIB}.4.4.1.5.1": (2, "35"),  # upsOutputPercentLoad.1
    f"{UPS_MIB}.6.1.0": (66, "0"),  # upsAlarmsPresent
    f"{UPS_MIB}.7.3.0": (2, "1"),  # upsTestResultsSummary: donePass(1)
}
# The mains sag, the UPS still on mains: only the input voltage is low (a Usterka).
BROWNOUT = {**MAINS, f"{UPS_MIB}.3.3.1.3.1": (2, "196")}
# The mains gone: on battery (an Awaria), no input at all.
ON_BATTERY = {
    **MAINS,
    f"{UPS_MIB}.2.3.0": (2, "38"),
    f"{UPS_MIB}.2.4.0": (2, "96"),
    f"{UPS_MIB}.3.3.1.2.1": (2, "0"),
    f"{UPS_MIB}.3.3.1.3.1": (2, "0"),
    f"{UPS_MIB}.4.1.0": (2, "5"),  # battery(5)
    f"{UPS_MIB}.6.1.0": (66, "1"),
    f"{UPS_MIB}.6.2.1.2.1": (6, ALARM_ON_BATTERY),  # upsAlarmDescr.1
}
# Still on battery, and the battery runs low: three more alerts of the group.
BATTERY_LOW = {
    **ON_BATTERY,
    f"{UPS_MIB}.2.1.0": (2, "3"),  # batteryLow(3)
    f"{UPS_MIB}.2.3.0": (2, "4"),
    f"{UPS_MIB}.2.4.0": (2, "18"),
    f"{UPS_MIB}.6.1.0": (66, "2"),
    f"{UPS_MIB}.6.2.1.2.2": (6, ALARM_LOW_BATTERY),
}
# Power back: on mains, charging (above every clear threshold).
MAINS_BACK = {**MAINS, f"{UPS_MIB}.2.4.0": (2, "62")}

GROUP_RULES = {  # the alerts the power group's ticket lists by the end
    "ups_input_voltage_low_now",
    "ups_on_battery_now",
    "ups_battery_low",  # these three: the shipped builtin:ups pack's rules
    "ups_low_runtime",
    "ups_low_charge",
}


def snmprec(state: State) -> str:
    """The records in OID order (snmpsim walks the file in its order)."""
    oids = sorted(state, key=lambda oid: tuple(int(p) for p in oid.split(".")))
    return "".join(f"{oid}|{state[oid][0]}|{state[oid][1]}\n" for oid in oids)


class SimulatedUps:
    """snmpsim serving one data file, ``ups-1.snmprec`` (community ``ups-1``), in a directory
    of its own that the simulator (dropping to nobody when started as root) can read.

    ``set(state)`` rewrites the file. snmpsim re-reads a data file at the next request once
    its modification time (in whole seconds) changed, re-indexing it when the file is newer
    than its index: so every rewrite is given a distinct modification time ahead of the clock.
    """

    def __init__(self, state: State) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dyzur-ups-"))
        os.chmod(self.dir, 0o755)
        self.file = self.dir / f"{COMMUNITY}.snmprec"
        self._mtime = int(time.time()) + 10
        self.set(state)
        try:
            self.sim = SnmpSim(self.dir)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.port = self.sim.port

    def set(self, state: State) -> None:
        new = self.dir / "next.tmp"  # not a .snmprec: never served
        new.write_text(snmprec(state), encoding="ascii")
        os.chmod(new, 0o644)
        self._mtime += 10
        os.utime(new, (self._mtime, self._mtime))
        os.replace(new, self.file)

    def stop(self) -> None:
        self.sim.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def ups() -> Iterator[SimulatedUps]:
    need_snmpsim()
    sim = SimulatedUps(MAINS)
    yield sim
    sim.stop()


def inventory(data: dict) -> dict:
    """Klinika B: the UPS (polled over SNMP by the agent on poller-1) and three servers behind
    it. The poller does not take part in the absence rules (reports: false): its agent starts
    after the bridge, and its own silence is not what this file tests."""
    data["assets"] = [
        {"id": "ups-1", "client": "klinika-b", "kind": "ups", "reports": False},
        {"id": "poller-1", "client": "klinika-b", "reports": False},
    ] + [{"id": s, "client": "klinika-b", "kind": "server", "depends_on": "ups-1"} for s in SERVERS]
    return data


# --- the real bridge, the real agent, snmpsim ----------------------------------------------


def agent_config(tmp_path: Path, bridge_port: int, ups_port: int, metrics_port: int) -> Path:
    (tmp_path / "agent.token").write_text(TOKENS["agent"])
    path = tmp_path / "agent.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "asset": "poller-1",
                "bridge": {"url": f"http://127.0.0.1:{bridge_port}", "token_file": "agent.token"},
                "spool": {"path": "spool.db"},
                "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
                "jitter": 0,
                "collectors": [
                    {
                        "name": "ups",
                        "kind": "snmp",
                        "interval": "1s",
                        "timeout": "10s",
                        "options": {
                            "devices": [
                                {
                                    "asset": "ups-1",
                                    "host": "127.0.0.1",
                                    "port": ups_port,
                                    "community": COMMUNITY,
                                    "profiles": ["ups-mib"],
                                    "timeout": 2,
                                }
                            ]
                        },
                    }
                ],
            }
        )
    )
    return path


class Api:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, headers=auth("engineer"), timeout=10)

    def tickets(self) -> list[dict]:
        r = self.http.get("/api/v1/tickets", params={"limit": 1000})
        assert r.status_code == 200, r.text
        return r.json()

    def ticket(self, number: str) -> dict:
        r = self.http.get(f"/api/v1/tickets/{number}")
        assert r.status_code == 200, r.text
        return r.json()

    def until(self, check: Callable[[], bool], what: str) -> None:
        """Wait for ``check``; fail at once should a second ticket open meanwhile."""

        def done() -> bool:
            found = [(t["number"], t["asset"], t["rule"]) for t in self.tickets()]
            assert len(found) <= 1, f"a second ticket while waiting for {what}: {found}"
            return check()

        wait_for(done, what=what)

    def audit(self, action: str) -> list[dict]:
        r = self.http.get(
            "/api/v1/audit", params={"action": action, "order": "oldest", "limit": 1000}
        )
        assert r.status_code == 200, r.text
        return r.json()


def kinds(ticket: dict) -> list[str]:
    return [e["kind"] for e in ticket["timeline"]]


class Heartbeats:
    """The servers' agents reporting again: a sample each second until stopped."""

    def __init__(self, url: str, assets: list[str]) -> None:
        self.url, self.assets = url, assets
        self.stopped = threading.Event()
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        body = {
            "samples": [
                {"metric": "dyzur_up", "labels": {"asset": a}, "value": 1} for a in self.assets
            ]
        }
        with httpx.Client(base_url=self.url, headers=auth("agent"), timeout=10) as http:
            while not self.stopped.is_set():
                r = http.post("/api/v1/samples", json=body)
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text}")
                self.stopped.wait(1.0)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(15)


def test_a_ups_on_battery_polled_over_snmp_is_one_ticket_with_its_silent_servers(
    tmp_path: Path, ups: SimulatedUps
) -> None:
    ups.set(MAINS)
    data = inventory(config_data("sqlite:///var/dyzur.db"))
    data["rule_files"] = ["builtin:ups", str(POWER_RULES)]
    data["tick_interval"] = "1s"
    data["incidents"] = {"settle": "60s", "settle_by_kind": {"ups": "60s"}, "grace": "5s"}
    config = tmp_path / "dyzur.yaml"
    config.write_text(yaml.safe_dump(data))
    port = free_port()
    bridge = RunningBridge(config, port)
    agent = None
    heartbeats = None
    api = Api(bridge.url)
    try:
        metrics_port = free_port()
        agent = RunningAgent(agent_config(tmp_path, port, ups.port, metrics_port), metrics_port)
        # The UPS is on mains and polled; the servers' agents never report: after 4 s each
        # one's "agent silent" fires and is held for its root cause, the UPS.
        wait_for(
            lambda: len(api.audit("incident.alert_held")) == len(SERVERS),
            what="the servers' silence held for the UPS",
        )
        held = api.audit("incident.alert_held")
        assert sorted(e["asset"] for e in held) == SERVERS
        assert {e["detail"]["rule"] for e in held} == {"server_silent"}
        assert wait_for(lambda: agent.metric("dyzur_agent_samples_pushed_total"), what="a push")
        assert api.tickets() == []

        # The mains sag: the UPS's input voltage is low (a Usterka of the power group); the
        # held servers' alerts attach to that ticket.
        ups.set(BROWNOUT)
        [opened] = wait_for(api.tickets, what="the UPS's ticket")  # one, the UPS's
        number = opened["number"]
        assert (opened["asset"], opened["category"]) == ("ups-1", "usterka")
        assert opened["rule"] == "ups_input_voltage_low_now"
        api.until(
            lambda: kinds(api.ticket(number)).count("incident_attached") == len(SERVERS),
            what="the held servers attached to the UPS's ticket",
        )

        # The mains gone: on battery, the same ticket escalated in place to an Awaria.
        ups.set(ON_BATTERY)
        api.until(lambda: api.ticket(number)["category"] == "awaria", what="the ticket escalated")
        # The battery runs low: the pack's three battery alerts join the same ticket.
        ups.set(BATTERY_LOW)
        api.until(
            lambda: kinds(api.ticket(number)).count("group_joined") >= 4,
            what="the battery alerts joining the power group's ticket",
        )
        ticket = api.ticket(number)
        [only] = api.tickets()  # one problem, one ticket
        assert only["number"] == number and only["status"] == "open"
        assert (ticket["asset"], ticket["category"]) == ("ups-1", "awaria")
        assert "escalated" in kinds(ticket)

        store = SQLiteStore(tmp_path / "var" / "dyzur.db")  # the bridge's own store, read
        try:
            members = store.incident_alerts(ticket=number)
            group = {m.rule: m for m in members if m.reason is MemberReason.GROUP}
            # The shipped pack's ups_on_battery (60 s) would join here too, had the UPS been
            # on battery that long: the same group.
            assert GROUP_RULES <= set(group) <= GROUP_RULES | {"ups_on_battery"}
            assert {m.state for m in group.values()} == {MemberState.ATTACHED}
            servers = [m for m in members if m.reason is MemberReason.DEPENDENCY]
            assert sorted(m.asset for m in servers) == SERVERS
            assert {(m.rule, m.state) for m in servers} == {("server_silent", MemberState.ATTACHED)}
            for m in members:  # the description lists each alert and each server
                assert f"- {m.asset}: {m.title} (" in ticket["description"]
        finally:
            store.close()
        attached = api.audit("incident.alert_attached")
        assert sorted(e["asset"] for e in attached) == SERVERS
        assert {e["detail"]["ticket"] for e in attached} == {number}

        # Power back: every alert of the group recovers, the ticket resolves. The servers
        # report again, all but srv-1, which after the grace opens a ticket of its own saying
        # it was part of the incident.
        ups.set(MAINS_BACK)
        wait_for(lambda: api.ticket(number)["status"] == "resolved", what="the ticket resolved")
        heartbeats = Heartbeats(bridge.url, SERVERS[1:])
        own = wait_for(
            lambda: [t for t in api.tickets() if t["number"] != number],
            what="srv-1's own ticket after the grace",
        )
        [own_ticket] = own
        assert (own_ticket["asset"], own_ticket["rule"]) == ("srv-1", "server_silent")
        assert own_ticket["category"] == "awaria"
        [part] = [e for e in api.ticket(own_ticket["number"])["timeline"]
                  if e["kind"] == "incident_part"]  # fmt: skip
        assert number in part["message"] and "ups-1" in part["message"]
        store = SQLiteStore(tmp_path / "var" / "dyzur.db")
        try:
            own_stored = store.get_ticket(own_ticket["number"])
            assert own_stored is not None and own_stored.incident == number
            states = {m.asset: m.state for m in store.incident_alerts(ticket=number)
                      if m.reason is MemberReason.DEPENDENCY}  # fmt: skip
            assert states == {
                "srv-1": MemberState.RELEASED,
                "srv-2": MemberState.RECOVERED,
                "srv-3": MemberState.RECOVERED,
            }
        finally:
            store.close()
        [released] = api.audit("incident.alert_released")
        assert released["asset"] == "srv-1"
        assert released["detail"]["own_ticket"] == own_ticket["number"]
        # Nothing else opened: the UPS's ticket and srv-1's.
        assert sorted(t["number"] for t in api.tickets()) == sorted([number, own_ticket["number"]])
        assert api.ticket(number)["status"] == "resolved"
        assert heartbeats.failures == []
    finally:
        if heartbeats is not None:
            heartbeats.stop()
        if agent is not None:
            agent.stop()
        api.http.close()
        bridge.stop()
    if agent is not None:
        assert "Traceback" not in agent.output(), agent.output()
    assert "Traceback" not in bridge.output(), bridge.output()


# --- in process, with a controlled clock: the shipped builtin:ups pack alone ----------------


def poller(ups: SimulatedUps) -> SnmpCollector:
    """The agent's SNMP collector polling the simulated UPS."""
    return SnmpCollector.from_options(
        "ups",
        {
            "devices": [
                {
                    "asset": "ups-1",
                    "host": "127.0.0.1",
                    "port": ups.port,
                    "community": COMMUNITY,
                    "profiles": ["ups-mib"],
                    "timeout": 2,
                }
            ]
        },
    )


@pytest.fixture
def pack_bridge(tmp_path: Path, store: Store, clock: FixedClock) -> Iterator[Bridge]:
    data = inventory(config_data())
    data["rule_files"] = ["builtin:ups"]
    b = Bridge(parse_config(data, "test.yaml", tmp_path), store=store, clock=clock)
    b.start(ticker=False)
    yield b
    b.close()


def test_the_shipped_ups_pack_makes_one_ticket_of_the_polled_power_failure(
    ups: SimulatedUps, pack_bridge: Bridge, clock: FixedClock
) -> None:
    bridge = pack_bridge
    collector = poller(ups)

    def poll(state: State, after: float = 0) -> None:
        """The UPS in ``state``, polled ``after`` seconds later; the samples ingested."""
        ups.set(state)
        if after:
            clock.advance(after)
            bridge.tick()
        samples = collector.collect(bridge.clock.time())
        assert {s.metric: s.value for s in samples}["dyzur_snmp_up"] == 1.0
        result = bridge.ingestor.ingest(samples, AGENT)
        assert result.accepted == len(samples), result.rejected

    def open_tickets() -> list[Ticket]:
        return bridge.store.list_tickets(TicketFilter(status=TicketStatus.OPEN))

    poll(MAINS)
    poll(BROWNOUT)
    assert open_tickets() == []
    poll(BROWNOUT, after=300)  # ups_input_voltage_low waits 5 min: a Usterka
    [ticket] = open_tickets()
    assert (ticket.rule, ticket.category) == ("ups_input_voltage_low", Category.USTERKA)
    poll(ON_BATTERY)
    assert open_tickets()[0].category is Category.USTERKA  # ups_on_battery waits a minute
    poll(ON_BATTERY, after=60)
    poll(BATTERY_LOW)
    [same] = open_tickets()
    assert same.number == ticket.number and same.category is Category.AWARIA
    assert "escalated" in [e.kind for e in bridge.store.timeline(ticket.number)]
    members = bridge.lifecycle.incidents.members(ticket.number)
    assert sorted(m.rule for m in members) == [
        "ups_battery_low",
        "ups_input_voltage_low",
        "ups_low_charge",
        "ups_low_runtime",
        "ups_on_battery",
    ]
    assert {(m.reason, m.state) for m in members} == {(MemberReason.GROUP, MemberState.ATTACHED)}
    for m in members:
        assert m.title in same.description
    poll(MAINS_BACK, after=60)
    resolved = bridge.store.get_ticket(ticket.number)
    assert resolved is not None and resolved.status is TicketStatus.RESOLVED
    assert len(bridge.store.list_tickets(TicketFilter())) == 1
