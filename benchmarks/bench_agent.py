"""The agent beside Debian's prometheus-node-exporter on this machine, in one run.

Measures, from /proc, the resident memory (VmRSS) and the CPU seconds of:
  - node_exporter (--no-collector.systemd) per scrape of its /metrics,
  - the dyzur agent (host collector, one process rule on a running service) per collection
    cycle, a cycle being collect + spool + push to a real bridge, counted by the bridge's
    batch numbers.
Targets: agent RSS <= 1.5 x node_exporter's; agent CPU per cycle <= node_exporter's per scrape.
It also prints what an agent costs between collections (one whose collector runs hourly), which
the cycles above do not show at their short interval: at the default 30 s it adds to each cycle.

Each run measures both, one after the other; the ratios of each run and their spread are
printed (a machine shared with other work moves both, so compare within a run).

    python benchmarks/bench_agent.py [--scrapes 200] [--cycles 100] [--interval 0.5] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.auth import hash_token  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
AGENT_TOKEN = "bench-agent-token-0123456789"
ENGINEER_TOKEN = "bench-engineer-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, all threads


def memory_kib(pid: int) -> tuple[int, int]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


def get(url: str, token: str | None = None) -> bytes:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def wait(url: str, proc: subprocess.Popen, token: str | None = None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited")
        try:
            get(url, token)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def node_exporter(scrapes: int) -> tuple[float, int, int]:
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if binary is None:
        raise SystemExit("prometheus-node-exporter is not installed (apt install it)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--no-collector.systemd"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait(url, proc)
        for _ in range(5):
            get(url)
        before = cpu_seconds(proc.pid)
        for _ in range(scrapes):
            get(url)
        per_scrape = (cpu_seconds(proc.pid) - before) / scrapes
        rss, peak = memory_kib(proc.pid)
        return per_scrape, rss, peak
    finally:
        proc.terminate()
        proc.wait()


def thread_cpu_ns(pid: int) -> int:
    """CPU nanoseconds of the process's live threads (exact, unlike the 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # the thread ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total


def agent_config(tmp_path: Path, name: str, bridge_port: int, interval: str) -> str:
    (tmp_path / name).write_text(
        yaml.safe_dump(
            {
                "asset": "srv-bench",
                "bridge": {"url": f"http://127.0.0.1:{bridge_port}", "token_file": "agent.token"},
                "spool": {"path": "spool.db"},
                "metrics": {"listen": f"127.0.0.1:{free_port()}"},
                "jitter": 0,
                "collectors": [
                    {
                        "name": "host",
                        "interval": interval,
                        # Watch a service that runs, as on a hospital host.
                        "options": {
                            "processes": [{"name": "bridge", "match_cmdline": "bridge run"}]
                        },
                    }
                ],
            }
        )
    )
    return name


