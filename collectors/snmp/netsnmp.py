"""The ``netsnmp`` backend: Net-SNMP's C library through ezsnmp (``pip install
'dyzur[snmp-fast]'``; its manylinux wheels bring libnetsnmp and OpenSSL, nothing from the OS).

BER encoding and decoding, USM (SHA/SHA-256 with AES) and the retransmissions are done in C;
what comes back is Net-SNMP's printed form of each varbind (asked for numeric OIDs, numbers and
hex octets), turned here into the same Python values the pysnmp backend gives: strings are
decoded from their exact bytes by the same function, so labels are the same.

ezsnmp's calls block: they run in a thread pool of ``concurrency`` threads (the GIL is released
while Net-SNMP waits), from the same asyncio code as the pysnmp backend, so at most
``concurrency`` devices are polled at once and a silent SNMPv2c device costs one timeout beside
the others. Timeouts and retries are Net-SNMP's ``-t``/``-r``: the same meaning as pysnmp's
(seconds per try, retransmissions after the first try).

Known limit: ezsnmp serialises SNMPv3 requests process-wide (Net-SNMP's USM user list is
global) and forgets the agent's engine ID after each, so an SNMPv3 request costs two round trips
and a silent SNMPv3 device holds up the other SNMPv3 devices of the round by its timeout.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from collectors.snmp.poller import (
    GEN_ERR,
    TOO_BIG,
    Backend,
    Device,
    NoAnswer,
    Round,
    Transport,
)
from collectors.snmp.profile import Value
from collectors.snmp.wire import END_OF_MIB, Response, VarBind, octets_to_python

#: Net-SNMP's names of the auth and priv protocols the options allow (see poller.py).
AUTH = {"SHA": "SHA", "SHA256": "SHA-256"}
PRIV = {"AES128": "AES", "AES": "AES"}

_INTEGERS = frozenset(
    {"INTEGER", "Integer32", "Counter32", "Gauge32", "Counter64", "UInteger32", "Unsigned32"}
)
_OCTETS = frozenset({"Hex-STRING", "OPAQUE", "Opaque"})
_NONE = frozenset({"NULL", "NOSUCHOBJECT", "NOSUCHINSTANCE"})
_END = "No more variables left in this MIB View"
_IN_PARENS = re.compile(r"\((-?\d+)\)")
_ROOTS = {"iso": "1", "ccitt": "0", "joint-iso-ccitt": "2"}

_setup_lock = threading.Lock()
_setup_done = False


def missing() -> str | None:
    """Why the backend cannot be used (ezsnmp not installed or not loadable), else None."""
    try:
        importlib.import_module("ezsnmp")
    except ImportError as exc:
        return f"cannot import {exc.name or 'ezsnmp'}"
    return None


def _ezsnmp() -> Any:
    """ezsnmp, imported after Net-SNMP's environment is set (it reads it when it first runs)."""
    global _setup_done
    with _setup_lock:
        if not _setup_done:
            # No MIBs: OIDs and enumerations then print as numbers whatever the output flags
            # (ezsnmp resets those flags after each call, also while another thread is still
            # printing). No snmp.conf of the host: its defaults (defVersion, defSecurityName,
            # mibs) must not change what a profile asks.
            os.environ["MIBS"] = ""
            os.environ["MIBDIRS"] = ""
            os.environ["SNMPCONFPATH"] = os.devnull
            _setup_done = True
    return importlib.import_module("ezsnmp")


def numeric_oid(text: str) -> str:
    """``.1.3.6.1...`` or ``iso.3.6.1...`` (Net-SNMP without a MIB) as ``1.3.6.1...``."""
    text = text.lstrip(".")
    head, dot, rest = text.partition(".")
    if head in _ROOTS:
        return _ROOTS[head] + dot + rest
    return text


def _integer(text: str) -> Value:
    try:
        return int(text)
    except ValueError:
        # "(12345) 0:02:03.45" for TimeTicks, "name(4)" for a named number: the number.
        found = _IN_PARENS.search(text)
        return int(found.group(1)) if found else text


def to_python(kind: str, text: str) -> Value | object:
    """Net-SNMP's printed value (its type, its text) as the pysnmp backend's to_python gives
    it; END_OF_MIB for endOfMibView."""
    if kind in _INTEGERS or kind == "Timeticks" or kind.isdigit():  # -Ot: no "Timeticks:"
        return _integer(text)
    if kind in _OCTETS:
        try:
            return octets_to_python(bytes.fromhex(text))
        except ValueError:  # Opaque holding a float ("Float: 1.5") and the like
            return text
    if kind == '""':  # an empty OCTET STRING
        return ""
    if kind in _NONE:
        return None
    if kind == "OID":
        return numeric_oid(text)
    if kind == "IpAddress":
        return text
    if kind == "STRING":  # only when the hex output flag was not in force: printable text
        return octets_to_python(text.replace('\\"', '"').replace("\\\\", "\\").encode())
    if text.startswith(_END):
        return END_OF_MIB
    return text


