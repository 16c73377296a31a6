"""Alertmanager as a source of alerts: its webhook notifications become the same alerts, in the
same lifecycle, as dyzur's own rules — one ticket per Alertmanager fingerprint and hospital,
resolved when Alertmanager says so, muted by maintenance windows, with the contract's deadline.

Alertmanager notifies a firing alert again and again (group changes, repeat_interval); only a
change reaches a ticket (``TicketLifecycle.apply_notified``), and a firing that started before
the alert's recorded resolution (an HA peer's late copy, a replay) is stale: it reopens nothing.
Each alert of a notification is a store transaction of its own.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from bridge.auth import Principal, Role
from bridge.config import AlertmanagerSettings
from bridge.metrics import BridgeMetrics
from bridge.models import Asset
from bridge.sources.samples import Rejection
from bridge.store.roles import Coordination
from bridge.tickets.changes import Attachment, Change, Stale, Suppression
from bridge.tickets.lifecycle import LifecycleError, TicketLifecycle
from rules.model import Alert, AlertState, Rule, Text, fingerprint

log = logging.getLogger(__name__)
RULE_PREFIX = "alertmanager:"
ANNOTATION_CHARS = 4000  # of a summary or description kept on the ticket
UNKNOWN_WARNED = 1024  # (alertname, asset labels) pairs remembered as already logged


class IncomingAlert(Protocol):
    """What the receiver reads of an alert of the webhook (read-only)."""

    @property
    def status(self) -> str: ...  # firing, resolved
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def annotations(self) -> Mapping[str, str]: ...
    @property
    def startsAt(self) -> datetime: ...
    @property
    def fingerprint(self) -> str | None: ...


@dataclass(slots=True)
class ReceiveResult:
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)


@lru_cache(maxsize=1024)
def alertmanager_rule(name: str) -> Rule:
    """The rule an Alertmanager alert fires under: its texts come from the alert's annotations."""
    alertname = name.removeprefix(RULE_PREFIX)
    summary = "annotations.get('summary') or labels.alertname"
    return Rule(
        name=name,
        category="usterka",
        title=Text(
            pl="{{ " + summary + " }} na {{ asset }} (Alertmanager)",
            en="{{ " + summary + " }} on {{ asset }} (Alertmanager)",
        ),
        description=Text(
            pl="Alert {{ labels.alertname }} z Alertmanagera. "
            "{{ annotations.get('description', '') }}",
            en="Alert {{ labels.alertname }} from Alertmanager. "
            "{{ annotations.get('description', '') }}",
        ),
        identity=("asset", "alertname"),
        source=f"alertmanager ({alertname})",
    )


def rule_of(name: str) -> Rule | None:
    return alertmanager_rule(name) if name.startswith(RULE_PREFIX) else None


def alert_identity(client: str, key: str) -> str:
    """The fingerprint of an Alertmanager alert in dyzur: Alertmanager's own fingerprint (a hash
    of the labels, which anyone can work out) within the hospital of the alert's asset, so one
    hospital's alert never names another's ticket. Client ids cannot contain ':'. Stores from
    before kept ``am-<key>``; their migration rewrites them to this form."""
    return f"am:{client}:{key}"


