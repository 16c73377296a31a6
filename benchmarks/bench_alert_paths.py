"""From a UPS going to battery to the Awaria ticket in dyzur: the direct path against the path
through Prometheus and Alertmanager, at the same poll interval P.

One snmpsim serves a copy of the Eaton 93E recording (tests/data/snmp/eaton-93e-80.snmprec) in
which upsOutputSource (1.3.6.1.2.1.33.1.4.1.0) is writable (snmpsim's ``writecache`` variation
module): an SNMP SET flips the simulated device itself from normal(3) to battery(5) and back.
One dyzur agent polls it with the snmp collector (profile ``ups-mib``) every P seconds (jitter
0) and serves the latest samples on its metrics listener. Then:

A. direct: the agent pushes each poll to a real bridge process, whose rule (a rule file of the
   benchmark's own, ``dyzur_ups_on_battery == 1`` without ``for``) opens an Awaria;
B. Prometheus/Alertmanager: a real Prometheus scrapes the agent's /metrics every P seconds and
   evaluates ``dyzur_ups_on_battery == 1`` (for: 0s, severity critical) every P seconds; it
   sends to a real Alertmanager (group_wait 0s, group_interval 1s) whose webhook posts to the
   same bridge's /api/v1/alertmanager with an agent token: an Awaria ``alertmanager:...``.

Each round waits a random fraction of P (random phase against both poll cycles), records the
wall-clock time t0 and SETs the UPS to battery, then polls GET /api/v1/tickets every 50 ms and
records when each path's ticket first appears (also the ticket's ``opened_at``, the bridge's
own clock). Then the UPS goes back to normal and the round ends once both tickets are resolved
(the Alertmanager one through send_resolved). The bridge runs with reopen_period 0, so every
round opens new tickets. A first warm-up round (the bridge's first ticket is slower) is printed
but left out of the summary. Printed: per round and summary (median, max) for each path, also
when Prometheus' rule evaluation first saw the UPS on battery (the alert's activeAt), and
whether the direct path meets the target "<= P + 1 s" and beats Prometheus/Alertmanager.

Read "+prom" (how much later the Prometheus/Alertmanager ticket came) knowing that the offsets
of the agent's polls, Prometheus' scrapes and its rule evaluations are fixed at start-up: it is
nearly constant within a run and differs between runs, from about 0 to 2 P.

Everything runs on 127.0.0.1 on free ports in a temporary directory and is stopped at the end.
Needs snmpsim (``pip install -e '.[dev]'``) and Debian's prometheus and prometheus-alertmanager.

Run: ``.venv/bin/python benchmarks/bench_alert_paths.py [--rounds 5] [--interval 2] [--warmup 1]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import TOKENS, auth, config_data, free_port  # noqa: E402
from tests.processes import RunningAgent, RunningBridge, wait_for  # noqa: E402
from tests.promstack import Alertmanager, Prometheus  # noqa: E402
from tests.test_snmp_profiles import DATA as SNMP_DATA  # noqa: E402
from tests.test_snmp_profiles import SnmpSim  # noqa: E402

RECORDING = SNMP_DATA / "eaton-93e-80.snmprec"
COMMUNITY = "ups-bench"  # snmpsim serves ups-bench.snmprec under this community
OUTPUT_SOURCE = "1.3.6.1.2.1.33.1.4.1.0"  # upsOutputSource
NORMAL, BATTERY = 3, 5
ASSET = "ups-a"
DIRECT_RULE = "bench_ups_on_battery"
ALERTNAME = "BenchUpsOnBattery"
AM_RULE = f"alertmanager:{ALERTNAME}"
POLL = 0.05  # seconds between GET /api/v1/tickets

# The direct path's rule, in the format of rules/packs/ups.yaml but without `for`: both paths
# are compared on detection and delivery, not on a hold time.
DIRECT_RULES = {
    "rules": [
        {
            "name": DIRECT_RULE,
            "metric": "dyzur_ups_on_battery",
            "when": "== 1",
            "category": "awaria",
            "title": {
                "pl": "UPS {{ labels.asset }} pracuje na baterii (benchmark)",
                "en": "UPS {{ labels.asset }} is running on battery (benchmark)",
            },
            "description": {
                "pl": "UPS {{ labels.asset }} zasila odbiorniki z baterii.",
                "en": "UPS {{ labels.asset }} feeds its load from battery.",
            },
        }
    ]
}

PROMETHEUS_RULES = {
    "groups": [
        {
            "name": "dyzur-bench",
            "rules": [
                {
                    "alert": ALERTNAME,
                    "expr": "dyzur_ups_on_battery == 1",
                    "for": "0s",
                    "labels": {"severity": "critical"},
                    "annotations": {"summary": "UPS pracuje na baterii"},
                }
            ],
        }
    ]
}


def duration(seconds: float) -> str:
    """Seconds as a Prometheus duration (milliseconds, so 2.5 s works too)."""
    return f"{round(seconds * 1000)}ms"


# --- the simulated UPS -----------------------------------------------------------------------


def writable_recording(data_dir: Path) -> None:
    """A copy of the Eaton recording whose upsOutputSource an SNMP SET changes: snmpsim's
    writecache module answers ``value`` until a SET stores another one (in memory)."""
    lines = RECORDING.read_text(encoding="iso-8859-1").splitlines()
    tagged = f"{OUTPUT_SOURCE}|2:writecache|value={NORMAL}"
    out = [tagged if line.startswith(f"{OUTPUT_SOURCE}|") else line for line in lines]
    if tagged not in out:
        raise SystemExit(f"{RECORDING} has no {OUTPUT_SOURCE} line")
    (data_dir / f"{COMMUNITY}.snmprec").write_text("\n".join(out) + "\n", encoding="iso-8859-1")


def set_output_source(port: int, value: int) -> None:
    """SNMP SET upsOutputSource on the simulator; fails loudly if the device refuses."""
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        UdpTransportTarget,
        set_cmd,
    )
    from pysnmp.proto.rfc1902 import Integer32

    from collectors.snmp.pysnmp_engine import offline_engine

    async def send() -> None:
        engine = offline_engine()
        try:
            target = await UdpTransportTarget.create(("127.0.0.1", port), timeout=1, retries=2)
            error, status, _, binds = await set_cmd(
                engine,
                CommunityData(COMMUNITY, mpModel=1),
                target,
                ContextData(),
                ObjectType(ObjectIdentity(OUTPUT_SOURCE), Integer32(value)),
                lookupMib=False,
            )
        finally:
            engine.close_dispatcher()
        if error or status:
            raise RuntimeError(f"SNMP SET {OUTPUT_SOURCE}={value}: {error or status.prettyPrint()}")
        if int(binds[0][1]) != value:
            raise RuntimeError(f"SNMP SET {OUTPUT_SOURCE}={value}: the device answered {binds}")

    asyncio.run(send())


# --- the set-up --------------------------------------------------------------------------------


def bridge_config(work: Path, rules_file: Path) -> Path:
    data = config_data("sqlite:///var/dyzur.db")
    data["rule_files"] = [str(rules_file)]
    data["reopen_period"] = "0s"  # every round opens new tickets, with their own opened_at
    data["assets"].append(
        {"id": ASSET, "client": "szpital-a", "kind": "ups", "name": "UPS serwerownia"}
    )
    path = work / "dyzur.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def agent_config(work: Path, bridge: RunningBridge, snmp_port: int, metrics_port: int, p: float):
    (work / "agent.token").write_text(TOKENS["agent"])
    path = work / "agent.yaml"
    device = {
        "asset": ASSET,
        "host": "127.0.0.1",
        "port": snmp_port,
        "community": COMMUNITY,
        "profiles": ["ups-mib"],
        "timeout": min(1.0, p / 2),
        "retries": 1,
    }
    path.write_text(
        yaml.safe_dump(
            {
                "asset": "srv-a1",  # the host the agent runs on
                "bridge": {"url": bridge.url, "token_file": "agent.token"},
                "spool": {"path": "spool.db"},
                "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
                "jitter": 0,  # exactly every P seconds, as Prometheus scrapes
                "collectors": [
                    {
                        "name": "ups",
                        "kind": "snmp",
                        "interval": p,  # seconds
                        "options": {"devices": [device]},
                    }
                ],
            }
        )
    )
    return path


def prometheus_config(alertmanager: Alertmanager, metrics_port: int, p: float) -> dict:
    return {
        "global": {"scrape_interval": duration(p), "evaluation_interval": duration(p)},
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [alertmanager.url.removeprefix("http://")]}]}
            ]
        },
        "scrape_configs": [
            {
                "job_name": "dyzur-agent",
                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
            }
        ],
    }


def agent_shows_the_ups(agent: RunningAgent) -> bool:
    if agent.proc.poll() is not None:
        raise RuntimeError("the agent exited")
    try:
        text = httpx.get(agent.metrics_url, timeout=2).text
    except httpx.TransportError:
        return False
    return any(
        line.startswith("dyzur_ups_on_battery{") and f'asset="{ASSET}"' in line
        for line in text.splitlines()
    )


# --- one round ------------------------------------------------------------------------------


class Tickets:
    def __init__(self, bridge: RunningBridge) -> None:
        self.http = httpx.Client(base_url=bridge.url, headers=auth("engineer"), timeout=5)
        self.latencies: list[float] = []

    def list(self) -> list[dict]:
        started = time.perf_counter()
        r = self.http.get("/api/v1/tickets", params={"asset": ASSET, "limit": 1000})
        r.raise_for_status()
        self.latencies.append(time.perf_counter() - started)
        return r.json()

    def get(self, number: str) -> dict:
        r = self.http.get(f"/api/v1/tickets/{number}")
        r.raise_for_status()
        return r.json()


@dataclass
class Bench:
    tickets: Tickets
    prom: Prometheus
    agent: RunningAgent
    snmp_port: int
    interval: float


def path_of(ticket: dict) -> str | None:
    if ticket["rule"] == DIRECT_RULE:
        return "direct"
    if ticket["rule"] == AM_RULE:
        return "prom"
    return None


def prometheus_active_at(prom: Prometheus) -> float | None:
    """When Prometheus' rule evaluation first found the UPS on battery (the alert's activeAt)."""
    r = httpx.get(f"{prom.url}/api/v1/alerts", timeout=5)
    for alert in r.json()["data"]["alerts"]:
        if alert["labels"].get("alertname") == ALERTNAME and alert["state"] == "firing":
            return rfc3339(alert["activeAt"])
    return None


def rfc3339(text: str) -> float:
    """Go's RFC 3339 time (nanoseconds, Z) as a Unix time."""
    m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base, fraction, zone = m.groups()
    when = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).timestamp()
    return when + float(fraction or 0)


