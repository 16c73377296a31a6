"""The ``options:`` of a ``kind: snmp`` collector, validated once.

Every error is a ``CollectorConfigError`` whose message starts with the option's path, e.g.
``devices.2.version: expected "2c" or "3", got '1'``. Secrets never appear in a message.

``backend: pysnmp | netsnmp`` chooses the SNMP library (see poller.py); ``netsnmp`` needs the
``snmp-fast`` extra, and asking for it without the extra is an error here, not at the first poll.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from collectors.base import CollectorConfigError
from collectors.snmp.poller import AUTH_PROTOCOLS, PRIV_PROTOCOLS, Device, Secret
from collectors.snmp.profile import Profile, ProfileError, resolve_profile

OPTIONS = ("backend", "concurrency", "devices")
BACKENDS = ("pysnmp", "netsnmp")
DEVICE_KEYS = (
    "asset",
    "host",
    "port",
    "version",
    "community",
    "user",
    "auth_protocol",
    "auth_key",
    "priv_protocol",
    "priv_key",
    "context",
    "profiles",
    "timeout",
    "retries",
)
SECRET_KEYS = ("community", "auth_key", "priv_key")
DEFAULT_CONCURRENCY = 16
DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 1


@dataclass(frozen=True, slots=True)
class SnmpOptions:
    devices: tuple[Device, ...]
    concurrency: int = DEFAULT_CONCURRENCY
    backend: str = "pysnmp"


def _error(path: str, message: str) -> CollectorConfigError:
    return CollectorConfigError(f"{path}: {message}")


def _string(path: str, value: object, what: str = "a non-empty string") -> str:
    if not isinstance(value, str) or not value.strip():
        raise _error(path, f"expected {what}, got {value!r}")
    return value.strip()


def _secret(path: str, value: object) -> Secret:
    # The value is never echoed: it may be the secret itself, slightly mistyped.
    if not isinstance(value, str) or not value:
        raise _error(path, f"expected a non-empty string (got a {type(value).__name__})")
    return Secret(value)


def _int(path: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _error(path, f"expected an integer from {low} to {high}, got {value!r}")
    return value


def _timeout(path: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _error(path, f"expected a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise _error(path, f"must be a positive number of seconds, got {value!r}")
    return float(value)


def _device(path: str, raw: object, cache: dict[str, Profile]) -> Device:
    if not isinstance(raw, Mapping):
        raise _error(
            path,
            f"expected a mapping {{asset: ups-1, host: 10.0.0.5, ...}}, not {type(raw).__name__}",
        )
    unknown = sorted(str(k) for k in raw if k not in DEVICE_KEYS)
    if unknown:
        raise _error(f"{path}.{unknown[0]}", f"unknown option (allowed: {', '.join(DEVICE_KEYS)})")
    for key in ("asset", "host", "profiles"):
        if key not in raw:
            raise _error(f"{path}.{key}", "missing")
    asset = _string(f"{path}.asset", raw["asset"])
    host = _string(f"{path}.host", raw["host"])
    port = _int(f"{path}.port", raw.get("port", 161), 1, 65535)
    version = raw.get("version", "2c")
    if version not in ("2c", "3"):
        raise _error(f"{path}.version", f'expected "2c" or "3", got {version!r}')
    kwargs: dict[str, Any] = {}
    if version == "2c":
        if "community" not in raw:
            raise _error(f"{path}.community", "missing (SNMP v2c needs a community)")
        kwargs["community"] = _secret(f"{path}.community", raw["community"])
        for key in ("user", "auth_protocol", "auth_key", "priv_protocol", "priv_key"):
            if key in raw:
                raise _error(f"{path}.{key}", 'only with version "3"')
    else:
        if "community" in raw:
            raise _error(f"{path}.community", 'only with version "2c"')
        for key in ("user", "auth_key", "priv_key"):
            if key not in raw:
                raise _error(f"{path}.{key}", "missing (SNMP v3 authPriv needs it)")
        kwargs["user"] = _string(f"{path}.user", raw["user"])
        auth = raw.get("auth_protocol", "SHA256")
        if auth not in AUTH_PROTOCOLS:
            raise _error(
                f"{path}.auth_protocol",
                f"expected one of {', '.join(AUTH_PROTOCOLS)}, got {auth!r}",
            )
        priv = raw.get("priv_protocol", "AES128")
        if priv not in PRIV_PROTOCOLS:
            raise _error(
                f"{path}.priv_protocol",
                f"expected one of {', '.join(PRIV_PROTOCOLS)}, got {priv!r}",
            )
        kwargs["auth_protocol"], kwargs["priv_protocol"] = auth, priv
        if importlib.util.find_spec("cryptography") is None:  # imported at the first message
            raise _error(
                f"{path}.version",
                "SNMPv3 needs the cryptography package (AES): pip install 'dyzur[snmp]'",
            )
        for key in ("auth_key", "priv_key"):
            secret = _secret(f"{path}.{key}", raw[key])
            if len(secret.reveal()) < 8:  # RFC 3414: at least 8 characters
                raise _error(f"{path}.{key}", "must be at least 8 characters long")
            kwargs[key] = secret
    context = raw.get("context", "")
    if not isinstance(context, str):
        raise _error(f"{path}.context", f"expected a string, got {context!r}")
    refs = raw["profiles"]
    if not isinstance(refs, Sequence) or isinstance(refs, str | bytes) or not refs:
        raise _error(
            f"{path}.profiles", f"expected a non-empty list of profile names, got {refs!r}"
        )
    profiles = []
    for i, ref in enumerate(refs):
        ref = _string(f"{path}.profiles.{i}", ref, "a profile name such as ups-mib")
        if ref not in cache:
            try:
                cache[ref] = resolve_profile(ref)
            except ProfileError as exc:
                raise _error(f"{path}.profiles.{i}", str(exc)) from None
        profiles.append(cache[ref])
    return Device(
        asset=asset,
        host=host,
        port=port,
        version=version,
        context=context,
        profiles=tuple(profiles),
        timeout=_timeout(f"{path}.timeout", raw.get("timeout", DEFAULT_TIMEOUT)),
        retries=_int(f"{path}.retries", raw.get("retries", DEFAULT_RETRIES), 0, 10),
        **kwargs,
    )


def parse_options(options: Mapping[str, Any]) -> SnmpOptions:
    unknown = sorted(str(k) for k in options if k not in OPTIONS)
    if unknown:
        raise _error(unknown[0], f"unknown option (allowed: {', '.join(OPTIONS)})")
    concurrency = _int("concurrency", options.get("concurrency", DEFAULT_CONCURRENCY), 1, 1024)
    backend = options.get("backend", "pysnmp")
    if backend not in BACKENDS:
        raise _error("backend", f'expected "pysnmp" or "netsnmp", got {backend!r}')
    if backend == "netsnmp":
        from collectors.snmp.netsnmp import missing

        why = missing()
        if why:
            raise _error(
                "backend",
                f"'netsnmp' needs the ezsnmp package ({why}): pip install 'dyzur[snmp-fast]'",
            )
    raw_devices = options.get("devices")
    if raw_devices is None:
        raise _error("devices", "missing (a list of devices to poll)")
    if not isinstance(raw_devices, Sequence) or isinstance(raw_devices, str | bytes):
        raise _error("devices", f"expected a list of devices, got a {type(raw_devices).__name__}")
    cache: dict[str, Profile] = {}
    devices = tuple(_device(f"devices.{i}", d, cache) for i, d in enumerate(raw_devices))
    seen: dict[str, int] = {}
    for i, device in enumerate(devices):
        if device.asset in seen:
            raise _error(
                f"devices.{i}.asset", f"{device.asset!r} is already devices.{seen[device.asset]}"
            )
        seen[device.asset] = i
    return SnmpOptions(devices=devices, concurrency=concurrency, backend=backend)
