"""The rule model and the alert it produces. Plain data: no I/O, no clock."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

# Ticket categories a rule may open, mildest first; escalation only moves right.
# The codes are the same as bridge.models.Category (DESIGN.md: one code everywhere).
RULE_CATEGORIES: tuple[str, ...] = ("utrzymanie", "usterka", "awaria")

COMPARISONS: tuple[str, ...] = (">", ">=", "<", "<=", "==", "!=")
MATCH_OPS: tuple[str, ...] = ("=", "!=", "=~", "!~")


class AlertState(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Condition:
    """``value <op> threshold``, for example ``> 0.9``."""

    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.op} {self.threshold:g}"


@dataclass(frozen=True, slots=True)
class Matcher:
    """A label matcher as in PromQL; regular expressions are anchored at both ends."""

    label: str
    op: str
    value: str


@dataclass(frozen=True, slots=True)
class Escalation:
    """While firing, upgrade the category when ``condition`` has held for ``for_seconds``."""

    condition: Condition
    category: str
    for_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Text:
    """A Jinja2 template in both languages a ticket may be written in."""

    pl: str
    en: str


@dataclass(frozen=True, slots=True)
class Rule:
    """One loaded and validated rule.

    A threshold rule has ``metric`` and ``condition``; an absence rule has ``absent_seconds``
    and fires per asset when nothing (or nothing of ``metric``, when given) arrived for that long.
    """

    name: str
    category: str
    title: Text
    description: Text
    metric: str | None = None
    matchers: tuple[Matcher, ...] = ()
    condition: Condition | None = None
    for_seconds: float = 0.0
    clear: Condition | None = None
    escalation: Escalation | None = None
    # Labels that identify one alert of this rule (and so one ticket); always includes "asset".
    identity: tuple[str, ...] = ("asset",)
    # On recovery leave the ticket open for an engineer instead of resolving it.
    keep_open: bool = False
    absent_seconds: float | None = None
    # The incident group: firing alerts of one asset in one group share one ticket.
    group: str | None = None
    # "file:line" where the rule was defined, for error messages.
    source: str = ""


def fingerprint(rule_name: str, labels: Mapping[str, str]) -> str:
    """Stable id of one alert: a hash of the rule and its identifying labels, order-free."""
    h = hashlib.sha256(rule_name.encode())
    for key in sorted(labels):
        h.update(b"\x00")
        h.update(key.encode())
        h.update(b"=")
        h.update(labels[key].encode())
    return h.hexdigest()[:16]


@dataclass(slots=True)
class Alert:
    """The state of one alert: one rule on one set of identifying labels."""

    rule: str
    fingerprint: str
    labels: dict[str, str]
    state: AlertState
    category: str
    value: float
    active_since: float  # when the condition first held (pending start), epoch seconds
    fired_at: float | None = None
    resolved_at: float | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def asset(self) -> str | None:
        return self.labels.get("asset")


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of an alert's state, returned by the engine for the bridge to act on.

    ``alert`` is a snapshot taken at the transition. ``escalated`` is set on a
    firing -> firing change that upgraded the category.
    """

    alert: Alert
    previous: AlertState | None
    state: AlertState
    at: float
    escalated: bool = False
