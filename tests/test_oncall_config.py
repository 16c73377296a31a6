"""The oncall section against the rest of the config: every problem names its field."""

from __future__ import annotations

import copy

import pytest

from bridge.config import ConfigError, parse_config
from tests.conftest import config_data

LINK_KEY = "a-link-key-of-32-bytes-0123456789"


def oncall(tmp_path) -> dict:
    for name, content in (
        ("link.key", LINK_KEY),
        ("smtp.pass", "sekret"),
        ("sms.secret", "sekret"),
    ):
        (tmp_path / name).write_text(content + "\n")
        (tmp_path / name).chmod(0o600)
    return {
        "link_key_file": "link.key",
        "channels": {
            "mail": {
                "kind": "email",
                "url": "smtps://smtp.example.pl",
                "from": "dyzur@example.pl",
                "username": "dyzur",
                "password_file": "smtp.pass",
            },
            "sms": {
                "kind": "webhook",
                "url": "https://sms.example.pl/send",
                "body": '{"to": "{{ phone }}", "text": "{{ text }}"}',
                "secret_file": "sms.secret",
            },
            "sms-backup": {
                "kind": "webhook",
                "url": "https://sms2.example.pl/send",
                "body": '{"to": "{{ phone }}", "text": "{{ text }}"}',
                "secret_file": "sms.secret",
            },
        },
        "people": [
            {
                "id": "anna",
                "name": "Anna Nowak",
                "email": "anna@example.pl",
                "phone": "+48601000001",
                "channels": ["sms", "mail"],
                "fallback_channels": ["sms-backup"],
            },
            {"id": "bartek", "name": "Bartek", "email": "b@example.pl", "channels": ["mail"]},
        ],
        "shifts": [
            {
                "person": "anna",
                "start": "2026-11-30T08:00",
                "duration": "7d",
                "rrule": "FREQ=WEEKLY;INTERVAL=2",
            },
            {
                "person": "bartek",
                "start": "2026-12-07T08:00",
                "duration": "7d",
                "rrule": "FREQ=WEEKLY;INTERVAL=2",
            },
            {"person": "bartek", "start": "2026-11-30T08:00", "duration": "7d", "rota": "second"},
        ],
        "escalation": [{"after": "15m", "then": ["rota:second", "anna"]}],
        "page_outside_service_hours": ["szpital-a"],
    }


def with_oncall(tmp_path, change=None) -> dict:
    data = copy.deepcopy(config_data())
    data["public_url"] = "https://dyzur.example.pl"
    data["oncall"] = oncall(tmp_path)
    if change is not None:
        change(data["oncall"])
    return data


def problems(data, tmp_path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "dyzur.yaml", tmp_path)
    return info.value.problems


def test_a_good_oncall_section_is_valid(tmp_path):
    loaded = parse_config(with_oncall(tmp_path), "dyzur.yaml", tmp_path)
    assert loaded.config.oncall is not None
    assert [p.id for p in loaded.config.oncall.people] == ["anna", "bartek"]
    anna = loaded.config.oncall.people[0]
    assert (anna.channels, anna.fallback_channels) == (["sms", "mail"], ["sms-backup"])


