"""Leases between bridges in Redis, with fencing tokens from a durable sequence of the store.

The only module that imports ``redis`` (the ``redis`` extra): import it lazily.

A lease is one Redis hash, ``{prefix}:lease:{name}`` = {owner, token, claim}, that expires on
Redis' clock (PEXPIRE). Redis keeps nothing on disk here, so the token is never kept only in
Redis: each acquisition takes a new one from the store's durable sequence ``lease:{name}``,
which never goes back, whatever Redis forgets.

Taking a free lease is three steps, each one atomic in Redis (a Lua script):

1. ``_TAKE``: extend the lease if ``owner`` holds it (its token), None if another owner does,
   else *claim* it: the hash with the owner, a random claim id and no token yet, for ``ttl``.
2. Take a token from the sequence (the store: I/O outside Redis).
3. ``_INSTALL``: put the token in, if the hash still holds this claim id.

The claim makes the token's whole life exclusive: a token is taken only while its taker
holds the claim, and installed only if that claim never lapsed. A bridge paused between 2 and
3 (its claim expired, another took the lease with a larger token, or Redis restarted) finds
its claim gone and gets None, so a smaller token can never be installed after a larger one.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bridge.store.base import StoreError, without_password

# The consumer group of every intake stream: the bridges owning hospitals.
_GROUP = "owners"

# KEYS[1] the lease; ARGV owner, claim id, ttl (ms). Returns the token (> 0) when owner holds
# it (extended), 0 while another owner holds it (or this owner's own claim is in flight),
# -1 when it was free and is now claimed.
_TAKE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then
    redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'claim', ARGV[2], 'token', 0)
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return -1
end
local token = tonumber(redis.call('HGET', KEYS[1], 'token'))
if owner ~= ARGV[1] or token == 0 then
    return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return token
"""

