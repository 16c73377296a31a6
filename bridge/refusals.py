"""Refused requests in the audit trail, aggregated so that a flood cannot fill it.

A request without a token (``token.missing``, 401), with a wrong one (``token.refused``, 401),
a token whose role or hospital may not do what it asked (``role.refused``, 403), a refused
agent stream (``agent.stream_refused``, 403) is one audit event per kind, source and actor per
minute, with a count: the first refusal starts the minute, later ones only count, and the
ticker writes the event when the minute is over (``flush``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from bridge.clock import Clock, local_iso
from bridge.models import AuditEvent

log = logging.getLogger("dyzur.auth")
MAX_SOURCES = 10_000  # beyond this many sources in one minute, refusals count as one "other"
MAX_PATHS = 5  # distinct requests named per event


@dataclass(slots=True)
class _Bucket:
    first: datetime
    last: datetime
    count: int = 0
    actor: str = "unknown"
    client: str | None = None
    requests: list[str] = field(default_factory=list)
    detail: dict[str, object] = field(default_factory=dict)


class RefusalAudit:
    def __init__(
        self, append: Callable[[AuditEvent], object], clock: Clock, period: float = 60.0
    ) -> None:
        self._append = append
        self.clock = clock
        self.period = period
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def refused(
        self,
        action: str,
        source: str,
        request: str,
        actor: str = "unknown",
        client: str | None = None,
        **detail: object,
    ) -> None:
        """Count one refusal of ``action`` (``token.refused``) from ``source`` (an address) by
        ``actor`` (a token's name, or ``unknown``). ``client``: the hospital of the token, so
        its own SIEM and audit listing see it; ``detail`` (the role) is the first refusal's."""
        now = self.clock.now()
        with self._lock:
            key = (action, source, actor)
            if key not in self._buckets and len(self._buckets) >= MAX_SOURCES:
                key, client, detail = (action, "other", "unknown"), None, {}
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(
                    now, now, actor=key[2], client=client, detail=dict(detail)
                )
            bucket.count += 1
            bucket.last = now
            if len(bucket.requests) < MAX_PATHS and request not in bucket.requests:
                bucket.requests.append(request)

    def flush(self, everything: bool = False) -> int:
        """Write the events of the minutes that are over (all of them when ``everything``,
        at shutdown); returns how many were written."""
        now = self.clock.now()
        with self._lock:
            due = [
                (key, b)
                for key, b in self._buckets.items()
                if everything or (now - b.first).total_seconds() >= self.period
            ]
            for key, _ in due:
                del self._buckets[key]
        for (action, source, _), b in due:
            detail = {
                **b.detail,
                "source": source,
                "count": b.count,
                "first": local_iso(b.first),
                "last": local_iso(b.last),
                "requests": b.requests,
            }
            event = AuditEvent(b.last, b.actor, action, "failure", b.client, detail=detail)
            try:
                self._append(event)
            except Exception:  # the store is away: the log line of each refusal remains
                log.exception("cannot audit %d refusals from %s", b.count, source)
        return len(due)
