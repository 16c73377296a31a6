"""End-to-end ingest: samples/s over HTTP into one bridge process with the SQLite store.

Starts the real bridge (`python -m bridge run`) with 40 hospitals, 400 assets and the default
host pack, then pushes pre-encoded JSON batches over keep-alive connections from this process
and reports samples/s. On a 2-core machine the load generator shares the CPU with the bridge.

    python benchmarks/bench_ingest.py [--seconds 10] [--batch 5000] [--connections 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.auth import hash_token  # noqa: E402

TOKEN = "bench-agent-token-0123456789"
MOUNTS = ("/", "/var", "/home", "/srv/amms", "/var/lib/postgresql", "/backup")


def config(tmp: Path, port: int) -> Path:
    clients = [{"id": f"szpital-{c:02d}", "name": f"Szpital {c}"} for c in range(40)]
    assets = [
        {"id": f"srv-{c:02d}-{a}", "client": f"szpital-{c:02d}"}
        for c in range(40)
        for a in range(10)
    ]
    data = {
        "store": "sqlite:///bench.db",
        "listen": {"port": port},
        "max_body_bytes": 64 * 1024 * 1024,
        "clients": clients,
        "assets": assets,
        "tokens": [{"name": "bench", "sha256": hash_token(TOKEN), "role": "agent"}],
    }
    path = tmp / "dyzur.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def batch(rng: random.Random, size: int) -> bytes:
    """What agents send: filesystems, memory, load and CPU of random hosts; a few run high."""
    samples = []
    while len(samples) < size:
        asset = f"srv-{rng.randrange(40):02d}-{rng.randrange(10)}"
        for mount in MOUNTS:
            samples.append(
                {
                    "metric": "dyzur_filesystem_used_ratio",
                    "labels": {"asset": asset, "mountpoint": mount, "fstype": "ext4"},
                    "value": rng.betavariate(2, 5) if rng.random() > 0.02 else 0.95,
                }
            )
        samples.append(
            {
                "metric": "dyzur_memory_used_ratio",
                "labels": {"asset": asset},
                "value": rng.random() * 0.9,
            }
        )
        samples.append(
            {"metric": "dyzur_load1_per_cpu", "labels": {"asset": asset}, "value": rng.random()}
        )
        samples.append(
            {
                "metric": "dyzur_cpu_utilisation_ratio",
                "labels": {"asset": asset},
                "value": rng.random(),
            }
        )
    return json.dumps({"samples": samples[:size]}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("bridge exited during start")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("bridge did not start")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--connections", type=int, default=2)
    args = ap.parse_args()

    rng = random.Random(7)
    bodies = [batch(rng, args.batch) for _ in range(16)]
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cfg = config(Path(tmp), port)
        log = open(Path(tmp) / "bridge.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "--config", str(cfg)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_up(port, proc)
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            sent = [0] * args.connections
            errors = []
            stop = time.perf_counter() + args.seconds

            def worker(i: int) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                n = i
                while time.perf_counter() < stop:
                    conn.request("POST", "/api/v1/samples", bodies[n % len(bodies)], headers)
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status != 200:
                        errors.append(body[:200])
                        return
                    sent[i] += json.loads(body)["accepted"]
                    n += args.connections

            # Warm up (first rule compilation paths, SQLite pages), then measure.
            for body in bodies[:2]:
                c = http.client.HTTPConnection("127.0.0.1", port)
                c.request("POST", "/api/v1/samples", body, headers)
                c.getresponse().read()
            t0 = time.perf_counter()
            threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.connections)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t0
            if errors:
                raise SystemExit(f"errors: {errors[:3]}")
            total = sum(sent)
            print(
                f"end-to-end ingest over HTTP into SQLite, 1 bridge process: "
                f"{total:,} samples in {elapsed:.2f} s = {total / elapsed:,.0f} samples/s "
                f"(batch {args.batch}, {args.connections} connections; target >= 100,000)"
            )
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
