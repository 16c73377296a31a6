"""Collectors: what dyzur measures on devices. The core imports only the standard library."""

from collectors.base import Collector, CollectorConfigError
from collectors.sample import Sample

__all__ = ["Collector", "CollectorConfigError", "Sample"]
