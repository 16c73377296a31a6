"""The SNMP collector's backends (``backend: pysnmp`` and ``backend: netsnmp``) against a real
snmpsim agent: every golden case of test_snmp_profiles.py gives the same samples through each;
fewer packets (one GET for a device's scalars, one GETBULK carrying all of a table's columns);
columns of different lengths; every SNMP type decoded to the same value; v3 authPriv; silent
devices, bounded concurrency, retries; the option and the light install without the extra."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml

from collectors.base import CollectorConfigError
from collectors.snmp import SnmpCollector, parse_options, poll_all, poll_device
from collectors.snmp.collector import make_backend
from collectors.snmp.poller import Backend, Device, Response, Round, Transport
from tests.test_snmp_collector import silent, ups, v3, values
from tests.test_snmp_profiles import (
    DATA,
    GOLDEN,
    V3_AUTH_KEY,
    V3_PRIV_KEY,
    SnmpSim,
    golden_id,
    need_snmpsim,
    normalise,
)

BACKENDS = ["pysnmp", "netsnmp"]
ROOT = Path(__file__).resolve().parents[1]


def backend(name: str) -> Backend:
    """A fresh backend; netsnmp needs the snmp-fast extra (always there under CI)."""
    if name == "netsnmp":
        from collectors.snmp.netsnmp import missing

        why = missing()
        if why:
            if os.environ.get("CI"):
                pytest.fail(f"ezsnmp is required under CI ({why}): pip install -e '.[dev]'")
            pytest.skip(f"ezsnmp not installed: {why}")
    return make_backend(name)


@pytest.fixture(scope="module")
def sim() -> Iterator[SnmpSim]:
    need_snmpsim()
    running = SnmpSim()
    yield running
    running.stop()


class Recorder(Backend):
    """Wraps a backend and records every request its transports send: (asset, kind, OIDs,
    max-repetitions, varbinds answered)."""

    name = "recorder"

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.requests: list[tuple[str, str, tuple[str, ...], int, int]] = []

    def round(self, devices: Sequence[Device], concurrency: int) -> Round:
        inner, requests = self.inner.round(devices, concurrency), self.requests

        class Recording(Transport):
            def __init__(self, asset: str, transport: Transport) -> None:
                self.asset, self.transport = asset, transport

            async def get(self, oids: Sequence[str]) -> Response:
                response = await self.transport.get(oids)
                requests.append((self.asset, "get", tuple(oids), 0, len(response.varbinds)))
                return response

            async def bulk(self, oids: Sequence[str], max_repetitions: int) -> Response:
                response = await self.transport.bulk(oids, max_repetitions)
                requests.append(
                    (self.asset, "bulk", tuple(oids), max_repetitions, len(response.varbinds))
                )
                return response

            def close(self) -> None:
                self.transport.close()

        class RecordingRound(Round):
            async def open(self, device: Device) -> Transport:
                return Recording(device.asset, await inner.open(device))

            def close(self) -> None:
                inner.close()

        return RecordingRound()


def device(port: int, community: str, profiles: list[str], **extra) -> Device:
    raw = {
        "asset": "asset-under-test",
        "host": "127.0.0.1",
        "port": port,
        "community": community,
        "profiles": profiles,
        "timeout": 5,
    } | extra
    return parse_options({"devices": [raw]}).devices[0]


def expected(case: dict) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    """A golden case's samples, normalised as test_snmp_profiles.normalise does."""
    return sorted(
        (
            s["metric"],
            tuple(sorted((str(k), str(v)) for k, v in (s.get("labels") or {}).items())),
            float(s["value"]),
        )
        for s in case["samples"]
    )


