"""Several real bridge processes on this machine's PostgreSQL and Redis, for the cluster tests:
a database of their own, a Redis key prefix of their own, and helpers to read what they did."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from bridge.store import Store, TicketFilter, open_store
from tests.conftest import auth, config_data, free_port
from tests.postgres import database_url
from tests.processes import RunningBridge, wait_for

REDIS_URL = os.environ.get("DYZUR_TEST_REDIS", "redis://127.0.0.1:6379/0")


def redis_client(url: str = REDIS_URL):  # type: ignore[no-untyped-def]
    import redis

    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {url} is required under CI: {exc}")
        pytest.skip(f"Redis at {url} does not answer")
    return client


class Cluster:
    """The configuration two or more bridges share, and what their store and Redis hold."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        redis_url: str = REDIS_URL,
        postgres_port: int | None = None,
        **settings: object,
    ) -> None:
        """``postgres_port``: the bridges reach PostgreSQL there (a proxy a test can cut)."""
        self.tmp_path = tmp_path
        self.store_url = database_url(tmp_path, "cluster")
        bridges_url = self.store_url
        if postgres_port is not None:
            bridges_url = self.store_url.replace(":5432/", f":{postgres_port}/")
        self.redis_url = redis_url
        self.prefix = f"t-{uuid.uuid4().hex[:12]}"
        data = config_data(bridges_url)
        data["coordination"] = redis_url
        data["cluster"] = {
            "prefix": self.prefix,
            "lease": "6s",
            "handover_timeout": "4s",
            **settings.pop("cluster", {}),  # type: ignore[dict-item]
        }
        data["tick_interval"] = "1s"
        data.update(settings)
        self.config = tmp_path / "dyzur.yaml"
        self.config.write_text(yaml.safe_dump(data, allow_unicode=True))
        self.bridges: list[RunningBridge] = []
        self.http = httpx.Client(timeout=30)

    def start(self, n: int = 1) -> list[RunningBridge]:
        started = [RunningBridge(self.config, free_port()) for _ in range(n)]
        self.bridges += started
        return started

    def close(self) -> None:
        for bridge in self.bridges:
            bridge.stop()
        self.http.close()
        client = redis_client(self.redis_url)
        keys = list(client.scan_iter(match=f"{self.prefix}:*"))
        if keys:
            client.delete(*keys)

    # --- what they did ---------------------------------------------------------------------

    def read(self, read: Callable[[Store], object]) -> object:
        store = open_store(self.store_url)
        try:
            return read(store)
        finally:
            store.close()

    def tickets(self) -> list:
        return self.read(lambda s: s.list_tickets(TicketFilter(limit=100_000)))  # type: ignore[return-value]

    def metric(self, bridge: RunningBridge, name: str) -> dict[str, float]:
        """Every sample of metric ``name`` on ``bridge``: labels text -> value."""
        text = self.http.get(f"{bridge.url}/metrics", headers=auth("admin")).text
        found = {}
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                key, _, value = line.rpartition(" ")
                found[key[len(name) :]] = float(value)
        return found

    def lease_owner(self, name: str) -> str | None:
        """Who holds the lease ``name`` in Redis now (host:pid:nonce), if anyone."""
        return redis_client(self.redis_url).hget(f"{self.prefix}:lease:{name}", "owner")

    def holder_of(self, client: str) -> RunningBridge | None:
        """The bridge that says it evaluates ``client``'s series now."""
        for bridge in self.bridges:
            if bridge.proc.poll() is not None:
                continue
            held = self.metric(bridge, "dyzur_cluster_hospitals_held")
            if held.get(f'{{client="{client}"}}') == 1.0:
                return bridge
        return None

    def wait_until_shared(self) -> None:
        """Every hospital held by one of the bridges running, and every bridge holding one."""

        def shared() -> bool:
            holders = [self.holder_of(c) for c in ("szpital-a", "klinika-b")]
            running = [b for b in self.bridges if b.proc.poll() is None]
            return None not in holders and set(map(id, holders)) == set(map(id, running))

        wait_for(shared, timeout=60, what="the hospitals to be shared by the bridges")


def at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response | None]:
    """Run ``calls`` in threads released together; their answers (None: connection failed)."""
    start = threading.Barrier(len(calls))
    answers: list[httpx.Response | None] = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        try:
            answers[i] = calls[i]()
        except httpx.TransportError:
            answers[i] = None

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


class RedisServer:
    """A redis-server of a test's own on a free port, keeping nothing on disk (as this
    machine's): killed and started again on the same port to restart it."""

    def __init__(self, tmp_path: Path) -> None:
        from tests.conftest import need_binary

        self.binary = need_binary("redis-server")
        self.dir = tmp_path
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: self._answers(), what="redis-server to answer")

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
