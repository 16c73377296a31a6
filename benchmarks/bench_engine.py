"""How fast the rules engine eats samples.

100 rules over 25 metrics (some with label matchers, some with regex matchers, identity of one
or two labels), 10,000 series, values mostly well below the thresholds with about 3 % of the
series hovering around them (so alerts go pending, fire, escalate and resolve). The samples are
built up front; only ``Engine.evaluate`` is timed, in batches of 1,000 samples.

Run: ``.venv/bin/python benchmarks/bench_engine.py [--rounds N] [--repeats N]``
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collectors.sample import Sample
from rules.engine import Engine
from rules.loader import load_rules_text
from rules.model import Rule

METRICS = 25
RULES_PER_METRIC = 4
SERIES = 10_000
BATCH = 1_000
HOT_SHARE = 0.03
STEP = 15.0  # seconds between two samples of one series


def make_rules() -> list[Rule]:
    """100 rules as a rule file would hold them, loaded through the real loader."""
    lines = ["rules:"]
    for m in range(METRICS):
        metric = f"bench_metric_{m}_ratio"
        two_labels = m % 2 == 0  # half the metrics carry a second identifying label
        for r in range(RULES_PER_METRIC):
            threshold = 0.90 + 0.02 * r
            lines += [
                f"  - name: rule_{m}_{r}",
                f"    metric: {metric}",
                f"    when: '> {threshold:.2f}'",
                f"    clear: '< {threshold - 0.05:.2f}'",
                f"    for: {(r % 3) * 60}s",
                f"    category: {'usterka' if r < 3 else 'awaria'}",
            ]
            if r == 0:
                lines.append("    escalate: {when: '> 0.985', category: awaria, for: 30s}")
            if r == 1:
                lines.append("    match: {env: prod}")
            if r == 2 and two_labels:
                lines.append("    match: {device: '!~ tmpfs|overlay|loop[0-9]+'}")
            if r == 3:
                lines.append("    match: {env: '!= test', site: '=~ szpital-(a|b|c).*'}")
            if two_labels:
                lines.append("    labels: [asset, device]")
            lines += [
                "    title: {pl: '{{ rule }} {{ value | percent }}', en: '{{ rule }} {{ value }}'}",
                "    description: {pl: 'opis', en: 'description'}",
            ]
    return load_rules_text("\n".join(lines) + "\n", "<bench>")


def make_series(rng: random.Random) -> list[tuple[str, dict[str, str], bool]]:
    series = []
    devices = ["sda", "sdb", "nvme0n1", "tmpfs", "overlay", "loop3", "md0", "dm-1"]
    for i in range(SERIES):
        m = i % METRICS
        labels = {
            "asset": f"srv-{i // METRICS:04d}",
            "env": "prod" if i % 3 else "test",
            "site": f"szpital-{'abcdefgh'[i % 8]}",
            "job": "host",
        }
        if m % 2 == 0:
            labels["device"] = devices[(i // METRICS) % len(devices)]
        series.append((f"bench_metric_{m}_ratio", labels, rng.random() < HOT_SHARE))
    return series


def make_rounds(
    series: list[tuple[str, dict[str, str], bool]], rounds: int, rng: random.Random
) -> list[list[Sample]]:
    """``rounds`` passes over every series; the batches of 1,000 samples each."""
    samples: list[Sample] = []
    for n in range(rounds):
        ts = 1_700_000_000.0 + n * STEP
        for metric, labels, hot in series:
            # OK series: well below every threshold; hot ones wander across 0.85 .. 1.0.
            value = 0.85 + rng.random() * 0.15 if hot else rng.random() * 0.8
            samples.append(Sample(metric, labels, value, ts))
    return [samples[i : i + BATCH] for i in range(0, len(samples), BATCH)]


def run(rules: list[Rule], batches: list[list[Sample]]) -> tuple[float, int]:
    engine = Engine(rules)
    transitions = 0
    evaluate = engine.evaluate
    clock = time.perf_counter
    elapsed = 0.0
    for batch in batches:
        now = batch[-1].timestamp
        start = clock()
        out = evaluate(batch, now)
        elapsed += clock() - start
        transitions += len(out)
    return elapsed, transitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="passes over all series")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs, fresh engine each")
    args = parser.parse_args()

    rng = random.Random(42)
    rules = make_rules()
    series = make_series(rng)
    batches = make_rounds(series, args.rounds, rng)
    total = sum(len(b) for b in batches)
    print(
        f"{len(rules)} rules over {METRICS} metrics, {SERIES:,} series "
        f"({HOT_SHARE:.0%} near the thresholds), {total:,} samples in batches of {BATCH:,}"
    )
    run(rules, batches[:50])  # warm-up
    rates = []
    for i in range(args.repeats):
        elapsed, transitions = run(rules, batches)
        rate = total / elapsed
        rates.append(rate)
        print(
            f"run {i + 1}: {elapsed:6.3f} s  {rate:12,.0f} samples/s  "
            f"{1e6 / rate:6.3f} µs/sample  {transitions:,} transitions"
        )
    best = max(rates)
    median = statistics.median(rates)
    print(f"best   {best:12,.0f} samples/s  {1e6 / best:6.3f} µs/sample")
    print(f"median {median:12,.0f} samples/s  {1e6 / median:6.3f} µs/sample")


if __name__ == "__main__":
    main()