# --- every golden case, through every backend ----------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("golden", GOLDEN, ids=golden_id)
def test_every_golden_case_gives_the_same_samples_through_every_backend(sim, golden, name):
    case = yaml.safe_load(golden.read_text())
    target = device(sim.port, case["recording"], case["profiles"])
    chosen, rows = backend(name), {}
    # Twice: the first poll walks with the default repetitions, the second with the row
    # counts the first one found (all rows in one request where the agent allows it).
    for now in (1234.5, 1264.5):
        result = asyncio.run(poll_device(target, now, backend=chosen, rows=rows))
        assert result.up, result.error
        assert {s.timestamp for s in result.samples} == {now}
        got = normalise(result.samples)
        assert [(m, labels) for m, labels, _ in got] == [(m, lb) for m, lb, _ in expected(case)]
        for (metric, labels, value), (_, _, want) in zip(got, expected(case), strict=True):
            assert repr(value) == repr(want), (name, metric, labels)
        assert sorted({m for m, _ in result.skipped}) == sorted(case.get("skipped", []))
    # The row count of every table was kept for the next poll.
    assert set(rows) == {
        ("asset-under-test", next(iter(table.columns.values())))
        for profile in target.profiles
        for table in profile.tables
    }


@pytest.mark.parametrize("golden", GOLDEN, ids=golden_id)
def test_pysnmps_own_v2c_messages_give_the_same_samples(sim, golden):
    """An engine passed to poll_device sends SNMPv2c through pysnmp's command generators
    instead of dyzur's encoder: the same samples, value for value."""
    from collectors.snmp.pysnmp_engine import offline_engine

    case = yaml.safe_load(golden.read_text())
    target = device(sim.port, case["recording"], case["profiles"])

    async def poll_through_pysnmp():
        engine = offline_engine()  # closed by its caller, inside the loop
        try:
            return await poll_device(target, 1.0, engine)
        finally:
            engine.close_dispatcher()

    through_pysnmp = asyncio.run(poll_through_pysnmp())
    ours = asyncio.run(poll_device(target, 1.0))
    assert through_pysnmp.up and ours.up
    assert [repr(s) for s in through_pysnmp.samples] == [repr(s) for s in ours.samples]
    assert through_pysnmp.skipped == ours.skipped


# --- fewer packets -------------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
def test_scalars_are_one_get_and_each_table_one_getbulk_of_all_its_columns(sim, name):
    """The Eaton UPS with two profiles: one GET for the scalars of both, and from the second
    poll on (the row counts known) one GETBULK per table with every column of the table,
    asking for one repetition more than the rows, which shows each column's end."""
    from collectors.snmp.profile import resolve_profile

    profiles = [resolve_profile("ups-mib"), resolve_profile("eaton-xups")]
    target = device(sim.port, "eaton-93e-80", ["ups-mib", "eaton-xups"])
    recorder, rows = Recorder(backend(name)), {}
    first = asyncio.run(poll_device(target, 1.0, backend=recorder, rows=rows))
    recorder.requests.clear()
    second = asyncio.run(poll_device(target, 2.0, backend=recorder, rows=rows))
    assert normalise(first.samples) == normalise(second.samples)

    scalars = {oid for p in profiles for oid in p.scalars.values()}
    tables = [tuple(t.columns.values()) for p in profiles for t in p.tables]
    gets = [r for r in recorder.requests if r[1] == "get"]
    bulks = [r for r in recorder.requests if r[1] == "bulk"]
    assert len(gets) == 1 and set(gets[0][2]) == scalars and gets[0][4] == len(scalars)
    assert [r[2] for r in bulks] == tables
    for _, _, columns, reps, answered in bulks:
        assert reps == rows[("asset-under-test", columns[0])] + 1
        assert answered == len(columns) * reps


