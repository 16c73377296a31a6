"""`dyzur oncall now, gaps, swap` and check-config's gap warnings as a user runs them: the real
CLI in its own process, on a config and a real SQLite store file. The CLI reads the wall clock,
so the rota is laid out around the real today (nothing asserts on time)."""

from __future__ import annotations

import getpass
import json
from datetime import datetime, timedelta

import pytest
import yaml

from bridge.clock import WARSAW
from bridge.store.sqlite import SQLiteStore
from tests.conftest import config_data
from tests.test_cli import dyzur


def monday_0800() -> datetime:
    """08:00 on Monday of last week, Warsaw wall-clock time: the rotation's first start."""
    today = datetime.now(WARSAW).replace(tzinfo=None)
    monday = today - timedelta(days=today.weekday() + 7)
    return monday.replace(hour=8, minute=0, second=0, microsecond=0)


def iso(wall: datetime) -> str:
    return wall.strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def config(tmp_path):
    m0 = monday_0800()
    data = config_data()
    people = [
        {"id": p, "name": p.capitalize(), "email": f"{p}@example.pl", "channels": ["mail"]}
        for p in ("anna", "bartek", "celina")
    ]
    fortnightly = "FREQ=WEEKLY;INTERVAL=2"
    data["oncall"] = {
        "channels": {
            "mail": {"kind": "email", "url": "smtp://127.0.0.1", "from": "dyzur@example.pl"}
        },
        "people": people,
        "shifts": [
            # Servers: anna and bartek, a week each. UPS units: celina, days only.
            {
                "person": "anna",
                "start": iso(m0),
                "duration": "7d",
                "rrule": fortnightly,
                "kinds": ["server"],
            },
            {
                "person": "bartek",
                "start": iso(m0 + timedelta(days=7)),
                "duration": "7d",
                "rrule": fortnightly,
                "kinds": ["server"],
            },
            {
                "person": "celina",
                "start": iso(m0),
                "duration": "12h",
                "rrule": "FREQ=DAILY",
                "kinds": ["ups"],
            },
        ],
    }
    path = tmp_path / "dyzur.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_check_config_warns_of_the_gaps_of_a_24_7_hospital_and_still_passes(config):
    r = dyzur("check-config", config)
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout
    warnings = r.stderr.splitlines()
    # Klinika B (24/7) has nobody for its UPS at night; Szpital A's standard contract is not
    # covered at night by design, and its servers are not reported.
    assert len(warnings) >= 29
    assert all(
        w.startswith(
            f"{config}: warning: oncall: nobody on duty in rota primary for klinika-b (ups)"
        )
        for w in warnings
    )
    assert " 20:00 to " in warnings[1] and warnings[1].endswith(" 08:00")


def test_oncall_gaps_lists_the_nights_with_nobody_on_duty(config):
    r = dyzur("oncall", "gaps", "--config", config, "--days", "3", "--json")
    assert r.returncode == 0, r.stderr
    gaps = json.loads(r.stdout)
    assert {(g["client"], g["kind"]) for g in gaps} == {("klinika-b", "ups")}
    assert len(gaps) in (3, 4)
    assert all("T20:00:00+" in g["from"] for g in gaps[1:])
    assert all("T08:00:00+" in g["to"] for g in gaps[:-1])
    r = dyzur("oncall", "gaps", "--config", config)
    assert r.returncode == 0, r.stderr
    assert "CLIENT     KIND  FROM" in r.stdout and "klinika-b  ups" in r.stdout


def test_oncall_now_says_who_is_on_duty(config):
    tuesday_11 = monday_0800() + timedelta(days=1, hours=3)
    r = dyzur("oncall", "now", "--config", config, "--client", "klinika-b", "--at", iso(tuesday_11))
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()[2:]]
    assert [(row[0], row[1], row[2], row[3]) for row in rows] == [
        ("primary", "klinika-b", "server", "Anna"),
        ("primary", "klinika-b", "ups", "Celina"),
    ]
    r = dyzur("oncall", "now", "--config", config, "--client", "szpital-x")
    assert r.returncode == 2
    assert "--client: unknown client 'szpital-x'" in r.stderr


def test_oncall_swap_hands_a_night_over_and_is_audited_with_the_login(config, tmp_path):
    # Anna's next week begins on Monday in a week; hand its Tuesday night to Bartek.
    night = monday_0800() + timedelta(days=15, hours=12)  # Tuesday 20:00
    args = ["oncall", "swap", "--config", config, "--shift-person", "anna", "--to", "bartek"]
    args += ["--from", iso(night), "--until", iso(night + timedelta(hours=12))]
    r = dyzur(*args, "--reason", "Anna na szkoleniu", "--client", "klinika-b")
    assert r.returncode == 0, r.stderr
    assert "bartek is on duty instead of anna in rota primary for klinika-b" in r.stdout

    at = iso(night + timedelta(hours=6))
    r = dyzur("oncall", "now", "--config", config, "--kind", "server", "--at", at, "--json")
    assert r.returncode == 0, r.stderr
    found = {row["client"]: row for row in json.loads(r.stdout)}
    assert found["klinika-b"]["person"] == "bartek" and found["klinika-b"]["override"] is True
    assert found["szpital-a"]["person"] == "anna" and found["szpital-a"]["override"] is False
    r = dyzur("oncall", "now", "--config", config, "--kind", "server", "--at", at)
    assert "Bartek (bartek) [override]" in r.stdout

    store = SQLiteStore(tmp_path / "dyzur.db")
    try:
        [event] = [e for e in store.audit_events() if e.action == "oncall.override"]
    finally:
        store.close()
    assert event.actor == f"cli:{getpass.getuser()}"
    assert event.client == "klinika-b"
    assert event.detail["reason"] == "Anna na szkoleniu"
    assert (event.detail["shift_person"], event.detail["person"]) == ("anna", "bartek")

    # The training was cancelled: Anna takes the night back, the later override winning.
    back = [*args[:7], "anna", *args[8:]]
    r = dyzur(*back, "--reason", "szkolenie odwołane", "--client", "klinika-b")
    assert r.returncode == 0, r.stderr
    assert "anna is on duty again (earlier swaps of the period undone)" in r.stdout
    r = dyzur("oncall", "now", "--config", config, "--kind", "server", "--at", at, "--json")
    found = {row["client"]: row for row in json.loads(r.stdout)}
    assert found["klinika-b"]["person"] == "anna"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"--to": "zenon"}, "--to: unknown person 'zenon'"),
        ({"--from": "jutro"}, "--from: expected ISO 8601"),
        ({"--reason": ""}, "--reason: say why"),
        ({"--shift-person": "celina", "--to": "anna", "--rota": "nights"}, "--rota: no shift"),
    ],
)
def test_a_refused_swap_names_the_option_and_writes_nothing(config, tmp_path, change, expected):
    night = monday_0800() + timedelta(days=15, hours=12)
    options = {
        "--shift-person": "anna",
        "--to": "bartek",
        "--from": iso(night),
        "--until": iso(night + timedelta(hours=12)),
        "--reason": "szkolenie",
    } | change
    r = dyzur("oncall", "swap", "--config", config, *[x for kv in options.items() for x in kv])
    assert r.returncode == 2
    assert expected in r.stderr
    store = SQLiteStore(tmp_path / "dyzur.db")
    try:
        store.migrate()  # the command may have stopped before it opened the store
        assert store.oncall_overrides() == []
    finally:
        store.close()
