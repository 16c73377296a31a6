"""The host collector (``kind: host``): the machine the agent runs on, via psutil."""

from collectors.host.collector import HostCollector
from collectors.host.options import HostOptions, ProcessRule, parse_options

__all__ = ["HostCollector", "HostOptions", "ProcessRule", "parse_options"]
