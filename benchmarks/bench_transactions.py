"""How long a pushed batch holds the store's write lock, against how long it takes.

Nothing slow runs inside a store transaction (bridge/store/roles.py): the engine's evaluation,
the tickets' texts, the muting question and the deadlines are worked out before it opens, so
other writers (the API, the ticker, another bridge process) wait only for the reads and writes.
A real bridge (engine, lifecycle, SQLite in a temporary directory, fixed clock) takes numbered
batches through ``Ingestor.ingest``; SQLite's trace callback times each transaction from its
BEGIN to its COMMIT. Two kinds of batch: 250 samples that each open a ticket, and 5,000 quiet
samples that open none.

Run: ``.venv/bin/python benchmarks/bench_transactions.py [--batches N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.clock import FixedClock
from bridge.config import parse_config
from bridge.service import Bridge
from bridge.sources.samples import BatchOrigin
from bridge.store.sqlite import SQLiteStore
from collectors import Sample
from tests.conftest import AGENT, START, config_data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        loaded = parse_config(config_data(), "bench.yaml", Path(tmp))
        store = SQLiteStore(Path(tmp) / "bench.db")
        store.migrate()
        clock = FixedClock(START)
        bridge = Bridge(loaded, store=store, clock=clock)
        bridge.start(ticker=False)
        held: list[float] = []
        begun: list[float] = []

        def trace(sql: str) -> None:
            word = sql.strip().split(" ", 1)[0].upper()
            if word == "BEGIN":
                begun[:] = [time.perf_counter()]
            elif word in ("COMMIT", "ROLLBACK") and begun:
                held.append(time.perf_counter() - begun.pop())

        store._conn().set_trace_callback(trace)  # the ingesting thread's connection

        def run(kind: str, make: Callable[[int], list[Sample]]) -> None:
            held.clear()
            took = []
            for seq in range(1, args.batches + 1):
                batch = make(seq)
                start = time.perf_counter()
                bridge.ingestor.ingest(batch, AGENT, BatchOrigin(f"bench-{kind}", seq))
                took.append(time.perf_counter() - start)
                clock.advance(1)
            print(
                f"{kind}: {statistics.median(took) * 1000:.1f} ms per batch, the write lock held "
                f"{statistics.median(held) * 1000:.2f} ms (median of {len(held)} transactions, "
                f"max {max(held) * 1000:.2f} ms)"
            )

        def opening(seq: int) -> list[Sample]:
            return [
                Sample(
                    "dz_test_disk_used_ratio",
                    {"asset": "srv-a1", "mountpoint": f"/b{seq}/m{i}"},
                    0.95,
                    clock.time(),
                )
                for i in range(250)
            ]

        def quiet(seq: int) -> list[Sample]:
            return [
                Sample(
                    "dz_test_disk_used_ratio",
                    {"asset": "srv-a2", "mountpoint": f"/q{i}"},
                    0.5,
                    clock.time(),
                )
                for i in range(5000)
            ]

        try:
            run("250 samples opening 250 tickets", opening)
            run("5,000 quiet samples", quiet)
        finally:
            bridge.close()


if __name__ == "__main__":
    main()
