"""Collectors: what dyzur measures on devices. The core imports only the standard library."""

from collectors.base import AGENT_AUDIT_ACTIONS, Collector, CollectorConfigError
from collectors.sample import Sample

__all__ = ["AGENT_AUDIT_ACTIONS", "Collector", "CollectorConfigError", "Sample"]
