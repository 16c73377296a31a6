"""How fast the SLA clock computes reaction deadlines and service time between two moments.

10,000 random openings (aware, 2025-2028, to the second, in Warsaw or UTC) and random clocked
categories per contract kind (standard, 24/7, custom), timed through ``reaction_due``; and
10,000 random spans of up to two weeks per kind, timed through ``ServiceCalendar.between``.
The inputs are built up front; only the calls are timed. The holiday cache is warmed first.

Run: ``.venv/bin/python benchmarks/bench_sla.py [--n N] [--repeats N]``
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.clock import WARSAW
from bridge.models import Category, Contract
from bridge.tickets.sla import NO_CLOCK, ServiceCalendar, polish_holidays, reaction_due

START = datetime(2025, 1, 1, tzinfo=UTC)
SPAN_SECONDS = 4 * 366 * 86400  # 2025-2028
CLOCKED = [c for c in Category if c not in NO_CLOCK]

CONTRACTS = {
    "standard": Contract(),
    "24/7": Contract(hours="24/7"),
    "custom": Contract(
        hours="custom",
        service_hours={
            "mon": ["07:00-12:00", "13:00-19:00"],
            "tue": ["07:00-19:00"],
            "wed": ["07:00-19:00"],
            "thu": ["07:00-19:00"],
            "fri": ["07:00-24:00"],
            "sat": ["08:00-14:00"],
        },
        days_off=[date(2026, 8, 14), date(2027, 12, 31)],
        reaction={"awaria": "4h"},
    ),
}


def openings(rng: random.Random, n: int) -> list[datetime]:
    zones = (WARSAW, UTC)
    return [
        (START + timedelta(seconds=rng.randrange(SPAN_SECONDS))).astimezone(rng.choice(zones))
        for _ in range(n)
    ]


def time_calls(call: Callable[[int], object], n: int) -> float:
    clock = time.perf_counter
    start = clock()
    for i in range(n):
        call(i)
    return clock() - start


def report(label: str, unit: str, n: int, times: list[float]) -> None:
    best = n / min(times)
    median = n / statistics.median(times)
    print(
        f"{label:<22} best {best:10,.0f} {unit}/s {1e6 / best:8.2f} µs each   "
        f"median {median:10,.0f} {unit}/s {1e6 / median:8.2f} µs each"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="calls per contract kind")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of the n calls")
    args = parser.parse_args()
    n = args.n

    rng = random.Random(42)
    for year in range(2025, 2031):
        polish_holidays(year)
    opened = openings(rng, n)
    categories = [rng.choice(CLOCKED) for _ in range(n)]
    spans = [(a, a + timedelta(seconds=rng.randrange(14 * 86400))) for a in openings(rng, n)]
    print(f"{n:,} openings and {n:,} spans per contract kind, best and median of {args.repeats}")

    for kind, contract in CONTRACTS.items():

        def due(i: int, contract: Contract = contract) -> object:
            return reaction_due(contract, categories[i], opened[i])

        time_calls(due, min(n, 500))  # warm-up
        report(
            f"reaction_due {kind}",
            "deadlines",
            n,
            [time_calls(due, n) for _ in range(args.repeats)],
        )

    for kind, contract in CONTRACTS.items():
        calendar = ServiceCalendar.for_contract(contract)

        def between(i: int, calendar: ServiceCalendar = calendar) -> object:
            return calendar.between(*spans[i])

        time_calls(between, min(n, 500))
        report(f"between {kind}", "spans", n, [time_calls(between, n) for _ in range(args.repeats)])


if __name__ == "__main__":
    main()
