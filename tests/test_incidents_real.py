"""Incidents (issue 18) against the real bridge process, in real time: a UPS on battery with
five servers and two AMMS hosts behind it (UPS -> switch -> servers -> AMMS hosts), through
pushed samples and through Alertmanager's webhook, and Alertmanager's known failure cases
replayed (the dependent's alert first, the root resolving while the dependent fires, a restart
in the middle).

The shipped periods are shortened so that a scenario takes seconds (tests/data/
incident_rules.yaml: "agent silent" after 5 s instead of 5 min, on battery at once instead of
after a minute; ``incidents: {settle: 45s, grace: 8s}``, ``tick_interval: 1s``); the order of
the events is the issue's: the servers' alerts fire GAP (30) seconds before the UPS's arrives.

Each scenario is a hospital of its own (a client with its own UPS tree) and they run at the
same time, on one bridge process (the restart on one of its own), so the file takes as long
as its longest scenario (about a minute; the sum would be three); each test reports its
scenario's outcome. What the API does not show of an incident (the alerts attached to a
ticket, ``Ticket.incident``) is read from the bridge's SQLite store.
"""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from bridge.models import IncidentAlert, MemberReason, MemberState
from bridge.store.sqlite import SQLiteStore
from tests.conftest import DATA, auth, config_data, free_port
from tests.processes import RunningBridge, wait_for

GAP = 30.0  # seconds from the dependents' alerts to their root's (the issue's scenario)
SETTLE = 45  # incidents.settle: longer than GAP, so the root claims the held alerts
GRACE = 8  # incidents.grace
RESEND = 2.0  # Alertmanager's group_interval / repeat_interval, shortened
WAIT = 20.0  # the longest wait for something the bridge does within a tick or two
SCENARIO_TIMEOUT = 180.0
STORE = "sqlite:///var/dyzur.db"


# --- the hospitals ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """A hospital's UPS tree: the UPS, a switch behind it, five servers behind the switch and
    two AMMS hosts on the first two servers. ``agents``: the servers run dyzur agents (pushed
    samples, "agent silent" when they stop); otherwise Prometheus watches them and Alertmanager
    tells the bridge."""

    client: str
    prefix: str
    agents: bool

    @property
    def ups(self) -> str:
        return f"{self.prefix}-ups"

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    @property
    def servers(self) -> list[str]:
        return [f"{self.prefix}-srv-{i}" for i in range(1, 6)]

    @property
    def amms(self) -> list[str]:
        return [f"{self.prefix}-amms-{i}" for i in range(1, 3)]

    @property
    def dependents(self) -> set[str]:
        """The assets whose alerts the UPS's incident takes: the servers and AMMS hosts."""
        return set(self.servers) | set(self.amms)

    def config_assets(self) -> list[dict]:
        assets: list[dict] = [
            {"id": self.ups, "client": self.client, "kind": "ups", "reports": False},
            {"id": self.switch, "client": self.client, "kind": "network",
             "depends_on": self.ups, "reports": False},
        ]  # fmt: skip
        assets += [
            {"id": s, "client": self.client, "kind": "server", "depends_on": self.switch,
             "reports": self.agents}
            for s in self.servers
        ]  # fmt: skip
        assets += [
            {"id": a, "client": self.client, "kind": "amms", "depends_on": s, "reports": False}
            for a, s in zip(self.amms, self.servers, strict=False)
        ]
        return assets


SAMPLES = Site("szpital-p", "p", agents=True)
ALERTMANAGER = Site("szpital-m", "m", agents=False)
GROUP_WAIT = Site("szpital-w", "w", agents=False)
ROOT_FIRST = Site("szpital-g", "g", agents=False)
RESTART = Site("szpital-r", "r", agents=False)


def write_config(directory: Path, sites: list[Site]) -> Path:
    data = config_data(STORE)
    data["rule_files"] = [str(DATA / "incident_rules.yaml")]
    data["tick_interval"] = "1s"
    data["incidents"] = {"settle": f"{SETTLE}s", "grace": f"{GRACE}s"}
    data["clients"] += [
        {"id": s.client, "name": f"Szpital {s.prefix.upper()}",
         "contract": {"language": "en", "hours": "24/7"}}
        for s in sites
    ]  # fmt: skip
    data["assets"] = [a for s in sites for a in s.config_assets()]
    path = directory / "dyzur.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


# --- what the tests see of the bridge --------------------------------------------------------


