"""A secret kept in an owner-only file (a webhook's HMAC key, an SMS gateway's token), read at
its first use and then kept: errors name the file, never its content."""

from __future__ import annotations

from pathlib import Path

from bridge.delivery.outbox import Retry


class SecretFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._secret: bytes | None = None

    def read(self) -> bytes:
        """The secret, without surrounding whitespace; ``Retry`` (a fix of the file is awaited,
        nothing is lost) when it cannot be read or is empty."""
        if self._secret is None:
            try:
                secret = self.path.read_bytes().strip()
            except OSError as exc:
                raise Retry(f"cannot read secret_file {self.path}: {exc.strerror}") from None
            if not secret:
                raise Retry(f"secret_file {self.path} is empty")
            self._secret = secret
        return self._secret
