"""Reaction deadlines on real tickets: set at opening, kept on escalation, stopped by the first
response, warned about before and at the breach; and the CLI and report built on them."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
import yaml

from bridge.clock import WARSAW
from bridge.models import AuditEvent, SlaState
from bridge.service import Bridge
from bridge.store import TicketFilter
from collectors import Sample
from tests.conftest import AGENT, auth, config_data


@pytest.fixture
def loaded(tmp_path):
    """The test config with no asset expected to report, so that jumping the clock by days
    opens no "agent silent" tickets beside the ones these tests watch."""
    from bridge.config import parse_config

    data = config_data()
    for asset in data["assets"]:
        asset["reports"] = False
    return parse_config(data, "test.yaml", tmp_path)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=WARSAW)


def disk(bridge: Bridge, value: float, asset: str = "srv-a1") -> None:
    s = Sample(
        "dz_test_disk_used_ratio",
        {"asset": asset, "mountpoint": "/var"},
        value,
        bridge.clock.time(),
    )
    assert bridge.ingestor.ingest([s], AGENT).accepted == 1


def only_ticket(bridge: Bridge, asset: str = "srv-a1"):
    """The one disk ticket (a long jump of the clock also makes agents "silent")."""
    [ticket] = [
        t for t in bridge.store.list_tickets(TicketFilter(asset=asset)) if t.rule == "disk_usage"
    ]
    return ticket


def test_an_usterka_opened_monday_10_is_due_tuesday_10(bridge, clock):
    clock.set(at("2026-11-23T10:00"))
    disk(bridge, 0.95)
    ticket = only_ticket(bridge)
    assert ticket.reaction_due == at("2026-11-24T10:00")
    assert ticket.sla_at_risk_at == at("2026-11-24T08:00")  # 75 % of 8 h = 6 h of service time
    assert ticket.sla_state is SlaState.RUNNING
    assert "Termin reakcji: 2026-11-24 10:00:00." in bridge.store.timeline(ticket.number)[0].message


def test_timeline_times_are_to_the_second(bridge, clock):
    """A deadline that does not fall on a whole minute is not rounded away on the ticket."""
    clock.set(at("2026-11-23T10:00:37"))
    disk(bridge, 0.95)
    ticket = only_ticket(bridge)
    assert "Termin reakcji: 2026-11-24 10:00:37." in bridge.store.timeline(ticket.number)[0].message


def test_a_24_7_client_counts_real_time(bridge, clock):
    clock.set(at("2026-11-21T23:00"))  # a Saturday night
    disk(bridge, 0.95, asset="srv-b1")
    assert only_ticket(bridge, "srv-b1").reaction_due == at("2026-11-22T07:00")


def test_escalation_restarts_the_clock_but_never_later(bridge, clock):
    clock.set(at("2026-11-20T14:30"))  # Friday: usterka due Monday 14:30
    disk(bridge, 0.95)
    assert only_ticket(bridge).reaction_due == at("2026-11-23T14:30")
    clock.set(at("2026-11-20T14:50"))
    disk(bridge, 0.99)  # awaria: 10 min on Friday, 1 h 50 on Monday
    ticket = only_ticket(bridge)
    assert ticket.category.value == "awaria"
    assert ticket.reaction_due == at("2026-11-23T08:50")


def test_escalation_keeps_an_earlier_deadline(loaded, store, clock):
    # A contract where awaria has the longer reaction time: the upgrade must not move it out.
    data = config_data()
    data["clients"][0]["contract"]["reaction"] = {"usterka": "1h", "awaria": "4h"}
    from bridge.config import parse_config

    custom = parse_config(data, "test.yaml", loaded.base_dir)
    bridge = Bridge(custom, store=store, clock=clock)
    bridge.start(ticker=False)
    clock.set(at("2026-11-23T10:00"))
    disk(bridge, 0.95)
    clock.set(at("2026-11-23T10:30"))
    disk(bridge, 0.99)
    ticket = only_ticket(bridge)
    assert ticket.category.value == "awaria" and ticket.reaction_due == at("2026-11-23T11:00")


def test_first_response_in_time_stops_the_clock(bridge, api, clock):
    clock.set(at("2026-11-23T10:00"))
    disk(bridge, 0.95)
    number = only_ticket(bridge).number
    clock.set(at("2026-11-23T13:00"))
    t = api.post(f"/api/v1/tickets/{number}/ack", headers=auth("engineer")).json()
    assert t["responded_at"] == "2026-11-23T13:00:00+01:00"
    assert (t["responded_within_deadline"], t["sla_state"]) == (True, "met")
    clock.set(at("2026-11-25T10:00"))  # long after the deadline: nothing more happens
    assert bridge.lifecycle.check_deadlines() == []
    metrics = api.get("/metrics", headers=auth("engineer")).text
    # 3 h of service time: counted in the 10800 s bucket's neighbourhood
    assert 'dyzur_first_response_business_seconds_count{category="usterka"} 1.0' in metrics
    assert 'dyzur_first_response_business_seconds_sum{category="usterka"} 10800.0' in metrics


def test_at_risk_then_breached_each_once_with_timeline_audit_and_metrics(bridge, api, clock):
    clock.set(at("2026-11-23T10:00"))
    disk(bridge, 0.95)
    number = only_ticket(bridge).number
    clock.set(at("2026-11-24T07:59"))
    assert bridge.lifecycle.check_deadlines() == []
    clock.set(at("2026-11-24T08:00"))
    bridge.check_deadlines()
    bridge.check_deadlines()  # warned once, not on every check
    assert only_ticket(bridge).sla_state is SlaState.AT_RISK
    metrics = api.get("/metrics", headers=auth("engineer")).text
    assert (
        'dyzur_sla_open_tickets{category="usterka",client="szpital-a",state="at_risk"} 1.0'
        in metrics
    )
    clock.set(at("2026-11-24T10:00"))
    bridge.check_deadlines()
    bridge.check_deadlines()
    ticket = only_ticket(bridge)
    assert ticket.sla_state is SlaState.BREACHED
    kinds = [e.kind for e in bridge.store.timeline(number)]
    assert kinds == ["opened", "sla_at_risk", "sla_breached"]
    assert bridge.store.timeline(number)[-1].message == (
        "Przekroczono czas reakcji: brak reakcji do 2026-11-24 10:00:00."
    )
    mine = [e.action for e in bridge.store.audit_events() if e.detail.get("ticket") == number]
    assert mine == ["ticket.opened", "sla.at_risk", "sla.breached"]
    metrics = api.get("/metrics", headers=auth("engineer")).text
    assert 'dyzur_sla_events_total{event="sla_breached"} 1.0' in metrics
    assert (
        'dyzur_sla_open_tickets{category="usterka",client="szpital-a",state="breached"} 1.0'
        in metrics
    )
    clock.set(at("2026-11-24T11:00"))
    t = api.post(f"/api/v1/tickets/{number}/ack", headers=auth("engineer")).json()
    assert (t["responded_within_deadline"], t["sla_state"]) == (False, "breached")


def test_every_ticket_change_is_an_audit_event_with_actor_client_and_asset(bridge, clock):
    clock.set(at("2026-11-23T10:00"))
    disk(bridge, 0.95)
    number = only_ticket(bridge).number
    bridge.acknowledge(number, "jan.kowalski")
    clock.advance(600)
    disk(bridge, 0.5)
    events = [e for e in bridge.store.audit_events() if e.action.startswith("ticket.")]
    assert [e.action for e in events] == [
        "ticket.opened",
        "ticket.acknowledged",
        "ticket.recovered",
        "ticket.resolved",
    ]
    ack: AuditEvent = events[1]
    assert (ack.actor, ack.client, ack.asset) == ("jan.kowalski", "szpital-a", "srv-a1")
    assert ack.detail["ticket"] == number and ack.detail["category"] == "usterka"


def test_categories_without_a_clock_have_no_deadline(bridge):
    from bridge.models import Category, Contract
    from bridge.tickets.sla import reaction_due

    assert reaction_due(Contract(), Category.UTRZYMANIE, at("2026-11-23T10:00")) is None


# --- the CLI ---------------------------------------------------------------------------


def dyzur(*args):
    return subprocess.run(
        [sys.executable, "-m", "bridge", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--category", "awaria", "--opened", "2026-12-23T14:00"], "2026-12-28T08:00:00+01:00"),
        (
            ["--category", "awaria", "--opened", "2026-10-25T01:30", "--contract", "24/7"],
            "2026-10-25T02:30:00+01:00",
        ),
        (
            ["--category", "usterka", "--opened", "2026-11-20T13:00:00Z"],
            "2026-11-23T14:00:00+01:00",
        ),
    ],
)
def test_sla_due_prints_the_deadline(args, expected):
    r = dyzur("sla", "due", *args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == expected


def test_sla_due_from_a_clients_contract(tmp_path):
    data = config_data()
    data["clients"][0]["contract"] = {
        "hours": "custom",
        "service_hours": {"sat": ["08:00-12:00"]},
        "public_holidays": False,
    }
    path = tmp_path / "dyzur.yaml"
    path.write_text(yaml.safe_dump(data))
    r = dyzur(
        "sla", "due", "--category", "awaria", "--opened", "2026-11-23T10:00",
        "--config", path, "--client", "szpital-a",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "2026-11-28T10:00:00+01:00"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--category", "pilne", "--opened", "2026-11-23T10:00"], "unknown category 'pilne'"),
        (["--category", "awaria", "--opened", "jutro"], "not an ISO 8601 time: 'jutro'"),
        (["--category", "awaria", "--opened", "2026-11-23", "--contract", "x"], "standard or 24/7"),
        (["--category", "aktualizacja", "--opened", "2026-11-23T10:00"], "no reaction clock"),
    ],
)
def test_sla_due_refuses_bad_input(args, message):
    r = dyzur("sla", "due", *args)
    assert r.returncode != 0 and message in r.stderr


# --- the monthly report ------------------------------------------------------------------


@pytest.fixture
def november(tmp_path):
    """A config and a store with November's tickets of szpital-a: one answered in time, one
    late, one not yet; and one of another hospital that must not appear."""
    from bridge.clock import FixedClock
    from bridge.config import load_config

    path = tmp_path / "dyzur.yaml"
    path.write_text(yaml.safe_dump(config_data("sqlite:///var/dyzur.db")))
    loaded = load_config(path)
    clock = FixedClock(at("2026-11-02T09:00"))
    bridge = Bridge.open(loaded, clock=clock)
    bridge.start(ticker=False)
    disk(bridge, 0.95, asset="srv-a1")
    clock.advance(3600)
    bridge.acknowledge(only_ticket(bridge).number, "jan")  # 1 h: in time
    clock.set(at("2026-11-10T09:00"))
    disk(bridge, 0.99, asset="srv-a2")  # awaria due 11:00
    clock.set(at("2026-11-10T12:00"))
    [late] = bridge.store.list_tickets(TicketFilter(asset="srv-a2"))
    bridge.acknowledge(late.number, "jan")  # 3 h: late
    clock.set(at("2026-11-30T14:00"))
    disk(bridge, 0.95, asset="srv-b1")
    bridge.close()
    return path


def report(config, month: str = "2026-11", *extra: str):
    return dyzur(
        "report", "sla", "--config", config, "--client", "szpital-a", "--month", month, *extra
    )


def test_report_sla_formats(november):
    r = report(november, "2026-11", "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = {row["category"]: row for row in json.loads(r.stdout)["categories"]}
    assert rows["usterka"] == {
        "category": "usterka",
        "tickets": 1,
        "responded": 1,
        "within_deadline": 1,
        "breached": 0,
        "awaiting": 0,
        "median_reaction_minutes": 60.0,
        "max_reaction_minutes": 60.0,
    }
    assert (rows["awaria"]["breached"], rows["awaria"]["median_reaction_minutes"]) == (1, 180.0)
    table = list(csv.DictReader(io.StringIO(report(november, "2026-11", "--format", "csv").stdout)))
    assert {row["category"] for row in table} == {"usterka", "awaria"}
    r = report(november)
    assert r.returncode == 0 and "awaria" in r.stdout and "within deadline" in r.stdout
    r = report(november, "2026-10", "--format", "json")
    assert json.loads(r.stdout)["categories"] == []  # another month: nothing


def test_report_sla_refuses_bad_input(november):
    r = dyzur("report", "sla", "--config", november, "--client", "nikt", "--month", "2026-11")
    assert r.returncode != 0 and "no client 'nikt'" in r.stderr
    r = report(november, "11/2026")
    assert r.returncode != 0 and "expected YYYY-MM" in r.stderr
    r = report(november, "2026-11", "--format", "xls")
    assert r.returncode != 0 and "table, csv or json" in r.stderr


def test_the_deadline_survives_a_restart(loaded, store, clock):
    clock.set(at("2026-11-23T10:00"))
    first = Bridge(loaded, store=store, clock=clock)
    first.start(ticker=False)
    disk(first, 0.95)
    second = Bridge(loaded, store=store, clock=clock)
    second.start(ticker=False)
    clock.set(at("2026-11-24T10:00") + timedelta(seconds=1))
    [change] = second.lifecycle.check_deadlines()
    assert change.action == "sla_breached"
