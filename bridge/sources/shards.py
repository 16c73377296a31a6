"""Which hospitals' series this bridge evaluates, among several bridges.

The rules engine keeps state per series (``for:`` timers, firing alerts, absence), so each
hospital is evaluated by one bridge at a time: the holder of its lease ``shard:<client>`` in
Redis. Every bridge says it is alive (a heartbeat) and holds about its share of the
hospitals: it takes free ones up to ``ceil(hospitals / bridges alive)`` and lets go of those
beyond it, so a second bridge that starts gets half of them and the survivor of a dead one
gets them all once their leases run out.

A hospital is taken with its state restored from the store (``Ingestor.take_shard``) before
any of its batches is evaluated here, and its batches are evaluated under its lease's fencing
token: a bridge that was away past its lease (paused, cut off) has its writes refused by the
store, and by its own reckoning (a monotonic clock) it stops evaluating the hospital once the
lease may have run out, without waiting for Redis to tell it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Protocol

from bridge.metrics import BridgeMetrics
from bridge.sources.samples import shard_lease
from bridge.store import StoreError

log = logging.getLogger(__name__)


class ShardLeases(Protocol):
    """What the keeper needs of the coordination (``RedisCoordination``)."""

    def lease(self, name: str, owner: str, ttl: float, now: float) -> int | None: ...

    def release_lease(self, name: str, owner: str) -> None: ...

    def heartbeat(self, member: str, ttl: float, info: dict[str, str]) -> None: ...

    def members(self) -> dict[str, dict[str, str]]: ...


class Shards:
    def __init__(
        self,
        leases: ShardLeases,
        clients: Sequence[str],
        owner: str,
        ttl: float,
        *,
        take: Callable[[str], None],
        drop: Callable[[str], None],
        metrics: BridgeMetrics,
        info: dict[str, str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``take(client)`` restores a hospital's state before it counts as held;
        ``drop(client)`` forgets it. ``info``: what this bridge tells the others (its address)."""
        self.leases = leases
        self.owner = owner
        self.ttl = ttl
        self._take = take
        self._drop = drop
        self.metrics = metrics
        self.info = info or {}
        self._monotonic = monotonic
        # Every bridge looks at the hospitals in its own order, so that two bridges starting
        # together do not race for the same ones first.
        self.clients = sorted(clients, key=lambda c: zlib.crc32(f"{owner}/{c}".encode()))
        self._held: dict[str, tuple[int, float]] = {}  # client -> (token, valid until)
        self._lock = threading.Lock()

    # --- what the intake asks ------------------------------------------------------------

    def token(self, client: str) -> int | None:
        """The fencing token of ``client``'s lease while this bridge holds it, None otherwise
        (also once the lease may have run out by this bridge's own clock)."""
        with self._lock:
            held = self._held.get(client)
        if held is None or self._monotonic() >= held[1]:
            return None
        return held[0]

    def held(self) -> list[str]:
        """The hospitals this bridge holds (and may evaluate) now."""
        return [c for c in self.clients if self.token(c) is not None]

    def valid(self, client: str) -> bool:
        return self.token(client) is not None

    # --- the keeper ------------------------------------------------------------------------

    def _valid_until(self, asked_at: float) -> float:
        # Redis' lease runs ttl from when it received the renewal, which is after asked_at;
        # a fifth of it is left for the clocks of the two machines to drift apart.
        return asked_at + self.ttl * 0.8

    def step(self) -> None:
        """Renew the leases held, let go of those beyond this bridge's share, take free ones
        up to it. Every ``ttl / 5`` seconds (``run``): a dead bridge's hospitals are taken at
        most a fifth of the lease after their leases ran out."""
        self.leases.heartbeat(self.owner, self.ttl, self.info)
        alive = max(1, len(self.leases.members()))
        share = math.ceil(len(self.clients) / alive)
        with self._lock:
            held = dict(self._held)
        for client, (token, _) in held.items():
            asked_at = self._monotonic()
            renewed = self.leases.lease(shard_lease(client), self.owner, self.ttl, time.time())
            if renewed != token:
                self._lose(client, "lost")
            else:
                with self._lock:
                    self._held[client] = (token, self._valid_until(asked_at))
        for client in sorted(self.held())[share:]:
            self._lose(client, "released")
        for client in self.clients:
            if len(self.held()) >= share:
                break
            if client not in self._held:
                self._try_take(client)

    def _try_take(self, client: str) -> None:
        asked_at = self._monotonic()
        token = self.leases.lease(shard_lease(client), self.owner, self.ttl, time.time())
        if token is None:
            return
        try:
            self._take(client)
        except Exception:
            log.exception("cannot take hospital %s: its state could not be restored", client)
            self.leases.release_lease(shard_lease(client), self.owner)
            return
        with self._lock:
            self._held[client] = (token, self._valid_until(asked_at))
        self.metrics.shard_moves.labels("taken").inc()
        log.info("hospital %s: its series are evaluated by this bridge (token %d)", client, token)

    def _lose(self, client: str, change: str) -> None:
        """No longer held: batches for it are handed over from now, its state dropped after
        the batch being evaluated ends, and (released) its lease freed for another bridge."""
        with self._lock:
            self._held.pop(client, None)
        self._drop(client)
        if change == "released":
            self.leases.release_lease(shard_lease(client), self.owner)
        self.metrics.shard_moves.labels(change).inc()
        (log.info if change == "released" else log.warning)(
            "hospital %s: %s by this bridge", client, change
        )

    def run(self, stop: threading.Event) -> None:
        """The keeper's loop, until ``stop``; then every hospital is let go at once (another
        bridge takes them without waiting for the leases to run out)."""
        failing = False
        while not stop.is_set():
            try:
                self.step()
                failing = False
            except StoreError as exc:  # Redis or the store away: held ones run out meanwhile
                if not failing:
                    log.warning("cannot renew or take the hospitals' leases: %s", exc)
                failing = True
            except Exception:
                log.exception("cannot renew or take the hospitals' leases")
            stop.wait(self.ttl / 5)
        self.release_all()

    def release_all(self) -> None:
        for client in list(self._held):
            try:
                self._lose(client, "released")
            except Exception:
                log.exception("cannot let go of hospital %s", client)
