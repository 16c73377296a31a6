"""Asynchronous SNMP polling on pysnmp 7 (asyncio hlapi), numeric OIDs only.

One poll of one device: GET the profile's scalars (16 per request), bulk-walk its table
columns, turn the answers into samples. Many devices: ``poll_all`` runs the polls concurrently,
at most ``concurrency`` at a time (an ``asyncio.Semaphore``), so a batch of silent devices costs
about one timeout, not one per device.

A garbage answer (a wrong type, noSuchObject/noSuchInstance/endOfMibView, text where a number
is expected) never fails the poll: that metric is skipped and reported in ``PollResult.skipped``.
A device that does not answer gives only ``dyzur_snmp_up`` 0.

Secrets (community, auth and priv keys) are ``Secret`` objects: their repr and str are ``***``
and they are revealed only to pysnmp. Nothing logged here names them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from pyasn1.type import univ
from pysnmp.error import PySnmpError
from pysnmp.hlapi.v3arch.asyncio import (
    USM_AUTH_HMAC96_SHA,
    USM_AUTH_HMAC192_SHA256,
    USM_PRIV_CFB128_AES,
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_walk_cmd,
    get_cmd,
)
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.smi import builder, view

from collectors.sample import Sample
from collectors.snmp.profile import MetricSpec, NotANumber, Profile, TableSpec, Value

log = logging.getLogger(__name__)

UP_METRIC = "dyzur_snmp_up"
GET_CHUNK = 16
MAX_REPETITIONS = 25
AUTH_PROTOCOLS = {"SHA": USM_AUTH_HMAC96_SHA, "SHA256": USM_AUTH_HMAC192_SHA256}
PRIV_PROTOCOLS = {"AES128": USM_PRIV_CFB128_AES, "AES": USM_PRIV_CFB128_AES}


class Secret:
    """A password or key: shown as ``***`` everywhere, revealed only to pysnmp."""

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

    def auth_data(self) -> CommunityData | UsmUserData:
        if self.version == "2c":
            assert self.community is not None
            # v2c is what most UPS cards speak; v3 authPriv is offered where the device can.
            return CommunityData(self.community.reveal(), mpModel=1)  # noqa: S508
        assert self.user and self.auth_key and self.priv_key
        return UsmUserData(
            self.user,
            authKey=self.auth_key.reveal(),
            privKey=self.priv_key.reveal(),
            authProtocol=AUTH_PROTOCOLS[self.auth_protocol],
            privProtocol=PRIV_PROTOCOLS[self.priv_protocol],
        )


@dataclass(slots=True)
class PollResult:
    asset: str
    up: bool
    samples: list[Sample]
    #: (metric, reason) for every value that could not be turned into a sample.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Why the device counts as down (a pysnmp error indication, never a secret).
    error: str | None = None


class DeviceDown(Exception):
    """The device did not answer (timeout, or refused our credentials)."""


def to_python(value: object) -> Value:
    """A pysnmp value as int, str, or None for "no value" (noSuch*, endOfMibView, Null)."""
    if isinstance(value, rfc1905.NoSuchObject | rfc1905.NoSuchInstance | rfc1905.EndOfMibView):
        return None
    if isinstance(value, univ.Null):
        return None
    if isinstance(value, univ.Integer):  # Integer32, Unsigned32, Gauge32, Counter*, TimeTicks
        return int(value)
    if isinstance(value, univ.ObjectIdentifier):
        return ".".join(str(x) for x in value)
    if isinstance(value, rfc1902.IpAddress):
        return ".".join(str(b) for b in value.asNumbers())
    if isinstance(value, univ.OctetString):
        raw = bytes(value)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.hex()
        return text.strip().strip("\x00").strip()
    return None


def _numeric(value: Value) -> Value:
    """Numbers stay numbers; a string that is a number (some agents send those) becomes one."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


class _NoMibCompiler:
    """Stands in for pysmi's compiler, which pysnmp attaches whenever pysmi is installed and
    which fetches MIBs from the Internet: profiles use numeric OIDs, so nothing is compiled."""

    def compile(self, *names: str, **kwargs: object) -> dict[str, str]:
        return dict.fromkeys(names, "missing")


_mib_view: view.MibViewController | None = None
_mib_view_lock = threading.Lock()


def _shared_mib_view() -> view.MibViewController:
    """One MIB view for every engine: loading the base MIBs costs tens of ms each time, and
    with numeric OIDs nothing is loaded after the first resolution."""
    global _mib_view
    with _mib_view_lock:
        if _mib_view is None:
            mib_builder = builder.MibBuilder()
            mib_builder.set_mib_compiler(
                _NoMibCompiler(), mib_builder.get_mib_sources()[0].full_path()
            )
            mib_view = view.MibViewController(mib_builder)
            ObjectType(ObjectIdentity("1.3.6.1.2.1.1.1.0")).resolve_with_mib(mib_view)
            _mib_view = mib_view
        return _mib_view


def offline_engine() -> SnmpEngine:
    """An SnmpEngine whose hlapi never compiles or downloads a MIB."""
    engine = SnmpEngine()
    engine.cache["mibViewController"] = _shared_mib_view()
    return engine


