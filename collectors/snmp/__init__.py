"""The SNMP collector (``kind: snmp``): UPS units and storage arrays over SNMP v2c/v3,
described by profiles (YAML data files in ``profiles/``). SNMPv3 needs ``pip install
'dyzur[snmp]'``; ``backend: netsnmp`` (Net-SNMP's library) ``pip install 'dyzur[snmp-fast]'``
(see netsnmp.py)."""

from collectors.snmp.collector import SnmpCollector
from collectors.snmp.options import SnmpOptions, parse_options
from collectors.snmp.poller import (
    Backend,
    Device,
    PollResult,
    PysnmpBackend,
    Secret,
    poll_all,
    poll_device,
)
from collectors.snmp.profile import Profile, ProfileError, load_profile, resolve_profile

__all__ = [
    "Backend",
    "Device",
    "PollResult",
    "Profile",
    "ProfileError",
    "PysnmpBackend",
    "Secret",
    "SnmpCollector",
    "SnmpOptions",
    "load_profile",
    "parse_options",
    "poll_all",
    "poll_device",
    "resolve_profile",
]
