"""SNMP polling: one poll of one device, many devices at once, over a choice of backends.

One poll of one device: GET the scalars of all its profiles in one request, walk each table
with GETBULKs that carry all the table's columns at once, turn the answers into samples.
Many devices: ``poll_all`` runs the polls concurrently, at most ``concurrency`` at a time (an
``asyncio.Semaphore``), so a batch of silent devices costs about one timeout, not one per device.

The requests go through a backend. ``PysnmpBackend`` (pure Python, the default): GET and
GETBULK messages are encoded and decoded by dyzur (``_V2cTransport`` with wire.py,
``_V3Transport`` with usm.py: pyasn1's generic decoder was most of a poll's CPU, and pysnmp's
SNMPv3 discovered each device's engine again on every poll); pysnmp 7's command generators only
when the caller passes an engine. ``NetSnmpBackend``
(collectors/snmp/netsnmp.py): Net-SNMP's C library through ezsnmp. Every backend hands the same
Python values (int, str, None) to the same code here, so a profile gives the same samples
through each.

A table walk asks for ``rows + 1`` repetitions, ``rows`` being what the previous poll of that
device's table found (``RowHints``): one request per table when the table did not grow and the
agent does not cut the answer short. A column stops at its end (or when the agent answers a
non-increasing OID); the others go on.

A garbage answer (a wrong type, noSuchObject/noSuchInstance/endOfMibView, text where a number
is expected) never fails the poll: that metric is skipped and reported in ``PollResult.skipped``.
A device that does not answer gives only ``dyzur_snmp_up`` 0.

Secrets (community, auth and priv keys) are ``Secret`` objects: their repr and str are ``***``
and they are revealed only to the SNMP library or the message encoder. Nothing logged here
names them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from collectors.sample import Sample
from collectors.snmp import usm
from collectors.snmp.profile import MetricSpec, NotANumber, Profile, TableSpec, Value

if TYPE_CHECKING:
    from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

from collectors.snmp.wire import (
    END_OF_MIB,
    GET,
    GETBULK,
    RESPONSE,
    BadMessage,
    Response,
    decode_response,
    encode_pdu,
    encode_request,
)

log = logging.getLogger(__name__)

UP_METRIC = "dyzur_snmp_up"
#: The SNMPv3 protocols a device may use (usm.py speaks them).
AUTH_PROTOCOLS = ("SHA", "SHA256")
PRIV_PROTOCOLS = ("AES128", "AES")

#: Repetitions asked for a table not seen before (its first poll).
DEFAULT_ROWS = 10
#: At most this many repetitions per GETBULK ...
MAX_REPETITIONS = 64
#: ... and at most this many varbinds asked for in one GETBULK (columns x repetitions).
MAX_VARBINDS = 256

TOO_BIG = 1  # error-status tooBig (RFC 3416)
GEN_ERR = 5


class Secret:
    """A password or key: shown as ``***`` everywhere, revealed only to the SNMP library."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> NoReturn:  # never pickled into a spool or a log by accident
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True, slots=True)
class Device:
    """One device to poll. Build it with collectors.snmp.options.parse_options."""

    asset: str
    host: str
    profiles: tuple[Profile, ...]
    port: int = 161
    version: str = "2c"
    community: Secret | None = None
    user: str | None = None
    auth_protocol: str = "SHA256"
    auth_key: Secret | None = None
    priv_protocol: str = "AES128"
    priv_key: Secret | None = None
    context: str = ""
    timeout: float = 5.0
    retries: int = 1

    def __repr__(self) -> str:
        who = f"community={self.community!r}" if self.version == "2c" else f"user={self.user!r}"
        names = ",".join(p.name for p in self.profiles)
        return (
            f"Device(asset={self.asset!r}, host={self.host!r}, port={self.port}, "
            f"version={self.version!r}, {who}, profiles=[{names}], timeout={self.timeout:g}, "
            f"retries={self.retries})"
        )

    __str__ = __repr__

    def secrets(self) -> list[str]:
        """The revealed secrets, for scrubbing a library's error message."""
        return [s.reveal() for s in (self.community, self.auth_key, self.priv_key) if s]


