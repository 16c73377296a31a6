"""SNMPv3 authPriv as dyzur encodes it (collectors/snmp/usm.py), against a real net-snmp
snmpd: the same samples as SNMPv2c, the device's engine discovered once and kept, a device
restarted with a new engine ID or a new boot found again, refused credentials named at once
and never printed, and answers that are not authentic ignored."""

from __future__ import annotations

import asyncio

import pytest

from collectors.snmp import PysnmpBackend, parse_options, poll_all
from collectors.snmp.usm import Engine, User, decode_message, encode_request
from collectors.snmp.wire import GET, BadMessage, encode_pdu
from tests.snmpd import COMMUNITY, USERS, Snmpd

UNKNOWN_ENGINE_IDS = "1.3.6.1.6.3.15.1.1.4.0"
NOT_IN_TIME_WINDOWS = "1.3.6.1.6.3.15.1.1.2.0"
AUTH_PROTOCOLS = {"SHA-256": "SHA256", "SHA": "SHA"}


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory):
    agent = Snmpd(tmp_path_factory.mktemp("snmpd"))
    agent.start()
    yield agent
    agent.stop()


def v2c(port: int, asset: str = "srv-v2c") -> dict:
    return {
        "asset": asset,
        "host": "127.0.0.1",
        "port": port,
        "community": COMMUNITY,
        "profiles": ["host-resources-storage"],
    }


def v3(port: int, asset: str = "srv-v3", account: tuple = USERS[0], **extra) -> dict:
    name, auth, auth_password, priv_password = account
    return {
        "asset": asset,
        "host": "127.0.0.1",
        "port": port,
        "version": "3",
        "user": name,
        "auth_protocol": AUTH_PROTOCOLS[auth],
        "auth_key": auth_password,
        "priv_protocol": "AES128",
        "priv_key": priv_password,
        "profiles": ["host-resources-storage"],
        "timeout": 2,
        **extra,
    }


def poll(devices: list[dict], backend: PysnmpBackend | None = None):
    options = parse_options({"devices": devices})
    return asyncio.run(poll_all(options.devices, 1.0, backend=backend or PysnmpBackend()))


def sizes(samples) -> dict:
    """Sizes of the file systems by label: what does not change between two polls."""
    return {
        tuple(sorted((k, v) for k, v in s.labels.items() if k != "asset")): s.value
        for s in samples
        if s.metric == "dyzur_storage_size_bytes"
    }


@pytest.mark.parametrize("user", USERS, ids=[u[1] for u in USERS])
def test_v3_auth_priv_gives_what_v2c_gives(snmpd, user):
    by_v3, by_v2c = poll([v3(snmpd.port, account=user), v2c(snmpd.port)])
    assert by_v3.up and by_v2c.up, (by_v3.error, by_v2c.error)
    assert sizes(by_v3.samples), "snmpd reports no file system: nothing compared"
    assert sizes(by_v3.samples) == sizes(by_v2c.samples)
    assert {
        (s.metric, *sorted(s.labels.items())) for s in by_v3.samples if s.metric != "dyzur_snmp_up"
    } == {
        (s.metric, *sorted({**s.labels, "asset": "srv-v3"}.items()))
        for s in by_v2c.samples
        if s.metric != "dyzur_snmp_up"
    }


def test_the_engine_is_discovered_once_and_kept_between_rounds(snmpd):
    backend = PysnmpBackend()
    before = snmpd.counter(UNKNOWN_ENGINE_IDS)
    assert poll([v3(snmpd.port)], backend)[0].up
    assert snmpd.counter(UNKNOWN_ENGINE_IDS) == before + 1
    for _ in range(3):
        devices = [v3(snmpd.port, asset=f"srv-{i}") for i in range(4)]
        assert all(result.up for result in poll(devices, backend))
    assert snmpd.counter(UNKNOWN_ENGINE_IDS) == before + 1


def test_a_device_restarted_with_a_new_engine_id_is_found_again(tmp_path):
    agent = Snmpd(tmp_path)
    agent.start(engine_id="hospital-a-ups")
    try:
        backend = PysnmpBackend()
        assert poll([v3(agent.port)], backend)[0].up
        first = backend.engines[("127.0.0.1", agent.port)].id
        agent.stop()
        agent.forget()
        agent.start(engine_id="hospital-b-ups")  # the same address, another device
        result = poll([v3(agent.port)], backend)[0]
        assert result.up, result.error
        assert backend.engines[("127.0.0.1", agent.port)].id != first
    finally:
        agent.stop()


def test_a_device_rebooted_or_a_clock_gone_stale_is_synchronised_again(tmp_path):
    agent = Snmpd(tmp_path)
    agent.start()
    try:
        backend = PysnmpBackend()
        assert poll([v3(agent.port)], backend)[0].up
        engine = backend.engines[("127.0.0.1", agent.port)]
        boots = engine.boots
        agent.stop()
        agent.start()  # the same engine ID, one boot more, its clock from 0
        before = agent.counter(NOT_IN_TIME_WINDOWS)
        result = poll([v3(agent.port)], backend)[0]
        assert result.up, result.error
        assert backend.engines[("127.0.0.1", agent.port)].boots == boots + 1
        assert agent.counter(NOT_IN_TIME_WINDOWS) == before + 1
        # The device's clock stood still for longer than the 150 s time window (a suspended
        # virtual machine): ours has run ahead of it.
        backend.engines[("127.0.0.1", agent.port)].at -= 1000
        result = poll([v3(agent.port)], backend)[0]
        assert result.up, result.error
        assert agent.counter(NOT_IN_TIME_WINDOWS) == before + 2
    finally:
        agent.stop()


