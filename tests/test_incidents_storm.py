"""An alert storm (issue 18) through the real bridge process.

40 hospitals, 10,000 alerts pushed by 40 agents at once, each sending its numbered batches as
fast as they are answered (about 20 s, well inside the issue's minute). Each hospital has power
domains: a UPS, a switch behind it, three servers behind the switch and an AMMS host on the
first server. In four domains of five the UPS goes on battery (the root cause; the switch,
servers and AMMS host behind it are its dependents); in every fifth only the switch goes down
(the root cause, held for the settle time first since it has an ancestor; the UPS keeps
reporting that it is on mains). A hospital has 4 to 17 domains: half of them have more root
causes than the storm budget (10 new tickets per 10 minutes, the default), five exactly 10.
Every other alert is a dependent's check failing, about 30 % of them right before their root's
alert and the rest after it; two dependents' alerts per hospital recover at the end of the push.

Expected once the storms ended: one ticket per root cause plus one storm ticket per hospital
over the budget (460), nothing lost (``lost_alerts`` says what that means), no ticket opened
twice — also with the bridge SIGKILLed when half of the batches were acknowledged and restarted
on the same store while the agents send their unanswered batches again.

A storm ends only after a quiet minute (the shortest ``quiet`` the config takes), so both runs
go at once, each with its own bridge process and store, and the file takes about 105 s: the
push (20-30 s with the two bridges sharing two cores), the quiet minute, starts and stops.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from bridge.auth import hash_token
from bridge.clock import FixedClock
from bridge.config import parse_config
from bridge.models import IncidentAlert, MemberReason, MemberState, Ticket, TicketStatus
from bridge.service import Bridge
from bridge.store import Store, TicketFilter
from bridge.store.sqlite import SQLiteStore
from bridge.tickets.incidents import LIST_MARK, LISTED, STORM_RULE
from collectors import Sample
from rules.model import fingerprint
from tests.conftest import AGENT, DATA, TOKENS, auth, free_port
from tests.processes import RunningBridge, wait_for

HOSPITALS = 40
ALERTS = 10_000
BUDGET = 10  # the default storm budget: 10 new tickets per 10 minutes
ROOTS = (4, 6, 8, 10, 13, 14, 16, 17)  # root causes of hospital h: ROOTS[h % 8]
BATCH = 25  # alerts per agent batch
BEFORE = 0.3  # the share of dependents' alerts sent before their root's
RECOVERING = 2  # dependents' alerts per hospital that recover at the end of the push

RULES = """\
rules:
  - name: storm_on_battery
    metric: dz_storm_ups_on_battery
    when: '> 0'
    category: awaria
    title:
      pl: "UPS {{ labels.asset }} pracuje na baterii"
      en: "UPS {{ labels.asset }} is on battery"
    description:
      pl: "UPS {{ labels.asset }} pracuje na baterii."
      en: "UPS {{ labels.asset }} is on battery."
  - name: storm_link_down
    metric: dz_storm_link_down
    when: '> 0'
    category: awaria
    title:
      pl: "Przełącznik {{ labels.asset }} nie odpowiada"
      en: "Switch {{ labels.asset }} does not answer"
    description:
      pl: "Przełącznik {{ labels.asset }} nie odpowiada."
      en: "Switch {{ labels.asset }} does not answer."
  - name: storm_check_failed
    metric: dz_storm_check_failed
    when: '> 0'
    category: usterka
    labels: [asset, check]
    title:
      pl: "Kontrola {{ labels.check }} na {{ labels.asset }} nie przechodzi"
      en: "Check {{ labels.check }} on {{ labels.asset }} fails"
    description:
      pl: "Kontrola {{ labels.check }} nie przechodzi."
      en: "Check {{ labels.check }} fails."