@pytest.mark.parametrize("name", BACKENDS)
def test_a_table_cut_short_by_the_agent_is_walked_on_from_each_columns_last_row(sim, name):
    """snmpsim cuts a GETBULK answer at 63 varbinds: the Isilon's 15-row storage table (five
    columns, 16 repetitions asked once its size is known) takes two requests, the second
    carrying every column from the last row the first answer gave it."""
    target = device(sim.port, "isilon-onefs", ["host-resources-storage"])
    storage = [f"1.3.6.1.2.1.25.2.3.1.{i}" for i in (2, 3, 4, 5, 6)]
    recorder, rows = Recorder(backend(name)), {}
    first = asyncio.run(poll_device(target, 1.0, backend=recorder, rows=rows))
    recorder.requests.clear()
    second = asyncio.run(poll_device(target, 2.0, backend=recorder, rows=rows))
    assert normalise(first.samples) == normalise(second.samples)
    assert rows[("asset-under-test", storage[0])] == 15

    walk = [r for r in recorder.requests if r[2][0].startswith(storage[0])]
    assert len(walk) == 2
    (_, _, oids, reps, answered), (_, _, then, _, _) = walk
    assert oids == tuple(storage) and reps == 16 and answered < 5 * reps  # cut short
    assert [oid.rsplit(".", 1)[0] for oid in then] == storage
    assert all(oid not in storage for oid in then)  # each from a row of its own


@pytest.fixture(scope="module")
def ragged() -> Iterator[SnmpSim]:
    """snmpsim serving a hand-made table whose columns have different lengths (one column
    empty), a column next to it, and every SNMP type as scalars."""
    need_snmpsim()
    data = Path(tempfile.mkdtemp(prefix="dyzur-snmp-ragged-"))
    os.chmod(data, 0o755)  # snmpsim drops to nobody when run as root
    lines = ["1.3.6.1.2.1.1.1.0|4|ragged table test"]
    table = "1.3.6.1.4.1.99.2.1"
    lines += [f"{table}.1.{i}|2|{i}" for i in range(1, 8)]  # index: 7 rows
    lines += [f"{table}.2.{i}|4|row {i}" for i in (1, 2, 5)]  # name: 3 rows, gaps
    lines += [f"{table}.4.{i}|66|{10 * i}" for i in range(1, 8)]  # size: 7 rows (no column 3)
    lines += ["1.3.6.1.4.1.99.3.0|2|77"]  # after the table
    (data / "ragged.snmprec").write_text("\n".join(lines) + "\n")
    (data / "types.snmprec").write_text(TYPES)
    for path in data.iterdir():
        os.chmod(path, 0o644)
    running = SnmpSim(data)
    yield running
    running.stop()
    shutil.rmtree(data, ignore_errors=True)


@pytest.mark.parametrize("reps", [1, 2, 3, 50])
@pytest.mark.parametrize("name", BACKENDS)
def test_columns_of_different_lengths_each_stop_at_their_end(ragged, name, reps):
    from collectors.snmp.poller import _Session

    target = device(ragged.port, "ragged", ["ups-mib"])
    columns = [f"1.3.6.1.4.1.99.2.1.{i}" for i in (1, 2, 3, 4)]

    async def walk() -> dict:
        round_ = backend(name).round([target], 1)
        transport = await round_.open(target)
        try:
            return await _Session(transport).walk(columns, reps)
        finally:
            transport.close()
            round_.close()

    got = asyncio.run(walk())
    assert got == {
        columns[0]: {str(i): i for i in range(1, 8)},
        columns[1]: {"1": "row 1", "2": "row 2", "5": "row 5"},
        columns[2]: {},
        columns[3]: {str(i): 10 * i for i in range(1, 8)},
    }


# --- every type, decoded the same ----------------------------------------------------------

