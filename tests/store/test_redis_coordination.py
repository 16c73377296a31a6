"""Leases in Redis (``bridge.store.redis_coordination``) against a real Redis: the one on
127.0.0.1:6379 (a key prefix per test), and a redis-server of the test's own where it is
killed and started again."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from bridge.store.base import StoreError
from bridge.store.redis_coordination import CoordinationError, RedisCoordination
from bridge.store.sqlite import SQLiteStore
from tests.conftest import free_port, need_binary

REDIS = "redis://127.0.0.1:6379/0"
MakeCoordination = Callable[..., RedisCoordination]


@pytest.fixture
def sequences(tmp_path: Path) -> Iterator[SQLiteStore]:
    """The durable store whose sequences give the tokens."""
    store = SQLiteStore(tmp_path / "s.db")
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def coordination(sequences: SQLiteStore) -> Iterator[MakeCoordination]:
    """Makes bridges' coordinations sharing one fresh prefix (its keys deleted afterwards)."""
    prefix = f"test-{uuid.uuid4().hex}"
    made: list[RedisCoordination] = []

    def make(url: str = REDIS, tokens: Callable[[str], int] | None = None) -> RedisCoordination:
        made.append(RedisCoordination(url, prefix=prefix, tokens=tokens or sequences.next_sequence))
        return made[-1]

    yield make
    client = redis.Redis.from_url(REDIS)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()
    for c in made:
        c.close()


def wait_for(what: Callable[[], object]) -> object:
    """Poll until ``what()`` is truthy (expiry runs on Redis' clock); its value."""
    deadline = time.monotonic() + 10
    while not (value := what()):
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)
    return value


def test_the_same_owner_keeps_its_token_and_another_owner_waits(
    coordination: MakeCoordination,
) -> None:
    a, b = coordination(), coordination()
    token = a.lease("outbox", "bridge-a", 30, now=0)
    assert token is not None
    assert a.lease("outbox", "bridge-a", 30, now=0) == token
    assert b.lease("outbox", "bridge-b", 30, now=1e12) is None  # `now` does not decide
    assert b.lease("outbox", "bridge-a", 30, now=0) == token  # the owner, from any client
    assert [(n, h[:2]) for n, h in b.holders().items()] == [("outbox", ("bridge-a", token))]


def test_an_expired_lease_goes_to_another_owner_with_a_larger_token(
    coordination: MakeCoordination,
) -> None:
    c = coordination()
    first = c.lease("plan:P1", "bridge-a", 0.3, now=0)
    assert first is not None
    second = wait_for(lambda: c.lease("plan:P1", "bridge-b", 30, now=0))
    assert isinstance(second, int) and second > first
    assert c.lease("plan:P1", "bridge-a", 30, now=0) is None


def test_the_owner_taking_its_expired_lease_again_gets_a_larger_token(
    coordination: MakeCoordination,
) -> None:
    c = coordination()
    first = c.lease("outbox", "bridge-a", 0.3, now=0)
    assert first is not None
    wait_for(lambda: not c.holders())
    again = c.lease("outbox", "bridge-a", 30, now=0)
    assert again is not None and again > first


def test_a_released_lease_is_taken_at_once_with_a_larger_token(
    coordination: MakeCoordination,
) -> None:
    c = coordination()
    first = c.lease("outbox", "bridge-a", 30, now=0)
    assert first is not None
    c.release_lease("outbox", "bridge-b")  # not the owner: nothing happens
    assert c.lease("outbox", "bridge-b", 30, now=0) is None
    c.release_lease("outbox", "bridge-a")
    assert c.holders() == {}
    second = c.lease("outbox", "bridge-b", 30, now=0)
    assert second is not None and second > first


