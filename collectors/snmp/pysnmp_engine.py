"""Requests through pysnmp 7's command generators, for a caller that passes its own
``SnmpEngine`` to ``poll_device`` (a cross-check of the messages dyzur encodes itself: the
tests compare the two). Imported only then: pysnmp and pyasn1 cost an agent about 30 MiB."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from pyasn1.type import univ
from pysnmp.entity.rfc3413 import cmdgen
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
)
from pysnmp.hlapi.v3arch.asyncio.lcd import CommandGeneratorLcdConfigurator
from pysnmp.proto import rfc1902, rfc1905
from pysnmp.smi import builder, view

from collectors.snmp.poller import Device, DeviceDown, NoAnswer, Transport
from collectors.snmp.profile import Value
from collectors.snmp.wire import END_OF_MIB, Response, VarBind, octets_to_python

_AUTH = {"SHA": USM_AUTH_HMAC96_SHA, "SHA256": USM_AUTH_HMAC192_SHA256}
_PRIV = {"AES128": USM_PRIV_CFB128_AES, "AES": USM_PRIV_CFB128_AES}


def auth_data(device: Device) -> CommunityData | UsmUserData:
    if device.version == "2c":
        assert device.community is not None
        # v2c is what most UPS cards speak; v3 authPriv is offered where the device can.
        return CommunityData(device.community.reveal(), mpModel=1)  # noqa: S508
    assert device.user and device.auth_key and device.priv_key
    return UsmUserData(
        device.user,
        authKey=device.auth_key.reveal(),
        privKey=device.priv_key.reveal(),
        authProtocol=_AUTH[device.auth_protocol],
        privProtocol=_PRIV[device.priv_protocol],
    )


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
        return octets_to_python(bytes(value))
    return None


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


_LCD = CommandGeneratorLcdConfigurator()
_NULL = univ.Null("")


@lru_cache(maxsize=4096)
def _object_name(oid: str) -> rfc1902.ObjectName:
    """The request's OID, parsed once (the profiles' OIDs repeat on every poll)."""
    return rfc1902.ObjectName(oid)


def _pysnmp_varbind(name: Any, value: Any) -> VarBind:
    if isinstance(value, rfc1905.EndOfMibView):
        return ".".join(map(str, name.asTuple())), END_OF_MIB
    return ".".join(map(str, name.asTuple())), to_python(value)


class PysnmpTransport(Transport):
    """Requests through pysnmp's command generators, below its hlapi: the hlapi resolves every
    OID of every request and answer through the MIB view, which numeric OIDs never need."""

    def __init__(self, device: Device, engine: SnmpEngine | None) -> None:
        self.device = device
        # SNMPv3 gets an engine of its own: USM users are kept per engine by name, and two
        # devices may have the same user name with different keys.
        self.own_engine = engine is None or device.version == "3"
        if engine is None or self.own_engine:
            engine = offline_engine()
        self.engine: SnmpEngine = engine
        self.auth = auth_data(device)
        self.context = ContextData(contextName=device.context) if device.context else ContextData()
        self.target_name: str | None = None

    async def open(self) -> None:
        try:
            target = await UdpTransportTarget.create(
                (self.device.host, self.device.port),
                timeout=self.device.timeout,
                retries=self.device.retries,
            )
        except PySnmpError:  # the host name does not resolve
            raise DeviceDown(f"cannot resolve {self.device.host}") from None
        self.target_name, _ = _LCD.configure(
            self.engine, self.auth, target, self.context.contextName
        )

    def close(self) -> None:
        if self.own_engine:
            self.engine.close_dispatcher()

    async def _send(self, generator: Any, *args: Any) -> Response:
        future: asyncio.Future[tuple[Any, Any, Any, Any]] = (
            asyncio.get_running_loop().create_future()
        )

        def done(
            engine: Any, handle: Any, indication: Any, status: Any, index: Any, vbs: Any, ctx: Any
        ) -> None:
            if not future.done():
                future.set_result((indication, status, index, vbs))

        generator.send_varbinds(
            self.engine,
            self.target_name,
            self.context.contextEngineId,
            self.context.contextName,
            *args,
            done,
            None,
        )
        indication, status, index, var_binds = await future
        if indication:
            raise NoAnswer(str(indication))
        if status:
            return Response((), int(status), int(index))
        return Response([_pysnmp_varbind(name, value) for name, value in var_binds])

    async def get(self, oids: Sequence[str]) -> Response:
        var_binds = [(_object_name(oid), _NULL) for oid in oids]
        return await self._send(cmdgen.GetCommandGenerator(), var_binds)

    async def bulk(self, oids: Sequence[str], max_repetitions: int) -> Response:
        var_binds = [(_object_name(oid), _NULL) for oid in oids]
        generator = cmdgen.BulkCommandGeneratorSingleRun()
        return await self._send(generator, 0, max_repetitions, var_binds)