TYPES = (
    "\n".join(
        [
            "1.3.6.1.2.1.1.1.0|4|types test",
            "1.3.6.1.4.1.99.1.1.0|2|-5",
            "1.3.6.1.4.1.99.1.2.0|4|",
            '1.3.6.1.4.1.99.1.4.0|4|say "hi" \\ back',
            "1.3.6.1.4.1.99.1.5.0|4x|c5bcc3b3c5827720",  # UTF-8 text with a trailing blank
            "1.3.6.1.4.1.99.1.6.0|4x|6162630000",  # trailing NULs
            "1.3.6.1.4.1.99.1.7.0|5|",
            "1.3.6.1.4.1.99.1.8.0|6|1.3.6.1.4.1.9",
            "1.3.6.1.4.1.99.1.9.0|64|10.0.0.1",
            "1.3.6.1.4.1.99.1.10.0|65|4294967295",
            "1.3.6.1.4.1.99.1.11.0|66|7",
            "1.3.6.1.4.1.99.1.12.0|67|12345",
            "1.3.6.1.4.1.99.1.13.0|68x|0102",
            "1.3.6.1.4.1.99.1.14.0|70|18446744073709551615",
            "1.3.6.1.4.1.99.1.16.0|4x|6c696e65206f6e650a6c696e652074776f2c20612062697420616e64206d6f7265",
            "1.3.6.1.4.1.99.1.17.0|4x|ff00fe",
            "1.3.6.1.4.1.99.1.18.0|4|  padded  ",
            "1.3.6.1.4.1.99.1.19.0|2|2147483647",
        ]
    )
    + "\n"
)
TYPE_VALUES = {
    "1.3.6.1.4.1.99.1.1.0": -5,
    "1.3.6.1.4.1.99.1.2.0": "",
    "1.3.6.1.4.1.99.1.4.0": 'say "hi" \\ back',
    "1.3.6.1.4.1.99.1.5.0": "żółw",
    "1.3.6.1.4.1.99.1.6.0": "abc",
    "1.3.6.1.4.1.99.1.7.0": None,
    "1.3.6.1.4.1.99.1.8.0": "1.3.6.1.4.1.9",
    "1.3.6.1.4.1.99.1.9.0": "10.0.0.1",
    "1.3.6.1.4.1.99.1.10.0": 4294967295,
    "1.3.6.1.4.1.99.1.11.0": 7,
    "1.3.6.1.4.1.99.1.12.0": 12345,
    "1.3.6.1.4.1.99.1.13.0": "\x01\x02",
    "1.3.6.1.4.1.99.1.14.0": 18446744073709551615,
    "1.3.6.1.4.1.99.1.16.0": "line one\nline two, a bit and more",
    "1.3.6.1.4.1.99.1.17.0": "ff00fe",
    "1.3.6.1.4.1.99.1.18.0": "padded",
    "1.3.6.1.4.1.99.1.19.0": 2147483647,
    "1.3.6.1.4.1.99.1.77.0": None,  # noSuchInstance
    "1.3.6.1.4.1.98.1.0": None,  # noSuchObject
}


@pytest.mark.parametrize("name", BACKENDS)
def test_every_snmp_type_gives_the_same_python_value(ragged, name):
    from collectors.snmp.poller import _Session

    target = device(ragged.port, "types", ["ups-mib"])

    async def get() -> dict:
        round_ = backend(name).round([target], 1)
        transport = await round_.open(target)
        try:
            return await _Session(transport).get(list(TYPE_VALUES))
        finally:
            transport.close()
            round_.close()

    got = asyncio.run(get())
    assert got == TYPE_VALUES
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in TYPE_VALUES.items()}


# --- SNMPv3 authPriv -----------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
def test_v3_auth_priv_gives_what_v2c_gives(sim, name):
    options = parse_options({"devices": [v3(sim.port), ups(sim.port)]})
    by_v3, by_v2c = asyncio.run(poll_all(options.devices, 1.0, backend=backend(name), rows={}))
    assert by_v3.up and by_v2c.up, (by_v3.error, by_v2c.error)
    assert values(by_v3.samples) == values(by_v2c.samples)
    assert len(by_v3.samples) > 10
    assert {s.labels["asset"] for s in by_v3.samples} == {"ups-v3"}


