"""Incidents and the storm budget (issue 18): how fast alerts go through them, and how long a
storm takes from its last alert to its settled ticket set.

1. The storm of tests/test_incidents_storm.py — 40 hospitals, 10,000 alerts from root causes
   (UPSes on battery, switches down) and their dependents, half of the hospitals with more root
   causes than the budget (10 tickets per 10 minutes) — pushed as the agents' numbered batches
   into an in-process bridge (rules engine, lifecycle, incidents, a real SQLite file in a
   temporary directory) with a FixedClock; the bridge's clock moves one minute over the push.
   The incident settings are the defaults (settle 90 s, storm quiet 5 min). Printed: alerts/s
   through the engine, incidents and the budget. Then the clock is moved past the settle time
   and one tick releases the held alerts (switches whose UPS is fine, and the dependents of
   root causes waiting in a storm), and past the quiet period after the last alert and one
   tick ends the storms (their root causes open their tickets and claim their dependents).
   Each tick's duration is the release work itself, not the wait: the ticket set is settled
   ``quiet`` + that work (+ at most one tick interval) after the last alert; the ingestion of
   samples waits for a tick's release work (the ingestor's lock).
2. One hospital, no dependencies, N alerts (``--single``): ten open tickets, the rest joins one
   storm ticket whose description lists them; then the storm ends and each opens its ticket.
   Shows how the cost per alert grows with the size of one storm.
3. Over HTTP: the 10,000 alerts of (1) pushed by 40 agents at once into a real bridge process
   (``python -m bridge run``, SQLite, incident settings of the test: settle 15 s): alerts/s
   until the last batch is answered. The storms' end is not waited for (``--no-http``: skip).

Run: ``.venv/bin/python benchmarks/bench_incidents.py [--single 250,500,1000] [--no-http]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.auth import Principal, Role  # noqa: E402
from bridge.clock import FixedClock  # noqa: E402
from bridge.config import parse_config  # noqa: E402
from bridge.service import Bridge  # noqa: E402
from bridge.sources.samples import BatchOrigin  # noqa: E402
from bridge.store import TicketFilter  # noqa: E402
from bridge.tickets.incidents import STORM_RULE  # noqa: E402
from collectors import Sample  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.processes import RunningBridge, wait_for  # noqa: E402
from tests.test_incidents_storm import ALERTS, HOSPITALS, Agents, Storm  # noqa: E402

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
AGENT = Principal("agent", Role.AGENT)
DISK_RULES = ROOT / "tests" / "data" / "test_rules.yaml"
DISK = "dz_test_disk_used_ratio"


def counts(bridge: Bridge) -> str:
    tickets = bridge.store.list_tickets(TicketFilter(limit=1_000_000))
    storms = sum(t.rule == STORM_RULE for t in tickets)
    states = Counter(m.state.value for m in bridge.store.incident_alerts())
    return (
        f"{len(tickets):,} tickets ({storms} storm), {states['held']:,} held, "
        f"{states['attached']:,} attached"
    )


def timed_tick(bridge: Bridge) -> float:
    start = time.perf_counter()
    bridge.tick()
    return time.perf_counter() - start


def bench_storm(tmp: Path) -> None:
    storm = Storm()
    loaded = parse_config(storm.config(tmp, "sqlite:///storm.db"), "bench.yaml", tmp)
    clock = FixedClock(NOW)
    bridge = Bridge.open(loaded, clock=clock)
    bridge.start(ticker=False)
    try:
        batches = storm.batches()
        step = 60.0 / len(batches)  # the storm's minute on the bridge's clock
        start = time.perf_counter()
        for batch in batches:
            samples = [
                Sample(s["metric"], s["labels"], s["value"], clock.time()) for s in batch["samples"]
            ]
            agent = batch["agent"]
            bridge.ingestor.ingest(samples, AGENT, BatchOrigin(agent["id"], agent["seq"], 0))
            clock.advance(step)
        push = time.perf_counter() - start
        print(
            f"storm in process: {ALERTS:,} alerts of {HOSPITALS} hospitals in {len(batches)} "
            f"agent batches: {push:.1f} s = {ALERTS / push:,.0f} alerts/s "
            f"({push / ALERTS * 1e3:.2f} ms each); {counts(bridge)}"
        )
        settings = loaded.config.incidents
        clock.advance(settings.settle + 1)
        settle = timed_tick(bridge)
        print(
            f"  settle time over (+{settings.settle:g} s): one tick's release work "
            f"{settle:.1f} s; {counts(bridge)}"
        )
        clock.set(NOW + timedelta(seconds=60 + settings.storm.quiet + 1))
        end = timed_tick(bridge)
        expected = storm.expected_tickets()
        print(
            f"  quiet over (+{settings.storm.quiet:g} s after the last alert): one tick's "
            f"release work {end:.1f} s; {counts(bridge)} (expected {expected} tickets)"
        )
        print(
            f"  last alert -> settled ticket set: quiet {settings.storm.quiet:g} s + {end:.1f} s "
            f"of release work (+ at most one tick interval)"
        )
    finally:
        bridge.close()


def bench_single(tmp: Path, n: int, behind: bool) -> None:
    assets: list[dict[str, object]] = [
        {"id": f"srv-{i:03d}", "client": "szpital-a", "reports": False} for i in range(100)
    ]
    if behind:  # the servers behind a switch that is fine: each alert is held first
        assets.append({"id": "sw-1", "client": "szpital-a", "kind": "network", "reports": False})
        for asset in assets[:100]:
            asset["depends_on"] = "sw-1"
    data = {
        "store": "sqlite:///single.db",
        "rule_files": ["builtin:hosts", str(DISK_RULES)],
        "clients": [{"id": "szpital-a", "name": "Szpital A"}],
        "assets": assets,
    }
    loaded = parse_config(data, "bench.yaml", tmp)
    clock = FixedClock(NOW)
    bridge = Bridge.open(loaded, clock=clock)
    bridge.start(ticker=False)
    try:
        samples = [
            Sample(
                DISK,
                {"asset": f"srv-{i % 100:03d}", "mountpoint": f"/m{i // 100}"},
                0.95,
                clock.time(),
            )
            for i in range(n)
        ]
        runs = []
        for k in range(0, n, 100):
            start = time.perf_counter()
            bridge.ingestor.ingest(samples[k : k + 100], AGENT)
            runs.append(time.perf_counter() - start)
            clock.advance(60.0 * 100 / n)
        push = sum(runs)
        settings = loaded.config.incidents
        released = ""
        if behind:
            clock.advance(settings.settle + 1)
            switch_reports(bridge, clock)  # the root is known and fresh: the holds end
            settle = timed_tick(bridge)
            released = f"held alerts released {settle:.1f} s ({settle / n * 1e3:.1f} ms each); "
        clock.advance(settings.storm.quiet + 1)
        if behind:
            switch_reports(bridge, clock)
        end = timed_tick(bridge)
        what = "behind a switch that is fine" if behind else "no dependencies"
        print(
            f"one hospital's storm of {n:,} alerts ({what}): {push:.1f} s = {n / push:,.0f} "
            f"alerts/s (batch of 100: first {runs[0] * 1e3:.0f} ms, last {runs[-1] * 1e3:.0f} "
            f"ms); {released}storm end {end:.1f} s ({end / n * 1e3:.1f} ms per alert); "
            f"{counts(bridge)}"
        )
    finally:
        bridge.close()


def switch_reports(bridge: Bridge, clock: FixedClock) -> None:
    fine = {"asset": "sw-1", "mountpoint": "/"}
    bridge.ingestor.ingest([Sample(DISK, fine, 0.1, clock.time())], AGENT)


def bench_http(tmp: Path) -> None:
    storm = Storm()
    incidents = {"settle": "15s", "max_hold": "60s", "storm": {"quiet": "60s"}}
    config = tmp / "dyzur.yaml"
    config.write_text(yaml.safe_dump(storm.config(tmp, "sqlite:///var/dyzur.db", **incidents)))
    bridge = RunningBridge(config, free_port())
    agents = Agents(storm, bridge.url)
    try:
        start = time.perf_counter()
        agents.start()
        wait_for(agents.pushed.is_set, timeout=600, interval=0.01, what="every batch answered")
        push = time.perf_counter() - start
    finally:
        agents.join()
        bridge.stop()
    print(
        f"storm over HTTP: {ALERTS:,} alerts in {agents.total} batches from {HOSPITALS} agents "
        f"at once into a real bridge process: {push:.1f} s = {ALERTS / push:,.0f} alerts/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", default="250,500,1000", help="sizes of one hospital's storm")
    parser.add_argument("--no-http", action="store_true", help="skip the real bridge process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dyzur-bench-incidents-") as tmp:
        work = Path(tmp)
        bench_storm(work)
        for behind in (False, True):
            for n in (int(x) for x in args.single.split(",") if x):
                (work / f"single-{n}-{behind}").mkdir()
                bench_single(work / f"single-{n}-{behind}", n, behind)
        if not args.no_http:
            bench_http(work)


if __name__ == "__main__":
    main()
