"""What people do with the rota: ask who is on duty, list the gaps of the 24/7 hospitals'
coverage, hand a period of a shift to another person (an override, audited with who and why),
and read a person's calendar. ``dyzur oncall`` and ``/api/v1/oncall`` use this and nothing
else; the pager asks ``rota`` directly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, get_args

from bridge.actions import Action
from bridge.clock import Clock, local_iso
from bridge.delivery.oncall.calendar import AHEAD, PAST, person_calendar
from bridge.delivery.oncall.rota import PRIMARY, Duty, Gap, Rota, coverage_gaps, local_minute
from bridge.errors import Invalid, NotFound
from bridge.models import Asset, AssetKind, AuditEvent, Client
from bridge.store.roles import AuditLog, Coordination, OncallOverride, OncallOverrides

if TYPE_CHECKING:
    from bridge.config import OncallSettings

__all__ = ["DutyRow", "OncallDesk", "OncallOverride", "PersonNotFound", "SwapRequest"]

ASSET_KINDS: tuple[str, ...] = get_args(AssetKind)
# The longest override: a period handed for longer belongs in the shifts of the config.
LONGEST_OVERRIDE = timedelta(days=92)


class OverrideStore(OncallOverrides, AuditLog, Coordination, Protocol):
    """The roles the desk uses: overrides, and the audit event written with each."""


class PersonNotFound(NotFound):
    def __init__(self, person: str) -> None:
        super().__init__(f"no person {person!r} in oncall.people")


@dataclass(frozen=True, slots=True)
class DutyRow:
    """Who is on duty in one rota for one hospital and asset kind (None: nobody)."""

    rota: str
    client: str
    kind: str
    duty: Duty | None


@dataclass(frozen=True, slots=True)
class SwapRequest:
    """Hand ``shift_person``'s duty in ``rota`` (for ``client``, or all of it) from ``start``
    to ``end`` (aware) to ``person``, because of ``reason``."""

    shift_person: str
    person: str
    start: datetime
    end: datetime
    reason: str
    client: str | None = None
    rota: str = PRIMARY


class OncallDesk:
    def __init__(
        self,
        settings: OncallSettings,
        store: OverrideStore,
        clients: Mapping[str, Client],
        assets: Mapping[str, Asset],
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clients = clients
        self.assets = assets
        self.clock = clock
        # Reads the overrides from the store at each question: one written by `dyzur oncall
        # swap` in another process counts at once.
        self.rota = Rota(settings, store)

    def kinds_of(self, client: str) -> list[str]:
        """The asset kinds a hospital has, in the order of AssetKind."""
        present = {a.kind for a in self.assets.values() if a.client == client}
        return [k for k in ASSET_KINDS if k in present]

    def on_duty(
        self, at: datetime, client: str | None = None, kind: str | None = None
    ) -> list[DutyRow]:
        """Who is on duty at ``at`` in every rota, for ``client`` (else every hospital) and
        ``kind`` (else each kind of the hospital's assets); nobody is a row too."""
        if client is not None and client not in self.clients:
            raise Invalid(f"client: unknown client {client!r}")
        if kind is not None and kind not in ASSET_KINDS:
            raise Invalid(f"kind: unknown asset kind {kind!r} (kinds: {', '.join(ASSET_KINDS)})")
        rows = []
        for client_id in [client] if client is not None else sorted(self.clients):
            for k in [kind] if kind is not None else self.kinds_of(client_id):
                for rota in self.rota.rotas or [PRIMARY]:
                    rows.append(
                        DutyRow(rota, client_id, k, self.rota.on_duty(rota, client_id, k, at))
                    )
        return rows

    def gaps(self, start: datetime, end: datetime, client: str | None = None) -> list[Gap]:
        """Periods in [start, end) a 24/7 hospital's asset kind has nobody on duty in the
        primary rota."""
        clients = [c for c in self.clients.values() if client is None or c.id == client]
        return coverage_gaps(self.rota, clients, self.assets.values(), start, end)

    def swap(self, request: SwapRequest, actor: str) -> OncallOverride:
        """Keep an override and its audit event (``oncall.override``: who, whose duty to whom,
        the period and why) in one transaction; Invalid naming the field when refused."""
        r = request
        now = self.clock.now()
        self._check(r, now)
        override = OncallOverride(
            rota=r.rota,
            shift_person=r.shift_person,
            person=r.person,
            start=r.start,
            end=r.end,
            client=r.client,
            reason=r.reason,
            created_by=actor,
            created_at=now,
        )
        with self.store.transaction():
            override = self.store.add_oncall_override(override)
            self.store.append_audit(
                AuditEvent(
                    at=now,
                    actor=actor,
                    action=Action.ONCALL_OVERRIDE,
                    client=r.client,
                    detail={
                        "override": override.id,
                        "rota": r.rota,
                        "shift_person": r.shift_person,
                        "person": r.person,
                        "start": local_iso(r.start),
                        "end": local_iso(r.end),
                        "reason": r.reason,
                    },
                )
            )
        return override

    def _check(self, r: SwapRequest, now: datetime) -> None:
        people = {p.id for p in self.settings.people}
        for field, person in (("shift_person", r.shift_person), ("person", r.person)):
            if person not in people:
                raise Invalid(f"{field}: unknown person {person!r}")
        if r.client is not None and r.client not in self.clients:
            raise Invalid(f"client: unknown client {r.client!r}")
        rotas = self.rota.rotas
        if r.rota not in rotas:
            raise Invalid(
                f"rota: no shift is in rota {r.rota!r} (rotas: {', '.join(rotas) or 'none'})"
            )
        if not r.reason.strip():
            raise Invalid("reason: say why (it is kept in the audit trail)")
        if r.end <= r.start:
            raise Invalid("end: must be after start")
        if r.end <= now:
            raise Invalid(f"end: {local_minute(r.end)} is over already")
        if r.end - r.start > LONGEST_OVERRIDE:
            raise Invalid(
                f"end: an override lasts at most {LONGEST_OVERRIDE.days} days; "
                "change the shifts in the config for longer"
            )
        if not self.rota.has_shift(r.rota, r.shift_person, r.client, r.start, r.end):
            of = f" for {r.client}" if r.client else ""
            raise Invalid(
                f"shift_person: {r.shift_person!r} has no shift in rota {r.rota}{of} from "
                f"{local_minute(r.start)} to {local_minute(r.end)}; nothing to hand over"
            )

    def ics(self, person: str) -> bytes:
        """The person's periods on duty from two weeks ago to four months ahead."""
        found = next((p for p in self.settings.people if p.id == person), None)
        if found is None:
            raise PersonNotFound(person)
        now = self.clock.now()
        assignments = self.rota.schedule(person, now - PAST, now + AHEAD)
        return person_calendar(found.id, found.name, found.language, assignments, self.clients, now)