@dataclass(slots=True)
class PollResult:
    asset: str
    up: bool
    samples: list[Sample]
    #: (metric, reason) for every value that could not be turned into a sample.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Why the device counts as down (the library's error indication, never a secret).
    error: str | None = None


class DeviceDown(Exception):
    """The device did not answer (timeout, or refused our credentials)."""


class NoAnswer(Exception):
    """A request got no answer (timeout, a host that does not resolve, credentials refused)."""


class Transport(ABC):
    """One device's requests during one poll; made by a backend's round (``Round.open``)."""

    @abstractmethod
    async def get(self, oids: Sequence[str]) -> Response:
        """One GET request; raise NoAnswer when the device does not answer."""

    @abstractmethod
    async def bulk(self, oids: Sequence[str], max_repetitions: int) -> Response:
        """One GETBULK request (non-repeaters 0); raise NoAnswer when no answer came."""

    def close(self) -> None:  # noqa: B027 - most transports have nothing to release
        """Release what the poll held."""


class Round(ABC):
    """What a backend holds for one ``poll_all`` (an engine, a thread pool)."""

    @abstractmethod
    async def open(self, device: Device) -> Transport:
        """A transport to ``device``; raise DeviceDown when it cannot be reached at all."""

    def close(self) -> None:  # noqa: B027
        """Release what the round held."""


class Backend(ABC):
    """An SNMP library behind the collector. One instance per collector: it may keep state
    across polls (the netsnmp backend keeps a session per device)."""

    name: ClassVar[str]

    @abstractmethod
    def round(self, devices: Sequence[Device], concurrency: int) -> Round:
        """Resources for polling ``devices``, at most ``concurrency`` at a time."""


class _Endpoint(asyncio.DatagramProtocol):
    """A connected UDP socket to one device: each answer ``decode`` can read is handed to the
    request waiting for its id; anything else is noise."""

    def __init__(self, decode: Callable[[bytes], tuple[int, Any]]) -> None:
        self.decode = decode
        self.waiting: dict[int, asyncio.Future[Any]] = {}

    def datagram_received(self, data: bytes, addr: object) -> None:
        try:
            key, answer = self.decode(data)
        except BadMessage:
            return  # noise, or an answer too broken to read: the request times out
        future = self.waiting.get(key)
        if future is not None and not future.done():
            future.set_result(answer)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable: wait for the timeout, as pysnmp and Net-SNMP do


_request_ids = itertools.count(secrets.randbelow(1 << 30))


def _next_id() -> int:
    return next(_request_ids) & 0x7FFFFFFF


class _UdpTransport(Transport):
    """Messages encoded here, on a UDP socket of its own: ``retries`` retransmissions of the
    same message (an answer to any of them counts), ``timeout`` seconds each."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.endpoint = _Endpoint(self.decode)
        self.transport: asyncio.DatagramTransport | None = None

    @abstractmethod
    def decode(self, data: bytes) -> tuple[int, Any]:
        """(the id of the request it answers, the answer) of a datagram; BadMessage if none."""

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            # IPv4, as pysnmp's UdpTransportTarget: a name with an IPv6 address too must
            # not end up on the IPv6 one.
            self.transport, _ = await loop.create_datagram_endpoint(
                lambda: self.endpoint,
                remote_addr=(self.device.host, self.device.port),
                family=socket.AF_INET,
            )
        except socket.gaierror:
            raise DeviceDown(f"cannot resolve {self.device.host}") from None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, key: int, message: bytes) -> Any:
        """Send ``message`` until the answer with id ``key`` comes; NoAnswer if none does."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        try:
            for _ in range(self.device.retries + 1):
                future: asyncio.Future[Any] = loop.create_future()
                self.endpoint.waiting[key] = future
                self.transport.sendto(message)
                try:
                    async with asyncio.timeout(self.device.timeout):
                        return await future
                except TimeoutError:
                    continue
        finally:
            self.endpoint.waiting.pop(key, None)
        raise NoAnswer("No SNMP response received before timeout")

    @abstractmethod
    async def ask(self, pdu: int, a: int, b: int, oids: Sequence[str]) -> Response:
        """One request of ``pdu`` (GET or GETBULK) and its answer."""

    async def get(self, oids: Sequence[str]) -> Response:
        return await self.ask(GET, 0, 0, oids)

    async def bulk(self, oids: Sequence[str], max_repetitions: int) -> Response:
        return await self.ask(GETBULK, 0, max_repetitions, oids)


