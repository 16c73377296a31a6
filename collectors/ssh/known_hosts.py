"""dyzur's own known_hosts file (OpenSSH format) and the `dyzur ssh trust` helpers.

The file is separate from the user's ``~/.ssh/known_hosts``: dyzur trusts exactly the host keys an
engineer confirmed for it. A host on port 22 is written as ``host``, any other port as
``[host]:port``, the same as OpenSSH, so the file can be checked with ``ssh-keygen -F``.
Hashed entries (``|1|salt|hash``) written by OpenSSH are understood when reading.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import tempfile
import threading
from pathlib import Path

import paramiko

DEFAULT_SSH_PORT = 22


def host_key_name(host: str, port: int) -> str:
    """The name a host has in a known_hosts file: ``host`` on port 22, ``[host]:port`` otherwise."""
    return host if port == DEFAULT_SSH_PORT else f"[{host}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's fingerprint of a public key: ``SHA256:`` and the base64 digest without padding."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _matches(name: str, pattern: str) -> bool:
    if pattern.startswith("|1|"):
        return paramiko.HostKeys.hash_host(name, pattern) == pattern
    return pattern == name


class KnownHosts:
    """One known_hosts file. Reads it afresh on every lookup so a key recorded by
    ``dyzur ssh trust`` is seen by a running process without a restart."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KnownHosts({str(self.path)!r})"

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def lookup(self, host: str, port: int = DEFAULT_SSH_PORT) -> list[paramiko.PKey]:
        """The keys recorded for ``host`` on ``port`` (empty when the host is unknown)."""
        name = host_key_name(host, port)
        keys: list[paramiko.PKey] = []
        for lineno, raw in enumerate(self._lines(), 1):
            line = raw.strip()
            if not line or line.startswith("#") or line.startswith("@"):
                # '@revoked' / '@cert-authority' markers are not used by dyzur: skipped.
                continue
            try:
                entry = paramiko.hostkeys.HostKeyEntry.from_line(line, lineno)
            except paramiko.hostkeys.InvalidHostKey:
                continue
            if entry is None:
                continue
            if any(_matches(name, pattern) for pattern in entry.hostnames):
                keys.append(entry.key)
        return keys

    def add(self, host: str, port: int, key: paramiko.PKey) -> None:
        """Record ``key`` for ``host``:``port``, replacing any key recorded for that name before
        (re-trusting a host whose key changed). Written atomically with mode 0600."""
        name = host_key_name(host, port)
        with self._lock:
            kept: list[str] = []
            for raw in self._lines():
                fields = raw.strip().split(None, 2)
                if not raw.strip() or raw.lstrip().startswith(("#", "@")) or len(fields) < 3:
                    kept.append(raw)
                    continue
                names = fields[0].split(",")
                others = [n for n in names if not _matches(name, n)]
                if len(others) == len(names):
                    kept.append(raw)
                elif others:
                    kept.append(" ".join([",".join(others), fields[1], fields[2]]))
            kept.append(f"{name} {key.get_name()} {key.get_base64()}")
            self._write("\n".join(kept) + "\n")

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".known_hosts.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # An alias some callers may find more natural.
    fingerprint = staticmethod(fingerprint)


def fetch_host_key(host: str, port: int = DEFAULT_SSH_PORT, timeout: float = 10.0) -> paramiko.PKey:
    """Connect just far enough to read the server's host key (key exchange, no authentication).

    Raises ``OSError`` when the host cannot be reached and ``paramiko.SSHException`` when it does
    not speak SSH."""
    sock = socket.create_connection((host, port), timeout=timeout)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()
        sock.close()


def trust(
    known_hosts: KnownHosts, host: str, port: int = DEFAULT_SSH_PORT, timeout: float = 10.0
) -> tuple[paramiko.PKey, str, bool]:
    """For ``dyzur ssh trust``: the server's current host key, its fingerprint and whether that
    key is already recorded. Records nothing: call :func:`record` after the engineer confirmed
    the fingerprint (compare it with ``ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub`` on the host)."""
    key = fetch_host_key(host, port, timeout)
    already = any(k == key for k in known_hosts.lookup(host, port))
    return key, fingerprint(key), already


def record(known_hosts: KnownHosts, host: str, port: int, key: paramiko.PKey) -> None:
    """Record a confirmed host key (replacing the host's previous key, if any)."""
    known_hosts.add(host, port, key)
