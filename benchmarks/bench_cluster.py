"""Several bridges: end-to-end samples/s and tickets/s with one bridge on SQLite, one bridge on
PostgreSQL, and two bridges on PostgreSQL + Redis, in one run; CPU per sample of each setup
(the bridges', and with PostgreSQL's and Redis' processes); and the failover time after a
SIGKILL: from the kill to the first ticket the survivor opens for the dead bridge's hospital.

Real bridge processes (`python -m bridge run`) on this machine's PostgreSQL (127.0.0.1:5432,
a database of the benchmark's own) and Redis (127.0.0.1:6379, a key prefix of its own). Eight
hospitals, one agent each (a thread of this process), pushing numbered batches over keep-alive
connections; with two bridges each agent sends its batches to both in turn, as through a load
balancer, so about half of them are handed over to the bridge holding the hospital. On a
2-core machine the load generator, the bridges, PostgreSQL and Redis share the CPU: two
bridges cannot show two-fold scaling here, CPU per sample says what each setup costs.

    python benchmarks/bench_cluster.py [--seconds 10] [--batch 200]
"""

from __future__ import annotations

import argparse
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import psycopg
import redis
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.auth import hash_token  # noqa: E402

TOKEN = "bench-agent-token-0123456789"
ADMIN = "admin-token-0123456789abcdef"
HOSPITALS = [f"szpital-{c}" for c in range(8)]
ASSETS = {h: [f"srv-{c}-{a}" for a in range(5)] for c, h in enumerate(HOSPITALS)}
PG = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_database() -> str:
    name = f"dyzur_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_config(tmp: Path, store: str, prefix: str | None, lease: str = "15s") -> Path:
    data: dict = {
        "store": store,
        "max_body_bytes": 64 * 1024 * 1024,
        "incidents": {"storm": {"enabled": False}},
        "clients": [{"id": h, "name": h} for h in HOSPITALS],
        "assets": [{"id": a, "client": h} for h in HOSPITALS for a in ASSETS[h]],
        "tokens": [
            {"name": "bench", "sha256": hash_token(TOKEN), "role": "agent"},
            {"name": "admin", "sha256": hash_token(ADMIN), "role": "admin"},
        ],
    }
    if prefix is not None:
        data["coordination"] = REDIS
        data["cluster"] = {"prefix": prefix, "lease": lease}
    path = tmp / f"dyzur-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Bridge:
    def __init__(self, config: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = config.with_suffix(f".{self.port}.log")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bridge",
                "run",
                "--config",
                str(config),
                "--port",
                str(self.port),
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"bridge did not start:\n{self.log.read_text()}")
            time.sleep(0.1)

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def held(self) -> set[str]:
        text = httpx.get(
            f"{self.url}/metrics", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5
        ).text
        return {
            line.split('"')[1]
            for line in text.splitlines()
            if line.startswith("dyzur_cluster_hospitals_held{") and line.endswith(" 1.0")
        }

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def peers_cpu() -> float:
    """CPU seconds of PostgreSQL's and Redis' processes so far."""
    total = 0.0
    for p in psutil.process_iter(["name"]):
        if p.info["name"] in ("postgres", "redis-server"):
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    return total


class Agent:
    """One hospital's agent: numbered batches, each sent again (to the next bridge) until one
    answers 200, as the agent's spool does."""

    def __init__(self, hospital: str, urls: list[str], batch: int, seed: int) -> None:
        self.hospital, self.urls, self.batch = hospital, urls, batch
        self.rng = random.Random(seed)
        self.agent_id = f"bench-{hospital}-{uuid.uuid4().hex[:6]}"
        self.seq = 0
        self.samples = 0
        self.tickets = 0
        self.http = httpx.Client(timeout=60, headers={"Authorization": f"Bearer {TOKEN}"})

    def quiet(self) -> list[dict]:
        assets = ASSETS[self.hospital]
        return [
            {
                "metric": "dyzur_filesystem_used_ratio",
                "labels": {"asset": self.rng.choice(assets), "mountpoint": f"/d{i % 20}"},
                "value": self.rng.betavariate(2, 5) * 0.8,
            }
            for i in range(self.batch)
        ]

    def opening(self, n: int) -> list[dict]:
        """``n`` samples, each a new full filesystem: a ticket each."""
        self.tickets += n
        return [
            {
                "metric": "dyzur_filesystem_used_ratio",
                "labels": {
                    "asset": self.rng.choice(ASSETS[self.hospital]),
                    "mountpoint": f"/t{self.seq}-{i}",
                },
                "value": 0.95,
            }
            for i in range(n)
        ]

    def send(self, samples: list[dict]) -> None:
        self.seq += 1
        body = {"agent": {"id": self.agent_id, "seq": self.seq}, "samples": samples}
        for attempt in range(10_000):
            url = self.urls[(self.seq + attempt) % len(self.urls)]
            try:
                answer = self.http.post(f"{url}/api/v1/samples", json=body)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if answer.status_code == 200:
                self.samples += len(samples)
                return
            time.sleep(0.05)
        raise SystemExit(f"{self.hospital}: batch {self.seq} never taken")