"""


@dataclass(frozen=True)
class Fired:
    """One alert of the storm: the sample that fires it, and what it is."""

    client: str
    asset: str
    rule: str
    metric: str
    labels: dict[str, str]
    root: str  # the asset of its root cause (itself for a root cause)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule, self.labels)

    @property
    def is_root(self) -> bool:
        return self.asset == self.root

    def sample(self, value: float = 1.0) -> dict:
        return {"metric": self.metric, "labels": self.labels, "value": value}


@dataclass
class Hospital:
    id: str
    roots: list[Fired] = field(default_factory=list)
    dependents: list[Fired] = field(default_factory=list)
    recovering: list[Fired] = field(default_factory=list)
    assets: list[dict] = field(default_factory=list)
    mains: list[str] = field(default_factory=list)  # UPSes reporting "on mains"

    @property
    def over_budget(self) -> bool:
        return len(self.roots) > BUDGET


class Storm:
    """The inventory, the rules and the agents' batches of the storm."""

    def __init__(self, seed: int = 18) -> None:
        self.rng = random.Random(seed)
        self.hospitals = [self._hospital(h) for h in range(HOSPITALS)]
        alerts = sum(len(h.roots) + len(h.dependents) for h in self.hospitals)
        assert alerts == ALERTS, alerts

    def _hospital(self, h: int) -> Hospital:
        hospital = Hospital(f"szpital-{h:02d}")
        c = hospital.id
        behind: list[tuple[str, str]] = []  # (dependent asset, its root)
        for d in range(ROOTS[h % len(ROOTS)]):
            ups, sw = f"{c}-ups{d:02d}", f"{c}-sw{d:02d}"
            servers = [f"{c}-srv{d:02d}-{i}" for i in range(3)]
            amms = f"{c}-amms{d:02d}"
            hospital.assets += [
                {"id": ups, "client": c, "kind": "ups", "reports": False},
                {"id": sw, "client": c, "kind": "network", "depends_on": ups, "reports": False},
                *(
                    {"id": s, "client": c, "kind": "server", "depends_on": sw, "reports": False}
                    for s in servers
                ),
                {"id": amms, "client": c, "kind": "amms", "depends_on": servers[0],
                 "reports": False},
            ]  # fmt: skip
            if d % 5 != 4:  # the UPS on battery: everything behind it depends on it
                root = Fired(
                    c, ups, "storm_on_battery", "dz_storm_ups_on_battery", {"asset": ups}, ups
                )
                hospital.dependents.append(
                    Fired(c, sw, "storm_link_down", "dz_storm_link_down", {"asset": sw}, ups)
                )
            else:  # the switch down (held for the settle time first), its UPS on mains
                root = Fired(c, sw, "storm_link_down", "dz_storm_link_down", {"asset": sw}, sw)
                hospital.mains.append(ups)
            hospital.roots.append(root)
            behind += [(a, root.asset) for a in (*servers, amms)]
        per_hospital = ALERTS // HOSPITALS
        n = 0
        while len(hospital.roots) + len(hospital.dependents) < per_hospital:
            asset, cause = behind[n % len(behind)]
            labels = {"asset": asset, "check": f"c{n // len(behind)}"}
            hospital.dependents.append(
                Fired(c, asset, "storm_check_failed", "dz_storm_check_failed", labels, cause)
            )
            n += 1
        hospital.recovering = self.rng.sample(hospital.dependents, RECOVERING)
        return hospital

    @property
    def alerts(self) -> list[Fired]:
        return [a for h in self.hospitals for a in (*h.roots, *h.dependents)]

    @property
    def assets(self) -> list[dict]:
        return [a for h in self.hospitals for a in h.assets]

    def expected_tickets(self) -> int:
        """The root causes, and one storm ticket per hospital over the budget."""
        return sum(len(h.roots) + h.over_budget for h in self.hospitals)

    def config(self, tmp: Path, store: str, **incidents: object) -> dict:
        (tmp / "storm_rules.yaml").write_text(RULES)
        return {
            "store": store,
            "rule_files": ["builtin:hosts", str(tmp / "storm_rules.yaml")],
            "tick_interval": "1s",
            "clients": [
                {"id": h.id, "name": f"Szpital {h.id[-2:]}", "contract": {"language": "pl"}}
                for h in self.hospitals
            ],
            "assets": self.assets,
            "tokens": [{"name": "agent", "sha256": hash_token(TOKENS["agent"]), "role": "agent"}],
            "incidents": incidents,
        }

    def agent(self, hospital: Hospital) -> str:
        return f"agent-{hospital.id}"

    def batches_of(self, hospital: Hospital) -> list[dict]:
        """One hospital's agent batches, numbered from 1: the UPSes on mains, then each root
        cause's alert right after some of its dependents' alerts, then the rest of the
        dependents' alerts, and last the recoveries."""
        samples = self._mains(hospital)
        after: list[Fired] = []
        for root in hospital.roots:
            deps = [a for a in hospital.dependents if a.root == root.asset]
            self.rng.shuffle(deps)
            cut = round(len(deps) * BEFORE)
            samples += [a.sample() for a in deps[:cut]] + [root.sample()]
            after += deps[cut:]
        self.rng.shuffle(after)
        samples += [a.sample() for a in after]
        chunks = [samples[i : i + BATCH] for i in range(0, len(samples), BATCH)]
        chunks.append([a.sample(0.0) for a in hospital.recovering])
        return [
            {"agent": {"id": self.agent(hospital), "seq": seq}, "samples": chunk}
            for seq, chunk in enumerate(chunks, 1)
        ]

    @staticmethod
    def _mains(hospital: Hospital) -> list[dict]:
        return [
            {"metric": "dz_storm_ups_on_battery", "labels": {"asset": u}, "value": 0.0}
            for u in hospital.mains
        ]

    def poll(self, hospital: Hospital, seq: int) -> dict:
        """An agent's later poll of its UPSes and switches (the agents keep polling)."""
        samples = [a.sample() for a in hospital.roots] + self._mains(hospital)
        return {"agent": {"id": self.agent(hospital), "seq": seq}, "samples": samples}

    def batches(self) -> list[dict]:
        """Every agent's batches, interleaved as 40 agents pushing at once would be."""
        per = [self.batches_of(h) for h in self.hospitals]
        return [b[i] for i in range(max(map(len, per))) for b in per if i < len(b)]