@pytest.mark.parametrize(
    ("change", "error"),
    [
        # snmpd reports these (unauthenticated): the device is down at once, named why.
        ({"auth_key": "not-the-auth-password"}, "SNMPv3 wrongDigests"),
        ({"user": "nobody-here"}, "SNMPv3 unknownUserNames"),
        # A PDU it cannot decrypt snmpd drops without a report: down after the timeout.
        ({"priv_key": "not-the-priv-password", "timeout": 0.5}, "No SNMP response"),
    ],
)
def test_refused_credentials_are_named_and_never_printed(snmpd, caplog, change, error):
    device = v3(snmpd.port, **change)
    result = poll([device])[0]
    assert not result.up
    assert (result.error or "").startswith(error)
    for secret in (device["auth_key"], device["priv_key"]):
        assert secret not in (result.error or "")
        assert secret not in caplog.text


def test_an_answer_with_a_wrong_digest_or_another_key_is_not_read():
    user = User(b"v3-sha256", "SHA256", b"auth-password-256", b"priv-password-256")
    engine = Engine(b"\x80\x00\x1f\x88\x04dyzur", 3, 1000, 0.0)
    pdu = encode_pdu(GET, 42, 0, 0, ["1.3.6.1.2.1.1.3.0"])
    message = encode_request(user, engine, 5.0, 7, b"", pdu)

    answer = decode_message(message, user)
    assert (answer.msg_id, answer.engine_id, answer.boots, answer.time) == (7, engine.id, 3, 1005)
    assert answer.authentic and answer.private and answer.pdu == GET
    assert [oid for oid, _ in answer.response.varbinds] == ["1.3.6.1.2.1.1.3.0"]

    other = User(b"v3-sha256", "SHA256", b"another-password", b"priv-password-256")
    with pytest.raises(BadMessage, match="digest"):
        decode_message(message, other)
    flipped = bytearray(message)
    flipped[-1] ^= 1  # one bit of the encrypted PDU
    with pytest.raises(BadMessage, match="digest"):
        decode_message(bytes(flipped), user)
    for cut in range(1, len(message), 7):
        with pytest.raises(BadMessage):
            decode_message(message[:cut], user)


def test_a_silent_v3_device_is_down_and_the_others_answer(snmpd):
    """Nobody on the port: the engine discovery gets no answer, the device is down, and the
    device beside it in the same round is polled as usual; nothing is kept for the silent one."""
    from tests.snmpd import free_udp_port

    backend = PysnmpBackend()
    quiet = v3(free_udp_port(), asset="srv-silent", timeout=0.5, retries=0)
    dead, alive = poll([quiet, v3(snmpd.port)], backend)
    assert not dead.up and dead.error.startswith("No SNMP response")
    assert [s.metric for s in dead.samples] == ["dyzur_snmp_up"]
    assert alive.up, alive.error
    assert set(backend.engines) == {("127.0.0.1", snmpd.port)}


def test_an_agent_polling_loads_neither_pysnmp_nor_pyasn1(snmpd):
    """The messages are dyzur's own: pysnmp and pyasn1 (about 30 MiB of an agent) are loaded
    only by a caller passing a pysnmp engine, and cryptography only for SNMPv3."""
    import json
    import subprocess
    import sys

    script = f"""
import asyncio, json, sys
from collectors.snmp import PysnmpBackend, parse_options, poll_all
from tests.test_snmp_v3 import v2c, v3
loaded = lambda: sorted(m for m in ("pysnmp", "pyasn1", "cryptography") if m in sys.modules)
backend = PysnmpBackend()
def poll(device):
    options = parse_options({{"devices": [device]}})
    return asyncio.run(poll_all(options.devices, 1.0, backend=backend))[0].up
out = {{"v2c": [poll(v2c({snmpd.port})), loaded()], "v3": [poll(v3({snmpd.port})), loaded()]}}
print(json.dumps(out))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == {"v2c": [True, []], "v3": [True, ["cryptography"]]}


def test_an_authentic_looking_answer_from_another_engine_is_not_read():
    """Each key is a million bytes hashed: a message naming an engine the device is not is
    refused before any key is made for it."""
    from collectors.snmp.usm import localized_key

    user = User(b"v3-sha", "SHA", b"auth-password-sha1", b"priv-password-sha1")
    ours = Engine(b"\x80\x00\x1f\x88\x04ours", 1, 10, 0.0)
    theirs = Engine(b"\x80\x00\x1f\x88\x04theirs", 1, 10, 0.0)
    message = encode_request(user, theirs, 1.0, 9, b"", encode_pdu(GET, 1, 0, 0, ["1.3.6.1"]))
    assert decode_message(message, user, theirs.id).engine_id == theirs.id
    localized_key.cache_clear()
    with pytest.raises(BadMessage, match="another engine"):
        decode_message(message, user, ours.id)
    assert localized_key.cache_info().currsize == 0


def test_snmp_v3_without_cryptography_is_a_configuration_error_naming_the_extra():
    """An agent installed without the snmp extra: its v3 device is refused when the config is
    read, naming the device and the extra, not a poll failing with 'ImportError' later."""
    import subprocess
    import sys

    script = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'cryptography' else "
        "real(name, *a)\n"
        "from collectors.base import CollectorConfigError\n"
        "from collectors.snmp import parse_options\n"
        "from tests.test_snmp_v3 import v2c, v3\n"
        "parse_options({'devices': [v2c(161)]})\n"  # v2c needs nothing more
        "try:\n"
        "    parse_options({'devices': [v2c(161), v3(161)]})\n"
        "except CollectorConfigError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == (
        "devices.1.version: SNMPv3 needs the cryptography package (AES): pip install 'dyzur[snmp]'"
    )