def run_phase(agents: list[Agent], seconds: float, make: Callable[[Agent], list[dict]]) -> float:
    stop = time.monotonic() + seconds
    start = time.monotonic()

    def loop(agent: Agent) -> None:
        while time.monotonic() < stop:
            agent.send(make(agent))

    threads = [threading.Thread(target=loop, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - start


def measure(name: str, bridges: list[Bridge], seconds: float, batch: int) -> dict[str, float]:
    urls = [b.url for b in bridges]
    agents = [Agent(h, urls, batch, seed=i) for i, h in enumerate(HOSPITALS)]
    for a in agents:  # warm-up: every hospital's series known, connections open
        a.send(a.quiet())
    figures: dict[str, float] = {}
    for phase, make in (
        ("samples", lambda a: a.quiet()),
        ("tickets", lambda a: a.opening(20)),
    ):
        for a in agents:
            a.samples = a.tickets = 0
        cpu0, peers0 = sum(b.cpu() for b in bridges), peers_cpu()
        wall = run_phase(agents, seconds, make)
        cpu = sum(b.cpu() for b in bridges) - cpu0
        peers = peers_cpu() - peers0
        samples = sum(a.samples for a in agents)
        figures[f"{phase}_per_s"] = (
            samples / wall if phase == "samples" else sum(a.tickets for a in agents) / wall
        )
        figures[f"{phase}_bridge_cpu_ms_per_sample"] = cpu / samples * 1000
        figures[f"{phase}_total_cpu_ms_per_sample"] = (cpu + peers) / samples * 1000
    print(
        f"{name:<28} {figures['samples_per_s']:>9,.0f} samples/s  "
        f"{figures['tickets_per_s']:>7,.0f} tickets/s  CPU/sample (bridges | with PG+Redis): "
        f"{figures['samples_bridge_cpu_ms_per_sample'] * 1000:.0f} | "
        f"{figures['samples_total_cpu_ms_per_sample'] * 1000:.0f} µs quiet, "
        f"{figures['tickets_bridge_cpu_ms_per_sample'] * 1000:.0f} | "
        f"{figures['tickets_total_cpu_ms_per_sample'] * 1000:.0f} µs opening",
        flush=True,
    )
    return figures


def failover(tmp: Path, lease: str) -> float:
    """Seconds from SIGKILL of the bridge holding a hospital to the first ticket the survivor
    opened for it (an agent pushing all along, to both bridges in turn)."""
    database = new_database()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    config = write_config(tmp, f"{PG}/{database}", prefix, lease)
    bridges = [Bridge(config), Bridge(config)]
    try:
        deadline = time.monotonic() + 60
        while not all(b.held() for b in bridges):
            if time.monotonic() > deadline:
                raise SystemExit("the hospitals were never shared")
            time.sleep(0.2)
        victim = next(b for b in bridges if HOSPITALS[0] in b.held())
        survivor = next(b for b in bridges if b is not victim)
        agent = Agent(HOSPITALS[0], [b.url for b in bridges], 10, seed=99)
        agent.send(agent.opening(1))
        victim.stop(signal.SIGKILL)
        killed = time.monotonic()
        agent.urls = [survivor.url]  # the load balancer saw the dead one go
        agent.send(agent.opening(1))  # answered 200 once its ticket is in PostgreSQL
        return time.monotonic() - killed
    finally:
        for b in bridges:
            b.stop()
        redis_keys = redis.Redis.from_url(REDIS)
        keys = list(redis_keys.scan_iter(match=f"{prefix}:*"))
        if keys:
            redis_keys.delete(*keys)
        drop_database(database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    print(
        f"{len(HOSPITALS)} hospitals, one agent each, batches of {args.batch} samples (quiet) "
        f"or 20 new tickets (opening), {args.seconds:g} s per phase"
    )
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        results: dict[str, dict[str, float]] = {}

        config = write_config(tmp, f"sqlite:///{tmp}/bench.db", None)
        bridge = Bridge(config)
        try:
            results["sqlite-1"] = measure("1 bridge, SQLite", [bridge], args.seconds, args.batch)
        finally:
            bridge.stop()

        database = new_database()
        try:
            bridge = Bridge(write_config(tmp, f"{PG}/{database}", None))
            try:
                results["pg-1"] = measure(
                    "1 bridge, PostgreSQL", [bridge], args.seconds, args.batch
                )
            finally:
                bridge.stop()
        finally:
            drop_database(database)

        database = new_database()
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        try:
            config = write_config(tmp, f"{PG}/{database}", prefix)
            bridges = [Bridge(config), Bridge(config)]
            try:
                deadline = time.monotonic() + 60
                while not all(b.held() for b in bridges) and time.monotonic() < deadline:
                    time.sleep(0.2)
                results["pg-2"] = measure(
                    "2 bridges, PostgreSQL+Redis", bridges, args.seconds, args.batch
                )
            finally:
                for b in bridges:
                    b.stop()
        finally:
            drop_database(database)
            client = redis.Redis.from_url(REDIS)
            keys = list(client.scan_iter(match=f"{prefix}:*"))
            if keys:
                client.delete(*keys)

        base = results["sqlite-1"]
        for name in ("pg-1", "pg-2"):
            r = results[name]
            samples = r["samples_per_s"] / base["samples_per_s"]
            tickets = r["tickets_per_s"] / base["tickets_per_s"]
            print(f"ratio {name} / sqlite-1: samples/s {samples:.2f}, tickets/s {tickets:.2f}")
        r1, r2 = results["pg-1"], results["pg-2"]
        print(
            f"ratio pg-2 / pg-1: samples/s {r2['samples_per_s'] / r1['samples_per_s']:.2f}, "
            f"tickets/s {r2['tickets_per_s'] / r1['tickets_per_s']:.2f}"
        )
        for lease in ("15s", "5s"):
            seconds = failover(tmp, lease)
            print(
                f"failover after SIGKILL, cluster.lease {lease}: first ticket of the dead "
                f"bridge's hospital by the survivor after {seconds:.1f} s"
            )


if __name__ == "__main__":
    main()