def race(bridges: list[RedisCoordination], name: str) -> dict[str, int | None]:
    """Every bridge asks for the lease at the same moment: owner -> answer."""
    start = threading.Barrier(len(bridges))
    answers: dict[str, int | None] = {}

    def take(c: RedisCoordination, owner: str) -> None:
        start.wait()
        answers[owner] = c.lease(name, owner, 30, now=0)

    threads = [
        threading.Thread(target=take, args=(c, f"bridge-{i}")) for i, c in enumerate(bridges)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == len(bridges)
    return answers


def test_of_bridges_racing_for_a_free_lease_exactly_one_wins(
    coordination: MakeCoordination,
) -> None:
    bridges = [coordination() for _ in range(8)]
    for round_ in range(5):
        name = f"race-{round_}"
        winners = {o: t for o, t in race(bridges, name).items() if t is not None}
        assert len(winners) == 1
        [(owner, token)] = winners.items()
        assert bridges[0].holders()[name][:2] == (owner, token)


def test_a_token_taken_before_a_pause_is_never_installed_after_a_larger_one(
    coordination: MakeCoordination, sequences: SQLiteStore
) -> None:
    """A bridge that took its token, then paused until its claim lapsed and another bridge
    held (and released) the lease with the next token, must not hold it with the older one."""
    taken, resume = threading.Event(), threading.Event()

    def paused_tokens(name: str) -> int:
        token = sequences.next_sequence(name)
        taken.set()
        resume.wait(10)
        return token

    slow, other = coordination(tokens=paused_tokens), coordination()
    result: list[int | None] = []
    thread = threading.Thread(
        target=lambda: result.append(slow.lease("outbox", "bridge-a", 0.3, now=0))
    )
    thread.start()
    assert taken.wait(10)
    newer = wait_for(lambda: other.lease("outbox", "bridge-b", 30, now=0))
    assert isinstance(newer, int)
    other.release_lease("outbox", "bridge-b")
    resume.set()
    thread.join()
    assert result[0] is None or result[0] > newer
    assert all(token > newer for _, token, _ in other.holders().values())


def test_a_failing_sequence_leaves_the_lease_free(coordination: MakeCoordination) -> None:
    def broken(name: str) -> int:
        raise StoreError("the store does not answer")

    with pytest.raises(StoreError):
        coordination(tokens=broken).lease("outbox", "bridge-a", 30, now=0)
    assert coordination().lease("outbox", "bridge-b", 30, now=0) is not None


def test_heartbeats_expire(coordination: MakeCoordination) -> None:
    c = coordination()
    c.heartbeat("bridge-a", 0.3, {"version": "1.2"})
    c.heartbeat("bridge-b", 30, {"version": "1.3", "address": "10.0.0.2"})
    assert c.members() == {
        "bridge-a": {"version": "1.2"},
        "bridge-b": {"version": "1.3", "address": "10.0.0.2"},
    }
    wait_for(lambda: "bridge-a" not in c.members())
    assert c.members() == {"bridge-b": {"version": "1.3", "address": "10.0.0.2"}}


def test_a_redis_that_does_not_answer_is_a_coordination_error_without_the_password(
    coordination: MakeCoordination,
) -> None:
    c = coordination(f"redis://dyzur:s3cret@127.0.0.1:{free_port()}/0")
    for call in (c.ping, lambda: c.lease("outbox", "bridge-a", 30, now=0), c.members):
        with pytest.raises(CoordinationError) as error:
            call()
        assert "s3cret" not in str(error.value) and "127.0.0.1" in str(error.value)


def start_redis(binary: str, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)

    def answers() -> bool:
        assert server.poll() is None, "redis-server exited"
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_for(answers)
    client.close()
    return server


def test_tokens_never_go_back_after_redis_restarts(coordination: MakeCoordination) -> None:
    binary, port = need_binary("redis-server"), free_port()
    server = start_redis(binary, port)
    try:
        c = coordination(f"redis://127.0.0.1:{port}/0")
        for _ in range(3):  # the token is past 1, where a sequence kept in Redis would restart
            c.release_lease("outbox", "bridge-a")
            before = c.lease("outbox", "bridge-a", 30, now=0)
        assert before is not None and before > 1
        other = c.lease("plan:P1", "bridge-b", 30, now=0)
        assert other is not None

        server.kill()
        server.wait()
        with pytest.raises(CoordinationError):
            c.lease("outbox", "bridge-a", 30, now=0)
        server = start_redis(binary, port)

        # Redis forgot both leases: the same owner, and another, take them with larger tokens.
        again = c.lease("outbox", "bridge-a", 30, now=0)
        assert again is not None and again > before
        taken = c.lease("plan:P1", "bridge-c", 30, now=0)
        assert taken is not None and taken > other
    finally:
        server.kill()
        server.wait()


# --- the hand-over streams ---------------------------------------------------------------------


def test_a_handed_over_batch_is_read_by_the_holder_and_its_answer_reaches_the_sender(
    coordination: MakeCoordination,
) -> None:
    sender, holder = coordination(), coordination()
    answers: list[str | None] = []

    def send() -> None:
        answers.append(sender.hand_over("szpital-a", {"batch": "1"}, "r1", 10, 1000))

    thread = threading.Thread(target=send)
    thread.start()
    (entry,) = wait_for(
        lambda: holder.read_handed(["szpital-a"], "holder", count=10, block=0.2, min_idle=5)
    )  # type: ignore[misc]
    assert entry.stream == "szpital-a" and entry.fields["batch"] == "1" and entry.deliveries == 1
    assert holder.stream_lag() == {"szpital-a": 1}  # read, not acknowledged yet
    holder.answer(entry.fields["reply"], "taken", 60)
    holder.ack(entry)
    thread.join(10)
    assert answers == ["taken"] and holder.stream_lag() == {"szpital-a": 0}
    assert sender.hand_over("klinika-b", {"batch": "2"}, "r2", 0.2, 1000) is None  # nobody holds it


def test_a_dead_holder_s_entries_are_claimed_by_the_next_and_dead_lettered_after_retries(
    coordination: MakeCoordination,
) -> None:
    sender, dead, next_holder = coordination(), coordination(), coordination()
    sender.hand_over("szpital-a", {"batch": "1"}, "r1", 0.05, 1000)
    (read,) = dead.read_handed(["szpital-a"], "dead", count=10, block=0.2, min_idle=5)
    # Not acknowledged by its dead reader: the next holder claims it once it idled min_idle.
    (claimed,) = wait_for(
        lambda: next_holder.read_handed(["szpital-a"], "next", count=10, block=0.05, min_idle=0.2)
    )  # type: ignore[misc]
    assert claimed.entry_id == read.entry_id and claimed.deliveries == 2
    next_holder.dead_letter(claimed, "read 2 times without an answer")
    assert next_holder.dead_letters() == 1 and next_holder.stream_lag() == {"szpital-a": 0}


def test_reading_goes_on_after_redis_forgot_the_streams(coordination: MakeCoordination) -> None:
    """Redis restarted (nothing on disk): the consumer group is gone; made again."""
    sender, holder = coordination(), coordination()
    assert holder.read_handed(["szpital-a"], "h", count=10, block=0.05, min_idle=5) == []
    client = redis.Redis.from_url(REDIS)
    client.delete(*client.scan_iter(match=f"{holder._prefix}:intake:*"))
    with pytest.raises(CoordinationError, match="NOGROUP"):
        holder.read_handed(["szpital-a"], "h", count=10, block=0.05, min_idle=5)
    sender.hand_over("szpital-a", {"batch": "after"}, "r", 0.05, 1000)
    (entry,) = holder.read_handed(["szpital-a"], "h", count=10, block=0.5, min_idle=5)
    assert entry.fields["batch"] == "after"
