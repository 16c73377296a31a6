"""Collectors: what dyzur measures on devices. The core imports only the standard library."""

from collectors.sample import Sample

__all__ = ["Sample"]
