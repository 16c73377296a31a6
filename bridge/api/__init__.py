"""The HTTP API: the only part of dyzur that imports FastAPI."""

from bridge.api.app import create_app

__all__ = ["create_app"]