def _varbinds(results: Sequence[Any]) -> list[VarBind]:
    out: list[VarBind] = []
    for result in results:
        oid, index = result.oid, result.index
        name = numeric_oid(f"{oid}.{index}" if index else oid)
        out.append((name, to_python(result.type, result.value)))  # type: ignore[arg-type]
    return out


def make_session(device: Device) -> Any:
    """An ezsnmp Session for ``device`` (its secrets are revealed only to it)."""
    common: dict[str, Any] = {
        "hostname": device.host,
        "port_number": str(device.port),
        "timeout": repr(float(device.timeout)),
        "retries": str(device.retries),
        "print_oids_numerically": True,
        "print_enums_numerically": True,
        "print_timeticks_numerically": True,
        "print_hex_strings": True,  # every OCTET STRING as its exact bytes
    }
    ezsnmp = _ezsnmp()
    if device.version == "2c":
        assert device.community is not None
        return ezsnmp.Session(version="2c", community=device.community.reveal(), **common)
    assert device.user and device.auth_key and device.priv_key
    return ezsnmp.Session(
        version="3",
        security_level="authPriv",
        security_username=device.user,
        auth_protocol=AUTH[device.auth_protocol],
        auth_passphrase=device.auth_key.reveal(),
        privacy_protocol=PRIV[device.priv_protocol],
        privacy_passphrase=device.priv_key.reveal(),
        context=device.context,
        **common,
    )


class _NetSnmpTransport(Transport):
    def __init__(self, device: Device, session: Any, executor: ThreadPoolExecutor) -> None:
        self.device = device
        self.session = session
        self.executor = executor

    def __repr__(self) -> str:
        return f"_NetSnmpTransport(asset={self.device.asset!r})"

    def _scrub(self, message: str) -> str:
        for secret in self.device.secrets():
            message = message.replace(secret, "***")
        return message.strip()

    def _request(self, oids: list[str], max_repetitions: int | None) -> Response:
        ezsnmp = _ezsnmp()
        session = self.session
        try:
            if max_repetitions is None:
                results = session.get(oids)
            else:
                # bulk_get sends what the session was built with; per request, the table's.
                session._Session__set_max_repeaters_to_num = str(max_repetitions)
                results = session.bulk_get(oids)
        except ezsnmp.PacketError as exc:  # an error-status in the answer
            status = TOO_BIG if "toobig" in str(exc).lower() else GEN_ERR
            return Response((), status, 0)
        except ezsnmp.GenericError as exc:  # timeout, unknown host, credentials refused
            raise NoAnswer(self._scrub(str(exc)) or type(exc).__name__) from None
        return Response(_varbinds(results or ()))

    async def get(self, oids: Sequence[str]) -> Response:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._request, list(oids), None)

    async def bulk(self, oids: Sequence[str], max_repetitions: int) -> Response:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._request, list(oids), max_repetitions)


class _NetSnmpRound(Round):
    def __init__(self, backend: NetSnmpBackend, workers: int) -> None:
        self.backend = backend
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dyzur-snmp")

    async def open(self, device: Device) -> Transport:
        return _NetSnmpTransport(device, self.backend.session(device), self.executor)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class NetSnmpBackend(Backend):
    """Net-SNMP through ezsnmp. Keeps one ezsnmp Session per device across polls: ezsnmp
    counts its sessions and shuts Net-SNMP down (to initialise it again on the next request)
    whenever the last one is closed."""

    name = "netsnmp"

    def __init__(self) -> None:
        self._sessions: dict[str, tuple[Device, Any]] = {}
        self._lock = threading.Lock()

    def session(self, device: Device) -> Any:
        with self._lock:
            known = self._sessions.get(device.asset)
            if known is None or known[0] is not device:
                known = (device, make_session(device))
                self._sessions[device.asset] = known
            return known[1]

    def round(self, devices: Sequence[Device], concurrency: int) -> Round:
        return _NetSnmpRound(self, max(1, min(concurrency, len(devices))))

    def __repr__(self) -> str:
        return f"NetSnmpBackend(devices={len(self._sessions)})"
