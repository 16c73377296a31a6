"""Acknowledged means applied: the real bridge process killed with SIGKILL at random moments
while an agent pushes numbered batches of ticket-opening samples.

Every batch answered 200 must have all its tickets; a batch that was not answered is sent
again with the same number and must be applied exactly once. One unique alert per sample (a
mountpoint of its own), so every acknowledged sample has exactly one ticket.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import threading
from pathlib import Path

import httpx
import yaml

from tests.conftest import auth, config_data, free_port
from tests.processes import RunningBridge

BATCH = 250  # samples per batch: big enough that a kill often lands inside one
BATCHES = 44  # 11,000 samples
MIN_KILLS = 6


def batch(seq: int) -> dict:
    return {
        "agent": {"id": "crash-test-agent", "seq": seq},
        "samples": [
            {
                "metric": "dz_test_disk_used_ratio",
                "labels": {"asset": "srv-a1", "mountpoint": f"/b{seq}/m{i}"},
                "value": 0.95,
            }
            for i in range(BATCH)
        ],
    }


def test_sigkill_at_random_moments_loses_no_acknowledged_sample(tmp_path: Path):
    config = tmp_path / "dyzur.yaml"
    config.write_text(yaml.safe_dump(config_data("sqlite:///var/dyzur.db")))
    port = free_port()
    bridge = RunningBridge(config, port)
    acknowledged: dict[int, bool] = {}  # seq -> answered "duplicate"
    kills = 0
    done = threading.Event()
    rng = random.Random(20261130)
    lock = threading.Lock()  # the killer and the pusher agree on which process is current

    def killer() -> None:
        nonlocal bridge, kills
        while not done.is_set() or kills < MIN_KILLS:
            if done.wait(rng.uniform(0.3, 1.5)) and kills >= MIN_KILLS:
                return
            with lock:
                bridge.stop(signal.SIGKILL)
                kills += 1
                bridge = RunningBridge(config, port)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        with httpx.Client(timeout=30) as http:
            seq = 1
            while seq <= BATCHES:
                try:
                    r = http.post(
                        f"{bridge.url}/api/v1/samples", json=batch(seq), headers=auth("agent")
                    )
                except httpx.TransportError:
                    continue  # killed while we waited: send the same batch again
                if r.status_code != 200:
                    assert r.status_code == 503, r.text  # not taken: send it again
                    continue
                body = r.json()
                assert body["rejected"] == []
                acknowledged[seq] = body["duplicate"]
                seq += 1
    finally:
        done.set()
        thread.join()
        with lock:
            bridge.stop()

    assert kills >= MIN_KILLS
    assert len(acknowledged) * BATCH >= 10_000
    with sqlite3.connect(tmp_path / "var" / "dyzur.db") as db:
        counts = dict(
            db.execute(
                "SELECT json_extract(labels, '$.mountpoint'), count(*) FROM tickets "
                "WHERE rule = 'disk_usage' GROUP BY 1"
            ).fetchall()
        )
        [(streams_seq,)] = db.execute(
            "SELECT last_seq FROM agent_streams WHERE agent_id = 'crash-test-agent'"
        ).fetchall()
    expected = {f"/b{seq}/m{i}" for seq in acknowledged for i in range(BATCH)}
    lost = expected - counts.keys()
    duplicated = {m: n for m, n in counts.items() if n > 1}
    print(
        f"\nkills: {kills}, acknowledged samples: {len(expected)}, lost: {len(lost)}, "
        f"duplicated tickets: {len(duplicated)}, "
        f"batches answered 'duplicate' after a kill: {sum(acknowledged.values())}"
    )
    assert not lost, f"{len(lost)} acknowledged samples have no ticket, e.g. {sorted(lost)[:3]}"
    assert not duplicated
    assert counts.keys() == expected  # nothing beyond what was sent
    assert streams_seq == BATCHES
