"""The ``options:`` of a ``kind: host`` collector: validated once, regexes compiled once.

Every error is a ``CollectorConfigError`` whose message starts with the option's path, e.g.
``processes.1.match_cmdline: invalid regular expression 'postgres: (': missing ), ...``.
Standard library only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collectors.base import CollectorConfigError

# Pseudo, virtual, container and read-only image filesystems: nobody needs a ticket when they
# fill up. Compared lower-cased, so Windows' "CDFS" is "cdfs" here. Setting `exclude_fstypes`
# replaces this list.
DEFAULT_EXCLUDE_FSTYPES: tuple[str, ...] = (
    "autofs",
    "binfmt_misc",
    "bpf",
    "cdfs",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "erofs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "udf",
)
# As node_exporter's filesystem collector: kernel and container runtime internals.
DEFAULT_EXCLUDE_MOUNTPOINTS = (
    r"^/(dev|proc|sys|run/credentials/.+|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
# As node_exporter's diskstats collector: partitions (their disk is counted), loop, RAM and
# floppy devices. Windows names its disks PhysicalDrive0, ..., which this keeps.
DEFAULT_EXCLUDE_DISKS = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]+|nvme\d+n\d+p|mmcblk\d+p)\d+$"
# The loopback interface on Linux and on Windows.
DEFAULT_EXCLUDE_INTERFACES = r"^(lo|Loopback Pseudo-Interface \d+)$"
DEFAULT_FILESYSTEM_TIMEOUT = 5.0

OPTIONS = (
    "exclude_fstypes",
    "exclude_mountpoints",
    "exclude_disks",
    "exclude_interfaces",
    "filesystem_timeout",
    "processes",
    "services",
)
PROCESS_KEYS = ("name", "match_name", "match_cmdline")


@dataclass(frozen=True, slots=True)
class ProcessRule:
    """A named set of processes: exactly one of ``match_name`` and ``match_cmdline``."""

    name: str
    match_name: str | None = None
    match_cmdline: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class HostOptions:
    exclude_fstypes: frozenset[str] = frozenset(DEFAULT_EXCLUDE_FSTYPES)
    exclude_mountpoints: re.Pattern[str] | None = re.compile(DEFAULT_EXCLUDE_MOUNTPOINTS)
    exclude_disks: re.Pattern[str] | None = re.compile(DEFAULT_EXCLUDE_DISKS)
    exclude_interfaces: re.Pattern[str] | None = re.compile(DEFAULT_EXCLUDE_INTERFACES)
    filesystem_timeout: float = DEFAULT_FILESYSTEM_TIMEOUT
    processes: tuple[ProcessRule, ...] = ()
    services: tuple[str, ...] = field(default=())


def _error(path: str, message: str) -> CollectorConfigError:
    return CollectorConfigError(f"{path}: {message}")


def _regex(path: str, value: object) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise _error(path, f"expected a regular expression (a string), got {value!r}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise _error(path, f"invalid regular expression {value!r}: {exc}") from None


def _exclude_regex(path: str, value: object) -> re.Pattern[str] | None:
    # null or "" excludes nothing (an empty regex would match, and so exclude, everything).
    if value is None or value == "":
        return None
    return _regex(path, value)


def _strings(path: str, value: object, what: str) -> list[str]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise _error(path, f"expected a list of {what}, got {value!r}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise _error(f"{path}.{i}", f"expected a non-empty string, got {item!r}")
        out.append(item)
    return out


def _timeout(path: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _error(path, f"expected a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise _error(path, f"must be a positive number of seconds, got {value!r}")
    return float(value)


def _process_rule(path: str, raw: object) -> ProcessRule:
    if not isinstance(raw, Mapping):
        raise _error(
            path, f"expected a mapping such as {{name: amms, match_name: amms.exe}}, got {raw!r}"
        )
    unknown = sorted(str(k) for k in raw if k not in PROCESS_KEYS)
    if unknown:
        raise _error(
            f"{path}.{unknown[0]}",
            f"unknown option (allowed: {', '.join(PROCESS_KEYS)})",
        )
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _error(f"{path}.name", f"expected a non-empty string, got {name!r}")
    has_name, has_cmdline = "match_name" in raw, "match_cmdline" in raw
    if has_name == has_cmdline:
        raise _error(
            path,
            "needs exactly one of match_name (the exact process name, e.g. amms.exe) and "
            "match_cmdline (a regular expression searched in the command line)"
            + (", not both" if has_name else ""),
        )
    if has_name:
        match_name = raw["match_name"]
        if not isinstance(match_name, str) or not match_name:
            raise _error(f"{path}.match_name", f"expected a process name, got {match_name!r}")
        return ProcessRule(name=name, match_name=match_name)
    pattern = raw["match_cmdline"]
    if pattern == "":
        raise _error(f"{path}.match_cmdline", "an empty expression would match every process")
    return ProcessRule(name=name, match_cmdline=_regex(f"{path}.match_cmdline", pattern))


def parse_options(options: Mapping[str, Any] | None, *, windows: bool) -> HostOptions:
    """Validate the options; ``windows`` says whether ``services`` can be watched here."""
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise CollectorConfigError(f"options: expected a mapping, got {options!r}")
    unknown = sorted(str(k) for k in options if k not in OPTIONS)
    if unknown:
        raise _error(unknown[0], f"unknown option (allowed: {', '.join(OPTIONS)})")
    kw: dict[str, Any] = {}
    if "exclude_fstypes" in options:
        kw["exclude_fstypes"] = frozenset(
            s.lower() for s in _strings("exclude_fstypes", options["exclude_fstypes"], "fstypes")
        )
    for key in ("exclude_mountpoints", "exclude_disks", "exclude_interfaces"):
        if key in options:
            kw[key] = _exclude_regex(key, options[key])
    if "filesystem_timeout" in options:
        kw["filesystem_timeout"] = _timeout("filesystem_timeout", options["filesystem_timeout"])
    if options.get("processes") is not None:
        raw = options["processes"]
        if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
            raise _error("processes", f"expected a list of process rules, got {raw!r}")
        rules = [_process_rule(f"processes.{i}", item) for i, item in enumerate(raw)]
        seen: set[str] = set()
        for i, rule in enumerate(rules):
            if rule.name in seen:
                raise _error(f"processes.{i}.name", f"duplicate process name {rule.name!r}")
            seen.add(rule.name)
        kw["processes"] = tuple(rules)
    if options.get("services") is not None:
        services = _strings("services", options["services"], "Windows service names")
        if services and not windows:
            raise _error(
                "services",
                "Windows services can be watched only on Windows; on this system watch the "
                "service's process with `processes:` (match_name or match_cmdline) instead",
            )
        folded = [s.casefold() for s in services]  # Windows service names ignore case
        for i, service in enumerate(folded):
            if service in folded[:i]:
                raise _error(f"services.{i}", f"duplicate service {services[i]!r}")
        kw["services"] = tuple(services)
    return HostOptions(**kw)