class _V2cTransport(_UdpTransport):
    """SNMPv2c messages (wire.py)."""

    def __init__(self, device: Device) -> None:
        assert device.community is not None
        super().__init__(device)
        self.community = device.community.reveal().encode()

    def decode(self, data: bytes) -> tuple[int, Response]:
        return decode_response(data)

    async def ask(self, pdu: int, a: int, b: int, oids: Sequence[str]) -> Response:
        request_id = _next_id()
        message = encode_request(self.community, pdu, request_id, a, b, oids)
        response: Response = await self.exchange(request_id, message)
        return response


#: The SNMP engines of the devices polled over SNMPv3, by (host, port): kept between polls
#: so that a poll needs no discovery (see _V3Transport).
Engines = MutableMapping[tuple[str, int], usm.Engine]


class _V3Transport(_UdpTransport):
    """SNMPv3 authPriv messages (usm.py). The device's engine is discovered once and kept in
    ``engines``; a Report that its ID changed (the device was replaced or reset) or that our
    clock is off is followed by a new discovery or the device's clock, and the request again.
    A Report refusing the credentials answers at once (the device is down for us)."""

    def __init__(self, device: Device, engines: Engines) -> None:
        assert device.user and device.auth_key and device.priv_key
        super().__init__(device)
        self.user = usm.User(
            device.user.encode(),
            device.auth_protocol,
            device.auth_key.reveal().encode(),
            device.priv_key.reveal().encode(),
        )
        self.context = device.context.encode()
        self.engines = engines
        self.key = (device.host, device.port)

    def decode(self, data: bytes) -> tuple[int, usm.Answer]:
        engine = self.engines.get(self.key)
        answer = usm.decode_message(data, self.user, engine.id if engine else None)
        if answer.pdu == RESPONSE and not (answer.authentic and answer.private):
            raise BadMessage("an answer to authPriv that is not authPriv")
        return answer.msg_id, answer

    async def _engine(self) -> usm.Engine:
        engine = self.engines.get(self.key)
        if engine is None:
            msg_id = _next_id()
            answer: usm.Answer = await self.exchange(
                msg_id, usm.discovery_request(msg_id, _next_id())
            )
            if not answer.engine_id:
                raise NoAnswer("SNMPv3 discovery: no engine ID")
            now = time.monotonic()
            engine = usm.Engine(answer.engine_id, answer.boots, answer.time, now)
            self.engines[self.key] = engine
        return engine

    async def ask(self, pdu: int, a: int, b: int, oids: Sequence[str]) -> Response:
        body = encode_pdu(pdu, _next_id(), a, b, oids)
        for _ in range(3):  # a new engine ID, then the device's clock, then the request
            engine = await self._engine()
            msg_id = _next_id()
            message = usm.encode_request(
                self.user, engine, time.monotonic(), msg_id, self.context, body
            )
            answer: usm.Answer = await self.exchange(msg_id, message)
            if answer.pdu == RESPONSE:
                engine.learn(answer.boots, answer.time, time.monotonic())
                return answer.response
            report = answer.report()
            if report == "unknownEngineIDs" or answer.engine_id != engine.id:
                self.engines.pop(self.key, None)
                continue
            if report == "notInTimeWindows" and answer.authentic:
                engine.learn(answer.boots, answer.time, time.monotonic(), force=True)
                continue
            raise NoAnswer(f"SNMPv3 {report}")
        raise NoAnswer("SNMPv3: no agreement on the engine or its clock")