# --- the real bridge process and its agents ------------------------------------------------


class Agents:
    """One agent per hospital, all pushing at once, each its batches in order. A batch not
    answered 200 (the bridge killed, or restarting) is sent again with the same number, as the
    agent's spool does. Once its batches are in, an agent keeps polling its UPSes and switches
    every ``POLL`` seconds until ``stop``."""

    POLL = 2.0

    def __init__(self, storm: Storm, url: str) -> None:
        self.storm = storm
        self.url = url
        self.pending = {h.id: storm.batches_of(h) for h in storm.hospitals}
        self.total = sum(map(len, self.pending.values()))
        self.acknowledged = 0
        self.duplicates = 0  # batches answered "duplicate": applied before a kill, unanswered
        self.resent = 0  # batches sent again (not answered 200 the first time)
        self.pushed = threading.Event()  # every storm batch acknowledged
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._agent, args=(h,), daemon=True) for h in storm.hospitals
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=120)

    def _agent(self, hospital: Hospital) -> None:
        with httpx.Client(base_url=self.url, timeout=120, headers=auth("agent")) as http:
            seq = 0
            for batch in self.pending[hospital.id]:
                self._send(http, batch)
                seq = batch["agent"]["seq"]
                with self._lock:
                    self.acknowledged += 1
                    if self.acknowledged == self.total:
                        self.pushed.set()
            while not self.stop.wait(self.POLL):
                seq += 1
                self._send(http, self.storm.poll(hospital, seq))

    def _send(self, http: httpx.Client, batch: dict) -> None:
        first = True
        while True:
            try:
                r = http.post("/api/v1/samples", json=batch)
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code == 200:
                body = r.json()
                assert body["rejected"] == [], body
                if body["duplicate"]:
                    with self._lock:
                        self.duplicates += 1
                return
            assert r is None or r.status_code == 503, r.text
            if first:
                with self._lock:
                    self.resent += 1
                first = False
            time.sleep(0.2)


@dataclass
class Outcome:
    """What a storm run left in its store, read after the bridge stopped."""

    tickets: list[Ticket]
    members: list[IncidentAlert]
    timelines: dict[str, list[str]]  # ticket number -> timeline kinds
    opened_events: Counter[str]  # ticket number -> its ticket.opened audit events
    actions: Counter[str]
    push_seconds: float
    settle_seconds: float
    kills: int = 0
    resent: int = 0
    duplicates: int = 0