class Desk:
    """A running bridge as an engineer sees it (its API), and its store read directly for
    what the API does not show (an incident's attached alerts, ``Ticket.incident``)."""

    def __init__(self, url: str, db: Path, site: Site) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.store = SQLiteStore(db)
        self.site = site

    def close(self) -> None:
        self.http.close()
        self.store.close()

    def tickets(self) -> list[dict]:
        r = self.http.get(
            "/api/v1/tickets",
            params={"client": self.site.client, "limit": 1000},
            headers=auth("engineer"),
        )
        assert r.status_code == 200, r.text
        return r.json()

    def open_tickets(self) -> list[dict]:
        return [t for t in self.tickets() if t["status"] == "open"]

    def ticket(self, number: str) -> dict:
        r = self.http.get(f"/api/v1/tickets/{number}", headers=auth("engineer"))
        assert r.status_code == 200, r.text
        return r.json()

    def timeline(self, number: str, kind: str) -> list[str]:
        """The messages of the ticket's timeline entries of ``kind``."""
        return [e["message"] for e in self.ticket(number)["timeline"] if e["kind"] == kind]

    def kinds(self, number: str) -> list[str]:
        return [e["kind"] for e in self.ticket(number)["timeline"]]

    def members(self, ticket: str | None = None) -> list[IncidentAlert]:
        """The client's alerts held or attached for a root cause (of every state), or one
        ticket's (not the alerts of an incident group: the UPS's own alert is one of its
        ``power`` group's)."""
        if ticket is not None:
            found = self.store.incident_alerts(ticket=ticket)
        else:
            found = self.store.incident_alerts(client=self.site.client)
        return [m for m in found if m.reason is not MemberReason.GROUP]

    def states(self, ticket: str | None = None) -> dict[str, MemberState]:
        """Asset -> the state of its alert's record (one alert per asset in these tests)."""
        found: dict[str, MemberState] = {}
        for m in self.members(ticket):
            assert m.asset not in found, f"two records for {m.asset}: {self.members(ticket)}"
            found[m.asset] = m.state
        return found

    def incident_of(self, number: str) -> str | None:
        ticket = self.store.get_ticket(number)
        assert ticket is not None
        return ticket.incident

    def actions(self) -> Counter[str]:
        events = self.store.audit_events(limit=100_000, clients=frozenset({self.site.client}))
        return Counter(e.action for e in events)

    def await_tickets(self, count: int, what: str) -> list[dict]:
        return wait_for(
            lambda: (lambda found: found if len(found) >= count else None)(self.tickets()),
            timeout=WAIT,
            interval=0.2,
            what=what,
        )

    def await_states(self, expected: dict[str, MemberState], what: str) -> None:
        def reached() -> bool:
            states = self.states()
            return all(states.get(asset) is state for asset, state in expected.items())

        try:
            wait_for(reached, timeout=WAIT, interval=0.2, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the alerts' states: {self.states()}") from None


def one_ticket(desk: Desk) -> dict:
    tickets = desk.tickets()
    assert len(tickets) == 1, [(t["asset"], t["rule"], t["status"]) for t in tickets]
    return tickets[0]


# --- the senders -------------------------------------------------------------------------------


class Agents:
    """A site's pushers, each second from a thread and at once on a change: the dyzur agent of
    each server that is up (its samples), the UPS's SNMP poller (on battery or not) and the AMMS
    probe (each AMMS host answering or not)."""

    def __init__(self, url: str, site: Site) -> None:
        self.site = site
        self.up = set(site.servers)
        self.on_battery = 0.0
        self.amms_up = dict.fromkeys(site.amms, 1.0)
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._http = httpx.Client(base_url=url, timeout=30)
        self.push()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def set(
        self,
        up: set[str] | None = None,
        on_battery: float | None = None,
        amms_up: dict[str, float] | None = None,
    ) -> None:
        with self._lock:
            if up is not None:
                self.up = set(up)
            if on_battery is not None:
                self.on_battery = on_battery
            if amms_up is not None:
                self.amms_up.update(amms_up)
        self.push()

    def push(self) -> None:
        with self._lock:
            samples = [
                {"metric": "dyzur_up", "labels": {"asset": s}, "value": 1.0}
                for s in sorted(self.up)
            ]
            samples.append(
                {
                    "metric": "dyzur_ups_on_battery",
                    "labels": {"asset": self.site.ups},
                    "value": self.on_battery,
                }
            )
            samples += [
                {"metric": "dz_test_amms_up", "labels": {"asset": a}, "value": v}
                for a, v in sorted(self.amms_up.items())
            ]
            r = self._http.post("/api/v1/samples", json={"samples": samples}, headers=auth("agent"))
            if r.status_code != 200 or r.json()["rejected"]:
                self.errors.append(f"{r.status_code} {r.text}")

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.push()
            except httpx.TransportError as exc:
                self.errors.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._http.close()


ALERTS = {
    # alertname: (job, how the instance label names the asset, summary)
    "NodeDown": ("node", "{asset}:9100", "Node exporter down"),
    "AmmsDown": ("amms", "{asset}:1521", "AMMS does not answer"),
    "UpsOnBattery": ("snmp", "{asset}", "UPS on battery"),
    "SwitchDown": ("snmp", "{asset}", "Switch unreachable"),
}


def am_fingerprint(labels: dict[str, str]) -> str:
    """A hash of the alert's labels, as Alertmanager's fingerprint is (its own is FNV-1a)."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class Alertmanager:
    """What Alertmanager sends dyzur's webhook: alerts grouped by alertname, each with its
    labels, its startsAt (when it started firing in Prometheus) and its fingerprint; a group's
    notification carries all its alerts, the firing ones and those just resolved. The firing
    alerts are sent again every RESEND seconds (group_interval, repeat_interval): that must
    change nothing. A notification the bridge cannot take (it is down) is sent again later."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.firing: dict[str, dict[str, dict]] = {}  # alertname -> asset -> alert
        self.errors: list[str] = []
        self.unreachable = 0  # notifications the bridge did not answer (killed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._http = httpx.Client(timeout=30)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def alert(alertname: str, asset: str, starts: datetime) -> dict:
        job, instance, summary = ALERTS[alertname]
        labels = {
            "alertname": alertname,
            "instance": instance.format(asset=asset),
            "job": job,
            "severity": "critical",
        }
        return {
            "status": "firing",
            "labels": labels,
            "annotations": {"summary": summary},
            "startsAt": starts.isoformat(),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": f"http://prometheus:9090/graph?alert={alertname}",
            "fingerprint": am_fingerprint(labels),
        }

    def fire(self, alertname: str, assets: list[str], started_ago: float) -> None:
        """The group's notification once its group_wait passed: these alerts started
        ``started_ago`` seconds ago."""
        starts = datetime.now(UTC) - timedelta(seconds=started_ago)
        with self._lock:
            group = self.firing.setdefault(alertname, {})
            for asset in assets:
                group[asset] = self.alert(alertname, asset, starts)
            self._notify(alertname, [], must=True)

    def resolve(self, alertname: str, assets: list[str]) -> None:
        now = datetime.now(UTC).isoformat()
        with self._lock:
            group = self.firing[alertname]
            resolved = [
                {**group.pop(asset), "status": "resolved", "endsAt": now} for asset in assets
            ]
            self._notify(alertname, resolved, must=True)

    def _notify(self, alertname: str, resolved: list[dict], must: bool) -> None:
        alerts = list(self.firing.get(alertname, {}).values()) + resolved
        if not alerts:
            return
        body = {
            "version": "4",
            "status": "firing" if self.firing.get(alertname) else "resolved",
            "receiver": "dyzur",
            "groupKey": f'{{}}:{{alertname="{alertname}"}}',
            "truncatedAlerts": 0,
            "alerts": alerts,
        }
        try:
            r = self._http.post(f"{self.url}/api/v1/alertmanager", json=body, headers=auth("agent"))
        except httpx.TransportError:
            if must:
                raise
            self.unreachable += 1
            return
        if r.status_code != 200 or r.json() != {"accepted": len(alerts), "rejected": []}:
            self.errors.append(f"{r.status_code} {r.text}")

    def _run(self) -> None:
        while not self._stop.wait(RESEND):
            with self._lock:
                for alertname in list(self.firing):
                    self._notify(alertname, [], must=False)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._http.close()


# --- the scenarios -----------------------------------------------------------------------------


def check_incident(desk: Desk, root_asset: str, dependents: set[str]) -> dict:
    """Exactly one ticket, the root's Awaria, with each dependent's alert attached to it and
    named on its timeline."""
    ticket = one_ticket(desk)
    assert ticket["asset"] == root_asset and ticket["category"] == "awaria"
    assert ticket["status"] == "open"
    number = ticket["number"]
    members = desk.members(number)
    assert {m.asset for m in members} == dependents
    assert {(m.state, m.reason) for m in members} == {
        (MemberState.ATTACHED, MemberReason.DEPENDENCY)
    }
    attached = desk.timeline(number, "incident_attached")
    assert len(attached) == len(dependents)
    named = Counter(line.split(":", 1)[0].rsplit(" ", 1)[-1] for line in attached)
    assert named == Counter(dependents), attached  # "... dependent asset <asset>: <title> ..."
    return ticket


def check_own_ticket(desk: Desk, own: dict, root: dict, rule: str) -> None:
    """A dependent still firing after the grace: its own ticket, part of the root's incident."""
    assert own["rule"] == rule and own["status"] == "open" and own["category"] == "awaria"
    [part] = desk.timeline(own["number"], "incident_part")
    assert root["number"] in part and root["asset"] in part
    assert desk.incident_of(own["number"]) == root["number"]
    [released] = desk.timeline(root["number"], "incident_released")
    assert own["number"] in released and own["asset"] in released


def ups_on_battery_with_agents(url: str, db: Path) -> None:
    """The issue's scenario through pushed samples: the servers go silent ("agent silent") and
    the AMMS probe loses both AMMS hosts 30 s before the UPS's poller sees it on battery ->
    one ticket, the UPS's Awaria, listing the seven; power back -> it resolves, the servers
    report again and nothing else opens, except srv-1, still down after the grace: its own
    ticket saying it was part of the incident, with amms-1 (on srv-1) attached to it; srv-1
    back -> that ticket resolves."""
    site = SAMPLES
    desk = Desk(url, db, site)
    agents = Agents(url, site)
    srv1, amms1 = site.servers[0], site.amms[0]
    try:
        # (The agents' first samples came within 'absent' of the bridge's start.)
        assert desk.members() == []
        # The power fails: the servers' agents stop, the AMMS hosts stop answering the probe.
        agents.set(up=set(), amms_up=dict.fromkeys(site.amms, 0.0))
        desk.await_states(
            dict.fromkeys(site.dependents, MemberState.HELD),
            "the servers' 'agent silent' and the AMMS alerts to be held",
        )
        assert desk.tickets() == []
        time.sleep(GAP)
        assert desk.tickets() == []  # still held, waiting for their root cause
        agents.set(on_battery=1.0)  # the UPS's poll sees the battery
        desk.await_tickets(1, "the UPS's ticket")
        root = check_incident(desk, site.ups, site.dependents)
        assert root["rule"] == "ups_on_battery_fast"

        # Power back: the UPS's ticket resolves; the servers come back but srv-1.
        agents.set(on_battery=0.0)
        wait_for(
            lambda: desk.ticket(root["number"])["status"] == "resolved",
            timeout=WAIT,
            what="the UPS's ticket to resolve",
        )
        agents.set(up=set(site.servers[1:]), amms_up={site.amms[1]: 1.0})
        desk.await_states(
            {a: MemberState.RECOVERED for a in site.dependents - {srv1, amms1}},
            "the alerts of the servers that came back to recover",
        )
        assert [t["number"] for t in desk.tickets()] == [root["number"]]  # within the grace
        # After the grace, srv-1 (still silent) opens its own ticket; amms-1 joins it.
        desk.await_tickets(2, "srv-1's own ticket after the grace")
        time.sleep(2)  # two more ticks: nothing else opens
        tickets = desk.tickets()
        assert len(tickets) == 2, [(t["asset"], t["rule"]) for t in tickets]
        [own] = [t for t in tickets if t["number"] != root["number"]]
        assert own["asset"] == srv1
        check_own_ticket(desk, own, root, "agent_silent_fast")
        [amms] = desk.members(own["number"])
        assert amms.asset == amms1 and amms.state is MemberState.ATTACHED
        assert len(desk.timeline(own["number"], "incident_attached")) == 1

        # srv-1 and its AMMS back: its ticket resolves, amms-1's alert recovers.
        agents.set(up=set(site.servers), amms_up={amms1: 1.0})
        wait_for(
            lambda: desk.ticket(own["number"])["status"] == "resolved",
            timeout=WAIT,
            what="srv-1's ticket to resolve",
        )
        desk.await_states({amms1: MemberState.RECOVERED}, "amms-1's alert to recover")
        time.sleep(2)
        assert len(desk.tickets()) == 2 and desk.open_tickets() == []
        states = desk.states()
        assert states.pop(srv1) is MemberState.RELEASED
        assert set(states.values()) == {MemberState.RECOVERED}
        actions = desk.actions()
        assert actions["incident.alert_held"] == len(site.dependents)
        assert actions["incident.alert_attached"] == len(site.dependents) + 1  # amms-1 again
        assert actions["incident.alert_released"] == 1
        assert actions["ticket.opened"] == 2
        assert agents.errors == []  # every push taken, no sample refused
    finally:
        agents.stop()
        desk.close()


def ups_on_battery_through_alertmanager(url: str, db: Path) -> None:
    """The same through Alertmanager: NodeDown for the five servers and AmmsDown for the two
    AMMS hosts notified 30 s before UpsOnBattery (which started then and waited its group_wait)
    -> one ticket listing the seven; Alertmanager sending the firing alerts again and again
    changes nothing; UpsOnBattery resolved -> the ticket resolves; the resolved servers open
    nothing; srv-1 (and amms-1 on it) still firing after the grace: srv-1's own ticket, part of
    the incident; its resolve resolves it."""
    site = ALERTMANAGER
    desk = Desk(url, db, site)
    am = Alertmanager(url)
    srv1, amms1 = site.servers[0], site.amms[0]
    try:
        am.fire("NodeDown", site.servers, started_ago=GAP)
        am.fire("AmmsDown", site.amms, started_ago=GAP)
        desk.await_states(
            dict.fromkeys(site.dependents, MemberState.HELD),
            "NodeDown and AmmsDown to be held",
        )
        time.sleep(GAP)
        assert desk.tickets() == []
        am.fire("UpsOnBattery", [site.ups], started_ago=GAP)
        desk.await_tickets(1, "the UPS's ticket")
        root = check_incident(desk, site.ups, site.dependents)
        assert root["rule"] == "alertmanager:UpsOnBattery"
        kinds = desk.kinds(root["number"])
        time.sleep(2 * RESEND + 1)  # repeated notifications of all three groups
        assert desk.kinds(root["number"]) == kinds
        assert one_ticket(desk)["fire_count"] == 1

        am.resolve("UpsOnBattery", [site.ups])
        assert desk.ticket(root["number"])["status"] == "resolved"  # answered after the change
        am.resolve("NodeDown", site.servers[1:])
        am.resolve("AmmsDown", site.amms[1:])
        states = desk.states()
        assert {states[a] for a in site.dependents - {srv1, amms1}} == {MemberState.RECOVERED}
        assert len(desk.tickets()) == 1
        desk.await_tickets(2, "srv-1's own ticket after the grace")
        [own] = [t for t in desk.tickets() if t["number"] != root["number"]]
        assert own["asset"] == srv1
        check_own_ticket(desk, own, root, "alertmanager:NodeDown")
        assert desk.states(own["number"]) == {amms1: MemberState.ATTACHED}
        time.sleep(RESEND + 1)  # srv-1's and amms-1's firing notified again: nothing changes
        assert len(desk.tickets()) == 2
        assert desk.ticket(own["number"])["fire_count"] == 1

        am.resolve("NodeDown", [srv1])
        am.resolve("AmmsDown", [amms1])
        assert desk.ticket(own["number"])["status"] == "resolved"
        assert desk.states()[amms1] is MemberState.RECOVERED
        time.sleep(2)
        assert len(desk.tickets()) == 2 and desk.open_tickets() == []
        actions = desk.actions()
        assert actions["incident.alert_held"] == len(site.dependents)
        assert actions["incident.alert_released"] == 1
        assert actions["ticket.opened"] == 2
        assert am.errors == []  # every notification taken, none refused
    finally:
        am.stop()
        desk.close()


def dependent_first_root_after_group_wait(url: str, db: Path) -> None:
    """Alertmanager's inhibition needs the source alert present when the target's group is
    notified, so a target notified first is delivered. Replayed: the UPS goes on battery first
    (its alert's startsAt is the earliest), but its group is new and waits its group_wait
    (30 s), while the alerts it causes (the switch's SwitchDown, two servers' NodeDown, the
    AMMS host's AmmsDown) are notified at once. dyzur holds them and the UPS's alert claims
    them all, the switch's too (it depends on the UPS): one ticket. The UPS resolving first and
    the dependents within the grace: nothing more opens."""
    site = GROUP_WAIT
    desk = Desk(url, db, site)
    am = Alertmanager(url)
    servers, amms = [site.servers[0], site.servers[2]], site.amms[0]  # amms-1 is on srv-1
    dependents = {site.switch, *servers, amms}
    try:
        am.fire("SwitchDown", [site.switch], started_ago=5)
        am.fire("NodeDown", servers, started_ago=5)
        am.fire("AmmsDown", [amms], started_ago=5)
        desk.await_states(dict.fromkeys(dependents, MemberState.HELD), "the dependents held")
        time.sleep(GAP)
        assert desk.tickets() == []
        am.fire("UpsOnBattery", [site.ups], started_ago=GAP + 10)
        desk.await_tickets(1, "the UPS's ticket")
        root = check_incident(desk, site.ups, dependents)
        am.resolve("UpsOnBattery", [site.ups])
        assert desk.ticket(root["number"])["status"] == "resolved"
        time.sleep(1)
        am.resolve("SwitchDown", [site.switch])
        am.resolve("NodeDown", servers)
        am.resolve("AmmsDown", [amms])
        assert desk.states() == dict.fromkeys(dependents, MemberState.RECOVERED)
        time.sleep(GRACE + 2)  # past the grace: nothing opens
        assert len(desk.tickets()) == 1
        assert desk.actions()["ticket.opened"] == 1
        assert am.errors == []  # every notification taken, none refused
    finally:
        am.stop()
        desk.close()


def root_resolves_while_the_dependent_fires(url: str, db: Path) -> None:
    """Alertmanager #2754: an alert inhibited while its source fired loses its resolve. Here
    the UPS fires first, srv-1's and srv-2's NodeDown join its ticket; the UPS resolves while
    both still fire; srv-2 resolves within the grace (opens nothing), srv-1 still fires after
    it: its own ticket, part of the incident; srv-1's resolve resolves that ticket (never an
    orphan), and a late copy of its firing (startsAt before the resolution) reopens nothing."""
    site = ROOT_FIRST
    desk = Desk(url, db, site)
    am = Alertmanager(url)
    srv1, srv2 = site.servers[:2]
    try:
        am.fire("UpsOnBattery", [site.ups], started_ago=GAP)
        root = desk.await_tickets(1, "the UPS's ticket")[0]
        am.fire("NodeDown", [srv1, srv2], started_ago=GAP / 2)
        desk.await_states(
            {srv1: MemberState.ATTACHED, srv2: MemberState.ATTACHED}, "NodeDown attached"
        )
        root = check_incident(desk, site.ups, {srv1, srv2})
        am.resolve("UpsOnBattery", [site.ups])
        assert desk.ticket(root["number"])["status"] == "resolved"
        am.resolve("NodeDown", [srv2])
        assert desk.states()[srv2] is MemberState.RECOVERED
        desk.await_tickets(2, "srv-1's own ticket after the grace")
        [own] = [t for t in desk.tickets() if t["number"] != root["number"]]
        assert own["asset"] == srv1
        check_own_ticket(desk, own, root, "alertmanager:NodeDown")
        late = Alertmanager.alert("NodeDown", srv1, datetime.now(UTC) - timedelta(seconds=GAP))
        am.resolve("NodeDown", [srv1])
        assert desk.ticket(own["number"])["status"] == "resolved"
        # An HA peer's late copy of the firing (started before the resolution): stale.
        r = httpx.post(
            f"{url}/api/v1/alertmanager",
            json={"version": "4", "status": "firing", "alerts": [late]},
            headers=auth("agent"),
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["accepted"] == 1
        time.sleep(2)
        assert desk.ticket(own["number"])["status"] == "resolved"
        assert len(desk.tickets()) == 2
        assert desk.states() == {srv1: MemberState.RELEASED, srv2: MemberState.RECOVERED}
        assert am.errors == []  # every notification taken, none refused
    finally:
        am.stop()
        desk.close()


def restart_in_the_middle(directory: Path) -> None:
    """The bridge SIGKILLed while dependents' alerts are held and started again: Alertmanager's
    repeated notifications change nothing, the UPS's alert claims the held alerts (one ticket,
    the dependents attached), and the dependents' resolves after the restart are processed (no
    orphan, no second ticket)."""
    site = RESTART
    config = write_config(directory, [site])
    port = free_port()
    bridge = RunningBridge(config, port)
    am = Alertmanager(bridge.url)
    desk = Desk(bridge.url, directory / "var" / "dyzur.db", site)
    dependents = set(site.servers[:3]) | {site.amms[0]}
    try:
        am.fire("NodeDown", site.servers[:3], started_ago=GAP)
        am.fire("AmmsDown", site.amms[:1], started_ago=GAP)
        desk.await_states(dict.fromkeys(dependents, MemberState.HELD), "the dependents held")
        bridge.stop(signal.SIGKILL)
        time.sleep(RESEND + 1)  # Alertmanager's notifications fail meanwhile
        assert am.unreachable > 0
        bridge = RunningBridge(config, port)
        time.sleep(RESEND + 1)  # and are taken again after the restart: nothing changes
        assert desk.tickets() == []
        assert desk.states() == dict.fromkeys(dependents, MemberState.HELD)
        am.fire("UpsOnBattery", [site.ups], started_ago=GAP)
        root = desk.await_tickets(1, "the UPS's ticket after the restart")[0]
        root = check_incident(desk, site.ups, dependents)
        am.resolve("NodeDown", site.servers[:3])
        am.resolve("AmmsDown", site.amms[:1])
        assert desk.states() == dict.fromkeys(dependents, MemberState.RECOVERED)
        assert len(desk.timeline(root["number"], "incident_recovered")) == len(dependents)
        am.resolve("UpsOnBattery", [site.ups])
        assert desk.ticket(root["number"])["status"] == "resolved"
        time.sleep(GRACE + 3)  # past the grace: nothing opens
        assert len(desk.tickets()) == 1
        actions = desk.actions()
        assert actions["incident.alert_held"] == len(dependents)
        assert actions["incident.alert_recovered"] == len(dependents)
        assert actions["ticket.opened"] == 1
        assert am.errors == []  # every notification taken, none refused
    finally:
        am.stop()
        desk.close()
        bridge.stop()


# --- running them at once ----------------------------------------------------------------------


SHARED: dict[str, Callable[[str, Path], None]] = {
    "samples": ups_on_battery_with_agents,
    "alertmanager": ups_on_battery_through_alertmanager,
    "group_wait": dependent_first_root_after_group_wait,
    "root_first": root_resolves_while_the_dependent_fires,
}


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[None]]]:
    """Every scenario started at once: four hospitals on one bridge process, the restart on a
    bridge of its own. A test waits for its scenario's outcome."""
    directory = tmp_path_factory.mktemp("incidents")
    config = write_config(directory, [SAMPLES, ALERTMANAGER, GROUP_WAIT, ROOT_FIRST])
    bridge = RunningBridge(config, free_port())
    pool = ThreadPoolExecutor(len(SHARED) + 1)
    db = directory / "var" / "dyzur.db"
    try:
        futures = {name: pool.submit(run, bridge.url, db) for name, run in SHARED.items()}
        futures["restart"] = pool.submit(
            restart_in_the_middle, tmp_path_factory.mktemp("incidents-restart")
        )
        yield futures
    finally:
        pool.shutdown(wait=True)
        bridge.stop()


def test_ups_on_battery_with_agents_is_one_ticket_and_a_server_still_down_opens_its_own(
    scenarios: dict[str, Future[None]],
) -> None:
    scenarios["samples"].result(timeout=SCENARIO_TIMEOUT)


def test_ups_on_battery_through_alertmanager_is_one_ticket_and_the_same_after_it(
    scenarios: dict[str, Future[None]],
) -> None:
    scenarios["alertmanager"].result(timeout=SCENARIO_TIMEOUT)


def test_alertmanager_dependent_first_and_its_root_after_group_wait_make_one_ticket(
    scenarios: dict[str, Future[None]],
) -> None:
    scenarios["group_wait"].result(timeout=SCENARIO_TIMEOUT)


def test_alertmanager_root_resolving_first_leaves_the_dependent_its_own_ticket_and_resolve(
    scenarios: dict[str, Future[None]],
) -> None:
    scenarios["root_first"].result(timeout=SCENARIO_TIMEOUT)


def test_alertmanager_restart_in_the_middle_keeps_one_ticket_and_every_resolve(
    scenarios: dict[str, Future[None]],
) -> None:
    scenarios["restart"].result(timeout=SCENARIO_TIMEOUT)