@pytest.mark.parametrize("name", BACKENDS)
def test_v3_with_a_wrong_key_is_down_and_the_keys_stay_secret(sim, caplog, name):
    wrong_auth, wrong_priv = "wrong-auth-key-4242", "wrong-priv-key-4242"
    backend(name)  # skips without the extra
    collector = SnmpCollector.from_options(
        "snmp",
        {
            "backend": name,
            "devices": [v3(sim.port, auth_key=wrong_auth, priv_key=wrong_priv, timeout=1)],
        },
    )
    with caplog.at_level(logging.DEBUG):
        samples = collector.collect(5.0)
    assert [(s.metric, s.value) for s in samples] == [("dyzur_snmp_up", 0.0)]
    assert "ups-v3" in caplog.text and "does not answer" in caplog.text
    shown = caplog.text + repr(collector) + repr(collector.backend)
    for secret in (wrong_auth, wrong_priv, V3_AUTH_KEY, V3_PRIV_KEY):
        assert secret not in shown


# --- silent devices, concurrency, retries --------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
def test_silent_devices_are_waited_for_together_and_give_only_snmp_up_0(sim, name):
    """Three silent devices and five good ones, concurrency 16: all polls start before any
    ends (so the silent ones cost one timeout together), and the good ones end first."""
    devices = [silent(f"dead-{i}") for i in range(3)]
    devices += [ups(sim.port, f"ups-{i}") for i in range(5)]
    options = parse_options({"devices": devices, "concurrency": 16})
    events: list[tuple[str, str]] = []
    results = asyncio.run(
        poll_all(
            options.devices, 0.0, 16, lambda e, a: events.append((e, a)), backend=backend(name)
        )
    )
    assert [e for e, _ in events] == ["start"] * 8 + ["done"] * 8
    done = [a for e, a in events if e == "done"]
    assert set(done[:5]) == {f"ups-{i}" for i in range(5)}
    assert [r.up for r in results] == [False] * 3 + [True] * 5
    for result in results[:3]:
        assert [(s.metric, s.value) for s in result.samples] == [("dyzur_snmp_up", 0.0)]


@pytest.mark.parametrize("name", BACKENDS)
def test_no_more_than_concurrency_polls_are_in_flight(sim, name):
    devices = [ups(sim.port, f"ups-{i}") for i in range(10)] + [silent("dead", 0.5)]
    options = parse_options({"devices": devices, "concurrency": 3})
    in_flight, peak = 0, 0

    def observe(event: str, asset: str) -> None:
        nonlocal in_flight, peak
        in_flight += 1 if event == "start" else -1
        peak = max(peak, in_flight)

    results = asyncio.run(poll_all(options.devices, 0.0, 3, observe, backend=backend(name)))
    assert peak == 3
    assert in_flight == 0
    assert sum(r.up for r in results) == 10