class AlertmanagerReceiver:
    def __init__(
        self,
        settings: AlertmanagerSettings,
        lifecycle: TicketLifecycle,
        coordination: Coordination,
        assets: Mapping[str, Asset],
        metrics: BridgeMetrics,
    ) -> None:
        self.settings = settings
        self.lifecycle = lifecycle
        self.coordination = coordination  # one transaction per notified alert
        self.assets = assets
        self.metrics = metrics
        # Alerts without an inventory asset already logged (oldest forgotten first).
        self._warned: OrderedDict[tuple[str, tuple[tuple[str, str], ...]], None] = OrderedDict()
        self._warned_lock = threading.Lock()

    def asset_of(self, labels: Mapping[str, str]) -> str | None:
        """The first configured label that names an inventory asset; ``instance`` values such
        as ``amms-01:9100`` or ``[::1]:9100`` are tried without their port too."""
        for label in self.settings.asset_labels:
            value = labels.get(label)
            if not value:
                continue
            host = value.rsplit(":", 1)[0].strip("[]") if ":" in value else value
            for candidate in (value, host):
                if candidate in self.assets:
                    return candidate
        return None

    def category_of(self, labels: Mapping[str, str]) -> str | None:
        for mapping in self.settings.categories:
            if all(labels.get(k) == v for k, v in mapping.match.items()):
                return mapping.category
        return self.settings.default_category

    def receive(self, alerts: Sequence[IncomingAlert], principal: Principal) -> ReceiveResult:
        scope = principal.client if principal.role is Role.AGENT else None
        result = ReceiveResult()
        for index, incoming in enumerate(alerts):
            rejection = self._one(index, incoming, scope)
            if rejection is None:
                result.accepted += 1
            else:
                result.rejected.append(rejection)
            outcome = "accepted" if rejection is None else rejection.reason
            self.metrics.alertmanager_alerts.labels(incoming.status, outcome).inc()
        return result

    def _one(self, index: int, incoming: IncomingAlert, scope: str | None) -> Rejection | None:
        labels = dict(incoming.labels)
        alertname = labels.get("alertname")
        if not alertname:
            return Rejection(index, "missing_alertname", "label 'alertname' is missing")
        asset_id = self.asset_of(labels)
        if asset_id is None:
            named = tuple((k, labels[k]) for k in self.settings.asset_labels if k in labels)
            tried = ", ".join(f"{k}={v!r}" for k, v in named) or "its labels"
            self._warn_unknown(alertname, named, tried)
            return Rejection(index, "unknown_asset", f"no inventory asset in {tried}")
        if scope is not None and self.assets[asset_id].client != scope:
            return Rejection(index, "forbidden_asset", f"asset {asset_id!r} is not yours")
        category = self.category_of(labels)
        if category is None:
            return Rejection(index, "no_category", "no category mapping matches its labels")
        labels["asset"] = asset_id
        name = f"{RULE_PREFIX}{alertname}"
        # Alertmanager's fingerprint (a hash of its labels) identifies the alert in its hospital.
        key = incoming.fingerprint or fingerprint(name, labels)
        alert = Alert(
            rule=name,
            fingerprint=alert_identity(self.assets[asset_id].client, key),
            labels=labels,
            state=AlertState.RESOLVED if incoming.status == "resolved" else AlertState.FIRING,
            category=category,
            value=float("nan"),
            active_since=incoming.startsAt.timestamp(),
            fired_at=incoming.startsAt.timestamp(),
            annotations={k: v[:ANNOTATION_CHARS] for k, v in incoming.annotations.items()},
        )
        try:  # texts, muting and deadline before the transaction
            prepared = self.lifecycle.prepare_notified(alert, alertmanager_rule(name))
        except LifecycleError as exc:
            return Rejection(index, "unknown_asset", str(exc))
        with self.coordination.transaction():
            change = self.lifecycle.apply_notified(prepared)
        if isinstance(change, Change | Suppression | Attachment):
            self.metrics.count_changes([change])
        elif isinstance(change, Stale):
            self.metrics.alertmanager_stale.labels(change.client).inc()
        return None

    def _warn_unknown(self, alertname: str, named: tuple[tuple[str, str], ...], tried: str) -> None:
        """Log an alert dropped for want of an asset once per alert name and asset labels (a UPS
        alert nobody would see otherwise); remembers a bounded number of them."""
        key = (alertname, named)
        with self._warned_lock:
            if key in self._warned:
                self._warned.move_to_end(key)
                return
            self._warned[key] = None
            if len(self._warned) > UNKNOWN_WARNED:
                self._warned.popitem(last=False)
        log.warning(
            "Alertmanager alert %r dropped: no inventory asset in %s (alertmanager.asset_labels: "
            "%s); add the asset to the inventory or fix its labels",
            alertname,
            tried,
            ", ".join(self.settings.asset_labels),
        )
