"""How much memory the rules engine keeps: churned series against steady ones.

The rules are those of ``bench_engine.py`` (100 rules over 25 metrics, identity of one or two
labels). Each scenario runs in a fresh process and prints its resident set size (RSS, psutil)
after building the engine, at the end, and its peak:

- steady: the 10,000 series of ``bench_engine.py``, every one sampled every minute for
  ``--minutes`` simulated minutes;
- churn: 1,000,000 series that each report a few samples (one to three, a minute apart) and
  are never seen again, new label values every time (a container's volume, a job's device),
  ``--churn-rate`` new series per simulated minute; ``tick`` runs every simulated minute as the
  bridge's does, so series that stopped arriving go stale and are dropped. ``--churn-hot``
  of them (default 0) stop while their alert fires: a firing alert keeps its series until a
  sample clears it (README, Rules), so those stay, one per open ticket;
- churn, staleness off: the same with ``Engine(staleness=math.inf)``, i.e. the engine before
  stale series were dropped: every series ever seen is kept.

Samples are generated batch by batch (never all held at once), so the RSS is the engine's.

Run: ``.venv/bin/python benchmarks/bench_engine_memory.py [--series N] [--churn-rate N]``
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import METRICS, SERIES, make_rules, make_series

from collectors.sample import Sample
from rules.engine import Engine
from rules.model import AlertState

START = 1_700_000_000.0
MINUTE = 60.0
ASSETS = 400
MIB = 1024 * 1024


def rss() -> int:
    return psutil.Process().memory_info().rss


def labels_of(i: int, device: str) -> dict[str, str]:
    return {
        "asset": f"srv-{i % ASSETS:04d}",
        "env": "prod" if i % 3 else "test",
        "site": f"szpital-{'abcdefgh'[i % 8]}",
        "job": "host",
        "device": device,
    }


def value(rng: random.Random, hot: bool) -> float:
    # Well below the thresholds, or (hot) around them, so alerts come and go.
    return 0.85 + rng.random() * 0.15 if hot else rng.random() * 0.8


def steady(minutes: int, rng: random.Random) -> Iterator[tuple[float, list[Sample]]]:
    """Every minute one sample of each of bench_engine's series, which never change."""
    fixed = make_series(rng)
    for minute in range(minutes):
        now = START + minute * MINUTE
        yield now, [Sample(m, labels, value(rng, hot), now) for m, labels, hot in fixed]


def churn(
    series: int, rate: int, hot_share: float, rng: random.Random
) -> Iterator[tuple[float, list[Sample]]]:
    """Each minute ``rate`` new series start; each lives one to three minutes, then stops."""
    live: list[tuple[str, dict[str, str], bool, int]] = []  # metric, labels, hot, samples left
    started = 0
    minute = 0
    while started < series or live:
        now = START + minute * MINUTE
        for i in range(started, min(started + rate, series)):
            # Every series gets a device of its own: a new label value, never seen again.
            metric = f"bench_metric_{(i % (METRICS // 2 + 1)) * 2}_ratio"  # two-label metrics
            hot = rng.random() < hot_share
            live.append((metric, labels_of(i, f"vol-{i:07d}"), hot, rng.randint(1, 3)))
        started = min(started + rate, series)
        yield now, [Sample(m, labels, value(rng, hot), now) for m, labels, hot, _ in live]
        live = [(m, labels, hot, left - 1) for m, labels, hot, left in live if left > 1]
        minute += 1


def scenario(args: argparse.Namespace) -> dict[str, float]:
    rng = random.Random(42)
    rules = make_rules()
    staleness = math.inf if args.no_staleness else None
    engine = Engine(rules, staleness=staleness)
    if args.scenario == "steady":
        batches = steady(args.minutes, rng)
    else:
        batches = churn(args.series, args.churn_rate, args.churn_hot, rng)
    base = rss()
    peak = base
    samples = 0
    seen_series = 0
    start = time.perf_counter()
    last = START
    for n, (now, batch) in enumerate(batches):
        engine.evaluate(batch, now)
        engine.tick(now)
        samples += len(batch)
        last = now
        if n % 50 == 0:
            peak = max(peak, rss())
            seen_series = max(seen_series, engine.series_count())
    elapsed = time.perf_counter() - start
    end = rss()
    return {
        "base_mib": base / MIB,
        "end_mib": end / MIB,
        "peak_mib": max(peak, end) / MIB,
        "engine_mib": (max(peak, end) - base) / MIB,
        "series_kept_max": max(seen_series, engine.series_count()),
        "series_kept_end": engine.series_count(),
        "firing_end": engine.counts()[AlertState.FIRING],
        "samples": samples,
        "simulated_hours": (last - START) / 3600,
        "staleness_s": engine.staleness,
        "seconds": elapsed,
    }


def child(extra: list[str]) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1_000_000, help="churned series")
    parser.add_argument("--churn-rate", type=int, default=250, help="new series per minute")
    parser.add_argument(
        "--churn-hot", type=float, default=0.0, help="share of churned series that stop firing"
    )
    parser.add_argument("--minutes", type=int, default=180, help="steady run, simulated")
    parser.add_argument("--skip-before", action="store_true", help="no staleness-off run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", choices=["steady", "churn"], help=argparse.SUPPRESS)
    parser.add_argument("--no-staleness", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(scenario(args)))
        return

    common = [
        f"--series={args.series}",
        f"--churn-rate={args.churn_rate}",
        f"--churn-hot={args.churn_hot}",
        f"--minutes={args.minutes}",
    ]
    runs = [
        (f"steady, {SERIES:,} series", ["--scenario=steady"]),
        (f"churn, {args.series:,} series", ["--scenario=churn"]),
    ]
    if not args.skip_before:
        runs.append(
            (
                f"churn, {args.series:,} series, staleness off",
                ["--scenario=churn", "--no-staleness"],
            )
        )
    print(
        f"{len(make_rules())} rules; RSS of a fresh process per run; churn: "
        f"{args.churn_rate:,} new series a minute, each seen 1-3 times a minute apart"
    )
    print(
        f"{'run':44} {'RSS end':>9} {'RSS peak':>9} {'engine':>9} {'kept max':>9} "
        f"{'kept end':>9} {'firing':>7} {'samples':>10} {'sim h':>6} {'s':>6}"
    )
    for name, extra in runs:
        r = child(common + extra)
        print(
            f"{name:44} {r['end_mib']:7.1f}Mi {r['peak_mib']:7.1f}Mi {r['engine_mib']:7.1f}Mi "
            f"{r['series_kept_max']:9,} {r['series_kept_end']:9,} {r['firing_end']:7,} "
            f"{r['samples']:10,} "
            f"{r['simulated_hours']:6.1f} {r['seconds']:6.1f}"
        )
    print("engine = peak RSS minus the RSS after the engine was built; staleness:", end=" ")
    print(f"{Engine(make_rules()).staleness:,.0f} s")


if __name__ == "__main__":
    main()
