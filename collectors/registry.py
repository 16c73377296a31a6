"""Collectors by name: the built-in ones, and others a package announces by entry point."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from collectors.base import Collector, CollectorConfigError

# kind -> "module:Class [extra]", the extra being what `pip install 'dyzur[extra]'` adds for
# it. A new built-in source is one module (or sub-package) and one line here.
BUILTIN: dict[str, str] = {
    "host": "collectors.host:HostCollector [agent]",
    "snmp": "collectors.snmp:SnmpCollector [agent,snmp]",
    "ssh": "collectors.ssh.collector:SshCollector [agent,ssh]",
}
ENTRY_POINT_GROUP = "dyzur.collectors"


def _target(kind: str) -> str:
    if kind in BUILTIN:
        return BUILTIN[kind]
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == kind:
            return ep.value
    known = ", ".join(sorted(BUILTIN))
    raise CollectorConfigError(f"unknown collector kind {kind!r} (built in: {known})")


def collector_class(kind: str) -> type[Collector]:
    """The class of a collector kind, or a clear error naming what is missing."""
    target, _, extra = _target(kind).partition(" ")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        install = f"pip install 'dyzur{extra.replace(' ', '')}'" if extra else "install it"
        raise CollectorConfigError(f"collector {kind!r} needs {exc.name}: {install}") from None
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Collector)):
        raise CollectorConfigError(f"{module_name}:{class_name} is not a Collector")
    return cls


def build_collectors(specs: list[tuple[str, str, Mapping[str, Any]]]) -> list[Collector]:
    """Build (name, kind, options) specs; names must be unique."""
    built: dict[str, Collector] = {}
    for name, kind, options in specs:
        if name in built:
            raise CollectorConfigError(f"duplicate collector name {name!r}")
        try:
            built[name] = collector_class(kind).from_options(name, options)
        except CollectorConfigError as exc:
            raise CollectorConfigError(f"{name}: {exc}") from None
    return list(built.values())