class SilentAgent:
    """A UDP socket on 127.0.0.1 that counts the datagrams it gets and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]

    def count(self) -> int:
        got = 0
        while True:
            try:
                self.sock.recv(65535)
            except TimeoutError:
                return got
            got += 1


@pytest.mark.parametrize("retries", [0, 2])
@pytest.mark.parametrize("name", BACKENDS)
def test_retries_mean_the_same_in_every_backend(name, retries):
    """A device that never answers gets the first request and ``retries`` more, then is down:
    the next requests of its poll are not sent at all."""
    agent = SilentAgent()
    try:
        target = device(agent.port, "public", ["eaton-xups"], timeout=0.3, retries=retries)
        result = asyncio.run(poll_device(target, 0.0, backend=backend(name)))
        assert not result.up
        assert [(s.metric, s.value) for s in result.samples] == [("dyzur_snmp_up", 0.0)]
        assert agent.count() == 1 + retries
    finally:
        agent.sock.close()


class NoisyProxy:
    """A UDP proxy in front of snmpsim that sends, before each real answer, a truncated copy
    of it, a message whose length points past its end, and the answer to an earlier request
    (another request-id): the poller must wait for the real answer among them."""

    def __init__(self, agent_port: int) -> None:
        self.agent = ("127.0.0.1", agent_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.answered = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        upstream.settimeout(5)
        earlier = None
        while not self.stop.is_set():
            try:
                request, client = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            upstream.sendto(request, self.agent)
            try:
                answer = upstream.recv(65535)
            except TimeoutError:
                continue
            noise = [answer[: len(answer) // 2], b"\x30\x84\x7f\xff\xff\xff\x02\x01\x01"]
            if earlier is not None:
                noise.append(earlier)
            for datagram in [*noise, answer]:
                self.sock.sendto(datagram, client)
            earlier = answer
            self.answered += 1
        upstream.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.mark.parametrize("name", BACKENDS)
def test_noise_and_stale_answers_on_the_port_are_ignored(sim, name):
    case = yaml.safe_load((DATA / "eaton-93e-80.ups-mib.yaml").read_text())
    proxy = NoisyProxy(sim.port)
    try:
        target = device(proxy.port, "eaton-93e-80", ["ups-mib"], timeout=2, retries=0)
        result = asyncio.run(poll_device(target, 1.0, backend=backend(name)))
    finally:
        proxy.close()
    assert result.up, result.error
    assert normalise(result.samples) == expected(case)
    assert proxy.answered >= 2


@pytest.mark.parametrize("name", BACKENDS)
def test_a_host_name_is_resolved_to_its_ipv4_address(sim, name):
    """snmpsim listens on 127.0.0.1 only: "localhost" (which may also name ::1) reaches it."""
    target = device(sim.port, "eaton-93e-80", ["ups-mib"], host="localhost", retries=0)
    result = asyncio.run(poll_device(target, 1.0, backend=backend(name)))
    assert result.up, result.error


# --- the option, and the light install -----------------------------------------------------


def test_an_unknown_backend_is_an_error_naming_the_option():
    with pytest.raises(CollectorConfigError) as err:
        parse_options({"backend": "pyasn1", "devices": []})
    assert str(err.value) == 'backend: expected "pysnmp" or "netsnmp", got \'pyasn1\''


def test_netsnmp_without_the_extra_names_the_option_and_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ezsnmp", None)  # import ezsnmp now raises ImportError
    with pytest.raises(CollectorConfigError) as err:
        SnmpCollector.from_options("snmp", {"backend": "netsnmp", "devices": []})
    message = str(err.value)
    assert message.startswith("backend: 'netsnmp' needs the ezsnmp package")
    assert "pip install 'dyzur[snmp-fast]'" in message


def test_the_default_backend_works_without_ezsnmp(sim):
    """``pip install 'dyzur[agent,snmp]'`` has neither ezsnmp nor pysnmp: the collector, with
    no backend option, polls with its own messages and never imports them."""
    script = (
        "import sys\n"
        # as if not installed: importing them fails
        "sys.modules.update(dict.fromkeys(('ezsnmp', 'pysnmp', 'pyasn1')))\n"
        "from collectors.snmp import SnmpCollector\n"
        "c = SnmpCollector.from_options('snmp', {'devices': [{'asset': 'u', 'host': "
        f"'127.0.0.1', 'port': {sim.port}, 'community': 'eaton-93e-80', "
        "'profiles': ['ups-mib']}]})\n"
        "samples = c.collect(1.0)\n"
        "assert c.options.backend == 'pysnmp'\n"
        "assert 'collectors.snmp.netsnmp' not in sys.modules\n"
        "print(sum(1 for s in samples if s.metric == 'dyzur_snmp_up' and s.value == 1.0))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_the_extras_keep_ezsnmp_out_of_the_agent_install():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for extra in ("agent", "snmp"):
        assert not any("ezsnmp" in req or "pysnmp" in req for req in extras[extra]), extra
    assert any(req.startswith("ezsnmp") for req in extras["snmp-fast"])
    assert any("snmp-fast" in req for req in extras["dev"])  # CI tests the netsnmp backend
    assert DATA.is_dir()
