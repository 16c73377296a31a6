"""The outbox cursors role: how far each consumer got, moved only with a fencing token at
least as new as the one that moved it last."""

from __future__ import annotations

from bridge.store.roles import Cursor


def test_a_consumer_starts_at_the_beginning(store):
    assert store.cursor("siem:soc") == Cursor(0, 0)


def test_cursors_move_per_consumer_with_a_fencing_token(store):
    assert store.set_cursor("siem:soc", Cursor(10, 2), 1)
    assert store.set_cursor("sink:redmine", Cursor(4), 7)
    assert store.cursor("siem:soc") == Cursor(10, 2)
    assert store.cursor("sink:redmine") == Cursor(4, 0)
    assert store.set_cursor("siem:soc", Cursor(12), 1)  # the same holder moves it on
    assert store.set_cursor("siem:soc", Cursor(15), 2)  # a newer holder too
    assert not store.set_cursor("siem:soc", Cursor(99), 1)  # the old holder no longer
    assert store.cursor("siem:soc") == Cursor(15, 0)
    assert store.cursor("sink:redmine") == Cursor(4, 0)