# KEYS[1] the lease; ARGV claim id, token, ttl (ms). 1 when installed, 0 when the claim lapsed.
_INSTALL = """
if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[1] then
    return 0
end
redis.call('HSET', KEYS[1], 'token', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS[1] the lease; ARGV field, value: delete the lease if its field has that value.
_DELETE_IF = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class CoordinationError(StoreError):
    """Redis does not answer (the message names its URL without the password). A kind of
    StoreError: whoever waits for the store (an agent's push: 503, Retry-After) waits for it."""


@dataclass(frozen=True, slots=True)
class Handed:
    """One entry of a hospital's intake stream: a batch another bridge received for it."""

    stream: str  # the hospital
    entry_id: str
    fields: dict[str, str]
    deliveries: int  # how many times it was read (2 and more: its reader died or failed)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisCoordination:
    """Leases in Redis; fencing tokens from a durable sequence of the store.

    Same contract as ``Coordination.lease`` / ``release_lease`` (``bridge.store.roles``), and a
    bridges-alive heartbeat. Nothing kept in Python decides who holds a lease: every answer
    comes from Redis. Thread-safe (the client's connection pool)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "dyzur",
        tokens: Callable[[str], int],
        socket_timeout: float = 2.0,
    ) -> None:
        # tokens(name): the next number of the store's durable sequence ``name``.
        self._url = without_password(url)
        self._prefix = prefix
        self._tokens = tokens
        # One quick retry: the first command after a Redis restart meets a dead pooled
        # connection; more retries would only make a Redis that is down slower to report.
        self._client: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 1),
            decode_responses=True,
        )
        # For the blocking wait of a hand-over: no socket timeout shorter than the wait.
        self._blocking: redis.Redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 1),
            decode_responses=True,
        )
        # The streams' commands, untyped: redis-py's stubs type their answers as a union with
        # the asyncio client's awaitables.
        self._streams: Any = self._client
        self._groups: set[str] = set()  # intake streams whose group this process made
        self._take = self._client.register_script(_TAKE)
        self._install = self._client.register_script(_INSTALL)
        self._delete_if = self._client.register_script(_DELETE_IF)

    @property
    def client(self) -> redis.Redis:
        return self._client

    @contextmanager
    def _redis(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise CoordinationError(f"Redis at {self._url}: {exc}") from exc

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}:{kind}:{name}"

    def _scan(self, kind: str) -> Iterator[tuple[str, str]]:
        """(key, name) of every key of this kind under the prefix."""
        start = self._key(kind, "")
        for key in self._client.scan_iter(match=re.sub(r"([*?\[\]\\])", r"\\\1", start) + "*"):
            yield key, key[len(start) :]

    def lease(self, name: str, owner: str, ttl: float, now: float) -> int | None:
        """Take or extend the lease ``name`` for ``owner`` for ``ttl`` seconds: its fencing
        token while ``owner`` holds it (the same while it keeps extending, a larger one each
        time it is taken anew, also after Redis lost it), None while another owner holds it
        (or, for a moment, while another thread of the same owner is taking it, and when this
        call's claim lapsed).

        ``now`` is accepted for the protocol and ignored: the lease expires on Redis' clock,
        the one clock all bridges share; each bridge's own ``now`` would let a bridge whose
        clock runs ahead take a lease that is still another's."""
        key, claim, ttl_ms = self._key("lease", name), uuid.uuid4().hex, _ms(ttl)
        with self._redis():
            token = int(self._take(keys=[key], args=[owner, claim, ttl_ms]))
        if token > 0:
            return token
        if token == 0:
            return None
        try:
            token = self._tokens(f"lease:{name}")
        except BaseException:
            # Free the claim at once rather than at its expiry; the store's error is the news.
            with suppress(redis.RedisError):
                self._delete_if(keys=[key], args=["claim", claim])
            raise
        with self._redis():
            installed = int(self._install(keys=[key], args=[claim, token, ttl_ms]))
        return token if installed else None

    def release_lease(self, name: str, owner: str) -> None:
        """Let go of the lease if ``owner`` holds it (another owner's lease is left alone)."""
        with self._redis():
            self._delete_if(keys=[self._key("lease", name)], args=["owner", owner])

    def holders(self) -> dict[str, tuple[str, int, float]]:
        """Lease name -> (owner, token, seconds left) of the leases held now."""
        held: dict[str, tuple[str, int, float]] = {}
        with self._redis():
            for key, name in self._scan("lease"):
                owner, token = self._client.hmget(key, ["owner", "token"])
                left = int(self._client.pttl(key))
                if owner and token and int(token) > 0 and left > 0:  # not expired, not a claim
                    held[name] = (str(owner), int(token), left / 1000)
        return held

    def heartbeat(self, member: str, ttl: float, info: dict[str, str]) -> None:
        """Say that ``member`` (a bridge) is alive for ``ttl`` seconds, with ``info``."""
        with self._redis():
            self._client.set(self._key("member", member), json.dumps(info), px=_ms(ttl))

    def members(self) -> dict[str, dict[str, str]]:
        """Member -> info of the members whose heartbeat has not expired."""
        alive: dict[str, dict[str, str]] = {}
        with self._redis():
            for key, member in self._scan("member"):
                value = self._client.get(key)
                if value is not None:  # expired since the scan otherwise
                    alive[member] = json.loads(value)
        return alive

    def ping(self) -> None:
        """Raise CoordinationError when Redis does not answer (for /healthz)."""
        with self._redis():
            self._client.ping()

    def close(self) -> None:
        self._client.close()
        self._blocking.close()

    # --- hand-over of pushed batches: a stream per hospital ---------------------------------

    def hand_over(
        self, stream: str, fields: dict[str, str], reply: str, timeout: float, maxlen: int
    ) -> str | None:
        """Add an entry to ``stream`` (a hospital's intake) and wait up to ``timeout`` seconds
        for its owner's answer to ``reply``: the answer, or None when none came."""
        with self._redis():
            self._streams.xadd(
                self._key("intake", stream),
                {**fields, "reply": reply},
                maxlen=maxlen,
                approximate=True,
            )
            answer = self._blocking.blpop([self._key("reply", reply)], timeout=timeout)
        return None if answer is None else str(answer[1])

    def answer(self, reply: str, body: str, ttl: float) -> None:
        """Give the answer a hand-over waits for (kept ``ttl`` seconds if nobody waits)."""
        key = self._key("reply", reply)
        with self._redis():
            pipe = self._streams.pipeline()
            pipe.rpush(key, body)
            pipe.expire(key, max(1, int(ttl)))
            pipe.execute()

    def _group(self, key: str) -> None:
        """The owners' group of an intake stream, made once (again after Redis restarted)."""
        if key in self._groups:
            return
        try:
            # From the stream's start: entries added before any owner read it count too.
            self._streams.xgroup_create(key, _GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(key)

    def read_handed(
        self, streams: Sequence[str], consumer: str, *, count: int, block: float, min_idle: float
    ) -> list[Handed]:
        """Entries of the hospitals ``streams`` for ``consumer``: those another reader took
        and has not acknowledged for ``min_idle`` seconds (its bridge died: XAUTOCLAIM), else
        new ones (XREADGROUP), waiting up to ``block`` seconds for them."""
        if not streams:
            return []
        try:
            return self._read_handed(streams, consumer, count=count, block=block, min_idle=min_idle)
        except CoordinationError as exc:
            if "NOGROUP" in str(exc):  # Redis restarted and forgot the groups: made anew
                self._groups.clear()
            raise

    def _read_handed(
        self, streams: Sequence[str], consumer: str, *, count: int, block: float, min_idle: float
    ) -> list[Handed]:
        handed: list[Handed] = []
        with self._redis():
            for stream in streams:
                key = self._key("intake", stream)
                self._group(key)
                claimed = self._streams.xautoclaim(
                    key, _GROUP, consumer, _ms(min_idle), start_id="0-0", count=count
                )
                entries = [(i, f) for i, f in claimed[1] if f is not None]
                if entries:
                    times = self._streams.xpending_range(
                        key, _GROUP, min=entries[0][0], max=entries[-1][0], count=len(entries)
                    )
                    delivered = {t["message_id"]: int(t["times_delivered"]) for t in times}
                    handed += [Handed(stream, i, f, delivered.get(i, 2)) for i, f in entries]
            if handed:
                return handed
            keys = {self._key("intake", s): ">" for s in streams}
            read = self._streams.xreadgroup(_GROUP, consumer, keys, count=count, block=_ms(block))
        start = len(self._key("intake", ""))
        for key, entries in read or []:
            handed += [Handed(key[start:], i, f, 1) for i, f in entries if f is not None]
        return handed

    def ack(self, entry: Handed) -> None:
        with self._redis():
            self._streams.xack(self._key("intake", entry.stream), _GROUP, entry.entry_id)

    def dead_letter(self, entry: Handed, reason: str) -> None:
        """Move an entry that failed too often to the dead-letter stream, with why."""
        with self._redis():
            pipe = self._streams.pipeline()
            pipe.xadd(
                self._key("intake", "dead"),
                {**entry.fields, "hospital": entry.stream, "reason": reason},
                maxlen=10_000,
                approximate=True,
            )
            pipe.xack(self._key("intake", entry.stream), _GROUP, entry.entry_id)
            pipe.execute()

    def stream_lag(self) -> dict[str, int]:
        """Per hospital: the entries of its intake not yet acknowledged by its owner (read
        and pending, or not read yet)."""
        lag: dict[str, int] = {}
        with self._redis():
            for key, stream in self._scan("intake"):
                if stream == "dead":
                    continue
                waiting = 0
                for group in self._streams.xinfo_groups(key):
                    if group["name"] == _GROUP:
                        waiting = int(group.get("pending") or 0) + int(group.get("lag") or 0)
                lag[stream] = waiting
        return lag

    def dead_letters(self) -> int:
        """How many entries the dead-letter stream holds."""
        with self._redis():
            return int(self._streams.xlen(self._key("intake", "dead")))
