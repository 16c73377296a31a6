"""The outbox: the one path by which anything leaves dyzur.

Entries
    The outbox is the audit log. Every change that something outside should hear of writes its
    audit event in the same store transaction as the change itself (the ticket lifecycle's
    ``_record`` appends the ticket's event inside the alert's transaction), so an entry exists
    exactly when its change was committed: never a message about a change that was rolled
    back, never a change without its message. A new kind of change that should leave dyzur
    writes its event the same way, inside the transaction of the change.

Consumers
    A consumer (a SIEM, a helpdesk sink, an on-call pager) is registered by a unique name
    (``siem:<destination>``); the registry refuses a second one with the same name. Each has a
    cursor in the store (``Cursors``: the last event id it confirmed) and a lease
    (``Coordination.lease``, named like the consumer), so of several bridges on one store only
    one delivers to a consumer at a time, and a ``Selection`` of the events it takes (clients,
    actions); the events it does not take move its cursor all the same.

Delivery
    One worker thread per consumer takes the lease, reads a page of events after its cursor
    (id order), hands the selected ones to ``Consumer.deliver`` and moves the cursor only once
    the consumer confirmed them, with the lease's fencing token: a worker that lost its lease
    while it was paused cannot move the cursor of the new holder (back or forth).

    * At least once: an event whose delivery was not confirmed (the bridge stopped or crashed,
      the connection broke before the confirmation) is delivered again, with the same
      idempotency key (``idempotency_key``: the event's chain hash; the event id is stable as
      well), so the destination can drop the repeat.
    * In order: per consumer in event id order, hence per ticket too. A retried batch is
      resent from the cursor, in the same order.
    * Confirmation: ``deliver`` returning is the destination's acknowledgement when the
      consumer's ``confirm_after`` is 0 (an HTTP answer). A stream without acknowledgements
      (syslog over TCP) sets ``confirm_after``: a written batch counts once the connection held
      that long after it (``Consumer.check_written`` says whether it did), and the worker keeps
      writing the next batches meanwhile.
    * Failures: ``Retry`` (the destination is away, busy, timed out; any other exception
      counts the same) offers the batch again from the cursor after an exponential backoff
      with jitter and a cap (``Backoff``), or the destination's ``Retry-After``, until the
      destination takes it; the worker renews its lease through the pause, so another bridge
      does not take over and try sooner. ``Permanent`` names one event the destination will
      never take (it refused its content): the events before it count as delivered, the event
      is skipped and an ``outbox.delivery_failed`` audit event (failure; its consumer, event
      id, action and reason) records the skip in the trail, and so reaches every consumer, the
      refusing one too. A refusal of an
      ``outbox.delivery_failed`` event of the same consumer is only logged, so a consumer that
      refuses everything cannot feed itself forever.
    * A full queue: a consumer with ``max_queue`` keeps at most that many waiting events (of
      its clients); the oldest are skipped, the count kept with the cursor, and once the
      consumer confirms a delivery again its ``dropped_event`` is written to the audit log in
      the same transaction that clears the count.

May use: the store's audit log, cursors and coordination roles. Consumers do the network I/O;
nothing here changes a ticket.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bridge.actions import Action
from bridge.clock import Clock
from bridge.models import AuditEvent
from bridge.store.roles import AuditLog, Coordination, Cursor, Cursors

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0
IDLE_POLL = 1.0  # nothing to do: look again after this long (or when woken)
CONFIRM_POLL = 0.2  # written batches wait for their confirmation
MAX_RETRY_AFTER = 3600.0  # a destination's Retry-After is honoured up to an hour
DELIVERY_FAILED = Action.OUTBOX_DELIVERY_FAILED


class OutboxStore(AuditLog, Cursors, Coordination, Protocol):
    """The roles the outbox uses: the audit log (its entries), cursors and coordination."""


class Retry(Exception):
    """The destination cannot take the batch now: nothing of it counts as delivered, and it is
    offered again, from the cursor, after a pause: ``after`` seconds when the destination said
    how long (HTTP ``Retry-After``; at most MAX_RETRY_AFTER), else the backoff's."""

    def __init__(self, reason: str = "", after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class Permanent(Exception):
    """The destination will never take one event (``event_id``; None: the batch's first):
    the events before it in the batch count as delivered, the event is skipped and recorded,
    the events after it are offered again."""

    def __init__(self, reason: str, event_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id


def idempotency_key(event: AuditEvent) -> str:
    """The key a destination can drop repeats by: the same for every delivery of one event,
    from every bridge (its chain hash; unique, since it covers the previous event's hash)."""
    if event.hash is None:
        raise ValueError("an outbox entry is a stored audit event, and has a hash")
    return event.hash


def _id(event: AuditEvent) -> int:
    if event.id is None:
        raise ValueError("an outbox entry is a stored audit event, and has an id")
    return event.id


@dataclass(frozen=True, slots=True)
class Selection:
    """Which events a consumer takes: of these clients (None: every event, events of no client
    included) and with these actions (exact names, or prefixes ending in ``*`` such as
    ``ticket.*``; None: every action)."""

    clients: frozenset[str] | None = None
    actions: frozenset[str] | None = None

    def takes(self, event: AuditEvent) -> bool:
        if self.clients is not None and event.client not in self.clients:
            return False
        if self.actions is None:
            return True
        return any(
            event.action.startswith(pattern[:-1])
            if pattern.endswith("*")
            else event.action == pattern
            for pattern in self.actions
        )


@dataclass(frozen=True, slots=True)
class Backoff:
    """The pause before the ``attempt``-th retry in a row: ``base * 2**(attempt-1)`` up to
    ``cap``, less a random share of up to ``jitter`` (so many bridges do not retry in step;
    the pause never exceeds the cap)."""

    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt - 1, 64))
        return ceiling * rng.uniform(1.0 - self.jitter, 1.0)


