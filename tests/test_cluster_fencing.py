"""A bridge that lost a hospital's lease while it was away cannot write for it: the store
refuses its write by the lease's fencing token, whatever the bridge still believes. In process,
on the real PostgreSQL and Redis, so the moment of the loss is the test's to choose."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from bridge.api import create_app
from bridge.config import parse_config
from bridge.service import Bridge
from bridge.store import TicketFilter
from bridge.store.postgres import PostgresStore
from tests.cluster import REDIS_URL, redis_client
from tests.conftest import auth, config_data
from tests.postgres import database_url


@pytest.fixture
def cluster_bridge(tmp_path, clock):
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    url = database_url(tmp_path)
    data = config_data(url)
    data["coordination"] = REDIS_URL
    data["cluster"] = {"prefix": prefix, "lease": "10s"}
    loaded = parse_config(data, "test.yaml", tmp_path)
    store = PostgresStore(url)
    store.migrate()
    bridge = Bridge(loaded, store=store, clock=clock)
    bridge.start(ticker=False)
    yield bridge
    bridge.close()
    redis = redis_client()
    keys = list(redis.scan_iter(match=f"{prefix}:*"))
    if keys:
        redis.delete(*keys)


def disk(mount: str) -> dict:
    return {
        "metric": "dz_test_disk_used_ratio",
        "labels": {"asset": "srv-a1", "mountpoint": mount},
        "value": 0.95,
    }


def test_a_write_under_a_lease_taken_by_another_bridge_is_refused(cluster_bridge):
    bridge = cluster_bridge
    assert bridge.shards is not None and bridge.coordination is not None
    bridge.shards.step()  # alone: it takes both hospitals
    assert bridge.shards.token("szpital-a") is not None
    with TestClient(create_app(bridge, run_ticker=False)) as api:
        body = {"agent": {"id": "a1", "seq": 1}, "samples": [disk("/var")]}
        assert api.post("/api/v1/samples", json=body, headers=auth("agent")).status_code == 200

        # Its lease ran out unseen (the bridge was paused) and another bridge took it: a
        # newer token. The bridge still believes it holds the hospital.
        coordination = bridge.coordination
        coordination.release_lease("shard:szpital-a", bridge.owner)
        assert coordination.lease("shard:szpital-a", "other-bridge", 10, 0.0) is not None
        assert bridge.shards.token("szpital-a") is not None

        body = {"agent": {"id": "a1", "seq": 2}, "samples": [disk("/srv")]}
        answer = api.post("/api/v1/samples", json=body, headers=auth("agent"))
        assert answer.status_code == 503 and answer.headers["Retry-After"]
    tickets = bridge.store.list_tickets(TicketFilter())
    assert [t.labels["mountpoint"] for t in tickets] == ["/var"]  # nothing of the stale write
    (stream,) = bridge.store.agent_streams()
    assert stream.last_seq == 1  # nor its claim: the agent's retry is taken by the holder
