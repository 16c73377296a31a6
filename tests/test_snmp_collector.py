"""The SNMP collector: options, v3 authPriv, silent devices, bounded concurrency, garbage
answers and secrets, against a real snmpsim agent (see test_snmp_profiles.py)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from collectors.base import CollectorConfigError
from collectors.snmp import SnmpCollector, parse_options, poll_all, poll_device
from collectors.snmp.profile import resolve_profile
from tests.conftest import free_port
from tests.test_snmp_profiles import (
    DATA,
    V3_AUTH_KEY,
    V3_PRIV_KEY,
    V3_USER,
    SnmpSim,
    need_snmpsim,
)

COMMUNITY = "s3cr3t-community-77"
#: Samples the ups-mib profile gives for the Eaton recording (its golden case has dyzur_snmp_up).
UPS_SAMPLES = len(yaml.safe_load((DATA / "eaton-93e-80.ups-mib.yaml").read_text())["samples"])


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
    assert len(by_v3.samples) == UPS_SAMPLES
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
        assert len(mine) == UPS_SAMPLES
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
        "dyzur_ups_battery_status",  # "normal"
        "dyzur_ups_seconds_on_battery",  # not in the recording
        "dyzur_ups_battery_voltage_volts",  # not in the recording
        "dyzur_ups_output_frequency_hertz",  # not in the recording
        "dyzur_ups_battery_charge_ratio",  # an OID
        "dyzur_ups_battery_temperature_celsius",  # bytes ff00fe
        "dyzur_ups_self_test_failed",  # noSuchObject
        "dyzur_ups_input_voltage_volts",  # IpAddress on line 1
        "dyzur_ups_input_frequency_hertz",  # "fifty" on line 2
    }
    assert {metric for _, metric in collector.skipped} == skipped
    # Counted on each poll, once per spec of the metric (a state set has one per state).
    profile = resolve_profile("ups-mib")
    specs = Counter(
        m.metric for m in [*profile.metrics, *(m for t in profile.tables for m in t.metrics)]
    )
    assert all(count == 2 * specs[metric] for (_, metric), count in collector.skipped.items())
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
    from collectors.snmp.pysnmp_engine import auth_data

    auth_key, priv_key = "auth-Very-Secret-1", "priv-Very-Secret-2"
    collector = SnmpCollector.from_options(
        "snmp",
        {"devices": [good(), v3(161, auth_key=auth_key, priv_key=priv_key)]},
    )
    shown = " ".join(
        [repr(collector), str(collector), repr(collector.options), str(collector.options)]
        + [repr(d) for d in collector.options.devices]
        + [str(d) for d in collector.options.devices]
        + [repr(auth_data(d)) for d in collector.options.devices]
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


# --- answers a real agent here never gives: tooBig, loops, errors ---------------------------


class Scripted:
    """A Transport answering from a function of the request (what snmpsim cannot be made to
    answer: tooBig, non-increasing OIDs, genErr), recording each request."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.requests: list[tuple] = []

    async def get(self, oids):
        self.requests.append(("get", tuple(oids)))
        return self.answer("get", list(oids), 0)

    async def bulk(self, oids, max_repetitions):
        self.requests.append(("bulk", tuple(oids), max_repetitions))
        return self.answer("bulk", list(oids), max_repetitions)

    def close(self) -> None:
        pass


def table_agent(rows: dict[str, list[int]], limit: int = 1000, too_big: int = 10**6):
    """GETBULK over columns {column: [indices]} like an agent: successors in lexicographic
    order, endOfMibView past the last; answers cut at ``limit`` varbinds; tooBig when more than
    ``too_big`` varbinds are asked for."""
    from collectors.snmp.poller import END_OF_MIB, TOO_BIG, Response

    def key(oid: str) -> tuple[int, ...]:
        return tuple(int(x) for x in oid.split("."))

    mib = sorted(((f"{c}.{i}", i) for c, idx in rows.items() for i in idx), key=lambda x: key(x[0]))

    def successor(oid: str):
        return next(((o, v) for o, v in mib if key(o) > key(oid)), (oid, END_OF_MIB))

    def answer(kind: str, oids: list[str], reps: int) -> Response:
        if kind == "get" or len(oids) * reps > too_big:
            return Response((), TOO_BIG)
        out, position = [], list(oids)
        for _ in range(reps):
            for k, oid in enumerate(position):
                found = successor(oid)
                out.append(found)
                position[k] = found[0]
        return Response(out[:limit])

    return answer


def walk(transport, columns, reps):
    from collectors.snmp.poller import _Session

    return asyncio.run(_Session(transport).walk(columns, reps))


