"""How fast maintenance windows answer "is this alert muted?", and what an alert storm inside a
window costs end to end.

1. ``muting(asset, at)`` on a fleet of 40 hospitals x 25 assets, every asset in a weekly
   recurring window (started a year ago, so the recurrence is walked) plus one-off windows:
   10,000 random (asset, moment) questions over the coming year.
2. Through a real bridge (engine, lifecycle, SQLite in a temporary directory, fixed clock): an
   update window over 1,000 assets, every one of them firing inside it (recorded against the
   window, no ticket), then the window ends and the ticker opens the 1,000 tickets.

Run: ``.venv/bin/python benchmarks/bench_windows.py [--n N] [--repeats N]``
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.auth import Principal, Role
from bridge.clock import WARSAW, FixedClock
from bridge.config import parse_config
from bridge.maintenance.planning import WindowRequest
from bridge.models import Asset, MaintenanceWindow
from bridge.service import Bridge
from bridge.store import TicketFilter
from collectors import Sample

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CLIENTS, ASSETS_PER_CLIENT = 40, 25
RULE = Path(__file__).resolve().parent.parent / "tests" / "data" / "test_rules.yaml"


def fleet() -> tuple[dict[str, Asset], list[MaintenanceWindow]]:
    assets: dict[str, Asset] = {}
    windows = []
    for c in range(CLIENTS):
        client = f"szpital-{c:02d}"
        for a in range(ASSETS_PER_CLIENT):
            env = "test" if a % 5 == 0 else "prod"
            asset = Asset(id=f"{client}-srv{a:02d}", client=client, environment=env)
            assets[asset.id] = asset
        first = datetime(2025, 11, 4 + c % 7, 22, 0, tzinfo=WARSAW)
        windows.append(
            MaintenanceWindow(
                f"w{c}", client, first, first + timedelta(hours=4), "co tydzień",
                selector={"environment": "prod"}, rrule="FREQ=WEEKLY",
            )
        )  # fmt: skip
        one_off = NOW + timedelta(days=c)
        windows.append(
            MaintenanceWindow(
                f"o{c}", client, one_off, one_off + timedelta(hours=2), "jednorazowe",
                assets=[f"{client}-srv00"],
            )
        )  # fmt: skip
    return assets, windows


def bench_muting(n: int, repeats: int) -> None:
    from bridge.maintenance.windows import WindowSchedule

    assets, windows = fleet()
    schedule = WindowSchedule(windows, assets)
    rng = random.Random(7)
    ids = list(assets)
    questions = [
        (rng.choice(ids), NOW + timedelta(seconds=rng.randrange(365 * 86400))) for _ in range(n)
    ]
    runs = []
    muted = 0
    for _ in range(repeats):
        start = time.perf_counter()
        muted = sum(schedule.muting(a, t) is not None for a, t in questions)
        runs.append(time.perf_counter() - start)
    best = statistics.median(runs)
    print(
        f"muting: {n:,} questions over {len(assets):,} assets and {len(windows)} windows: "
        f"median {best * 1e3:.1f} ms = {n / best:,.0f} questions/s "
        f"({best / n * 1e6:.1f} µs each); {muted:,} muted"
    )


def bench_storm(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = {
            "store": "sqlite:///bench.db",
            "rule_files": [str(RULE)],
            "clients": [{"id": "szpital-a", "name": "Szpital A"}],
            "assets": [
                {"id": f"amms-{i:04d}", "client": "szpital-a", "reports": False} for i in range(n)
            ],
        }
        loaded = parse_config(data, "bench.yaml", Path(tmp))
        clock = FixedClock(NOW)
        bridge = Bridge.open(loaded, clock=clock)
        bridge.start(ticker=False)
        try:
            window = bridge.maintenance.plan(
                WindowRequest(
                    "szpital-a", NOW, NOW + timedelta(hours=2), "aktualizacja AMMS",
                    selector={"environment": "prod"},
                ),
                "bench",
            )  # fmt: skip
            samples = [
                Sample("dz_test_disk_used_ratio", {"asset": a, "mountpoint": "/"}, 0.95, None)
                for a in loaded.assets
            ]
            start = time.perf_counter()
            bridge.ingestor.ingest(samples, Principal("bench", Role.AGENT))
            suppress = time.perf_counter() - start
            assert not bridge.store.list_tickets(TicketFilter(limit=1))
            clock.set(window.end)
            start = time.perf_counter()
            bridge.tick()
            release = time.perf_counter() - start
            opened = len(bridge.store.list_tickets(TicketFilter(limit=n + 1)))
        finally:
            bridge.close()
    print(
        f"storm: {n:,} alerts inside one window recorded in {suppress:.2f} s "
        f"({n / suppress:,.0f}/s); at its end {opened:,} tickets opened in {release:.2f} s "
        f"({opened / release:,.0f}/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--storm", type=int, default=1_000)
    args = parser.parse_args()
    bench_muting(args.n, args.repeats)
    bench_storm(args.storm)


if __name__ == "__main__":
    main()