class Consumer(ABC):
    """One destination of the outbox. Subclasses implement ``deliver``; the rest are hooks
    with defaults for a consumer whose ``deliver`` returning is the acknowledgement."""

    def __init__(
        self,
        name: str,
        selection: Selection | None = None,
        *,
        batch_size: int = 500,
        confirm_after: float = 0.0,
        max_queue: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: must be at least 1, not {batch_size}")
        if max_queue is not None and max_queue < 1:
            raise ValueError(f"max_queue: must be at least 1, not {max_queue}")
        self.name = name
        self.selection = selection or Selection()
        self.batch_size = batch_size
        self.confirm_after = confirm_after
        self.max_queue = max_queue

    @abstractmethod
    def deliver(self, events: Sequence[AuditEvent]) -> None:
        """Hand ``events`` (id order, each with ``idempotency_key``) to the destination.
        Raise ``Retry`` or ``Permanent`` when it did not take them."""

    def check_written(self) -> None:
        """Raise ``Retry`` when batches written since the last confirmation may be lost (the
        connection dropped); called before they are confirmed (``confirm_after`` > 0)."""
        return None

    def close(self) -> None:
        """Let go of the destination (after a failure, when the lease is lost, on stop)."""
        return None

    def dropped_event(self, count: int, at: datetime) -> AuditEvent | None:
        """The audit event reporting ``count`` events dropped from a full queue."""
        return None

    # Observations, for metrics and logs.

    def on_backlog(self, waiting: int) -> None:
        """Events (of its clients) after the cursor, at the start of a round."""
        return None

    def on_sent(self, count: int) -> None:
        """``count`` events were taken by ``deliver``."""
        return None

    def on_dropped(self, count: int) -> None:
        """``count`` of the oldest events were skipped: the queue was full."""
        return None

    def on_failure(self, error: Exception, attempt: int) -> None:
        """A delivery failed; ``attempt`` counts the failures in a row (1: the first)."""
        if attempt == 1:
            log.error("outbox consumer %s: delivery failed: %s", self.name, error)

    def on_recovered(self) -> None:
        """The destination took a batch after failures."""
        log.warning("outbox consumer %s: delivering again", self.name)


class ConsumerWorker:
    """Delivers to one consumer: ``step`` is one round, ``run`` the loop of a thread."""

    def __init__(
        self,
        consumer: Consumer,
        store: OutboxStore,
        clock: Clock,
        owner: str,
        *,
        lease_seconds: float = LEASE_SECONDS,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.store = store
        self.clock = clock
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.backoff = backoff or Backoff()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._monotonic = monotonic
        self.wake = threading.Event()
        self.token: int | None = None  # the fencing token of the lease this worker holds
        self._valid_until = 0.0  # monotonic time until which the lease surely holds
        self.committed = 0  # the cursor, as this worker last moved or read it
        self.dropped = 0
        self.read_id = 0  # the last event read and handed over (or passed by)
        self.failures = 0  # failed rounds in a row
        # (monotonic time written, last event id of the batch), oldest first
        self._unconfirmed: deque[tuple[float, int]] = deque()
        # Events refused for good that the cursor has not passed yet (not offered again).
        self._refused: set[int] = set()

    @property
    def waiting_confirmation(self) -> bool:
        return bool(self._unconfirmed)

    def step(self) -> float:
        """One round of work; how long to wait before the next (0: there may be more now)."""
        c, store = self.consumer, self.store
        asked = self._monotonic()
        token = store.lease(c.name, self.owner, self.lease_seconds, self.clock.time())
        if token is None:  # another worker delivers to this consumer
            self._let_go()
            return IDLE_POLL
        # Past this (by this process' own clock) the lease may have run out and been taken:
        # a worker paused after this line sends nothing when it wakes. A fifth of the lease
        # is left for the two machines' clocks to drift apart.
        self._valid_until = asked + self.lease_seconds * 0.8
        if token != self.token:
            self._take_over(token)
        if self._unconfirmed:
            try:
                c.check_written()
            except Exception as exc:
                return self._failed(exc)
        if not self._confirm_due():
            return IDLE_POLL
        clients = c.selection.clients
        backlog = store.audit_backlog(self.committed, clients)
        c.on_backlog(backlog)
        if (
            c.max_queue is not None
            and backlog > c.max_queue
            and not self._drop(backlog - c.max_queue)
        ):
            return IDLE_POLL
        page = store.audit_events(self.read_id, c.batch_size, clients)
        if not page:
            return CONFIRM_POLL if self._unconfirmed else IDLE_POLL
        through = _id(page[-1])
        events = [e for e in page if _id(e) not in self._refused and c.selection.takes(e)]
        if events:
            if self._monotonic() >= self._valid_until:
                return 0.0  # away too long since the lease was renewed: renew it first
            try:
                c.deliver(events)
                taken = len(events)
            except Permanent as refusal:
                refused = self._refused_event(events, refusal)
                if refused is None:
                    error = ValueError(f"Permanent names no event of the batch: {refusal}")
                    return self._failed(error)
                through = _id(refused)
                taken = sum(1 for e in events if _id(e) < through)
                self._refuse(refused, refusal.reason)
            except Exception as exc:  # Retry, and anything unexpected: offered again
                if not isinstance(exc, Retry):
                    log.exception("outbox consumer %s: delivery failed", c.name)
                return self._failed(exc)
            c.on_sent(taken)
        self.read_id = through
        self._unconfirmed.append((self._monotonic(), through))
        if self.failures:
            self.failures = 0
            c.on_recovered()
        self._confirm_due()
        return 0.0

    # --- the lease and the cursor ---------------------------------------------------------

    def _take_over(self, token: int) -> None:
        """The lease is newly ours: start from the cursor as the store has it."""
        cursor = self.store.cursor(self.consumer.name)
        self.token = token
        self.committed = self.read_id = cursor.last_id
        self.dropped = cursor.dropped
        self._unconfirmed.clear()
        self._refused.clear()

    def _let_go(self) -> None:
        """Another worker holds the lease (or took it while this one was paused)."""
        if self.token is not None:
            log.warning("outbox consumer %s: lease lost to another worker", self.consumer.name)
            self.token = None
            self._unconfirmed.clear()
            self.consumer.close()

    def _move(self, cursor: Cursor) -> bool:
        """Move the stored cursor with this worker's token; False (and the lease let go) when
        a newer holder moved it meanwhile."""
        assert self.token is not None
        if self.store.set_cursor(self.consumer.name, cursor, self.token):
            return True
        self._let_go()
        return False

    def _confirm_due(self) -> bool:
        """Count the batches written at least ``confirm_after`` ago as delivered; False when
        the cursor could not be moved (the lease was lost)."""
        now = self._monotonic()
        last = None
        while self._unconfirmed and now - self._unconfirmed[0][0] >= self.consumer.confirm_after:
            last = self._unconfirmed.popleft()[1]
        if last is None or last <= self.committed:
            return True
        if not self._move(Cursor(last, self.dropped)):
            return False
        self.committed = last
        self._refused = {i for i in self._refused if i > last}
        return self._report_drops()

    def _drop(self, count: int) -> bool:
        """Skip the ``count`` oldest waiting events (a full queue)."""
        c = self.consumer
        skipped_to = self.store.audit_skip(self.committed, count, c.selection.clients)
        if not self._move(Cursor(skipped_to, self.dropped + count)):
            return False
        self.committed, self.dropped = skipped_to, self.dropped + count
        self.read_id = max(self.read_id, skipped_to)
        while self._unconfirmed and self._unconfirmed[0][1] <= skipped_to:
            self._unconfirmed.popleft()
        c.on_dropped(count)
        return True

    def _report_drops(self) -> bool:
        """After a confirmed delivery: write the consumer's report of what its full queue
        dropped, in the transaction that clears the count."""
        if not self.dropped:
            return True
        event = self.consumer.dropped_event(self.dropped, self.clock.now())
        with self.store.transaction():
            if not self._move(Cursor(self.committed, 0)):
                return False
            if event is not None:
                self.store.append_audit(event)
        self.dropped = 0
        return True

    # --- failures -------------------------------------------------------------------------

    @staticmethod
    def _refused_event(events: list[AuditEvent], refusal: Permanent) -> AuditEvent | None:
        if refusal.event_id is None:
            return events[0]
        return next((e for e in events if e.id == refusal.event_id), None)

    def _refuse(self, event: AuditEvent, reason: str) -> None:
        c = self.consumer
        log.error(
            "outbox consumer %s refused audit event %s (%s) for good: %s",
            c.name,
            event.id,
            event.action,
            reason,
        )
        self._refused.add(_id(event))
        if event.action == DELIVERY_FAILED and event.detail.get("consumer") == c.name:
            return  # its own failure record: logged only, or a refusing consumer loops
        self.store.append_audit(
            AuditEvent(
                self.clock.now(),
                "dyzur",
                DELIVERY_FAILED,
                "failure",
                event.client,
                event.asset,
                {
                    "consumer": c.name,
                    "event": event.id,
                    "action": event.action,
                    "reason": reason,
                },
            )
        )

    def _failed(self, error: Exception) -> float:
        """Offer everything not yet confirmed again, after a pause."""
        self.consumer.close()
        self._unconfirmed.clear()
        self.read_id = self.committed
        self.failures += 1
        self.consumer.on_failure(error, self.failures)
        if isinstance(error, Retry) and error.after is not None:
            return min(max(error.after, 0.0), MAX_RETRY_AFTER)
        return self.backoff.delay(self.failures, self._rng)

    # --- the thread -----------------------------------------------------------------------

    def _wait_out(self, stop: threading.Event, pause: float) -> None:
        """Pause after a failure, renewing the lease meanwhile: a destination's Retry-After
        may be longer than the lease, and another bridge taking it over would send at once
        what the destination asked to wait for."""
        renew_every = self.lease_seconds / 3
        while pause > renew_every:
            if stop.wait(renew_every):
                return
            pause -= renew_every
            if not self._renew():
                return  # lost it: the next round lets go (or takes it over anew)
        stop.wait(pause)

    def _renew(self) -> bool:
        """Extend the lease this worker holds; False when it does not hold it any more."""
        if self.token is None:
            return False
        name = self.consumer.name
        try:
            token = self.store.lease(name, self.owner, self.lease_seconds, self.clock.time())
        except Exception:
            log.exception("outbox consumer %s: lease not renewed", name)
            return False
        return token == self.token

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    pause = self.step()
                except Exception as exc:  # a broken store must not end delivery for good
                    log.exception("outbox consumer %s: round failed", self.consumer.name)
                    pause = self._failed(exc)
                if pause <= 0:
                    continue
                if self.failures:
                    self._wait_out(stop, pause)
                else:
                    self.wake.wait(pause)
                    self.wake.clear()
        finally:
            self.consumer.close()
            if self.token is not None:
                try:
                    self.store.release_lease(self.consumer.name, self.owner)
                except Exception:
                    log.exception("outbox consumer %s: lease not released", self.consumer.name)
                self.token = None


class Outbox:
    """The registry of consumers and their worker threads (one per consumer)."""

    def __init__(
        self,
        store: OutboxStore,
        clock: Clock,
        *,
        owner: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = lease_seconds
        self.backoff = backoff
        self._rng = rng
        self._monotonic = monotonic
        self.workers: dict[str, ConsumerWorker] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def register(self, consumer: Consumer) -> ConsumerWorker:
        """Add a consumer, before ``start``; a second consumer with the same name is refused."""
        if consumer.name in self.workers:
            raise ValueError(f"outbox consumer {consumer.name!r} is already registered")
        if self._threads:
            raise RuntimeError("register outbox consumers before start()")
        worker = ConsumerWorker(
            consumer,
            self.store,
            self.clock,
            self.owner,
            lease_seconds=self.lease_seconds,
            backoff=self.backoff,
            rng=self._rng,
            monotonic=self._monotonic,
        )
        self.workers[consumer.name] = worker
        return worker

    def start(self) -> None:
        """One thread per registered consumer; a second call while running does nothing."""
        if self._threads:
            return
        self._stop.clear()
        for name, worker in self.workers.items():
            thread = threading.Thread(
                target=worker.run, args=(self._stop,), name=f"outbox-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def notify(self) -> None:
        """New entries were written: every worker looks at once."""
        for worker in self.workers.values():
            worker.wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers; each lets go of its destination and releases its lease."""
        self._stop.set()
        self.notify()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