def collector_duration(agent: RunningAgent) -> float | None:
    """The agent's last SNMP poll of the UPS, seconds (its dyzur_collector_duration_seconds)."""
    try:
        text = httpx.get(agent.metrics_url, timeout=2).text
    except httpx.TransportError:
        return None
    for line in text.splitlines():
        if line.startswith('dyzur_collector_duration_seconds{collector="ups"}'):
            return float(line.split()[-1])
    return None


def run_round(bench: Bench, timeout: float) -> dict:
    tickets, p = bench.tickets, bench.interval
    known = {t["number"] for t in tickets.list()}
    wait = random.uniform(0, p)  # a random phase against the poll cycles
    time.sleep(wait)
    t0 = time.time()
    set_output_source(bench.snmp_port, BATTERY)
    seen: dict[str, tuple[float, dict]] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < 2:
        listed = tickets.list()
        now = time.time()  # when the poller sees the ticket: on the answer
        for t in listed:
            path = path_of(t)
            if path and path not in seen and t["number"] not in known:
                seen[path] = (now, t)
        if len(seen) < 2:
            if time.monotonic() > deadline:
                missing = {"direct", "prom"} - set(seen)
                raise RuntimeError(f"no ticket from {', '.join(sorted(missing))} in {timeout:g}s")
            time.sleep(POLL)
    result: dict = {"wait": wait}
    for path, (at, t) in seen.items():
        if t["category"] != "awaria":
            raise RuntimeError(f"{t['number']} ({t['rule']}) is {t['category']}, not awaria")
        result[path] = at - t0
        result[f"{path}_opened"] = datetime.fromisoformat(t["opened_at"]).timestamp() - t0
        result[f"{path}_ticket"] = t["number"]
    active_at = prometheus_active_at(bench.prom)
    result["prom_eval"] = float("nan") if active_at is None else active_at - t0
    result["poll"] = collector_duration(bench.agent) or float("nan")

    # Back to normal; the round ends once both tickets are resolved.
    back = time.time()
    set_output_source(bench.snmp_port, NORMAL)
    resolved: dict[str, float] = {}

    def both_resolved() -> bool:
        for path in ("direct", "prom"):
            ticket = result[f"{path}_ticket"]
            if path not in resolved and tickets.get(ticket)["status"] == "resolved":
                resolved[path] = time.time() - back
        return len(resolved) == 2

    wait_for(both_resolved, timeout=timeout, interval=POLL, what="both tickets resolved")
    result["direct_resolved"], result["prom_resolved"] = resolved["direct"], resolved["prom"]
    return result