class _Session:
    """The engine, target and credentials of one device's poll."""

    def __init__(self, device: Device, engine: SnmpEngine | None) -> None:
        self.device = device
        # SNMPv3 gets an engine of its own: USM users are kept per engine by name, and two
        # devices may have the same user name with different keys.
        self.own_engine = engine is None or device.version == "3"
        if engine is None or self.own_engine:
            engine = offline_engine()
        self.engine: SnmpEngine = engine
        self.auth = device.auth_data()
        self.context = ContextData(contextName=device.context) if device.context else ContextData()
        self.target: UdpTransportTarget | None = None
        self.answered = False

    async def open(self) -> None:
        try:
            self.target = await UdpTransportTarget.create(
                (self.device.host, self.device.port),
                timeout=self.device.timeout,
                retries=self.device.retries,
            )
        except PySnmpError:  # the host name does not resolve
            raise DeviceDown(f"cannot resolve {self.device.host}") from None

    def close(self) -> None:
        if self.own_engine:
            self.engine.close_dispatcher()

    def _failed(self, indication: object) -> None:
        if not self.answered:
            raise DeviceDown(str(indication))

    async def get(self, oids: Sequence[str]) -> dict[str, Value]:
        """GET ``oids``; a value that is not there is None."""
        out: dict[str, Value] = {}
        for start in range(0, len(oids), GET_CHUNK):
            chunk = oids[start : start + GET_CHUNK]
            out.update(await self._get_chunk(chunk, split_on_error=True))
        return out

    async def _get_chunk(self, oids: Sequence[str], split_on_error: bool) -> dict[str, Value]:
        assert self.target is not None
        error_indication, error_status, _, var_binds = await get_cmd(
            self.engine,
            self.auth,
            self.target,
            self.context,
            *(ObjectType(ObjectIdentity(oid)) for oid in oids),
            lookupMib=False,
        )
        if error_indication:
            self._failed(error_indication)
            return dict.fromkeys(oids)
        self.answered = True
        if error_status:
            # One bad OID spoils the whole PDU (v1-style noSuchName, genErr): ask one by one.
            if split_on_error and len(oids) > 1:
                out: dict[str, Value] = {}
                for oid in oids:
                    out.update(await self._get_chunk([oid], split_on_error=False))
                return out
            return dict.fromkeys(oids)
        got = {str(name): to_python(value) for name, value in var_binds}
        return {oid: got.get(oid) for oid in oids}

    async def walk(self, column: str) -> dict[str, Value]:
        """Bulk-walk one column: {index: value}."""
        assert self.target is not None
        prefix = column + "."
        out: dict[str, Value] = {}
        async for error_indication, error_status, _, var_binds in bulk_walk_cmd(
            self.engine,
            self.auth,
            self.target,
            self.context,
            0,
            MAX_REPETITIONS,
            ObjectType(ObjectIdentity(column)),
            lexicographicMode=False,
            lookupMib=False,
            ignoreNonIncreasingOid=False,
        ):
            if error_indication:
                # pysnmp's walk would retry a timeout for ever: stop here.
                self._failed(error_indication)
                break
            self.answered = True
            if error_status:
                break
            for name, value in var_binds:
                oid = str(name)
                if not oid.startswith(prefix):
                    return out
                out[oid[len(prefix) :]] = to_python(value)
        return out


def _index_key(index: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in index.split("."))
    except ValueError:
        return (1 << 62,)


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


async def poll_device(device: Device, now: float, engine: SnmpEngine | None = None) -> PollResult:
    """Poll one device with all its profiles. Never raises for what the device answers.

    ``engine``: an SnmpEngine shared by the SNMPv2c polls of one round (see poll_all); the
    caller closes it. Without it (and for SNMPv3) the poll has an engine of its own."""
    session = _Session(device, engine)
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    try:
        await session.open()
        for profile in device.profiles:
            if profile.scalars:
                got = await session.get(list(profile.scalars.values()))
                values = {name: _numeric(got.get(oid)) for name, oid in profile.scalars.items()}
                for spec in profile.metrics:
                    _samples_of(spec, values, {"asset": device.asset}, now, samples, skipped)
            for table in profile.tables:
                columns = {name: await session.walk(oid) for name, oid in table.columns.items()}
                _table_samples(table, columns, device.asset, now, samples, skipped)
    except DeviceDown as exc:
        up = Sample(UP_METRIC, {"asset": device.asset}, 0.0, now)
        return PollResult(device.asset, False, [up], [], error=str(exc) or type(exc).__name__)
    except OSError as exc:  # the host name does not resolve, the network is unreachable
        up = Sample(UP_METRIC, {"asset": device.asset}, 0.0, now)
        return PollResult(device.asset, False, [up], [], error=exc.strerror or type(exc).__name__)
    finally:
        session.close()
    samples.insert(0, Sample(UP_METRIC, {"asset": device.asset}, 1.0, now))
    return PollResult(device.asset, True, samples, skipped)


#: Called with ("start" | "done", asset) around each device's poll; for tests and tracing.
Observer = Callable[[str, str], None]


async def poll_all(
    devices: Sequence[Device],
    now: float,
    concurrency: int = 16,
    observer: Observer | None = None,
) -> list[PollResult]:
    """Poll every device, at most ``concurrency`` at a time; results in the devices' order."""
    semaphore = asyncio.Semaphore(concurrency)
    shared = offline_engine() if any(d.version == "2c" for d in devices) else None

    async def one(device: Device) -> PollResult:
        async with semaphore:
            if observer:
                observer("start", device.asset)
            try:
                return await poll_device(device, now, shared)
            except Exception as exc:  # a pysnmp bug must not take the other devices down
                log.error("SNMP poll of %s failed: %s", device.asset, type(exc).__name__)
                up = Sample(UP_METRIC, {"asset": device.asset}, 0.0, now)
                return PollResult(device.asset, False, [up], [], error=type(exc).__name__)
            finally:
                if observer:
                    observer("done", device.asset)

    try:
        return list(await asyncio.gather(*(one(d) for d in devices)))
    finally:
        if shared is not None:
            shared.close_dispatcher()