def run_storm(tmp: Path, storm: Storm, kill: bool = False) -> Outcome:
    """The storm through a real bridge process; with ``kill``, SIGKILLed when half of the
    batches are acknowledged and restarted on the same store. Returns once every storm ticket
    has ended and no alert is held, after stopping the bridge."""
    config = tmp / "dyzur.yaml"
    incidents = {"settle": "15s", "max_hold": "60s", "storm": {"quiet": "60s"}}
    config.write_text(yaml.safe_dump(storm.config(tmp, "sqlite:///var/dyzur.db", **incidents)))
    db = tmp / "var" / "dyzur.db"
    port = free_port()
    bridge = RunningBridge(config, port)
    agents = Agents(storm, bridge.url)
    kills = 0
    start = time.monotonic()
    agents.start()
    try:
        if kill:
            wait_for(
                lambda: agents.acknowledged >= agents.total // 2 or agents.pushed.is_set(),
                timeout=300,
                interval=0.01,
                what="half of the batches acknowledged",
            )
            assert not agents.pushed.is_set()
            bridge.stop(signal.SIGKILL)
            kills += 1
            bridge = RunningBridge(config, port)
        wait_for(agents.pushed.is_set, timeout=300, what="every batch acknowledged")
        pushed = time.monotonic()
        over = sum(h.over_budget for h in storm.hospitals)

        def settled() -> bool:
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as ro:
                [(held,)] = ro.execute("SELECT count(*) FROM incident_alerts WHERE state='held'")
                [(ended, open_storms)] = ro.execute(
                    "SELECT sum(status = 'resolved'), sum(status = 'open') FROM tickets "
                    "WHERE rule = 'alert_storm'"
                )
            return held == 0 and ended == over and not open_storms

        wait_for(settled, timeout=300, interval=0.5, what="every storm ended, nothing held")
        done = time.monotonic()
    finally:
        agents.join()
        bridge.stop()
    store = SQLiteStore(db)
    try:
        tickets = store.list_tickets(TicketFilter(limit=100_000))
        members = store.incident_alerts()
        timelines = {t.number: [e.kind for e in store.timeline(t.number)] for t in tickets}
    finally:
        store.close()
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as ro:
        opened = Counter(
            dict(
                ro.execute(
                    "SELECT json_extract(detail, '$.ticket'), count(*) FROM audit_events "
                    "WHERE action = 'ticket.opened' GROUP BY 1"
                ).fetchall()
            )
        )
        actions = Counter(
            dict(ro.execute("SELECT action, count(*) FROM audit_events GROUP BY 1").fetchall())
        )
    return Outcome(
        tickets, members, timelines, opened, actions, pushed - start, done - pushed, kills,
        agents.resent, agents.duplicates,
    )  # fmt: skip


# --- what the store must hold once the storm settled -------------------------------------------


def lost_alerts(storm: Storm, outcome: Outcome) -> dict[str, list[str]]:
    """Every alert that fired, checked against the store; returns the failures by kind (empty
    lists: nothing lost). Once the storm settled and with every alert but the recovered ones
    still firing, "nothing lost" means:

    - a root cause has exactly one ticket of its own, open, and no firing record;
    - a dependent's alert has no ticket of its own and exactly one firing record: attached
      (reason dependency) to its root cause's ticket — not held, not left on a storm ticket;
    - a recovered dependent's alert has no ticket and no firing record, and its last record
      says recovered (its recovery was processed, never an orphan);
    - a record released from a hold or a storm names the ticket it went to.
    """
    by_fingerprint: dict[str, list[Ticket]] = {}
    for t in outcome.tickets:
        by_fingerprint.setdefault(t.fingerprint, []).append(t)
    records: dict[str, list[IncidentAlert]] = {}
    for m in outcome.members:
        records.setdefault(m.fingerprint, []).append(m)
    root_ticket = {
        a.asset: by_fingerprint[a.fingerprint][0].number
        for a in storm.alerts
        if a.is_root and len(by_fingerprint.get(a.fingerprint, ())) == 1
    }
    numbers = {t.number for t in outcome.tickets}
    recovering = {a.fingerprint for h in storm.hospitals for a in h.recovering}
    failures: dict[str, list[str]] = {
        "root without its one open ticket": [],
        "dependent with a ticket of its own": [],
        "dependent not attached to its root's ticket": [],
        "recovery not processed": [],
        "released without a ticket": [],
    }
    for a in storm.alerts:
        own = by_fingerprint.get(a.fingerprint, [])
        mine = records.get(a.fingerprint, [])
        firing = [m for m in mine if m.is_firing]
        what = f"{a.rule} {a.labels}"
        if a.fingerprint in recovering:
            if own or firing or not mine or mine[-1].state is not MemberState.RECOVERED:
                failures["recovery not processed"].append(what)
        elif a.is_root:
            if len(own) != 1 or not own[0].is_open or own[0].asset != a.asset or firing:
                failures["root without its one open ticket"].append(what)
        elif own:
            failures["dependent with a ticket of its own"].append(what)
        elif not (
            len(firing) == 1
            and firing[0].state is MemberState.ATTACHED
            and firing[0].reason is MemberReason.DEPENDENCY
            and firing[0].ticket == root_ticket.get(a.root)
        ):
            failures["dependent not attached to its root's ticket"].append(
                f"{what}: {[(m.state.value, m.reason.value, m.ticket) for m in firing]}"
            )
    for m in outcome.members:
        if m.state is MemberState.RELEASED and m.own_ticket not in numbers:
            failures["released without a ticket"].append(f"{m.rule} {m.labels}")
    return {kind: found for kind, found in failures.items() if found}


