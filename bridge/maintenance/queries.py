"""Reading what is planned: windows as a person sees them now, update plans with their steps,
and the calendar feed of both. The API reads maintenance through these, never the store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from bridge.clock import Clock
from bridge.maintenance.calendar_feed import build_calendar
from bridge.maintenance.windows import Occurrences, covered_assets
from bridge.models import (
    Asset,
    Client,
    MaintenanceWindow,
    StepRecord,
    SuppressedAlert,
    UpdatePlan,
)
from bridge.store.roles import PlanStore, WindowStore


@dataclass(frozen=True, slots=True)
class WindowView:
    """A window at one moment: the assets it covers, whether it runs, the occurrence running
    or next (None once it ended: the last one is over, or it was cancelled), and the alerts
    recorded against it when asked for."""

    window: MaintenanceWindow
    assets: list[str]
    active: bool
    occurrence: tuple[datetime, datetime] | None
    alerts: list[SuppressedAlert] | None = None


class WindowQueries:
    def __init__(self, windows: WindowStore, assets: Mapping[str, Asset], clock: Clock) -> None:
        self.store = windows
        self.assets = assets
        self.clock = clock

    def find(self, window_id: str) -> MaintenanceWindow | None:
        return next((w for w in self.store.windows() if w.id == window_id), None)

    def windows(
        self, client: str | None = None, include_cancelled: bool = False
    ) -> list[MaintenanceWindow]:
        """Windows by start: one client's, or every client's."""
        return [
            w for w in self.store.windows(client) if include_cancelled or w.cancelled_at is None
        ]

    def view(self, window: MaintenanceWindow, with_alerts: bool = False) -> WindowView:
        now = self.clock.now()
        occurrences = Occurrences(window)
        alerts = self.store.suppressed_alerts(window=window.id) if with_alerts else None
        return WindowView(
            window,
            covered_assets(window, self.assets),
            occurrences.at(now) is not None,
            occurrences.following(now),
            alerts,
        )


class PlanQueries:
    def __init__(self, plans: PlanStore) -> None:
        self.store = plans

    def find(self, plan_id: str) -> UpdatePlan | None:
        return self.store.get_plan(plan_id)

    def plans(self, client: str | None = None) -> list[UpdatePlan]:
        return self.store.plans(client)

    def steps(self, plan_id: str) -> list[StepRecord]:
        """Every runbook step the plan ran, in order."""
        return self.store.steps(plan_id)


class CalendarFeed:
    """Windows and update stages as iCalendar (RFC 5545)."""

    def __init__(
        self,
        windows: WindowStore,
        plans: PlanStore,
        clients: Mapping[str, Client],
        clock: Clock,
    ) -> None:
        self.windows = windows
        self.plans = plans
        self.clients = clients
        self.clock = clock

    def ics(self, client: str | None = None) -> bytes:
        """One client's windows and stages, or every client's."""
        return build_calendar(
            self.windows.windows(client), self.plans.plans(client), self.clients, self.clock.now()
        )