def agent(cycles: int, interval: float, idle: float) -> tuple[float, int, int, int, float]:
    """CPU per cycle, RSS, peak RSS, cycles measured; then, from a second agent whose
    collector runs once an hour, its CPU per second between collections."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        bridge_port = free_port()
        (tmp_path / "dyzur.yaml").write_text(
            yaml.safe_dump(
                {
                    "store": "sqlite:///bridge.db",
                    "listen": {"port": bridge_port},
                    "clients": [{"id": "szpital", "name": "Szpital"}],
                    "assets": [{"id": "srv-bench", "client": "szpital"}],
                    "tokens": [
                        {"name": "agent", "sha256": hash_token(AGENT_TOKEN), "role": "agent"},
                        {"name": "eng", "sha256": hash_token(ENGINEER_TOKEN), "role": "engineer"},
                    ],
                }
            )
        )
        (tmp_path / "agent.token").write_text(AGENT_TOKEN)
        bridge = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "--config", "dyzur.yaml"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        agents_url = f"http://127.0.0.1:{bridge_port}/api/v1/agents"

        def start(config: str) -> subprocess.Popen:
            # As deployed: `dyzur agent` with the unit's MALLOC_ARENA_MAX.
            return subprocess.Popen(
                [sys.executable, "-m", "bridge", "agent", "--config", config],
                cwd=tmp_path,
                env={**os.environ, "MALLOC_ARENA_MAX": "2"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        def batches() -> int:
            streams = json.loads(get(agents_url, ENGINEER_TOKEN))
            return streams[0]["batches"] if streams else 0

        procs = []
        try:
            wait(agents_url, bridge, ENGINEER_TOKEN)
            proc = start(agent_config(tmp_path, "agent.yaml", bridge_port, f"{interval}s"))
            procs.append(proc)
            while batches() < 5:  # warm up: imports, first filesystem scan, first pushes
                time.sleep(interval / 2)
            start_batches, before = batches(), cpu_seconds(proc.pid)
            while batches() - start_batches < cycles:
                time.sleep(interval / 2)
            done, after = batches() - start_batches, cpu_seconds(proc.pid)
            rss, peak = memory_kib(proc.pid)
            proc.terminate()
            proc.wait()
            # Between collections (every 30 s by default) an agent should cost nothing.
            first = batches()
            proc = start(agent_config(tmp_path, "agent-idle.yaml", bridge_port, "1h"))
            procs.append(proc)
            while batches() == first:
                time.sleep(0.2)
            time.sleep(1.0)  # its first push answered
            idle_before = thread_cpu_ns(proc.pid)
            time.sleep(idle)
            idle_ns = thread_cpu_ns(proc.pid) - idle_before
            return (after - before) / done, rss, peak, done, idle_ns / 1e9 / idle
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()
            bridge.terminate()
            bridge.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument(
        "--idle", type=float, default=10.0, help="seconds an agent is watched between collections"
    )
    ap.add_argument(
        "--runs", type=int, default=3, help="node_exporter then the agent, this many times"
    )
    args = ap.parse_args()
    # CPU counters tick every 10 ms: 100 cycles of 3 ms are 30 ticks, good to about 3 %.
    cpu_ratios, rss_ratios = [], []
    for run in range(1, args.runs + 1):
        ne_cpu, ne_rss, ne_peak = node_exporter(args.scrapes)
        ag_cpu, ag_rss, ag_peak, cycles, idle = agent(args.cycles, args.interval, args.idle)
        cpu_ratios.append(ag_cpu / ne_cpu)
        rss_ratios.append(ag_rss / ne_rss)
        print(f"run {run}:")
        print(
            f"  node_exporter: {ne_cpu * 1000:.2f} ms CPU per scrape ({args.scrapes} scrapes), "
            f"RSS {ne_rss / 1024:.1f} MiB (peak {ne_peak / 1024:.1f} MiB)"
        )
        print(
            f"  dyzur agent:   {ag_cpu * 1000:.2f} ms CPU per cycle ({cycles} cycles, collect + "
            f"spool + push), RSS {ag_rss / 1024:.1f} MiB (peak {ag_peak / 1024:.1f} MiB)"
        )
        print(
            f"  dyzur agent between collections: {idle * 1e6:.0f} us CPU per second, "
            f"{idle * 30 * 1000:.2f} ms per default 30 s interval"
        )
        print(
            f"  ratios: RSS {rss_ratios[-1]:.2f} x node_exporter (target <= 1.5), "
            f"CPU {cpu_ratios[-1]:.2f} x (target <= 1.0)"
        )
    if args.runs > 1:
        print(
            f"over {args.runs} runs (min / median / max): "
            f"CPU {min(cpu_ratios):.2f} / {statistics.median(cpu_ratios):.2f} / "
            f"{max(cpu_ratios):.2f} x, RSS {min(rss_ratios):.2f} / "
            f"{statistics.median(rss_ratios):.2f} / {max(rss_ratios):.2f} x node_exporter"
        )


if __name__ == "__main__":
    main()