class _PysnmpRound(Round):
    def __init__(self, engine: SnmpEngine | None, engines: Engines) -> None:
        # Messages are encoded here (_V2cTransport, _V3Transport), unless the caller of
        # poll_device passes an engine: then through pysnmp's command generators on that
        # engine (the caller closes it).
        self.engine = engine
        self.engines = engines

    async def open(self, device: Device) -> Transport:
        transport: Transport
        if self.engine is not None:
            from collectors.snmp.pysnmp_engine import PysnmpTransport  # loaded only for this

            transport = PysnmpTransport(device, self.engine)
        elif device.version == "2c":
            transport = _V2cTransport(device)
        else:
            transport = _V3Transport(device, self.engines)
        try:
            await transport.open()
        except BaseException:
            transport.close()
            raise
        return transport


class PysnmpBackend(Backend):
    """Pure Python, the default and what a light agent install has: SNMPv2c and SNMPv3
    messages are encoded and decoded here (wire.py, usm.py); pysnmp only when an engine is
    passed. The SNMPv3 devices' engines are kept between rounds."""

    name = "pysnmp"

    def __init__(self, engine: SnmpEngine | None = None) -> None:
        self.engine = engine
        self.engines: Engines = {}

    def round(self, devices: Sequence[Device], concurrency: int) -> Round:
        return _PysnmpRound(self.engine, self.engines)

    def __repr__(self) -> str:
        return "PysnmpBackend()"


# --- one device's poll, whatever the backend -----------------------------------------------

#: Rows each table had at its last poll, by (asset, the table's first column OID).
RowHints = MutableMapping[tuple[str, str], int]


