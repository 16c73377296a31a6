"""The bridge's domain: clients, contracts, assets, tickets and their categories."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Category(StrEnum):
    """Ticket categories of the service contract (DESIGN.md); the codes are used everywhere."""

    AWARIA = "awaria"
    USTERKA = "usterka"
    ADMINISTRACJA = "administracja"
    KONSULTACJA = "konsultacja"
    AKTUALIZACJA = "aktualizacja"
    UTRZYMANIE = "utrzymanie"

    @property
    def severity(self) -> int:
        """Rank for escalation: a category may only be upgraded to a higher rank."""
        return _SEVERITY.get(self, 0)


# Only the categories alerts can open are ranked; the others are never escalated.
_SEVERITY = {Category.UTRZYMANIE: 1, Category.USTERKA: 2, Category.AWARIA: 3}


class TicketStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


Language = Literal["pl", "en"]
Environment = Literal["test", "prod"]
AssetKind = Literal["server", "storage", "ups", "amms", "network", "other"]
ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Contract(_Strict):
    """The client's terms. Service hours and reaction times are used by the SLA clock."""

    hours: Literal["standard", "24/7"] = "standard"
    language: Language = "pl"


class Client(_Strict):
    """One hospital or clinic under contract."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    contract: Contract = Contract()


class Asset(_Strict):
    """Something watched; belongs to one client."""

    id: str = Field(pattern=ID_PATTERN)
    client: str
    kind: AssetKind = "server"
    environment: Environment = "prod"
    depends_on: str | None = None
    name: str | None = None
    # Whether the asset pushes samples itself; only such assets can go "silent".
    reports: bool = True


@dataclass(slots=True)
class TimelineEntry:
    """One line of a ticket's history: what happened, when, and who did it."""

    at: datetime
    kind: str  # opened, refired, escalated, recovered, resolved, reopened, acknowledged
    message: str
    actor: str = "dyzur"


@dataclass(slots=True)
class Ticket:
    """A service ticket opened by dyzur for one alert (rule + identifying labels)."""

    number: str
    client: str
    asset: str
    rule: str
    fingerprint: str
    category: Category
    status: TicketStatus
    title: str
    description: str
    opened_at: datetime
    updated_at: datetime
    labels: dict[str, str] = field(default_factory=dict)
    fire_count: int = 1
    last_value: float | None = None
    resolved_at: datetime | None = None
    responded_at: datetime | None = None
    responded_by: str | None = None
    reaction_due: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.status is TicketStatus.OPEN


@dataclass(slots=True)
class AgentStream:
    """What the bridge knows of one agent's numbered batches: proof that each arrived once.

    An agent numbers its batches 1, 2, 3, ... per spool (``agent_id`` is new with each spool).
    A batch at or below ``last_seq`` is a duplicate (a retry whose answer was lost) and is not
    evaluated again; a jump counts the batches the agent dropped from a full spool as ``gaps``.
    """

    agent_id: str
    asset: str
    last_seq: int
    batches: int
    samples: int
    duplicates: int
    gaps: int
    dropped_reported: int  # samples the agent says it dropped from its full spool, cumulative
    first_seen: datetime
    last_seen: datetime


def ticket_number(year: int, sequence: int) -> str:
    """Human-readable, stable ticket number, e.g. DZ-2026-000123."""
    return f"DZ-{year}-{sequence:06d}"