def test_a_get_the_device_finds_too_big_is_split_in_halves():
    from collectors.snmp.poller import TOO_BIG, Response, _Session

    def answer(kind, oids, reps):
        if len(oids) > 2:
            return Response((), TOO_BIG)
        return Response([(oid, int(oid.rsplit(".", 1)[1])) for oid in oids])

    transport = Scripted(answer)
    oids = [f"1.3.6.1.4.1.9.{i}" for i in range(1, 8)]
    got = asyncio.run(_Session(transport).get(oids))
    assert got == {oid: int(oid.rsplit(".", 1)[1]) for oid in oids}
    # 7 is too big: 3 (too big: 1 and 2) and 4 (too big: 2 and 2).
    assert [len(r[1]) for r in transport.requests] == [7, 3, 1, 2, 4, 2, 2]


def test_a_getbulk_too_big_asks_fewer_repetitions_then_fewer_columns():
    columns = ["1.3.6.1.4.1.9.1", "1.3.6.1.4.1.9.2", "1.3.6.1.4.1.9.3"]
    transport = Scripted(table_agent({c: [1, 2, 3] for c in columns}, too_big=2))
    got = walk(transport, columns, 8)
    assert got == {c: {"1": 1, "2": 2, "3": 3} for c in columns}
    reps = [r[2] for r in transport.requests]
    assert reps[:4] == [8, 4, 2, 1]  # halved until the device takes it ...
    assert max(len(r[1]) * r[2] for r in transport.requests[4:]) <= 2  # ... then fewer columns


def test_answers_cut_short_mid_row_go_on_from_each_columns_own_last_row():
    columns = ["1.3.6.1.4.1.9.1", "1.3.6.1.4.1.9.2", "1.3.6.1.4.1.9.3"]
    rows = {columns[0]: [1, 2, 3, 4, 5], columns[1]: [2, 4], columns[2]: []}
    transport = Scripted(table_agent(rows, limit=4))
    got = walk(transport, columns, 10)
    assert got == {
        columns[0]: {str(i): i for i in (1, 2, 3, 4, 5)},
        columns[1]: {"2": 2, "4": 4},
        columns[2]: {},
    }


def test_an_agent_answering_an_oid_not_after_the_last_stops_that_column_only():
    from collectors.snmp.poller import Response

    columns = ["1.3.6.1.4.1.9.1", "1.3.6.1.4.1.9.2"]

    def answer(kind, oids, reps):
        # Column 1 loops back to its first row for ever; column 2 has rows 1 and 2.
        out = []
        for oid in oids:
            if oid.startswith(columns[0]):
                out.append((f"{columns[0]}.1", 7))
            else:
                nxt = {columns[1]: 1, f"{columns[1]}.1": 2}.get(oid)
                out.append((f"{columns[1]}.{nxt}", nxt) if nxt else ("1.3.6.1.4.1.10", 0))
        return Response(out)

    transport = Scripted(answer)
    got = walk(transport, columns, 1)
    assert got == {columns[0]: {"1": 7}, columns[1]: {"1": 1, "2": 2}}
    assert len(transport.requests) == 3


def test_a_column_the_agent_refuses_stops_and_the_others_go_on():
    from collectors.snmp.poller import GEN_ERR, Response

    columns = ["1.3.6.1.4.1.9.1", "1.3.6.1.4.1.9.2"]
    good = table_agent({columns[0]: [1, 2]})

    def answer(kind, oids, reps):
        if any(oid.startswith(columns[1]) for oid in oids):
            return Response(
                (), GEN_ERR, oids.index(next(o for o in oids if o.startswith(columns[1]))) + 1
            )
        return good(kind, oids, reps)

    assert walk(Scripted(answer), columns, 5) == {columns[0]: {"1": 1, "2": 2}, columns[1]: {}}


def test_a_device_silent_after_answering_keeps_what_it_gave_and_is_up():
    from collectors.snmp.poller import NoAnswer, _Session

    columns = ["1.3.6.1.4.1.9.1"]
    agent = table_agent({columns[0]: [1, 2, 3, 4]})
    calls = 0

    def answer(kind, oids, reps):
        nonlocal calls
        calls += 1
        if calls > 1:
            raise NoAnswer("requestTimedOut")
        return agent(kind, oids, reps)

    assert walk(Scripted(answer), columns, 2) == {columns[0]: {"1": 1, "2": 2}}
    # Never answered at all: the device is down.
    from collectors.snmp.poller import DeviceDown

    def silent_answer(kind, oids, reps):
        raise NoAnswer("requestTimedOut")

    with pytest.raises(DeviceDown):
        asyncio.run(_Session(Scripted(silent_answer)).walk(columns, 2))