def check_storm(storm: Storm, outcome: Outcome) -> None:
    tickets = outcome.tickets
    # The ticket count: every root cause, and one storm ticket per hospital over the budget.
    storms = [t for t in tickets if t.rule == STORM_RULE]
    over = {h.id for h in storm.hospitals if h.over_budget}
    assert sorted(t.client for t in storms) == sorted(over)
    assert {t.status for t in storms} == {TicketStatus.RESOLVED}
    assert len(tickets) == storm.expected_tickets() == 460
    # No ticket opened twice: one per alert, one "ticket.opened" audit event each.
    twice = [f for f, n in Counter(t.fingerprint for t in tickets).items() if n > 1]
    assert not twice, f"{len(twice)} alerts have more than one ticket"
    assert outcome.opened_events == Counter({t.number: 1 for t in tickets})
    # Nothing fired is lost.
    lost = lost_alerts(storm, outcome)
    assert not lost, {kind: (len(found), found[:3]) for kind, found in lost.items()}
    # The budget: in a hospital over it, ten root causes opened their tickets at once and the
    # rest waited in the storm until it ended (their tickets say so); below it, none waited.
    for h in storm.hospitals:
        mine = [t for t in tickets if t.client == h.id and t.rule != STORM_RULE]
        waited = [t for t in mine if "storm_part" in outcome.timelines[t.number]]
        assert len(mine) == len(h.roots)
        assert len(waited) == (len(h.roots) - BUDGET if h.over_budget else 0), h.id
    # Dependents came before their roots (held, then claimed) and after them (attached at
    # once); each storm ticket ended listing its alerts.
    assert outcome.actions["incident.alert_held"] > 0
    assert outcome.actions["incident.alert_attached"] > outcome.actions["incident.alert_held"]
    assert outcome.actions["incident.storm_opened"] == outcome.actions["incident.storm_closed"]
    assert outcome.actions["incident.storm_closed"] == len(over)
    for t in storms:
        assert "storm_ended" in outcome.timelines[t.number]
        # its title counts the alerts it collected; its description lists the first LISTED
        n = sum(m.ticket == t.number for m in outcome.members)
        assert t.title == f"Burza alertów: {n} alertów (Szpital {t.client[-2:]})"
        listed = t.description.split(LIST_MARK, 1)[1].splitlines()
        assert listed[0] == f"Alerty (0 aktywnych z {n}):"
        assert len([line for line in listed if line.startswith("- ")]) == min(n, LISTED)
        assert (listed[-1] == f"… i {n - LISTED} kolejnych") is (n > LISTED)


def report(name: str, outcome: Outcome) -> None:
    print(
        f"\n{name}: {ALERTS:,} alerts pushed in {outcome.push_seconds:.1f} s "
        f"({ALERTS / outcome.push_seconds:,.0f}/s), settled {outcome.settle_seconds:.1f} s "
        f"later (storm quiet 60 s); {len(outcome.tickets)} tickets; kills {outcome.kills}, "
        f"batches sent again {outcome.resent}, answered 'duplicate' {outcome.duplicates}"
    )


@pytest.fixture(scope="module")
def storms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome | BaseException]:
    """Both storms at once, each through its own bridge process and store: a storm ends only
    after a quiet minute (the shortest ``quiet`` the config takes), and the two runs share
    that wait."""
    runs = {"plain": False, "killed": True}
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = {
            name: pool.submit(run_storm, tmp_path_factory.mktemp(name), Storm(), kill)
            for name, kill in runs.items()
        }
    outcomes: dict[str, Outcome | BaseException] = {}
    for name, future in futures.items():
        error = future.exception()
        outcomes[name] = error if error is not None else future.result()
    return outcomes


