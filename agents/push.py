"""Pushing spooled batches to the bridge over HTTP(S), oldest first, with backoff.

Plain http.client and ssl keep the agent light. TLS is verified against the system's trust
store or the configured CA file; there is no switch to turn verification off.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import ssl
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from agents.config import BridgeTarget
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


class BridgeClient:
    def __init__(self, target: BridgeTarget, token: str) -> None:
        parts = urlsplit(target.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or "") + "/api/v1/samples"
        self._timeout = target.timeout
        self._context = None
        if self._https:
            self._context = ssl.create_default_context(
                cafile=str(target.ca_file) if target.ca_file else None
            )
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "User-Agent": "dyzur-agent",
        }
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=self._context
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout
                )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def push(self, agent_id: str, batch: SpooledBatch, dropped: int) -> PushResult:
        head = (
            b'{"agent":'
            + json.dumps({"id": agent_id, "seq": batch.seq, "dropped": dropped}).encode()
        )
        if batch.body.startswith(b"{"):  # {"samples": [...], "events": [...]}
            body = head + b"," + batch.body[1:]
        else:  # a plain array of samples
            body = head + b',"samples":' + batch.body + b"}"
        while True:
            # A kept-alive connection the bridge closed while the agent was idle (uvicorn does
            # after 5 s) takes the request and then breaks (EPIPE, reset, no answer). That is
            # not the bridge failing: the same numbered batch goes again, at once, on a fresh
            # connection; the bridge takes it once whichever copy it saw. A failure on a fresh
            # connection, or a timeout, is a real one.
            reused = self._conn is not None and self._conn.sock is not None
            try:
                conn = self._connection()
                conn.request("POST", self._path, body, self._headers)
                response = conn.getresponse()
                payload = response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()  # a broken connection is never used again
                if reused and isinstance(exc, CLOSED_BY_PEER):
                    log.debug("the bridge had closed the idle connection (%s): resending", exc)
                    continue
                return PushResult(Outcome.RETRY, f"bridge unreachable: {exc}")
        status = response.status
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
