"""The pending alerts role: the timers of alerts whose rule's ``for:`` is still running, kept
per hospital so that the bridge taking a hospital over goes on with them."""

from __future__ import annotations

import math

from bridge.store import Store
from rules.model import Alert, AlertState


def _pending(fp: str, asset: str, since: float, value: float = 0.97) -> Alert:
    return Alert(
        rule="disk_usage",
        fingerprint=fp,
        labels={"asset": asset, "mountpoint": "/var"},
        state=AlertState.PENDING,
        category="usterka",
        value=value,
        active_since=since,
    )


def test_pending_alerts_are_kept_per_hospital_until_they_fire_or_resolve(store: Store):
    assert store.pending_alerts() == []
    store.save_pending(
        {
            "fp-a1": ("szpital-a", _pending("fp-a1", "srv-a1", 1000.5)),
            "fp-a2": ("szpital-a", _pending("fp-a2", "srv-a2", 1001.0)),
            "fp-b1": ("klinika-b", _pending("fp-b1", "srv-b1", 1002.0, math.nan)),
        }
    )
    kept = store.pending_alerts("szpital-a")
    assert [a.fingerprint for a in kept] == ["fp-a1", "fp-a2"]
    assert kept[0] == _pending("fp-a1", "srv-a1", 1000.5)  # the timer's start, to the digit
    assert all(a.state is AlertState.PENDING for a in kept)
    (other,) = store.pending_alerts("klinika-b")
    assert math.isnan(other.value)  # no value is kept as none, and read as NaN
    # fp-a1 fired (forgotten), fp-a2's value changed (kept, its start unchanged).
    store.save_pending(
        {"fp-a1": None, "fp-a2": ("szpital-a", _pending("fp-a2", "srv-a2", 1001.0, 0.99))}
    )
    (left,) = store.pending_alerts("szpital-a")
    assert left.fingerprint == "fp-a2" and left.value == 0.99 and left.active_since == 1001.0
    assert len(store.pending_alerts()) == 2
    store.save_pending({"fp-unknown": None})  # forgetting what was never kept is fine


def test_pending_alerts_are_written_with_their_transaction(store: Store):
    try:
        with store.transaction():
            store.save_pending({"fp-a1": ("szpital-a", _pending("fp-a1", "srv-a1", 1000.0))})
            raise RuntimeError("the batch failed")
    except RuntimeError:
        pass
    assert store.pending_alerts() == []