def outcome_of(storms: dict[str, Outcome | BaseException], name: str) -> Outcome:
    found = storms[name]
    if isinstance(found, BaseException):
        raise found
    report(name, found)
    return found


def test_a_storm_of_10000_alerts_opens_one_ticket_per_root_cause_and_loses_nothing(
    storms: dict[str, Outcome | BaseException],
) -> None:
    check_storm(Storm(), outcome_of(storms, "plain"))


def test_the_same_storm_with_the_bridge_sigkilled_mid_push_and_restarted(
    storms: dict[str, Outcome | BaseException],
) -> None:
    outcome = outcome_of(storms, "killed")
    assert outcome.kills == 1 and outcome.resent > 0
    check_storm(Storm(), outcome)


# --- a storm's own ticket, in process ------------------------------------------------------------


@pytest.fixture
def one_hospital(tmp_path: Path, store: Store, clock: FixedClock) -> Iterator[Bridge]:
    data = {
        "store": "sqlite:///unused.db",
        "rule_files": [str(DATA / "test_rules.yaml")],
        "clients": [{"id": "szpital-a", "name": "Szpital A", "contract": {"language": "pl"}}],
        "assets": [{"id": f"host-{i:02d}", "client": "szpital-a"} for i in range(60)],
    }
    bridge = Bridge(parse_config(data, "test.yaml", tmp_path), store=store, clock=clock)
    bridge.start(ticker=False)
    yield bridge
    bridge.close()


def disks(bridge: Bridge, value: float, hosts: range, mounts: tuple[str, ...]) -> None:
    samples = [
        Sample(
            "dz_test_disk_used_ratio",
            {"asset": f"host-{i:02d}", "mountpoint": m},
            value,
            bridge.clock.time(),
        )
        for m in mounts
        for i in hosts
    ]
    assert bridge.ingestor.ingest(samples, AGENT).accepted == len(samples)


def listing(ticket: Ticket) -> list[str]:
    return ticket.description.split(LIST_MARK, 1)[1].splitlines()


def test_a_storm_ticket_counts_all_its_alerts_and_lists_the_first_fifty(
    one_hospital: Bridge, clock: FixedClock
) -> None:
    """The storm ticket's title and list are kept from counts and the first LISTED alerts (not
    from reading every alert of the storm on each one joining it)."""
    bridge = one_hospital
    disks(bridge, 0.95, range(60), ("/", "/var"))  # 120 alerts: 10 tickets, 110 in the storm
    [storm] = [t for t in open_tickets(bridge) if t.rule == STORM_RULE]
    assert storm.title == "Burza alertów: 110 alertów (Szpital A)"
    lines = listing(storm)
    assert lines[0] == "Alerty (110 aktywnych z 110):"
    assert len(lines) == 1 + LISTED + 1 and lines[-1] == "… i 60 kolejnych"
    assert all(line.endswith("aktywny)") for line in lines[1:-1])
    first = bridge.lifecycle.incidents.members(storm.number)[0]
    assert (first.asset, first.labels["mountpoint"]) == ("host-10", "/")
    assert lines[1].startswith(f"- {first.asset}: {first.title} (")
    # the storm's first alert recovers: counted, and listed after those still firing
    disks(bridge, 0.5, range(10, 11), ("/",))
    storm = bridge.store.get_ticket(storm.number)
    assert listing(storm)[0] == "Alerty (109 aktywnych z 110):"
    assert f"- {first.asset}: {first.title} (" not in storm.description
    # the storm ends: the 109 open their own tickets; the list, oldest first, says so
    clock.advance(bridge.config.incidents.storm.quiet + 1)
    bridge.tick()
    storm = bridge.store.get_ticket(storm.number)
    assert storm.status is TicketStatus.RESOLVED
    lines = listing(storm)
    assert lines[0] == "Alerty (0 aktywnych z 110):"
    assert lines[1].startswith(f"- {first.asset}: {first.title} (") and "ustąpił" in lines[1]
    assert all("osobne zgłoszenie" in line for line in lines[2:-1])
    assert lines[-1] == "… i 60 kolejnych"
    assert len(open_tickets(bridge)) == 10 + 109


def open_tickets(bridge: Bridge) -> list[Ticket]:
    return bridge.store.list_tickets(TicketFilter(status=TicketStatus.OPEN, limit=1000))
