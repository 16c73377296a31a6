"""SNMP profiles against a real SNMP agent: snmpsim serving recordings of real devices.

Each golden case is a recording in tests/data/snmp/ (``NAME.snmprec``, served under the
community NAME) and a hand-written file ``NAME.PROFILE.yaml`` of the samples the profile must
give for it. Also here: the simulator fixture the other SNMP tests and the benchmark use.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from collectors.snmp.poller import offline_engine
from tests.conftest import free_port

DATA = Path(__file__).parent / "data" / "snmp"
V3_USER, V3_AUTH_KEY, V3_PRIV_KEY = "dyzur-v3", "auth-Key-8f3a91c2", "priv-Key-5d7e0b44"

# The simulator is snmpsim's own command responder (the main() of the venv's
# snmpsim-command-responder). Started as root it must drop privileges, and nobody cannot read
# a Python installed under /root: so the modules it would load lazily after the drop (dbm
# for its index, codecs) are imported first. The rest is the command as documented.
_LAUNCH = (
    "import dbm, dbm.dumb, encodings.latin_1, encodings.ascii, encodings.hex_codec, "
    "encodings.idna, sys\n"
    "from snmpsim.commands.responder import main\n"
    "sys.argv[0] = 'snmpsim-command-responder'\n"
    "sys.exit(main())\n"
)


def need_snmpsim() -> None:
    try:
        import snmpsim  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("snmpsim is required under CI: pip install -e '.[dev]'")
        pytest.skip("snmpsim not installed")


class SnmpSim:
    """A running snmpsim-command-responder on 127.0.0.1:``port``, stopped by PID.

    Serves every ``*.snmprec`` of ``data_dir`` (community = file name without extension), and
    to SNMPv3 user V3_USER (SHA256 + AES128) with the context name choosing the file.
    """

    def __init__(self, data_dir: Path = DATA, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.cache = Path(tempfile.mkdtemp(prefix="dyzur-snmpsim-"))
        self.log = self.cache / "snmpsim.log"
        args = [sys.executable, "-c", _LAUNCH]
        if os.geteuid() == 0:
            os.chmod(self.cache, 0o777)
            args += ["--process-user=nobody", "--process-group=nogroup"]
        args += [
            f"--cache-dir={self.cache}",
            "--v3-engine-id=auto",
            f"--v3-user={V3_USER}",
            "--v3-auth-proto=SHA256",
            f"--v3-auth-key={V3_AUTH_KEY}",
            "--v3-priv-proto=AES",
            f"--v3-priv-key={V3_PRIV_KEY}",
            f"--data-dir={data_dir}",
            f"--agent-udpv4-endpoint=127.0.0.1:{self.port}",
        ]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_until_answering(next(iter(sorted(data_dir.glob("*.snmprec")))).stem)
        except BaseException:
            self.stop()
            raise

    def _wait_until_answering(self, community: str, timeout: float = 60.0) -> None:
        from pysnmp.hlapi.v3arch.asyncio import (
            CommunityData,
            ContextData,
            ObjectIdentity,
            ObjectType,
            UdpTransportTarget,
            get_cmd,
        )

        async def ask() -> bool:
            engine = offline_engine()
            try:
                target = await UdpTransportTarget.create(
                    ("127.0.0.1", self.port), timeout=0.5, retries=0
                )
                err, status, _, _ = await get_cmd(
                    engine,
                    CommunityData(community, mpModel=1),
                    target,
                    ContextData(),
                    ObjectType(ObjectIdentity("1.3.6.1.2.1.1.1.0")),
                    lookupMib=False,
                )
                return not err and not status
            finally:
                engine.close_dispatcher()

        deadline = time.monotonic() + timeout
        while not asyncio.run(ask()):
            if self.proc.poll() is not None:
                raise AssertionError(f"snmpsim exited:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"snmpsim did not answer in {timeout:g}s:\n{self.output()}")
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the simulator has used (from /proc; for the benchmark)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.cache, ignore_errors=True)


@pytest.fixture(scope="session")
def snmpsim() -> Iterator[SnmpSim]:
    need_snmpsim()
    sim = SnmpSim()
    yield sim
    sim.stop()


# --- golden cases ---------------------------------------------------------------------------

GOLDEN = sorted(p for p in DATA.glob("*.yaml"))


def golden_id(path: Path) -> str:
    return path.stem


def normalise(samples) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    return sorted(
        (s.metric, tuple(sorted((k, v) for k, v in s.labels.items() if k != "asset")), s.value)
        for s in samples
    )


@pytest.mark.parametrize("golden", GOLDEN, ids=golden_id)
def test_profile_gives_the_golden_samples(snmpsim, golden):
    from collectors.snmp import parse_options, poll_device

    case = yaml.safe_load(golden.read_text())
    assert (DATA / f"{case['recording']}.snmprec").is_file()
    options = parse_options(
        {
            "devices": [
                {
                    "asset": "asset-under-test",
                    "host": "127.0.0.1",
                    "port": snmpsim.port,
                    "community": case["recording"],
                    "profiles": case["profiles"],
                    "timeout": 5,
                }
            ]
        }
    )
    result = asyncio.run(poll_device(options.devices[0], 1234.5))

    assert result.up, result.error
    assert all(s.labels["asset"] == "asset-under-test" for s in result.samples)
    assert all(s.timestamp == 1234.5 for s in result.samples)
    got = normalise(result.samples)
    want = sorted(
        (
            s["metric"],
            tuple(sorted((str(k), str(v)) for k, v in (s.get("labels") or {}).items())),
            float(s["value"]),
        )
        for s in case["samples"]
    )
    assert [(m, labels) for m, labels, _ in got] == [(m, labels) for m, labels, _ in want]
    for (metric, labels, value), (_, _, expected) in zip(got, want, strict=True):
        assert value == pytest.approx(expected, rel=1e-12, abs=1e-12), (metric, labels)
    assert sorted({m for m, _ in result.skipped}) == sorted(case.get("skipped", []))


def test_every_builtin_profile_has_a_golden_case():
    from collectors.snmp.profile import builtin_profiles

    covered = {p for g in GOLDEN for p in yaml.safe_load(g.read_text())["profiles"]}
    assert set(builtin_profiles()) <= covered


def test_builtin_profiles_load_and_name_metrics_in_base_units():
    from collectors.snmp.profile import builtin_profiles, describe, resolve_profile

    names = builtin_profiles()
    assert {"ups-mib", "apc-powernet", "eaton-xups", "host-resources-storage", "netapp"} <= set(
        names
    )
    for name in names:
        profile = resolve_profile(name)
        assert profile.name == name
        for metric in describe(profile)["metrics"]:
            assert metric.startswith(("dyzur_ups_", "dyzur_storage_")), metric
            assert not metric.endswith(("_percent", "_minutes", "_kbytes")), metric


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nmetrics: []\n", "x.yaml: a profile needs metrics or tables"),
        ("name: x\nscalars: {a: 1.3.6.1.2.1.33.1.4.1}\nbogus: 1\n", "x.yaml: bogus: unknown field"),
        (
            "name: x\nscalars: {a: 1.3.6.1.2.1.33.1.4.1.x}\nmetrics: [{metric: m, value: a}]\n",
            "x.yaml: scalars.a: expected a numeric OID",
        ),
        (
            "name: x\nscalars: {a: 1.3.6.1.2.1.33.1.4.1.0}\nmetrics: [{metric: m, value: b}]\n",
            "x.yaml: metrics.0.value: unknown name 'b'",
        ),
        (
            "name: x\nscalars: {a: 1.3.6.1.2.1.33.1.4.1.0}\n"
            "metrics: [{metric: m, value: '__import__(\"os\")'}]\n",
            "x.yaml: metrics.0.value: not an arithmetic expression",
        ),
        (
            "name: x\nscalars: {a: 1.3.6.1.2.1.33.1.4.1.0}\n"
            "metrics: [{metric: m, value: a, scale: big}]\n",
            "x.yaml: metrics.0.scale: expected a number",
        ),
        (
            "name: x\ntables:\n  - columns: {a: 1.3.6.1.2.1.33.1.3.3.1.3}\n"
            "    labels: {line: idx}\n    metrics: [{metric: m, value: a}]\n",
            "x.yaml: tables.0.labels.line: expected 'index' or a column (a), got 'idx'",
        ),
        (
            "name: x\ntables:\n  - columns: {a: 1.3.6.1.2.1.33.1.3.3.1.3}\n"
            "    labels: {asset: index}\n    metrics: [{metric: m, value: a}]\n",
            "x.yaml: tables.0.labels.asset: 'asset' is set by the collector",
        ),
        (
            "name: x\ntables:\n  - columns: {a: 1.3.6.1.2.1.33.1.3.3.1.3}\n"
            "    where: {b: [1]}\n    metrics: [{metric: m, value: a}]\n",
            "x.yaml: tables.0.where.b: not a column (a)",
        ),
        ("name: x\nscalars: [\n", "x.yaml: line 3: invalid YAML"),
    ],
)
def test_profile_errors_name_the_file_and_the_field(tmp_path, text, message):
    from collectors.snmp.profile import ProfileError, load_profile

    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(err.value).startswith(message), str(err.value)


def test_a_new_model_is_a_new_file(snmpsim, tmp_path):
    """A profile file outside the package, named by path in the options, needs no code."""
    from collectors.snmp import SnmpCollector

    profile = tmp_path / "my-ups.yaml"
    profile.write_text(
        "name: my-ups\n"
        "scalars: {source: 1.3.6.1.2.1.33.1.4.1.0, volts: 1.3.6.1.2.1.33.1.9.1.0}\n"
        "metrics:\n"
        "  - {metric: dyzur_ups_on_bypass, value: source, map: {4: 1}, default: 0}\n"
        "  - {metric: dyzur_ups_nominal_input_voltage_volts, value: volts}\n"
    )
    collector = SnmpCollector.from_options(
        "snmp",
        {
            "devices": [
                {
                    "asset": "ups-x",
                    "host": "127.0.0.1",
                    "port": snmpsim.port,
                    "community": "eaton-93e-80",
                    "profiles": [str(profile)],
                }
            ]
        },
    )
    got = {s.metric: s.value for s in collector.collect(99.0)}
    assert got == {
        "dyzur_snmp_up": 1.0,
        "dyzur_ups_on_bypass": 0.0,  # upsOutputSource 3 (normal)
        "dyzur_ups_nominal_input_voltage_volts": 220.0,  # upsConfigInputVoltage
    }
