"""SNMP collector throughput: N simulated devices behind one real snmpsim agent.

Serves the golden recordings of tests/data/snmp/ (Eaton 93E with ups-mib + eaton-xups, the
hand-written APC Smart-UPS, Isilon OneFS with host-resources-storage, NetApp FAS3270) and polls
N devices cycling through them with one SnmpCollector.collect per round; prints devices/s and
samples/s. One snmpsim process answers everything, so it is usually the bottleneck: read the
figures as a floor for the collector.

    python benchmarks/bench_snmp.py [--devices 64] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collectors.snmp import SnmpCollector  # noqa: E402
from tests.test_snmp_profiles import SnmpSim  # noqa: E402

KINDS = [
    ("eaton-93e-80", ["ups-mib", "eaton-xups"]),
    ("apc-smartups-powernet", ["apc-powernet"]),
    ("isilon-onefs", ["host-resources-storage"]),
    ("netapp-fas3270", ["netapp"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    sim = SnmpSim()
    try:
        devices = [
            {
                "asset": f"dev-{i}",
                "host": "127.0.0.1",
                "port": sim.port,
                "community": KINDS[i % len(KINDS)][0],
                "profiles": KINDS[i % len(KINDS)][1],
                "timeout": 10,
                "retries": 0,
            }
            for i in range(args.devices)
        ]
        collector = SnmpCollector.from_options(
            "snmp", {"devices": devices, "concurrency": args.concurrency}
        )
        logging.disable(logging.WARNING)  # Isilon's /ifs garbage is logged once per device
        collector.collect(0.0)  # warm-up: snmpsim builds its indexes
        print(
            f"{args.devices} devices ({', '.join(k for k, _ in KINDS)}), "
            f"concurrency {args.concurrency}, {args.rounds} rounds"
        )
        total_samples, total_time = 0, 0.0
        for r in range(args.rounds):
            sim_cpu = sim.cpu_seconds()
            started, cpu = time.perf_counter(), time.process_time()
            samples = collector.collect(float(r))
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            down = sum(1 for s in samples if s.metric == "dyzur_snmp_up" and s.value == 0)
            total_samples += len(samples)
            total_time += elapsed
            print(
                f"  round {r + 1}: {elapsed:.2f} s, {args.devices / elapsed:.1f} devices/s, "
                f"{len(samples) / elapsed:.0f} samples/s, {len(samples)} samples, {down} down, "
                f"collector CPU {1000 * cpu / args.devices:.1f} ms/device, "
                f"snmpsim CPU {sim.cpu_seconds() - sim_cpu:.2f} s"
            )
        print(
            f"mean: {args.devices * args.rounds / total_time:.1f} devices/s, "
            f"{total_samples / total_time:.0f} samples/s"
        )
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
