"""The SNMP collector: options, v3 authPriv, silent devices, bounded concurrency, garbage
answers and secrets, against a real snmpsim agent (see test_snmp_profiles.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.base import CollectorConfigError
from collectors.snmp import SnmpCollector, parse_options, poll_all, poll_device
from tests.conftest import free_port
from tests.test_snmp_profiles import V3_AUTH_KEY, V3_PRIV_KEY, V3_USER, SnmpSim, need_snmpsim

COMMUNITY = "s3cr3t-community-77"


@pytest.fixture(scope="module")
def sim() -> Iterator[SnmpSim]:
    need_snmpsim()
    running = SnmpSim()
    yield running
    running.stop()


def ups(port: int, asset: str = "ups-1", **extra) -> dict:
    return {
        "asset": asset,
        "host": "127.0.0.1",
        "port": port,
        "community": "eaton-93e-80",
        "profiles": ["ups-mib"],
        **extra,
    }


def silent(asset: str = "ups-dead", timeout: float = 1.0) -> dict:
    """A UDP port nobody listens on: the device never answers."""
    return {
        "asset": asset,
        "host": "127.0.0.1",
        "port": free_port(),
        "community": "public",
        "profiles": ["ups-mib"],
        "timeout": timeout,
        "retries": 0,
    }


def values(samples) -> dict:
    return {
        (s.metric, tuple(sorted((k, v) for k, v in s.labels.items() if k != "asset"))): s.value
        for s in samples
    }


# --- v3 authPriv --------------------------------------------------------------------------


def v3(port: int, **extra) -> dict:
    return {
        "asset": "ups-v3",
        "host": "127.0.0.1",
        "port": port,
        "version": "3",
        "user": V3_USER,
        "auth_protocol": "SHA256",
        "auth_key": V3_AUTH_KEY,
        "priv_protocol": "AES128",
        "priv_key": V3_PRIV_KEY,
        "context": "eaton-93e-80",  # snmpsim picks the recording by SNMPv3 context name
        "profiles": ["ups-mib"],
        **extra,
    }


def test_v3_auth_priv_gives_what_v2c_gives(sim):
    options = parse_options({"devices": [v3(sim.port), ups(sim.port)]})
    by_v3, by_v2c = asyncio.run(poll_all(options.devices, 1.0))
    assert by_v3.up and by_v2c.up
    assert len(by_v3.samples) == 18
    assert values(by_v3.samples) == values(by_v2c.samples)
    assert {s.labels["asset"] for s in by_v3.samples} == {"ups-v3"}


def test_v3_with_a_wrong_key_is_down_and_the_keys_stay_secret(sim, caplog):
    wrong_auth, wrong_priv = "wrong-auth-key-4242", "wrong-priv-key-4242"
    collector = SnmpCollector.from_options(
        "snmp",
        {"devices": [v3(sim.port, auth_key=wrong_auth, priv_key=wrong_priv, timeout=1)]},
    )
    with caplog.at_level(logging.DEBUG):
        samples = collector.collect(5.0)
    assert [(s.metric, s.value) for s in samples] == [("dyzur_snmp_up", 0.0)]
    assert "ups-v3" in caplog.text and "does not answer" in caplog.text
    for secret in (wrong_auth, wrong_priv, V3_AUTH_KEY, V3_PRIV_KEY):
        assert secret not in caplog.text


# --- silent devices and bounded concurrency ------------------------------------------------


def test_a_silent_device_gives_only_snmp_up_0_and_the_others_are_polled(sim):
    collector = SnmpCollector.from_options(
        "snmp", {"devices": [silent(), ups(sim.port, "ups-a"), ups(sim.port, "ups-b")]}
    )
    samples = collector.collect(42.0)
    dead = [s for s in samples if s.labels["asset"] == "ups-dead"]
    assert [(s.metric, s.value) for s in dead] == [("dyzur_snmp_up", 0.0)]
    for asset in ("ups-a", "ups-b"):
        mine = [s for s in samples if s.labels["asset"] == asset]
        assert len(mine) == 18
        assert ("dyzur_snmp_up", 1.0) in [(s.metric, s.value) for s in mine]
    assert {s.timestamp for s in samples} == {42.0}


def test_silent_devices_are_waited_for_together_not_one_after_another(sim):
    """Three silent devices and five good ones, concurrency 16: all polls start before any
    ends (so the silent ones cost one timeout together), and the good ones end first."""
    devices = [silent(f"dead-{i}") for i in range(3)]
    devices += [ups(sim.port, f"ups-{i}") for i in range(5)]
    options = parse_options({"devices": devices, "concurrency": 16})
    events: list[tuple[str, str]] = []
    results = asyncio.run(poll_all(options.devices, 0.0, 16, lambda e, a: events.append((e, a))))

    kinds = [e for e, _ in events]
    assert kinds == ["start"] * 8 + ["done"] * 8
    done = [a for e, a in events if e == "done"]
    assert set(done[:5]) == {f"ups-{i}" for i in range(5)}
    assert set(done[5:]) == {f"dead-{i}" for i in range(3)}
    assert [r.up for r in results] == [False] * 3 + [True] * 5  # in the devices' order


def test_no_more_than_concurrency_polls_are_in_flight(sim):
    devices = [ups(sim.port, f"ups-{i}") for i in range(10)] + [silent("dead", 0.5)]
    options = parse_options({"devices": devices, "concurrency": 3})
    in_flight, peak = 0, 0

    def observe(event: str, asset: str) -> None:
        nonlocal in_flight, peak
        in_flight += 1 if event == "start" else -1
        peak = max(peak, in_flight)

    results = asyncio.run(poll_all(options.devices, 0.0, options.concurrency, observe))
    assert peak == 3
    assert in_flight == 0
    assert sum(r.up for r in results) == 10


# --- garbage answers -------------------------------------------------------------------------


def test_garbage_answers_skip_the_metric_and_are_logged_once(sim, caplog):
    collector = SnmpCollector.from_options(
        "snmp",
        {"devices": [ups(sim.port, "ups-garbage", community="garbage-ups")]},
    )
    with caplog.at_level(logging.INFO, logger="collectors.snmp"):
        first = collector.collect(1.0)
        second = collector.collect(2.0)
    # The recording answers text, an OID, hex junk and an IpAddress where numbers belong, and
    # nothing at all for upsTestResultsSummary; what is sane still comes through.
    assert values(first) == {
        ("dyzur_snmp_up", ()): 1.0,
        ("dyzur_ups_on_battery", ()): 1.0,
        ("dyzur_ups_output_source", (("source", "battery"),)): 5.0,
        ("dyzur_ups_battery_runtime_seconds", ()): 2520.0,  # "42" as a string: a number
        ("dyzur_ups_alarms_present", ()): 1.0,
        ("dyzur_ups_input_frequency_hertz", (("line", "1"),)): 50.0,
        ("dyzur_ups_input_voltage_volts", (("line", "2"),)): 231.0,
        ("dyzur_ups_alarm", (("alarm", "upsAlarmOnBattery"),)): 1.0,
        ("dyzur_ups_alarm", (("alarm", "1.3.6.1.4.1.99999.1"),)): 1.0,
    }
    assert values(second) == values(first)
    skipped = {
        "dyzur_ups_battery_low",  # "normal"
        "dyzur_ups_battery_charge_ratio",  # an OID
        "dyzur_ups_battery_temperature_celsius",  # bytes ff00fe
        "dyzur_ups_self_test_failed",  # noSuchObject
        "dyzur_ups_input_voltage_volts",  # IpAddress on line 1
        "dyzur_ups_input_frequency_hertz",  # "fifty" on line 2
    }
    assert {metric for _, metric in collector.skipped} == skipped
    assert all(count == 2 for count in collector.skipped.values())  # counted on each poll
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(skipped)  # logged once, not on the second poll
    assert all("ups-garbage" in w for w in warnings)


def test_a_failing_metric_that_recovers_is_logged_once_each_way(caplog):
    from collectors.snmp.poller import PollResult

    collector = SnmpCollector.from_options("snmp", {"devices": [silent("ups-x")]})
    with caplog.at_level(logging.INFO, logger="collectors.snmp"):
        collector._note(PollResult("ups-x", True, [], [("dyzur_ups_battery_low", "x")]))
        collector._note(PollResult("ups-x", True, [], [("dyzur_ups_battery_low", "x")]))
        collector._note(PollResult("ups-x", True, [], []))
        collector._note(PollResult("ups-x", False, [], [], error="timeout"))
        collector._note(PollResult("ups-x", False, [], [], error="timeout"))
        collector._note(PollResult("ups-x", True, [], []))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4, messages
    assert "skipped dyzur_ups_battery_low" in messages[0]
    assert "readable again" in messages[1]
    assert "does not answer" in messages[2]
    assert "answers again" in messages[3]


# --- options -------------------------------------------------------------------------------


def good(**extra) -> dict:
    return {
        "asset": "ups-1",
        "host": "10.0.0.5",
        "community": COMMUNITY,
        "profiles": ["ups-mib"],
    } | extra


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "devices: missing"),
        ({"devices": [], "concurrency": 0}, "concurrency: expected an integer from 1 to 1024"),
        ({"devices": [], "bogus": 1}, "bogus: unknown option"),
        ({"devices": {"asset": "x"}}, "devices: expected a list"),
        ({"devices": [good(), "ups-2"]}, "devices.1: expected a mapping"),
        (
            {"devices": [good(), good(), good(version="1")]},
            'devices.2.version: expected "2c" or "3"',
        ),
        ({"devices": [good(port=70000)]}, "devices.0.port: expected an integer from 1 to 65535"),
        ({"devices": [good(timeout=0)]}, "devices.0.timeout: must be a positive number"),
        ({"devices": [good(retries=-1)]}, "devices.0.retries: expected an integer from 0 to 10"),
        ({"devices": [good(profiles=[])]}, "devices.0.profiles: expected a non-empty list"),
        ({"devices": [good(profiles=["apc"])]}, "devices.0.profiles.0: unknown profile 'apc'"),
        ({"devices": [good(hots="x")]}, "devices.0.hots: unknown option"),
        ({"devices": [{"host": "h", "profiles": ["ups-mib"]}]}, "devices.0.asset: missing"),
        ({"devices": [good(community=None)]}, "devices.0.community: expected a non-empty string"),
        ({"devices": [good(user="u")]}, 'devices.0.user: only with version "3"'),
        ({"devices": [good(), good()]}, "devices.1.asset: 'ups-1' is already devices.0"),
        (
            {"devices": [{"asset": "a", "host": "h", "version": "3", "profiles": ["ups-mib"]}]},
            "devices.0.user: missing",
        ),
        (
            {"devices": [v3(161, auth_protocol="MD5")]},
            "devices.0.auth_protocol: expected one of SHA, SHA256, got 'MD5'",
        ),
        (
            {"devices": [v3(161, priv_protocol="DES")]},
            "devices.0.priv_protocol: expected one of AES128, AES, got 'DES'",
        ),
        ({"devices": [v3(161, priv_key="short")]}, "devices.0.priv_key: must be at least 8"),
        ({"devices": [v3(161, community="x")]}, 'devices.0.community: only with version "2c"'),
    ],
)
def test_option_errors_name_the_option(options, message):
    with pytest.raises(CollectorConfigError) as err:
        SnmpCollector.from_options("snmp", options)
    assert str(err.value).startswith(message), str(err.value)


def test_defaults():
    options = parse_options({"devices": [good()]})
    device = options.devices[0]
    assert options.concurrency == 16
    assert (device.port, device.version, device.timeout, device.retries) == (161, "2c", 5.0, 1)
    assert [p.name for p in device.profiles] == ["ups-mib"]


def test_secrets_never_appear_in_repr_str_or_errors():
    auth_key, priv_key = "auth-Very-Secret-1", "priv-Very-Secret-2"
    collector = SnmpCollector.from_options(
        "snmp",
        {"devices": [good(), v3(161, auth_key=auth_key, priv_key=priv_key)]},
    )
    shown = " ".join(
        [repr(collector), str(collector), repr(collector.options), str(collector.options)]
        + [repr(d) for d in collector.options.devices]
        + [str(d) for d in collector.options.devices]
        + [repr(d.auth_data()) for d in collector.options.devices]
    )
    for secret in (COMMUNITY, auth_key, priv_key):
        assert secret not in shown
    assert "ups-1" in shown and V3_USER in shown
    # A mistyped secret is not echoed in the error either.
    for bad in ({"priv_key": "tiny"}, {"auth_key": 12345678}):
        with pytest.raises(CollectorConfigError) as err:
            parse_options({"devices": [v3(161, **bad)]})
        assert "tiny" not in str(err.value) and "12345678" not in str(err.value)


def test_poll_device_never_raises_for_an_unresolvable_host():
    options = parse_options(
        {"devices": [good(host="no-such-host.invalid", timeout=0.5, retries=0)]}
    )
    result = asyncio.run(poll_device(options.devices[0], 0.0))
    assert not result.up
    assert [(s.metric, s.value) for s in result.samples] == [("dyzur_snmp_up", 0.0)]


def test_the_sample_options_are_valid():
    import yaml

    sample = yaml.safe_load(
        (Path(__file__).parents[1] / "collectors" / "snmp" / "sample.yaml").read_text()
    )
    options = parse_options(sample)
    assert [d.asset for d in options.devices] == [
        "ups-szpital-a-serwerownia",
        "ups-szpital-a-blok-operacyjny",
        "macierz-szpital-a",
        "srv-amms-a1",
    ]
    assert options.devices[2].version == "3"