# --- main -----------------------------------------------------------------------------------


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=float, default=2.0, help="poll interval P, seconds")
    parser.add_argument(
        "--warmup", type=int, default=1, help="rounds run first and left out of the summary"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for the random phases")
    args = parser.parse_args()
    p = args.interval
    if p < 1:
        parser.error("--interval: at least 1 second")
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds: at least 1; --warmup: at least 0")
    random.seed(args.seed)
    for binary in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(binary) is None:
            print(f"{binary} is not installed (Debian: apt-get install {binary})", file=sys.stderr)
            return 2
    try:
        import snmpsim  # noqa: F401
    except ImportError:
        print("snmpsim is not installed: pip install -e '.[dev]'", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="dyzur-bench-alert-paths-") as tmp:
        work = Path(tmp)
        # snmpsim started as root drops to nobody, who must read the recording.
        os.chmod(work, 0o755)
        snmp_dir = work / "snmp"
        snmp_dir.mkdir(mode=0o755)
        writable_recording(snmp_dir)
        rules_file = work / "bench_rules.yaml"
        rules_file.write_text(yaml.safe_dump(DIRECT_RULES, allow_unicode=True))

        logs: list[tuple[str, Callable[[], str]]] = []
        with contextlib.ExitStack() as stack:
            try:
                sim = SnmpSim(snmp_dir)
                stack.callback(sim.stop)
                logs.append(("snmpsim", lambda: tail(sim.log)))
                set_output_source(sim.port, NORMAL)

                bridge = RunningBridge(bridge_config(work, rules_file), free_port())
                stack.callback(bridge.stop)
                logs.append(("bridge", lambda: tail(bridge.log)))

                metrics_port = free_port()
                agent = RunningAgent(
                    agent_config(work, bridge, sim.port, metrics_port, p), metrics_port
                )
                stack.callback(agent.stop)
                logs.append(("agent", lambda: tail(agent.log)))

                am = Alertmanager(work / "am", f"{bridge.url}/api/v1/alertmanager", TOKENS["agent"])
                stack.callback(am.stop)
                logs.append(("alertmanager", lambda: tail(am.log)))

                prom = Prometheus(
                    work / "prom", prometheus_config(am, metrics_port, p), PROMETHEUS_RULES
                )
                stack.callback(prom.stop)
                logs.append(("prometheus", lambda: tail(prom.log)))

                wait_for(
                    lambda: agent_shows_the_ups(agent),
                    timeout=60,
                    what="the agent to poll the UPS",
                )
                wait_for(
                    lambda: prom.query(f'dyzur_ups_on_battery{{asset="{ASSET}"}} == 0'),
                    timeout=60,
                    what="Prometheus to scrape the UPS from the agent",
                )
                tickets = Tickets(bridge)
                stack.callback(tickets.http.close)
                time.sleep(2 * p)  # both paths settled on "normal"
                bench = Bench(tickets, prom, agent, sim.port, p)
                run(bench, args.rounds, args.warmup)
            except Exception:  # the peers' logs say why; stopped either way (ExitStack)
                for name, output in logs:
                    print(f"--- {name} (last lines) ---\n{output()}", file=sys.stderr)
                raise
    return 0


def run(bench: Bench, rounds: int, warmup: int) -> None:
    p = bench.interval
    timeout = 10 * p + 30
    print(
        f"UPS on battery -> Awaria ticket, poll interval P = {p:g} s, {rounds} rounds "
        f"after {warmup} warm-up; seconds after the SNMP SET (t0), tickets polled every "
        f"{POLL * 1000:.0f} ms"
    )
    print(
        "  round   wait |  direct: seen  opened_at | prom+am: eval   seen  opened_at |"
        "  +prom | resolved: direct  prom"
    )
    results = []
    for n in range(1 - warmup, rounds + 1):
        r = run_round(bench, timeout)
        label = f"{n:>5}" if n > 0 else "  w-u"
        print(
            f"  {label}  {r['wait']:5.2f} |        {r['direct']:5.2f}  {r['direct_opened']:9.2f} |"
            f"          {r['prom_eval']:5.2f}  {r['prom']:5.2f}  {r['prom_opened']:9.2f} |"
            f"  {r['prom'] - r['direct']:+5.2f} |            {r['direct_resolved']:5.2f} "
            f"{r['prom_resolved']:5.2f}"
        )
        if n > 0:
            results.append(r)

    def figures(key: str) -> tuple[float, float]:
        values = [r[key] for r in results]
        return statistics.median(values), max(values)

    print("summary over the rounds (seen by polling / by the ticket's opened_at):")
    for label, key in (
        ("direct (agent -> bridge)", "direct"),
        ("Prometheus + Alertmanager", "prom"),
    ):
        med, worst = figures(key)
        med_o, worst_o = figures(f"{key}_opened")
        print(
            f"  {label:<26} median {med:5.2f} / {med_o:5.2f} s   "
            f"max {worst:5.2f} / {worst_o:5.2f} s"
        )
    eval_med, _ = figures("prom_eval")
    deliver = [r["prom_opened"] - r["prom_eval"] for r in results]
    print(
        f"  Prometheus + Alertmanager: the rule evaluation found it after median "
        f"{eval_med:.2f} s;\n    from that evaluation to the ticket (notifier, Alertmanager, "
        f"webhook, bridge): median {statistics.median(deliver):.2f} s, max {max(deliver):.2f} s"
    )
    poll_med, _ = figures("poll")
    lat = sorted(bench.tickets.latencies)
    print(
        f"  agent's SNMP poll of the UPS: median {1000 * poll_med:.0f} ms; "
        f"GET /api/v1/tickets: median {1000 * statistics.median(lat):.0f} ms "
        f"({len(lat)} requests)"
    )
    target = p + 1.0
    direct_med, direct_max = figures("direct")
    prom_med, prom_max = figures("prom")
    faster = sum(1 for r in results if r["direct"] < r["prom"])
    print(
        f"  target: direct <= P + 1 s = {target:g} s: "
        f"{'met' if direct_max <= target else 'NOT met'} (max {direct_max:.2f} s)"
    )
    print(
        f"  direct faster than Prometheus + Alertmanager: "
        f"{'yes' if direct_med < prom_med and faster == len(results) else 'no'} "
        f"(by {prom_med - direct_med:.2f} s at the median, {prom_max - direct_max:.2f} s at the "
        f"max; in {faster} of {len(results)} rounds)"
    )


if __name__ == "__main__":
    sys.exit(main())
