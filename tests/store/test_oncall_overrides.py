"""The on-call overrides role: periods of one person's shifts handed to another, kept with who
asked and why, found by the period they overlap."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from bridge.store.roles import OncallOverride
from tests.conftest import START


def override(hours_from: int, hours_to: int, person: str = "bartek", **kw) -> OncallOverride:
    fields: dict = dict(
        rota="primary",
        shift_person="anna",
        client=None,
        reason="choroba",
        created_by="cli:kasia",
        created_at=START,
    )
    fields.update(kw)
    return OncallOverride(
        shift_person=fields.pop("shift_person"),
        person=person,
        start=START + timedelta(hours=hours_from),
        end=START + timedelta(hours=hours_to),
        **fields,
    )


def test_an_override_is_kept_whole_with_an_id(store):
    assert store.oncall_overrides() == []
    given = override(0, 24, client="szpital-a", rota="secondary")
    kept = store.add_oncall_override(given)
    assert kept.id > 0
    assert store.oncall_overrides() == [replace(given, id=kept.id)]


def test_later_overrides_get_higher_ids_and_come_later(store):
    first = store.add_oncall_override(override(0, 24))
    second = store.add_oncall_override(override(0, 24, person="celina"))
    assert second.id > first.id
    assert [o.person for o in store.oncall_overrides()] == ["bartek", "celina"]


def test_overrides_are_found_by_the_period_they_overlap(store):
    early = store.add_oncall_override(override(0, 10))
    late = store.add_oncall_override(override(20, 30))

    def at(hours: int):
        return START + timedelta(hours=hours)

    assert store.oncall_overrides(at(5), at(6)) == [early]
    # The end is exclusive on both sides: an override ending at 10:00 is over at 10:00.
    assert store.oncall_overrides(at(10), at(20)) == []
    assert store.oncall_overrides(at(9), at(21)) == [early, late]
    assert store.oncall_overrides(start=at(25)) == [late]
    assert store.oncall_overrides(end=at(1)) == [early]