def repetitions(known_rows: int | None, columns: int) -> int:
    """max-repetitions for a table: its last row count + 1 (the +1 shows the end in the same
    answer), DEFAULT_ROWS when unknown, capped by MAX_REPETITIONS and MAX_VARBINDS."""
    wanted = DEFAULT_ROWS if known_rows is None else known_rows + 1
    return max(1, min(wanted, MAX_REPETITIONS, MAX_VARBINDS // max(1, columns)))


@lru_cache(maxsize=1 << 16)
def _index_key(index: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in index.split("."))
    except ValueError:
        return (1 << 62,)


class _Session:
    """One device's poll: the requests, and whether the device has answered yet (a device
    that answered once and then goes silent keeps what it gave; one that never answered is
    down)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.answered = False

    async def _ask(self, request: Any) -> Response | None:
        try:
            response: Response = await request
        except NoAnswer as exc:
            if not self.answered:
                raise DeviceDown(str(exc) or "no answer") from None
            return None
        self.answered = True
        return response

    async def get(self, oids: Sequence[str]) -> dict[str, Value]:
        """GET ``oids`` in one request (split only if the device says tooBig); a value that
        is not there is None."""
        out: dict[str, Value] = {}
        await self._get(list(oids), out, split_on_error=True)
        return out

    async def _get(self, oids: list[str], out: dict[str, Value], split_on_error: bool) -> None:
        response = await self._ask(self.transport.get(oids))
        if response is None:
            out.update(dict.fromkeys(oids))
            return
        if response.error_status == TOO_BIG and len(oids) > 1:
            half = len(oids) // 2
            await self._get(oids[:half], out, split_on_error)
            await self._get(oids[half:], out, split_on_error)
            return
        if response.error_status:
            # One bad OID spoils the whole PDU (v1-style noSuchName, genErr): ask one by one.
            if split_on_error and len(oids) > 1:
                for oid in oids:
                    await self._get([oid], out, split_on_error=False)
                return
            out.update(dict.fromkeys(oids))
            return
        got = dict(response.varbinds)
        for oid in oids:
            value = got.get(oid)
            out[oid] = None if value is END_OF_MIB else value  # type: ignore[assignment]

    async def walk(self, columns: Sequence[str], max_repetitions: int) -> dict[str, dict]:
        """Walk table ``columns`` together: {column: {index: value}}.

        Each GETBULK carries every column that has not ended, from where it stopped; answer
        varbind k belongs to column k mod n (RFC 3416 4.2.3, also when the agent cut the
        answer short). A column ends when it leaves its subtree, at endOfMibView, or when the
        agent answers an OID not after the last one (which would loop for ever)."""
        out: dict[str, dict[str, Value]] = {column: {} for column in columns}
        position = {column: column for column in columns}
        last: dict[str, tuple[int, ...]] = {column: () for column in columns}
        prefixes = {column: column + "." for column in columns}
        pending = list(dict.fromkeys(columns))
        reps, width = max(1, max_repetitions), len(pending)
        while pending:
            batch = pending[:width]
            response = await self._ask(self.transport.bulk([position[c] for c in batch], reps))
            if response is None:
                break
            if response.error_status == TOO_BIG or (
                not response.error_status and not response.varbinds
            ):
                # Too big for the agent (or an empty answer, which is how some libraries
                # report it): fewer repetitions, then fewer columns per request.
                if reps > 1:
                    reps = max(1, reps // 2)
                    continue
                if width > 1:
                    width = max(1, width // 2)
                    continue
                break
            if response.error_status:
                # A column the agent cannot walk (genErr on it): stop it, go on with the rest.
                failed = response.error_index - 1
                if 0 <= failed < len(batch):
                    pending.remove(batch[failed])
                    continue
                break
            ended: set[str] = set()
            n = len(batch)
            for k, (oid, value) in enumerate(response.varbinds):
                column = batch[k % n]
                if column in ended:
                    continue
                prefix = prefixes[column]
                if value is END_OF_MIB or not oid.startswith(prefix):
                    ended.add(column)
                    continue
                index = oid[len(prefix) :]
                key = _index_key(index)
                if key <= last[column]:
                    ended.add(column)
                    continue
                out[column][index] = value  # type: ignore[assignment]
                position[column], last[column] = oid, key
            pending = [c for c in pending if c not in ended]
        return out


def _samples_of(
    spec: MetricSpec,
    values: Mapping[str, Value],
    labels: Mapping[str, str],
    now: float,
    out: list[Sample],
    skipped: list[tuple[str, str]],
) -> None:
    try:
        value, extra = spec.compute(values)
    except NotANumber as exc:
        skipped.append((spec.metric, str(exc)))
        return
    out.append(Sample(spec.metric, {**labels, **extra}, value, now))


def _numeric(value: Value) -> Value:
    """Numbers stay numbers; a string that is a number (some agents send those) becomes one."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def _table_samples(
    table: TableSpec,
    columns: Mapping[str, Mapping[str, Value]],
    asset: str,
    now: float,
    out: list[Sample],
    skipped: list[tuple[str, str]],
) -> None:
    indices = sorted({i for col in columns.values() for i in col}, key=_index_key)
    for index in indices:
        row = {name: _numeric(col.get(index)) for name, col in columns.items()}
        raw_row = {name: col.get(index) for name, col in columns.items()}
        if not table.keeps(raw_row):
            continue
        labels = {"asset": asset}
        missing = None
        for label, spec in table.labels.items():
            if spec.column is None:
                labels[label] = index
                continue
            raw = raw_row[spec.column]
            if raw is None or raw == "":
                missing = f"label {label}: {spec.column} has no value at index {index}"
                break
            labels[label] = spec.names.get(str(raw), str(raw))
        if missing:
            skipped.extend((m.metric, missing) for m in table.metrics)
            continue
        for metric in table.metrics:
            _samples_of(metric, row, labels, now, out, skipped)


def _down(device: Device, now: float, error: str) -> PollResult:
    up = Sample(UP_METRIC, {"asset": device.asset}, 0.0, now)
    return PollResult(device.asset, False, [up], [], error=error)


async def _poll(
    device: Device, now: float, round_: Round, rows: RowHints | None = None
) -> PollResult:
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    transport: Transport | None = None
    try:
        transport = await round_.open(device)
        session = _Session(transport)
        # Every scalar of every profile in one GET (profiles of one device rarely overlap,
        # but an OID asked by two is asked once).
        scalars = list(dict.fromkeys(o for p in device.profiles for o in p.scalars.values()))
        got = await session.get(scalars) if scalars else {}
        for profile in device.profiles:
            if profile.scalars:
                values = {name: _numeric(got.get(oid)) for name, oid in profile.scalars.items()}
                for spec in profile.metrics:
                    _samples_of(spec, values, {"asset": device.asset}, now, samples, skipped)
            for table in profile.tables:
                oids = list(table.columns.values())
                key = (device.asset, oids[0])
                reps = repetitions(rows.get(key) if rows is not None else None, len(oids))
                walked = await session.walk(oids, reps)
                if rows is not None:
                    rows[key] = max((len(c) for c in walked.values()), default=0)
                columns = {name: walked[oid] for name, oid in table.columns.items()}
                _table_samples(table, columns, device.asset, now, samples, skipped)
    except DeviceDown as exc:
        return _down(device, now, str(exc) or type(exc).__name__)
    except OSError as exc:  # the host name does not resolve, the network is unreachable
        return _down(device, now, exc.strerror or type(exc).__name__)
    finally:
        if transport is not None:
            transport.close()
    samples.insert(0, Sample(UP_METRIC, {"asset": device.asset}, 1.0, now))
    return PollResult(device.asset, True, samples, skipped)


async def poll_device(
    device: Device,
    now: float,
    engine: SnmpEngine | None = None,
    *,
    backend: Backend | None = None,
    rows: RowHints | None = None,
) -> PollResult:
    """Poll one device with all its profiles. Never raises for what the device answers.

    ``engine``: an SnmpEngine shared by the SNMPv2c polls of one round (pysnmp backend); the
    caller closes it. ``backend``: PysnmpBackend() unless given. ``rows``: the row hints, read
    and updated (see RowHints)."""
    if backend is None:
        backend = PysnmpBackend(engine)
    round_ = backend.round([device], 1)
    try:
        return await _poll(device, now, round_, rows)
    finally:
        round_.close()


#: Called with ("start" | "done", asset) around each device's poll; for tests and tracing.
Observer = Callable[[str, str], None]


async def poll_all(
    devices: Sequence[Device],
    now: float,
    concurrency: int = 16,
    observer: Observer | None = None,
    *,
    backend: Backend | None = None,
    rows: RowHints | None = None,
) -> list[PollResult]:
    """Poll every device, at most ``concurrency`` at a time; results in the devices' order."""
    semaphore = asyncio.Semaphore(concurrency)
    round_ = (backend or PysnmpBackend()).round(devices, concurrency)

    async def one(device: Device) -> PollResult:
        async with semaphore:
            if observer:
                observer("start", device.asset)
            try:
                return await _poll(device, now, round_, rows)
            except Exception as exc:  # a library's bug must not take the other devices down
                log.error("SNMP poll of %s failed: %s", device.asset, type(exc).__name__)
                return _down(device, now, type(exc).__name__)
            finally:
                if observer:
                    observer("done", device.asset)

    try:
        return list(await asyncio.gather(*(one(d) for d in devices)))
    finally:
        round_.close()
