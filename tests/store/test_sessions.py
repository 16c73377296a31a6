"""The sessions role: the pages' sessions kept by the hash of their id, and the failed logins
and lockouts that guard them, shared by every bridge on the store."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from bridge.store import StoreError
from bridge.store.roles import WebSession
from tests.conftest import START


def session(n: int = 1, **kw: object) -> WebSession:
    fields: dict = dict(
        id_hash=f"{n:064x}",
        user="anna",
        credential="c" * 16,
        source="10.0.0.1",
        created_at=START,
        seen_at=START,
    )
    fields.update(kw)
    return WebSession(**fields)


def at(minutes: float):
    return START + timedelta(minutes=minutes)


def test_a_session_is_kept_whole_and_found_by_its_hash(store):
    assert store.web_session(session().id_hash) is None
    store.add_session(session(1))
    store.add_session(session(2, user="bartek", source="10.0.0.2"))
    assert store.web_session(session(1).id_hash) == session(1)
    assert store.web_session(session(2).id_hash).user == "bartek"


def test_a_second_session_with_the_same_hash_is_refused(store):
    store.add_session(session(1))
    with pytest.raises(StoreError):
        store.add_session(session(1, user="bartek"))
    assert store.web_session(session(1).id_hash).user == "anna"


def test_touching_a_session_moves_its_last_use_forward_only(store):
    store.add_session(session(1))
    store.touch_session(session(1).id_hash, at(5))
    assert store.web_session(session(1).id_hash).seen_at == at(5)
    store.touch_session(session(1).id_hash, at(2))  # a slower bridge's older touch
    assert store.web_session(session(1).id_hash) == replace(session(1), seen_at=at(5))
    store.touch_session("f" * 64, at(5))  # none such: nothing happens
    assert store.web_session("f" * 64) is None


def test_ending_a_session_deletes_it_once(store):
    store.add_session(session(1))
    assert store.end_session(session(1).id_hash) is True
    assert store.web_session(session(1).id_hash) is None
    assert store.end_session(session(1).id_hash) is False


def test_two_ends_at_once_one_of_them_ends_it(store):
    store.add_session(session(1))
    results: list[bool] = []
    barrier = threading.Barrier(2)

    def end() -> None:
        barrier.wait()
        results.append(store.end_session(session(1).id_hash))

    threads = [threading.Thread(target=end) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]


def test_expired_sessions_end_by_last_use_or_by_start(store):
    store.add_session(session(1, seen_at=at(10)))  # idle since 10
    store.add_session(session(2, created_at=at(-100), seen_at=at(50)))  # old, still used
    store.add_session(session(3, created_at=at(40), seen_at=at(50)))  # fresh
    assert store.end_sessions(seen_before=at(20), created_before=at(0)) == 2
    assert store.web_session(session(1).id_hash) is None
    assert store.web_session(session(2).id_hash) is None
    assert store.web_session(session(3).id_hash) == session(3, created_at=at(40), seen_at=at(50))
    assert store.end_sessions(seen_before=at(20), created_before=at(0)) == 0


def test_failed_logins_are_counted_per_key_since_a_time(store):
    assert store.login_failures("user:x", at(-60)) == []
    for minute in (0, 1, 2):
        store.add_login_failure("user:x", at(minute))
    store.add_login_failure("source:10.0.0.1", at(1))
    assert store.login_failures("user:x", at(-60)) == [at(0), at(1), at(2)]
    # After ``since``, not at it: a failure exactly a window old is out of the window.
    assert store.login_failures("user:x", at(1)) == [at(2)]
    assert store.login_failures("source:10.0.0.1", at(-60)) == [at(1)]


def test_a_failure_counted_ahead_can_be_taken_back(store):
    first = store.add_login_failure("user:x", at(0))
    second = store.add_login_failure("user:x", at(0))
    assert first != second
    store.remove_login_failure(second)
    assert store.login_failures("user:x", at(-1)) == [at(0)]


def test_clearing_forgets_only_that_keys_failures(store):
    store.add_login_failure("user:x", at(0))
    store.add_login_failure("user:y", at(0))
    store.clear_login_failures("user:x")
    assert store.login_failures("user:x", at(-1)) == []
    assert store.login_failures("user:y", at(-1)) == [at(0)]


def test_a_lock_holds_until_its_time_and_a_later_lock_replaces_it(store):
    assert store.login_locked_until("user:x") is None
    store.lock_login("user:x", at(15))
    assert store.login_locked_until("user:x") == at(15)
    assert store.login_locked_until("user:y") is None
    store.lock_login("user:x", at(30))
    assert store.login_locked_until("user:x") == at(30)


def test_forgetting_drops_old_failures_and_ended_locks(store):
    store.add_login_failure("user:x", at(0))
    store.add_login_failure("user:x", at(20))
    store.lock_login("user:x", at(15))
    store.lock_login("source:10.0.0.1", at(40))
    assert store.forget_logins(at(15)) == 2
    assert store.login_failures("user:x", at(-1)) == [at(20)]
    assert store.login_locked_until("user:x") is None
    assert store.login_locked_until("source:10.0.0.1") == at(40)


def test_failures_and_locks_join_a_transaction(store):
    """The login service counts an attempt and reads the lock in one transaction: rolled back,
    nothing of it stays."""
    with pytest.raises(RuntimeError), store.transaction():
        store.add_login_failure("user:x", at(0))
        store.lock_login("user:x", at(15))
        raise RuntimeError("boom")
    assert store.login_failures("user:x", at(-1)) == []
    assert store.login_locked_until("user:x") is None


def test_sessions_are_shared_by_two_handles_on_one_store(store, tmp_path, request):
    """A second bridge (another handle on the same store) sees the session and the lock."""
    from tests.conftest import STORE_FACTORIES

    other = STORE_FACTORIES[request.node.callspec.params["store"]](tmp_path)
    try:
        store.add_session(session(1))
        store.lock_login("source:10.0.0.9", at(15))
        assert other.web_session(session(1).id_hash) == session(1)
        assert other.login_locked_until("source:10.0.0.9") == at(15)
        assert other.end_session(session(1).id_hash) is True
        assert store.web_session(session(1).id_hash) is None
    finally:
        other.close()
