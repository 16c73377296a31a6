"""Pushing spooled batches to the bridge over HTTP(S), oldest first, with backoff.

The standard library's socket and ssl keep the agent light. TLS is verified against the
system's trust store or the configured CA file; there is no switch to turn verification off.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import socket
import ssl
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from agents.config import AgentConfigError, BridgeTarget
from agents.spool import SpooledBatch

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0

# What writing into, or reading from, a connection the server has closed raises.
CLOSED_BY_PEER = (
    ConnectionError,  # BrokenPipeError, ConnectionResetError (also RemoteDisconnected), ...
    http.client.RemoteDisconnected,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


class Outcome(Enum):
    TAKEN = "taken"  # the bridge took the batch (or had it already): remove it
    REFUSED = "refused"  # the bridge will never take it (400/413/422): remove and count it
    RETRY = "retry"  # not now (bridge away, 5xx, 401/403): keep it, back off


@dataclass(frozen=True, slots=True)
class PushResult:
    outcome: Outcome
    detail: str = ""
    rejected: int = 0  # samples of a taken batch the bridge rejected one by one
    reasons: frozenset[str] = frozenset()


# Bounds on what the bridge (or a proxy in front of it) may answer.
_MAX_LINE = 65536
_MAX_HEADERS = 100
_MAX_BODY = 16 * 1024 * 1024


class _Connection:
    """One kept-alive HTTP/1.1 connection to the bridge.

    Not http.client: it costs the agent more CPU per push than collecting the host does
    (a request in two writes, each header validated, the answer's headers through the email
    parser). Here the request is one prepared write and the answer is read by hand: status
    line, headers, then a body by Content-Length, chunked, or up to the close.
    """

    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext | None):
        sock = socket.create_connection((host, port), timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._reader = sock.makefile("rb")

    def close(self) -> None:
        self._reader.close()
        self.sock.close()

    def _line(self) -> bytes:
        line = self._reader.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("answer line")
        return line

    def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """Send ``request``; the answer's status, body, and whether the connection stays."""
        self.sock.sendall(request)
        while True:
            line = self._line()
            if not line:  # closed before answering: the idle connection the bridge dropped
                raise http.client.RemoteDisconnected("the bridge closed the connection")
            version, _, rest = line.partition(b" ")
            code = rest[:3]
            if not version.startswith(b"HTTP/") or not code.isdigit():
                raise http.client.BadStatusLine(line.decode("latin-1").rstrip())
            status = int(code)
            headers: dict[bytes, bytes] = {}
            for _ in range(_MAX_HEADERS + 1):
                header = self._line()
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.partition(b":")
                headers[name.strip().lower()] = value.strip()
            else:
                raise http.client.HTTPException(f"more than {_MAX_HEADERS} headers")
            if status >= 200:
                break  # 1xx (100 Continue, 103 Early Hints): the answer follows
        connection = headers.get(b"connection", b"").lower()
        keep = b"close" not in connection if version == b"HTTP/1.1" else b"keep-alive" in connection
        if status in (204, 304):
            return status, b"", keep
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            return status, self._chunked(), keep
        length = headers.get(b"content-length")
        if length is None:  # the body runs to the close
            return status, self._read(_MAX_BODY, exact=False), False
        if not length.isdigit():
            raise http.client.HTTPException(f"bad Content-Length {length!r}")
        return status, self._read(int(length)), keep

    def _read(self, size: int, exact: bool = True) -> bytes:
        if size > _MAX_BODY:
            raise http.client.HTTPException(f"an answer of {size} bytes")
        data = self._reader.read(size)
        if exact and len(data) < size:
            raise http.client.IncompleteRead(data, size - len(data))
        return data

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_field = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise http.client.IncompleteRead(b"".join(parts)) from None
            if size == 0:
                break
            total += size
            parts.append(self._read(size if total <= _MAX_BODY else _MAX_BODY + 1))
            if self._line() not in (b"\r\n", b"\n"):
                raise http.client.IncompleteRead(b"".join(parts))
        while self._line() not in (b"\r\n", b"\n", b""):  # trailers, unused
            pass
        return b"".join(parts)


class BridgeClient:
    def __init__(self, target: BridgeTarget, token: str) -> None:
        parts = urlsplit(target.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._timeout = target.timeout
        self._context = None
        if self._https:
            self._context = ssl.create_default_context(
                cafile=str(target.ca_file) if target.ca_file else None
            )
        if not all(33 <= ord(c) < 127 for c in token):
            # It goes into a header: no line breaks, spaces or other bytes a header may not carry.
            raise AgentConfigError(
                "agent config", ["bridge.token_file: the token may hold only visible ASCII"]
            )
        host = self._host.encode("idna").decode() if not self._host.isascii() else self._host
        host = f"[{host}]" if ":" in host else host
        if parts.port is not None and parts.port != (443 if self._https else 80):
            host += f":{parts.port}"
        # Everything of a push's request but its length and body, built once.
        self._head = (
            f"POST {parts.path or ''}/api/v1/samples HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            "Accept-Encoding: identity\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
            "User-Agent: dyzur-agent\r\n"
            "Content-Length: "
        ).encode("ascii")
        self._conn: _Connection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def push(self, agent_id: str, batch: SpooledBatch, dropped: int) -> PushResult:
        head = b'{"agent":{"id":%s,"seq":%d,"dropped":%d}' % (
            json.dumps(agent_id).encode(),
            batch.seq,
            dropped,
        )
        tail: tuple[bytes, ...]
        if batch.body.startswith(b"{"):  # {"samples": [...], "events": [...]}
            tail = (b",", batch.body[1:])
        else:  # a plain array of samples
            tail = (b',"samples":', batch.body, b"}")
        length = len(head) + sum(len(part) for part in tail)
        request = b"".join((self._head, b"%d\r\n\r\n" % length, head, *tail))
        while True:
            # A kept-alive connection the bridge closed while the agent was idle (uvicorn does
            # after 5 s) takes the request and then breaks (EPIPE, reset, no answer). That is
            # not the bridge failing: the same numbered batch goes again, at once, on a fresh
            # connection; the bridge takes it once whichever copy it saw. A failure on a fresh
            # connection, or a timeout, is a real one.
            reused = self._conn is not None
            try:
                if self._conn is None:
                    self._conn = _Connection(self._host, self._port, self._timeout, self._context)
                status, payload, keep = self._conn.exchange(request)
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()  # a broken connection is never used again
                if reused and isinstance(exc, CLOSED_BY_PEER):
                    log.debug("the bridge had closed the idle connection (%s): resending", exc)
                    continue
                return PushResult(Outcome.RETRY, f"bridge unreachable: {exc}")
        if not keep:
            self.close()
        if status == 200:
            try:
                answer = json.loads(payload)
                rejected = answer.get("rejected", [])
            except (ValueError, AttributeError):
                return PushResult(Outcome.RETRY, "bridge answered 200 with no JSON")
            reasons = frozenset(str(r.get("reason")) for r in rejected if isinstance(r, dict))
            return PushResult(Outcome.TAKEN, rejected=len(rejected), reasons=reasons)
        detail = f"bridge answered {status}: {payload[:300].decode(errors='replace')}"
        if status in (400, 413, 422):
            return PushResult(Outcome.REFUSED, detail)
        return PushResult(Outcome.RETRY, detail)


def backoff(attempt: int) -> float:
    """1, 2, 4, ... seconds up to a minute, with jitter so agents do not return in step."""
    base = min(MAX_BACKOFF, 2.0 ** max(0, attempt - 1))
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
