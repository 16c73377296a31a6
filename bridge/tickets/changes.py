"""What the lifecycle did with an alert: a ticket changed, an alert recorded against a window,
an alert held or attached by the incidents, a stale notification."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.models import IncidentAlert, SuppressedAlert, Ticket


@dataclass(frozen=True, slots=True)
class Change:
    """What the lifecycle did with a transition: the ticket and the action taken on it."""

    ticket: Ticket
    action: str  # opened, refired, reopened, escalated, recovered, resolved
    # Seconds from the alert firing to this ticket opening (opened and reopened only).
    latency: float | None = None


@dataclass(frozen=True, slots=True)
class Suppression:
    """What the lifecycle did with an alert of an asset in a maintenance window: no ticket."""

    alert: SuppressedAlert
    action: str  # suppressed (recorded against the window), recovered (inside the window)


@dataclass(frozen=True, slots=True)
class Stale:
    """A notified firing not newer than the resolution already recorded for its alert (a late
    copy from an Alertmanager HA peer, a replay): it opens and reopens nothing."""

    client: str
    ticket: Ticket | None  # the resolved ticket that notes it on its timeline
    resolved_at: datetime


@dataclass(frozen=True, slots=True)
class Attachment:
    """What the lifecycle did with an alert that has no ticket of its own: held, attached,
    recovered there (``action``), with the record."""

    alert: IncidentAlert
    action: str  # held, attached, refired, recovered