def _set(path: str, value):
    def change(section: dict) -> None:
        *parents, last = path.split(".")
        node = section
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("people.1.id", "anna", "oncall.people.1.id: duplicate person id 'anna'"),
        (
            "people.1.channels",
            ["mail", "pager"],
            "oncall.people.1.channels.1: unknown channel 'pager' (known: mail, sms, sms-backup)",
        ),
        (
            "people.0.fallback_channels",
            ["sms-backup", "pager"],
            "oncall.people.0.fallback_channels.1: unknown channel 'pager' (known: mail, sms, "
            "sms-backup)",
        ),
        (
            "people.0.fallback_channels",
            ["mail"],
            "oncall.people.0.fallback_channels.0: 'mail' already pages in channels",
        ),
        (
            "people.1.fallback_channels",
            ["sms-backup"],
            "oncall.people.1.phone: needed by the SMS channel 'sms-backup'",
        ),
        ("people.1.channels", ["sms"], "oncall.people.1.phone: needed by the SMS channel 'sms'"),
        ("people.0.email", None, "oncall.people.0.email: needed by the e-mail channel 'mail'"),
        ("people.0.email", "anna", "oncall.people.0.email: 'anna' is not an e-mail address"),
        ("shifts.0.person", "celina", "oncall.shifts.0.person: unknown person 'celina'"),
        (
            "shifts.0.clients",
            ["szpital-a", "szpital-x"],
            "oncall.shifts.0.clients.1: unknown client 'szpital-x'",
        ),
        (
            "shifts.0.start",
            "2026-11-30T08:00:00+01:00",
            "oncall.shifts.0.start: a Europe/Warsaw wall-clock time without an offset",
        ),
        ("shifts.0.rrule", "FREQ=SOMETIMES", "oncall.shifts.0.rrule: "),
        (
            "shifts.1.start",
            "2026-12-06T08:00",
            "oncall.shifts.1: overlaps oncall.shifts.0 (rota primary, all hospitals) on "
            "2026-12-06 08:00; give one of them a priority (the higher wins)",
        ),
        (
            "escalation.0.then",
            ["rota:third"],
            "oncall.escalation.0.then.0: 'rota:third' is neither a person id nor rota:NAME of "
            "a rota of oncall.shifts (rotas: primary, second)",
        ),
        ("escalation.0.then", ["celina"], "oncall.escalation.0.then.0: 'celina' is neither"),
        (
            "page_outside_service_hours",
            ["szpital-x"],
            "oncall.page_outside_service_hours.0: unknown client 'szpital-x'",
        ),
        ("link_key_file", "missing.key", "oncall.link_key_file: no such file"),
        (
            "channels.mail.url",
            "smtp://user:pw@smtp.example.pl",
            "oncall.channels.mail.url: set the user in username and the password in",
        ),
        ("channels.mail.from", "dyzur", "oncall.channels.mail.from: 'dyzur' is not an e-mail"),
        ("channels.mail.ca_file", "ca.pem", "oncall.channels.mail.ca_file: no such file"),
        ("channels.sms.body", '{"to": "{{ phone }"}', "oncall.channels.sms.body: "),
    ],
)
def test_each_oncall_problem_names_its_field(tmp_path, path, value, expected):
    found = problems(with_oncall(tmp_path, _set(path, value)), tmp_path)
    assert any(p.startswith(expected) for p in found), found


def test_overlapping_shifts_with_distinct_priorities_are_valid(tmp_path):
    def change(section):
        section["shifts"][1].update(start="2026-12-06T08:00", priority=2)
        section["shifts"][0]["priority"] = 1

    parse_config(with_oncall(tmp_path, change), "dyzur.yaml", tmp_path)


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("link.key", "oncall.link_key_file"),
        ("smtp.pass", "oncall.channels.mail.password_file"),
        ("sms.secret", "oncall.channels.sms.secret_file"),
    ],
)
def test_a_secret_file_open_to_others_is_refused_without_its_content(tmp_path, name, field):
    data = with_oncall(tmp_path)
    (tmp_path / name).chmod(0o644)
    found = problems(data, tmp_path)
    assert [p for p in found if p.startswith(f"{field}: ")] == [
        f"{field}: {str(tmp_path / name)!r} is open to group or others (mode 0644); "
        "a secret file must be readable only by its owner: chmod 600 it"
    ]
    assert not any("sekret" in p for p in found)


def test_a_link_key_without_public_url_is_reported(tmp_path):
    """The links point at public_url: without it pages would go without a link, silently."""
    data = with_oncall(tmp_path)
    del data["public_url"]
    assert problems(data, tmp_path) == [
        "oncall.link_key_file: pages carry an acknowledgment link only with public_url "
        "(where the engineer's phone reaches this bridge): set it"
    ]


def test_a_short_link_key_is_reported_without_its_content(tmp_path):
    data = with_oncall(tmp_path)
    (tmp_path / "link.key").write_text("sekret-15-bytes\n")
    found = problems(data, tmp_path)
    assert found == [
        f"oncall.link_key_file: {str(tmp_path / 'link.key')!r} holds fewer than 16 bytes; "
        "make one with: head -c 32 /dev/urandom | base64 > FILE"
    ]
    assert not any("sekret" in p for p in found)
