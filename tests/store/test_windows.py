"""The windows role: maintenance windows (cancelled, never deleted) and the alerts recorded
against them, one firing record per alert."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.models import Category
from bridge.store import StoreError
from tests.conftest import START


def test_windows_are_kept_whole_and_cancelled_not_deleted(store):
    from bridge.models import MaintenanceWindow

    w = MaintenanceWindow(
        "OS-2026-0001", "szpital-a", START, START + timedelta(hours=4), "aktualizacja",
        selector={"environment": "test"}, rrule="FREQ=WEEKLY", ticket="DZ-2026-000001",
        created_by="jan", created_at=START,
    )  # fmt: skip
    store.save_window(w)
    store.save_window(
        MaintenanceWindow("OS-2026-0002", "klinika-b", START, START, "x", assets=["srv-b1"])
    )
    assert store.windows("szpital-a") == [w]
    w.cancelled_at, w.cancelled_by = START + timedelta(hours=1), "anna"
    store.save_window(w)
    assert [x.cancelled_by for x in store.windows()] == ["anna", None]


def test_suppressed_alerts_one_firing_record_per_alert(store):
    from bridge.models import SuppressedAlert, SuppressedState

    def record(**kw):
        fields = dict(
            fingerprint="fp1", window="OS-2026-0001", client="szpital-a", asset="srv-a1",
            rule="disk_usage", category=Category.USTERKA, labels={"asset": "srv-a1"},
            value=0.95, fired_at=START, until=START + timedelta(hours=1),
        )  # fmt: skip
        return SuppressedAlert(**{**fields, **kw})

    first = store.save_suppressed(record())
    assert first.id is not None
    with pytest.raises(StoreError, match=r"(?i)unique constraint"):
        store.save_suppressed(record())  # a second firing record of the same alert
    first.state, first.recovered_at = SuppressedState.RECOVERED, START + timedelta(minutes=5)
    store.save_suppressed(first)
    store.save_suppressed(record(fired_at=START + timedelta(minutes=9)))
    assert [r.state for r in store.suppressed_alerts(fingerprint="fp1")] == [
        SuppressedState.RECOVERED,
        SuppressedState.FIRING,
    ]
    assert store.suppressed_alerts(until_before=START) == []
    assert len(store.suppressed_alerts(window="OS-2026-0001", state=SuppressedState.FIRING)) == 1
