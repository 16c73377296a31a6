"""SNMP collector against a real net-snmp snmpd, beside Prometheus' snmp_exporter, in one run.

The benchmark starts its own Debian `snmpd` (net-snmp) on a free 127.0.0.1 UDP port, with its
own config (a read-only v2c community and a v3 authPriv user, SHA-256/AES) and its own
temporary directories, not the system's service; and Debian's `prometheus-snmp-exporter` on a
free port with a generated `snmp.yml` whose modules walk/get the same OIDs as dyzur's profiles.
Install them with `apt-get install snmpd snmp prometheus-snmp-exporter`.

1. Polls per second. Workload: the eight table columns of the `host-resources-storage`
   profile (hrStorageTable and hrDeviceTable of HOST-RESOURCES-MIB), read from the profile
   file itself. dyzur: one SnmpCollector with N device entries all pointing at the snmpd,
   `collect` rounds repeated until a run has lasted --seconds; snmp_exporter:
   `/snmp?target=127.0.0.1:PORT&module=...` scraped by --concurrency HTTP clients for as long.
   Runs alternate between the pollers, --runs of each; figures are min/median/max.
   - CPU per poll: dyzur's is this process's CPU time (the collector runs here); the
     exporter's is its process's CPU (psutil); the HTTP clients' CPU is counted for neither.
   - snmpd's CPU per poll, and its own counters per poll (SNMPv2-MIB snmp group, read with a
     GET before and after each run, the GETs' own share subtracted): packets in and out,
     GET requests, other requests (GETBULK; net-snmp counts no GETBULK of its own), v3
     engine discoveries (usmStatsUnknownEngineIDs), and varbinds answered
     (snmpInTotalReqVars).
   - The ratios dyzur / exporter: the issue's targets are polls/s >= 1x, CPU/poll <= 2x.
2. A large round: --big-devices (1,000) devices x 20 scalar OIDs (sysUpTime, sysServices and
   18 snmp group counters), one dyzur `collect` and as many exporter scrapes at the same
   concurrency; time for the round, CPU and packets per device.

dyzur's collector is measured with each of its backends (`backend: pysnmp`, the default, and
`netsnmp`); --backend picks some. A collector without the `backend` option is measured once
without it (said in the output).

    python benchmarks/bench_snmp.py [--runs 3] [--concurrency 16] [--backend pysnmp]
        [--backend netsnmp] [--seconds 3] [--devices 128] [--big-devices 1000]
        [--snmp-version 2c|3|both]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collectors.base import CollectorConfigError  # noqa: E402
from collectors.snmp import SnmpCollector, resolve_profile  # noqa: E402
from tests.processes import stop_process  # noqa: E402

STORAGE_PROFILE = "host-resources-storage"
BACKENDS = ("pysnmp", "netsnmp")
COMMUNITY = "bench-ro"  # not "public": nothing else on the machine answers to it
V3_USER, V3_AUTH_KEY, V3_PRIV_KEY = "bench-v3", "bench-auth-key", "bench-priv-key"
TIMEOUT, RETRIES = 5, 1  # dyzur's defaults, given to the exporter too

# The large round's 20 scalars: cheap for snmpd (no /proc scan behind them).
SCALARS = [
    "1.3.6.1.2.1.1.3.0",  # sysUpTime
    "1.3.6.1.2.1.1.7.0",  # sysServices (set in the config)
    *(f"1.3.6.1.2.1.11.{n}.0" for n in (*range(1, 7), *range(8, 20))),  # snmp group
]

# snmpd's own counters, read with one GET.
COUNTERS = {
    "in": "1.3.6.1.2.1.11.1.0",  # snmpInPkts
    "out": "1.3.6.1.2.1.11.2.0",  # snmpOutPkts
    "varbinds": "1.3.6.1.2.1.11.13.0",  # snmpInTotalReqVars
    "get": "1.3.6.1.2.1.11.15.0",  # snmpInGetRequests
    "getnext": "1.3.6.1.2.1.11.16.0",  # snmpInGetNexts
    "discovery": "1.3.6.1.6.3.15.1.1.4.0",  # usmStatsUnknownEngineIDs
    "timewindow": "1.3.6.1.6.3.15.1.1.2.0",  # usmStatsNotInTimeWindows
}


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def need(binary: str) -> str:
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if not path:
        sys.exit(
            f"{binary} not found: apt-get install snmpd snmp prometheus-snmp-exporter "
            "(the benchmark starts its own instances)"
        )
    return path


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class Snmpd:
    """A net-snmp snmpd of our own: its config, persistent directory and log in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port(socket.SOCK_DGRAM)
        self.workdir = workdir
        conf = workdir / "snmpd.conf"
        conf.write_text(
            f"agentaddress udp:127.0.0.1:{self.port}\n"
            f"rocommunity {COMMUNITY} 127.0.0.1\n"
            f'createUser {V3_USER} SHA-256 "{V3_AUTH_KEY}" AES "{V3_PRIV_KEY}"\n'
            f"rouser {V3_USER} priv\n"
            "sysServices 72\n"
            # One log line per request would cost snmpd more than answering it.
            "dontLogTCPWrappersConnects yes\n"
        )
        (workdir / "persist").mkdir()
        (workdir / "mibs").mkdir()
        env = {
            **os.environ,
            "SNMP_PERSISTENT_DIR": str(workdir / "persist"),
            "MIBDIRS": str(workdir / "mibs"),  # numeric OIDs: no MIB parsing at start
            "MIBS": "",
        }
        self.log = workdir / "snmpd.log"
        self.proc = subprocess.Popen(
            [need("snmpd"), "-f", "-C", "-c", str(conf), "-Lf", str(self.log),
             "-p", str(workdir / "snmpd.pid")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.process = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.get([COUNTERS["in"]])
                break
            except RuntimeError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"snmpd did not start; see {self.log}") from None
                time.sleep(0.1)
        self._overhead = self._calibrate()

    def get(self, oids: Sequence[str]) -> list[str]:
        """GET with net-snmp's own snmpget (a separate process: not in anyone's CPU)."""
        result = subprocess.run(
            [need("snmpget"), "-v2c", "-c", COMMUNITY, "-On", "-Oqv", "-t", "2", "-r", "1",
             f"127.0.0.1:{self.port}", *oids],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        values = result.stdout.split()
        if result.returncode != 0 or len(values) != len(oids):
            raise RuntimeError(result.stderr.strip() or result.stdout.strip())
        return values

    def raw_counters(self) -> dict[str, int]:
        return dict(zip(COUNTERS, (int(v) for v in self.get(list(COUNTERS.values()))), strict=True))

    def _calibrate(self) -> dict[str, int]:
        # What one reading adds to the next (its own packet in, the previous one's answer out,
        # its varbinds): measured rather than assumed.
        self.raw_counters()
        first = self.raw_counters()
        second = self.raw_counters()
        return {k: second[k] - first[k] for k in COUNTERS}

    def counters_since(self, before: dict[str, int]) -> dict[str, int]:
        after = self.raw_counters()
        return {k: (after[k] - before[k]) % (1 << 32) - self._overhead[k] for k in COUNTERS}

    def walk_count(self, column: str) -> int:
        result = subprocess.run(
            [need("snmpbulkwalk"), "-v2c", "-c", COMMUNITY, "-On", f"127.0.0.1:{self.port}",
             column],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        return len(result.stdout.splitlines())

    def version(self) -> str:
        out = subprocess.run([need("snmpd"), "-v"], capture_output=True, text=True, check=False)
        for line in out.stdout.splitlines():
            if "version" in line.lower():
                return line.split(":", 1)[-1].strip()
        return "?"

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)


class Exporter:
    """Debian's prometheus-snmp-exporter with a generated ``snmp.yml`` (0.21's flat format:
    one entry per module, its auth and version inside)."""

    def __init__(self, workdir: Path, modules: dict[str, Any]) -> None:
        config = workdir / "snmp.yml"
        config.write_text(yaml.safe_dump(modules, sort_keys=False))
        exe = need("prometheus-snmp-exporter")
        check = subprocess.run(
            [exe, f"--config.file={config}", "--dry-run"],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            raise RuntimeError(f"snmp_exporter rejects {config}: {check.stderr.strip()}")
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
        words = (out.stdout + out.stderr).split()
        self.version = words[words.index("version") + 1] if "version" in words else "?"
        self.port = free_port(socket.SOCK_STREAM)
        self.log = workdir / "snmp_exporter.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [exe, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--log.level=warn"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )  # fmt: skip
        self.process = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"snmp_exporter did not start; see {self.log}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)


def exporter_modules(columns: Sequence[tuple[str, str]], port_version: str) -> dict[str, Any]:
    """The exporter's modules: ``storage`` walks the profile's columns (numbers as gauges,
    text as DisplayString, OIDs as the exporter's OctetString label), ``scalars`` GETs the
    large round's 20 OIDs."""
    text_columns = {"descr"}
    oid_columns = {"type"}
    if port_version == "3":
        auth: dict[str, Any] = {
            "username": V3_USER,
            "security_level": "authPriv",
            "password": V3_AUTH_KEY,
            "auth_protocol": "SHA256",
            "priv_protocol": "AES",
            "priv_password": V3_PRIV_KEY,
        }
        version = 3
    else:
        auth, version = {"community": COMMUNITY}, 2
    common = {
        "version": version,
        "max_repetitions": 25,  # the exporter's default
        "retries": RETRIES,
        "timeout": f"{TIMEOUT}s",
        "auth": auth,
    }
    storage_metrics = []
    for name, oid in columns:
        table = "hrStorage" if oid.startswith("1.3.6.1.2.1.25.2.") else "hrDevice"
        if name in text_columns:
            kind = "DisplayString"
        elif name in oid_columns:
            kind = "OctetString"
        else:
            kind = "gauge"
        storage_metrics.append(
            {
                "name": f"{table}_{name}",
                "oid": oid,
                "type": kind,
                "indexes": [{"labelname": f"{table}Index", "type": "gauge"}],
            }
        )
    scalar_metrics = [
        {"name": f"bench_s{i:02d}", "oid": oid.removesuffix(".0"), "type": "gauge"}
        for i, oid in enumerate(SCALARS)
    ]
    return {
        "storage": {"walk": [oid for _, oid in columns], "metrics": storage_metrics, **common},
        "scalars": {"get": list(SCALARS), "metrics": scalar_metrics, **common},
    }


def scalars_profile(path: Path) -> Path:
    """A dyzur profile that GETs the 20 scalars, one gauge each."""
    names = {f"s{i:02d}": oid for i, oid in enumerate(SCALARS)}
    path.write_text(
        yaml.safe_dump(
            {
                "name": "bench-scalars",
                "description": "20 scalars of snmpd for bench_snmp",
                "scalars": names,
                "metrics": [{"metric": f"bench_{n}", "value": n} for n in names],
            },
            sort_keys=False,
        )
    )
    return path


@dataclass
class Measure:
    polls: int = 0
    seconds: float = 0.0
    cpu: float = 0.0  # the poller's own CPU seconds
    snmpd_cpu: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    samples: int = 0  # samples (dyzur) or series (exporter) of all polls
    skipped: int = 0  # dyzur: values skipped as garbage
    client_cpu: float = 0.0  # exporter: CPU of this process's HTTP clients (counted nowhere)

    @property
    def rate(self) -> float:
        return self.polls / self.seconds if self.seconds else 0.0

    def per_poll(self, value: float) -> float:
        return value / self.polls if self.polls else float("nan")


class Poller:
    label: str

    def measure(self, snmpd: Snmpd, seconds: float | None, polls: int | None) -> Measure:
        raise NotImplementedError


class DyzurPoller(Poller):
    def __init__(self, label: str, collector: SnmpCollector) -> None:
        self.label = label
        self.collector = collector
        self.devices = len(collector.options.devices)

    def measure(self, snmpd: Snmpd, seconds: float | None, polls: int | None) -> Measure:
        m = Measure()
        skipped_before = sum(self.collector.skipped.values())
        before, snmpd_cpu = snmpd.raw_counters(), cpu_seconds(snmpd.process)
        started, cpu = time.perf_counter(), time.process_time()
        while True:
            samples = self.collector.collect(time.time())
            m.polls += self.devices
            m.samples += len(samples)
            m.failed += sum(1 for s in samples if s.metric == "dyzur_snmp_up" and s.value == 0)
            m.seconds = time.perf_counter() - started
            if seconds is None or m.seconds >= seconds:
                break
        m.cpu = time.process_time() - cpu
        m.snmpd_cpu = cpu_seconds(snmpd.process) - snmpd_cpu
        m.counters = snmpd.counters_since(before)
        m.skipped = sum(self.collector.skipped.values()) - skipped_before
        return m


class ExporterPoller(Poller):
    def __init__(
        self, exporter: Exporter, module: str, snmpd: Snmpd, concurrency: int, expect: str
    ) -> None:
        self.label = f"snmp_exporter {exporter.version}"
        self.exporter = exporter
        self.path = f"/snmp?target=127.0.0.1:{snmpd.port}&module={module}"
        self.concurrency = concurrency
        self.expect = expect.encode()

    def measure(self, snmpd: Snmpd, seconds: float | None, polls: int | None) -> Measure:
        m = Measure()
        lock = threading.Lock()
        ticket = itertools.count()  # next() is atomic: each scrape takes one
        errors: list[str] = []
        deadline: float | None = None  # set just before the clients start

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", self.exporter.port, timeout=60)
            done = failed = series = 0
            try:
                while True:
                    if deadline is not None:
                        if time.perf_counter() >= deadline:
                            break
                    elif next(ticket) >= (polls or 0):
                        break
                    conn.request("GET", self.path)
                    response = conn.getresponse()
                    body = response.read()
                    done += 1
                    if response.status != 200 or self.expect not in body:
                        failed += 1
                        if not errors:
                            errors.append(f"HTTP {response.status}: {body[:200]!r}")
                    else:
                        # The exporter's own snmp_scrape_* series are not the device's.
                        series += sum(
                            1
                            for line in body.splitlines()
                            if line and not line.startswith((b"#", b"snmp_scrape_"))
                        )
            finally:
                conn.close()
                with lock:
                    m.polls += done
                    m.failed += failed
                    m.samples += series

        before = snmpd.raw_counters()
        snmpd_cpu, cpu = cpu_seconds(snmpd.process), cpu_seconds(self.exporter.process)
        started, client_cpu = time.perf_counter(), time.process_time()
        if seconds is not None:
            deadline = started + seconds
        threads = [threading.Thread(target=client) for _ in range(self.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        m.seconds = time.perf_counter() - started
        m.client_cpu = time.process_time() - client_cpu
        m.cpu = cpu_seconds(self.exporter.process) - cpu
        m.snmpd_cpu = cpu_seconds(snmpd.process) - snmpd_cpu
        m.counters = snmpd.counters_since(before)
        if errors:
            print(f"    snmp_exporter: {m.failed} failed scrapes, first: {errors[0]}")
        return m


def collector_options(
    port: int, devices: int, concurrency: int, version: str, profile: str, backend: str | None
) -> dict[str, Any]:
    def device(i: int) -> dict[str, Any]:
        d: dict[str, Any] = {
            "asset": f"bench-{i}",
            "host": "127.0.0.1",
            "port": port,
            "profiles": [profile],
            "timeout": TIMEOUT,
            "retries": RETRIES,
        }
        if version == "3":
            d.update(
                version="3",
                user=V3_USER,
                auth_protocol="SHA256",
                auth_key=V3_AUTH_KEY,
                priv_protocol="AES128",
                priv_key=V3_PRIV_KEY,
            )
        else:
            d["community"] = COMMUNITY
        return d

    options: dict[str, Any] = {
        "devices": [device(i) for i in range(devices)],
        "concurrency": concurrency,
    }
    if backend is not None:
        options["backend"] = backend
    return options


def choose_backends(wanted: Sequence[str], probe: Callable[[str | None], None]) -> list[str | None]:
    """The backends to measure: those of ``wanted`` that the collector accepts; [None] (the
    option not passed) when the collector has no ``backend`` option."""
    chosen: list[str | None] = []
    for backend in wanted:
        try:
            probe(backend)
        except CollectorConfigError as exc:
            if str(exc).startswith("backend: unknown option"):
                print(
                    "  the collector has no `backend` option: measured once without it "
                    f"(its only backend), not with {', '.join(wanted)}"
                )
                return [None]
            print(f"  backend {backend} skipped: the collector refuses it: {exc}")
            continue
        chosen.append(backend)
    return chosen


def spread(values: Sequence[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


def print_table(title: str, results: dict[str, list[Measure]], baseline: str) -> None:
    print(f"\n{title}")
    head = (
        f"  {'poller':<22} {'polls/s min/med/max':>24} {'CPU ms/poll min/med/max':>25} "
        f"{'snmpd ms':>8} {'in':>6} {'out':>6} {'GET':>5} {'other':>6} {'v3 disc':>7} "
        f"{'varbinds':>8} {'samples':>7}"
    )
    print(head)
    print("  " + "-" * (len(head) - 2))
    for label, runs in results.items():
        polls = sum(m.polls for m in runs)

        def per(key: str, runs: list[Measure] = runs, polls: int = polls) -> float:
            return sum(m.counters[key] for m in runs) / polls if polls else float("nan")

        other = per("in") - per("get") - per("getnext") - per("discovery") - per("timewindow")
        print(
            f"  {label:<22} {spread([m.rate for m in runs], '.0f'):>24} "
            f"{spread([1000 * m.per_poll(m.cpu) for m in runs], '.2f'):>25} "
            f"{1000 * sum(m.snmpd_cpu for m in runs) / polls:>8.2f} "
            f"{per('in'):>6.1f} {per('out'):>6.1f} {per('get'):>5.1f} {other:>6.1f} "
            f"{per('discovery'):>7.1f} {per('varbinds'):>8.0f} "
            f"{sum(m.samples for m in runs) / polls:>7.1f}"
        )
        failed = sum(m.failed for m in runs)
        if failed:
            print(f"  {'':<22} !! {failed} of {polls} polls failed")
    print(
        "  (per poll: snmpd CPU ms; packets in/out; GET requests; other requests = GETBULK, "
        "net-snmp has no counter of its own for them; v3 engine discoveries; varbinds answered; "
        "samples or series returned)"
    )
    base = results.get(baseline)
    if not base:
        return
    base_rate = statistics.median(m.rate for m in base)
    base_cpu = statistics.median(m.per_poll(m.cpu) for m in base)
    for label, runs in results.items():
        if label == baseline:
            continue
        rate = statistics.median(m.rate for m in runs)
        cpu = statistics.median(m.per_poll(m.cpu) for m in runs)
        print(
            f"  {label} / exporter (medians): polls/s {rate / base_rate:.2f}x (target >= 1), "
            f"CPU per poll {cpu / base_cpu:.2f}x (target <= 2)"
        )


def print_big(title: str, results: dict[str, Measure]) -> None:
    print(f"\n{title}")
    head = (
        f"  {'poller':<22} {'round s':>8} {'devices/s':>10} {'CPU ms/dev':>10} "
        f"{'snmpd ms':>8} {'in':>5} {'out':>5} {'varbinds':>8} {'samples':>7} {'failed':>6}"
    )
    print(head)
    print("  " + "-" * (len(head) - 2))
    for label, m in results.items():
        print(
            f"  {label:<22} {m.seconds:>8.2f} {m.rate:>10.0f} {1000 * m.per_poll(m.cpu):>10.2f} "
            f"{1000 * m.per_poll(m.snmpd_cpu):>8.2f} {m.per_poll(m.counters['in']):>5.1f} "
            f"{m.per_poll(m.counters['out']):>5.1f} {m.per_poll(m.counters['varbinds']):>8.1f} "
            f"{m.per_poll(m.samples):>7.1f} {m.failed:>6}"
        )


def run_version(
    args: argparse.Namespace,
    version: str,
    snmpd: Snmpd,
    workdir: Path,
    columns: Sequence[tuple[str, str]],
    scalars_path: Path,
) -> None:
    exporter = Exporter(workdir / f"exporter-v{version}", exporter_modules(columns, version))
    try:
        devices = args.devices or 8 * args.concurrency

        def probe(backend: str | None) -> None:
            SnmpCollector.from_options(
                "probe",
                collector_options(
                    snmpd.port, 1, args.concurrency, version, STORAGE_PROFILE, backend
                ),
            )

        backends = choose_backends(args.backend or BACKENDS, probe)
        pollers: list[Poller] = []
        for backend in backends:
            collector = SnmpCollector.from_options(
                "bench",
                collector_options(
                    snmpd.port, devices, args.concurrency, version, STORAGE_PROFILE, backend
                ),
            )
            label = f"dyzur {backend}" if backend else "dyzur (no backend opt)"
            pollers.append(DyzurPoller(label, collector))
            collector.collect(time.time())  # warm-up: imports, MIB view, first engines
        baseline = ExporterPoller(
            exporter, "storage", snmpd, args.concurrency, expect="hrStorage_descr"
        )
        pollers.append(baseline)
        baseline.measure(snmpd, None, args.concurrency)  # warm-up: connections, caches

        print(
            f"\nSNMP v{version}: {STORAGE_PROFILE} ({len(columns)} columns), concurrency "
            f"{args.concurrency}, dyzur rounds of {devices} devices; {args.runs} runs of "
            f">= {args.seconds:g} s each, pollers alternating"
        )
        results: dict[str, list[Measure]] = {p.label: [] for p in pollers}
        for run in range(args.runs):
            for poller in pollers:
                m = poller.measure(snmpd, args.seconds, None)
                results[poller.label].append(m)
                print(
                    f"  run {run + 1} {poller.label:<22} {m.polls:>6} polls in {m.seconds:5.2f} s "
                    f"= {m.rate:7.1f}/s, CPU {1000 * m.per_poll(m.cpu):6.2f} ms/poll, "
                    f"snmpd {1000 * m.per_poll(m.snmpd_cpu):5.2f} ms/poll"
                    + (f", {m.failed} failed" if m.failed else "")
                    + (f", {m.skipped} values skipped" if m.skipped else "")
                    + (
                        f" (HTTP clients {1000 * m.per_poll(m.client_cpu):.2f} ms/poll)"
                        if m.client_cpu
                        else ""
                    )
                )
        print_table(
            f"Polls of {STORAGE_PROFILE}, SNMP v{version} (figures per poll unless said)",
            results,
            baseline.label,
        )

        if args.big_devices:
            big: dict[str, Measure] = {}
            for backend in backends:
                collector = SnmpCollector.from_options(
                    "bench-big",
                    collector_options(
                        snmpd.port,
                        args.big_devices,
                        args.concurrency,
                        version,
                        str(scalars_path),
                        backend,
                    ),
                )
                label = f"dyzur {backend}" if backend else "dyzur (no backend opt)"
                big[label] = DyzurPoller(label, collector).measure(snmpd, None, None)
            scalars = ExporterPoller(
                exporter, "scalars", snmpd, args.concurrency, expect="bench_s00"
            )
            big[scalars.label] = scalars.measure(snmpd, None, args.big_devices)
            print_big(
                f"One round of {args.big_devices} devices x {len(SCALARS)} scalar OIDs, "
                f"SNMP v{version}, concurrency {args.concurrency}",
                big,
            )
    finally:
        exporter.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="the collector's backend option; repeat for several (default: every one)",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="least length of a run")
    parser.add_argument(
        "--devices", type=int, default=0, help="dyzur devices per round (default 8 x concurrency)"
    )
    parser.add_argument("--big-devices", type=int, default=1000, help="0 skips the large round")
    parser.add_argument("--snmp-version", choices=("2c", "3", "both"), default="2c")
    args = parser.parse_args()

    # Garbage rows (a size of 0, ...) are logged once per device: counted in the output instead.
    logging.disable(logging.WARNING)
    profile = resolve_profile(STORAGE_PROFILE)
    # (name, OID) of every column: the two tables both have a `type` and a `descr`.
    columns = [(name, oid) for table in profile.tables for name, oid in table.columns.items()]
    versions = ["2c", "3"] if args.snmp_version == "both" else [args.snmp_version]

    with tempfile.TemporaryDirectory(prefix="bench_snmp_") as tmp:
        workdir = Path(tmp)
        for version in versions:
            (workdir / f"exporter-v{version}").mkdir()
        snmpd = Snmpd(workdir)
        try:
            storage_rows = snmpd.walk_count("1.3.6.1.2.1.25.2.3.1.2")
            device_rows = snmpd.walk_count("1.3.6.1.2.1.25.3.2.1.2")
            print(
                f"snmpd {snmpd.version()} on 127.0.0.1:{snmpd.port} (pid {snmpd.proc.pid}): "
                f"{storage_rows} hrStorage rows, {device_rows} hrDevice rows; "
                f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
            )
            scalars_path = scalars_profile(workdir / "bench-scalars.yaml")
            for version in versions:
                run_version(args, version, snmpd, workdir, columns, scalars_path)
        finally:
            snmpd.stop()


if __name__ == "__main__":
    main()
