"""Bearer tokens with roles: kept only as SHA-256 hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    AGENT = "agent"  # push samples only
    ENGINEER = "engineer"  # read every ticket, acknowledge and resolve
    CLIENT = "client"  # read-only, one hospital's tickets ("client:<id>" in the config)
    ADMIN = "admin"  # everything


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's name (never the token), role and, for clients, the hospital."""

    name: str
    role: Role
    client: str | None = None

    def can_see(self, client: str) -> bool:
        return self.role is not Role.CLIENT or self.client == client


def parse_role(text: str) -> tuple[Role, str | None]:
    """``agent``, ``engineer``, ``admin`` or ``client:<id>`` -> (role, client id)."""
    if text.startswith("client:"):
        client = text.removeprefix("client:")
        if not client:
            raise ValueError("role 'client:' needs a client id, e.g. client:szpital-a")
        return Role.CLIENT, client
    try:
        role = Role(text)
    except ValueError:
        raise ValueError(
            f"unknown role {text!r} (allowed: agent, engineer, admin, client:<id>)"
        ) from None
    if role is Role.CLIENT:
        raise ValueError("role 'client' needs a client id, e.g. client:szpital-a")
    return role, None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token: 256 bits, URL-safe."""
    return "dz_" + secrets.token_urlsafe(32)


class TokenRegistry:
    """Looks a presented token up among the configured hashes without leaking timing."""

    def __init__(self, entries: list[tuple[str, Principal]]) -> None:
        # (hex sha256, principal)
        self._entries = [(bytes.fromhex(h), p) for h, p in entries]

    def authenticate(self, token: str) -> Principal | None:
        presented = hashlib.sha256(token.encode()).digest()
        found = None
        # Compare against every entry, always, so the time taken does not depend on a match.
        for digest, principal in self._entries:
            if hmac.compare_digest(presented, digest):
                found = principal
        return found
