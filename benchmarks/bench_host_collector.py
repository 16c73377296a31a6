"""What one host collection costs on this machine.

A HostCollector with the default options and two process rules (one by exact name, one by a
command-line regex, so the process walk reads command lines too) collects ``--rounds`` times
back to back, after one warm-up call, in two cases: every watched process running (the usual
case: only new processes are read) and one watched process down (every process is read
again before it is reported down). Prints CPU seconds (``time.process_time``, which
includes the filesystem worker thread) and wall milliseconds per collection, the number of
samples, and how many processes the machine had.

Run: ``.venv/bin/python benchmarks/bench_host_collector.py [--rounds N] [--repeats N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from collectors.host import HostCollector

RUNNING = {
    "processes": [
        {"name": "python", "match_name": Path(sys.executable).name},
        {"name": "bench", "match_cmdline": r"bench_host_collector"},
    ]
}
ONE_DOWN = {
    "processes": [
        {"name": "python", "match_name": Path(sys.executable).name},
        {"name": "missing", "match_cmdline": r"(^|/)no-such-daemon( |$)"},
    ]
}


def run(rounds: int, options: dict) -> tuple[float, float, int]:
    collector = HostCollector.from_options("host", options)
    collector.collect(time.time())  # warm-up: the CPU baseline, psutil's process cache
    samples = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        samples = len(collector.collect(time.time()))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return cpu / rounds, wall / rounds, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"host collector, {args.rounds} collections x {args.repeats} repeats, "
        f"{len(psutil.pids())} processes, {psutil.cpu_count()} logical CPUs, "
        f"psutil {psutil.__version__}"
    )
    for case, options in (("watched processes running", RUNNING), ("one down", ONE_DOWN)):
        cpus, walls = [], []
        samples = 0
        for _ in range(args.repeats):
            cpu, wall, samples = run(args.rounds, options)
            cpus.append(cpu)
            walls.append(wall)
        print(
            f"{case}: {samples} samples; CPU per collection median "
            f"{statistics.median(cpus) * 1e3:.2f} ms (min {min(cpus) * 1e3:.2f}, "
            f"max {max(cpus) * 1e3:.2f}); wall median {statistics.median(walls) * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    main()
