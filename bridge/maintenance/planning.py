"""Planning maintenance windows: validation, conflicts, cancellation, and the muting question.

Windows live in the store; each bridge process keeps a schedule built from them and rebuilds
it after its own changes and every few seconds (to see other workers' plans).

Planning and cancelling are store transactions holding the planning lock (``PLANNING_LOCK``);
``plan_all`` checks conflicts (which expands recurrences) before its transaction and saves only
if the windows it checked against are still the same. ``cancel`` is a unit of its own (an
engineer, through the API); ``cancel_within`` and ``end_early`` are steps of an update plan's
transaction and need it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from bridge.actions import Action
from bridge.clock import WARSAW, Clock, local_iso, utc_iso
from bridge.errors import Conflict, Invalid, NotFound
from bridge.maintenance.windows import (
    CONFLICT_HORIZON,
    Interval,
    Muting,
    Occurrences,
    WindowSchedule,
    covered_assets,
    find_conflict,
    validate_rrule,
)
from bridge.models import (
    Asset,
    AuditEvent,
    Client,
    MaintenanceWindow,
    SuppressedState,
)
from bridge.store import Store

MAX_WINDOW = timedelta(days=7)
REFRESH_SECONDS = 5.0
# The store lock that serialises changes of windows across workers (roles.py's lock order:
# after a plan's lock, before any alert's).
PLANNING_LOCK = "planning"

log = logging.getLogger(__name__)


class WindowError(Invalid):
    """A window that cannot be planned; the message names the field."""


class WindowConflict(Conflict):
    """A window that overlaps another of the same asset (``other``)."""

    def __init__(self, message: str, other: MaintenanceWindow) -> None:
        super().__init__(message)
        self.other = other
        self.conflicts_with = other.id


class WindowNotFound(NotFound):
    def __init__(self, window_id: str) -> None:
        super().__init__(f"no window {window_id}")
        self.window_id = window_id


class WindowOfPlan(Conflict):
    """A window that is a stage of an update plan (``conflicts_with``): only the plan may
    cancel it."""

    def __init__(self, window: MaintenanceWindow) -> None:
        super().__init__(
            f"window {window.id} is a stage of update plan {window.plan}; cancel the plan "
            f"instead: dyzur update cancel {window.plan} --reason ... "
            f"(POST /api/v1/updates/{window.plan}/cancel)"
        )
        self.window = window
        self.conflicts_with = window.plan


@dataclass(frozen=True)
class WindowRequest:
    client: str
    start: datetime
    end: datetime
    reason: str
    assets: list[str] = field(default_factory=list)
    selector: dict[str, str] = field(default_factory=dict)
    rrule: str | None = None
    ticket: str | None = None


class Maintenance:
    def __init__(
        self,
        store: Store,
        clients: Mapping[str, Client],
        assets: Mapping[str, Asset],
        clock: Clock,
    ) -> None:
        self.store = store
        self.clients = clients
        self.assets = assets
        self.clock = clock
        self._lock = threading.Lock()
        self._schedule: WindowSchedule | None = None
        self._loaded_at = 0.0
        # The occurrences running at the last announce() (None: not asked yet).
        self._running: dict[tuple[str, datetime], tuple[MaintenanceWindow, Interval]] | None = None

    # --- the muting question ---------------------------------------------------------------

    def schedule(self) -> WindowSchedule:
        with self._lock:
            if self._schedule is None or time.monotonic() - self._loaded_at > REFRESH_SECONDS:
                self._schedule = WindowSchedule(self.store.windows(), self.assets)
                self._loaded_at = time.monotonic()
            return self._schedule

    def _changed(self) -> None:
        with self._lock:
            self._schedule = None

    def muting(self, asset: str, at: datetime) -> Muting | None:
        return self.schedule().muting(asset, at)

    def announce(self) -> None:
        """Log each window occurrence that started or ended since the last call, one INFO line
        each with its times in UTC; the first call logs those already running. The bridge's
        ticker calls it (a window is a span of time: nothing else happens when one begins)."""
        now = self.clock.now()
        running = {(w.id, span[0]): (w, span) for w, span in self.schedule().active(now)}
        previous, self._running = self._running, running
        if previous is None:
            for w, (start, end) in sorted(running.values(), key=lambda r: r[1]):
                log.info("window %s running: %s", w.id, self._span(w, start, end))
            return
        for key in sorted(running.keys() - previous.keys(), key=lambda k: k[1]):
            w, (start, end) = running[key]
            log.info("window %s started: %s", w.id, self._span(w, start, end))
        for key in sorted(previous.keys() - running.keys(), key=lambda k: k[1]):
            w, (start, end) = previous[key]
            if end <= now:
                log.info("window %s ended: %s", w.id, self._span(w, start, end))
            else:  # cancelled or ended early (an update stage that finished)
                span = self._span(w, start, end)
                log.info("window %s ended early at %s: %s", w.id, utc_iso(now), span)

    def _span(self, window: MaintenanceWindow, start: datetime, end: datetime) -> str:
        count = len(covered_assets(window, self.assets))
        assets = f"{count} asset" + ("" if count == 1 else "s")
        return f"{window.client}, {assets}, {utc_iso(start)} - {utc_iso(end)}"

    # --- planning --------------------------------------------------------------------------

    def check(self, request: WindowRequest, plan: str | None = None) -> MaintenanceWindow:
        """The window a request describes, validated (not saved; no conflict check yet)."""
        r = request
        client = self.clients.get(r.client)
        if client is None:
            raise WindowError(f"client: unknown client {r.client!r}")
        for field_name, when in (("start", r.start), ("end", r.end)):
            if when.tzinfo is None:
                raise WindowError(f"{field_name}: needs a UTC offset or Europe/Warsaw")
        # In UTC from here: Warsaw-zoned datetimes subtract and compare by wall clock.
        r = replace(r, start=r.start.astimezone(UTC), end=r.end.astimezone(UTC))
        if r.end <= r.start:
            raise WindowError("end: the window ends before it starts")
        if r.end - r.start > MAX_WINDOW:
            raise WindowError("end: a window may last at most 7 days")
        if r.end <= self.clock.now():
            raise WindowError("end: the window is already over")
        if not r.reason.strip():
            raise WindowError("reason: say why (it is shown to the hospital)")
        if r.assets and r.selector:
            raise WindowError("assets: give a list of assets or a selector, not both")
        if not r.assets and not r.selector:
            raise WindowError(
                "assets: list the assets or give a selector (environment=test, kind=amms, "
                f"id=...; client={r.client} for all of its assets)"
            )
        for asset_id in r.assets:
            asset = self.assets.get(asset_id)
            if asset is None or asset.client != r.client:
                raise WindowError(f"assets: {asset_id!r} is not an asset of {r.client}")
        if r.rrule:
            try:
                validate_rrule(r.rrule, r.start, r.end)
            except ValueError as exc:
                raise WindowError(str(exc)) from None
        if r.ticket is not None:
            ticket = self.store.get_ticket(r.ticket)
            if ticket is None or ticket.client != r.client:
                raise WindowError(f"ticket: no ticket {r.ticket} of {r.client}")
        window = MaintenanceWindow(
            id="",
            client=r.client,
            start=r.start,
            end=r.end,
            reason=r.reason.strip(),
            assets=list(r.assets),
            selector=dict(r.selector),
            rrule=r.rrule or None,
            ticket=r.ticket,
            plan=plan,
        )
        if not covered_assets(window, self.assets):
            what = ", ".join(f"{k}={v}" for k, v in r.selector.items()) or "(nothing)"
            raise WindowError(f"selector: {what} matches no asset of {r.client}")
        own = Occurrences(window).first_overlap_with_itself(r.start + CONFLICT_HORIZON)
        if own is not None:
            raise WindowError(
                f"rrule: the occurrence of {local_iso(own[0])} begins before the one before "
                "it ended"
            )
        return window

    def plan(
        self, request: WindowRequest, actor: str, plan: str | None = None
    ) -> MaintenanceWindow:
        """Plan a window; refused with WindowConflict naming the other window when it would
        overlap one of the same asset."""
        return self.plan_all([request], actor, plan)[0]

    def plan_all(
        self, requests: list[WindowRequest], actor: str, plan: str | None = None
    ) -> list[MaintenanceWindow]:
        """Plan several windows at once (an update plan's stages): all of them or none."""
        windows = [self.check(r, plan) for r in requests]
        now = self.clock.now()
        while True:
            # Conflicts before the transaction (recurrences are expanded), against the windows
            # as they are now; saved only if nobody changed them meanwhile, else checked again.
            planned = self.store.windows()
            for window in windows:
                self._refuse_conflict(window, planned)
            with self.store.transaction():
                self.store.lock(PLANNING_LOCK)
                unchanged = self.store.windows() == planned
                if unchanged:
                    for window in windows:
                        year = window.start.astimezone(WARSAW).year
                        window.id = f"OS-{year}-{self.store.next_sequence(f'window-{year}'):04d}"
                        window.created_by = actor
                        window.created_at = now
                        self.store.save_window(window)
                        self._audit(Action.WINDOW_PLANNED, window, actor, now)
            if unchanged:
                break
        self._changed()
        return windows

    def _refuse_conflict(self, window: MaintenanceWindow, planned: list[MaintenanceWindow]) -> None:
        conflict = find_conflict(window, planned, self.assets)
        if conflict is not None:
            other = conflict.other
            raise WindowConflict(
                f"overlaps window {other.id} ({other.reason}) on "
                f"{', '.join(conflict.assets)}: {local_iso(conflict.start)} to "
                f"{local_iso(conflict.end)}",
                other,
            )

    def get(self, window_id: str) -> MaintenanceWindow:
        for window in self.store.windows():
            if window.id == window_id:
                return window
        raise WindowNotFound(window_id)

    def refuse(self, requests: list[WindowRequest], plan: str | None = None) -> None:
        """Raise what ``plan_all`` would raise for these requests (a field, a conflict),
        without saving anything: an update plan checks its windows before taking a number."""
        checked = [self.check(r, plan) for r in requests]
        planned = self.store.windows()
        for window in checked:
            self._refuse_conflict(window, planned)

    def cancel(self, window_id: str, actor: str, plan: str | None = None) -> MaintenanceWindow:
        """A unit of its own: cancel a window (``cancel_within``, in a transaction of its
        own)."""
        with self.store.transaction():
            window = self.cancel_within(window_id, actor, plan)
        self._changed()
        return window

    def cancel_within(
        self, window_id: str, actor: str, plan: str | None = None
    ) -> MaintenanceWindow:
        """Inside the caller's transaction: cancel a window. A running occurrence ends now,
        and alerts still firing in it open their tickets at the next tick. Cancelling twice
        changes nothing. A stage's window of an update plan is cancelled only by its plan
        (``plan``): WindowOfPlan otherwise."""
        now = self.clock.now()
        self.store.lock(PLANNING_LOCK)
        window = self.get(window_id)
        if window.plan is not None and window.plan != plan:
            raise WindowOfPlan(window)
        if window.cancelled_at is not None:
            return window
        window.cancelled_at = now
        window.cancelled_by = actor
        self.store.save_window(window)
        for record in self.store.suppressed_alerts(window=window.id, state=SuppressedState.FIRING):
            record.until = min(record.until, now)
            self.store.save_suppressed(record)
        self._audit(Action.WINDOW_CANCELLED, window, actor, now)
        self._changed()
        return window

    def end_early(
        self, window_id: str, at: datetime, actor: str, plan: str | None = None
    ) -> MaintenanceWindow | None:
        """Inside the caller's transaction (an update plan's step): end a one-off window at
        ``at`` instead of its planned end (an update stage's window once the stage is over and
        settled): alerts still firing in it open their tickets at the first tick from ``at``.
        None when it already ends by then (or is not one-off)."""
        now = self.clock.now()
        self.store.lock(PLANNING_LOCK)
        window = self.get(window_id)
        if window.plan is not None and window.plan != plan:
            raise WindowOfPlan(window)
        if window.rrule or window.cancelled_at is not None or window.end <= at:
            return None
        planned_end = window.end
        window.end = max(at, window.start)
        self.store.save_window(window)
        for record in self.store.suppressed_alerts(window=window.id, state=SuppressedState.FIRING):
            record.until = min(record.until, window.end)
            self.store.save_suppressed(record)
        planned = local_iso(planned_end)
        self._audit(Action.WINDOW_ENDED_EARLY, window, actor, now, planned_end=planned)
        self._changed()
        return window

    def _audit(
        self, action: str, window: MaintenanceWindow, actor: str, now: datetime, **extra: object
    ) -> None:
        detail: dict[str, object] = {
            "window": window.id,
            "start": local_iso(window.start),
            "end": local_iso(window.end),
            "assets": ",".join(covered_assets(window, self.assets)),
            "rrule": window.rrule,
            "reason": window.reason,
        }
        if window.plan:
            detail["plan"] = window.plan
        detail.update(extra)
        self.store.append_audit(
            AuditEvent(now, actor, action, "success", window.client, None, detail)
        )

    def next_occurrence(self, window: MaintenanceWindow, after: datetime) -> Interval | None:
        """The occurrence running at or next after ``after``, or None once the window ended."""
        return Occurrences(window).following(after)
