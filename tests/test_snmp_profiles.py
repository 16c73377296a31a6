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

from collectors.snmp.pysnmp_engine import offline_engine
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
        # Exactly the decimal written in the golden file: 0.35, not 0.35000000000000003.
        assert repr(value) == repr(expected), (metric, labels)
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


# --- exact scaling, the battery status state set, the README ------------------------------


def _scaled_metrics() -> list[tuple[str, str, object]]:
    """(profile, metric, scale as written in the YAML) for every built-in metric with a scale."""
    from collectors.snmp.profile import PROFILE_DIR

    out = []
    for path in sorted(PROFILE_DIR.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        specs = [*raw.get("metrics", []), *(m for t in raw.get("tables", []) for m in t["metrics"])]
        out += [(path.stem, m["metric"], m["scale"]) for m in specs if "scale" in m]
    return out


def test_35_percent_reads_exactly_0_35():
    from collectors.snmp.profile import resolve_profile

    tables = resolve_profile("ups-mib").tables
    (load,) = (m for t in tables for m in t.metrics if m.metric == "dyzur_ups_output_load_ratio")
    value, _ = load.compute({"load": 35})
    assert repr(value) == "0.35"  # 35 * 0.01 in floats is 0.35000000000000003


@pytest.mark.parametrize(("profile", "metric", "scale"), _scaled_metrics())
def test_every_scaled_metric_gives_the_exact_decimal(profile, metric, scale):
    """Each value a device can send, times the scale written in the profile, computed in
    decimal: the sample is the float nearest to that, never one rounding step off."""
    from decimal import Decimal

    from collectors.snmp.profile import resolve_profile

    p = resolve_profile(profile)
    specs = [m for m in p.metrics if m.metric == metric]
    specs += [m for t in p.tables for m in t.metrics if m.metric == metric]
    (spec,) = specs
    (name,) = spec.value.names
    low, high = spec.range
    wrong = []
    for raw in [*range(0, 10_001), 65_535, 360_000, 4_294_967_295]:
        exact = float(Decimal(raw) * Decimal(str(scale)))
        if (low is not None and exact < low) or (high is not None and exact > high):
            continue  # garbage for this metric: skipped, tested with the golden cases
        value, _ = spec.compute({name: raw})
        if repr(value) != repr(exact):
            wrong.append((raw, value, exact))
    assert not wrong, wrong[:5]


def test_scale_is_exact_for_non_integer_values_too(tmp_path):
    from collectors.snmp.profile import load_profile

    path = tmp_path / "x.yaml"
    path.write_text(
        "name: x\nscalars: {a: 1.3.6.1.2.1.33.1.2.4.0, b: 1.3.6.1.2.1.33.1.2.3.0}\n"
        "metrics: [{metric: m, value: a / b, scale: 0.1}]\n"
    )
    (spec,) = load_profile(path).metrics
    assert repr(spec.compute({"a": 7, "b": 2})[0]) == "0.35"  # 3.5 * 0.1 = 0.35000000000000003


def _battery_status(profile_name: str, code: object) -> dict[str, float] | None:
    """{status: value} of dyzur_ups_battery_status for one upsBatteryStatus code; None when
    every state is skipped."""
    from collectors.snmp.profile import NotANumber, resolve_profile

    profile = resolve_profile(profile_name)
    out: dict[str, float] = {}
    skipped = 0
    specs = [m for m in profile.metrics if m.metric == "dyzur_ups_battery_status"]
    for spec in specs:
        try:
            value, labels = spec.compute({"battery_status": code})
        except NotANumber:
            skipped += 1
            continue
        out[labels["status"]] = value
    assert skipped in (0, len(specs))  # all or nothing: never half a state set
    return out or None


UPS_MIB_STATES = ["unknown", "normal", "low", "depleted"]
APC_STATES = ["unknown", "normal", "low", "fault", "not_present"]


@pytest.mark.parametrize(
    ("profile", "states"), [("ups-mib", UPS_MIB_STATES), ("apc-powernet", APC_STATES)]
)
def test_battery_status_is_a_one_hot_state_set(profile, states):
    for code, current in enumerate(states, start=1):
        got = _battery_status(profile, code)
        assert got == {s: (1.0 if s == current else 0.0) for s in states}, code
    # unknown(1) and batteryNormal(2) read the same battery_low, but not the same status
    assert _battery_status(profile, 1) != _battery_status(profile, 2)
    # A code the MIB does not define, or a non-number, is garbage: the whole set is skipped.
    assert _battery_status(profile, len(states) + 1) is None
    assert _battery_status(profile, "normal") is None


def test_battery_status_through_a_real_agent():
    """Four UPS-MIB agents, one per upsBatteryStatus code, polled with the ups-mib profile:
    unknown(1) and batteryNormal(2), which both read dyzur_ups_battery_low 0, differ."""
    from collectors.snmp import parse_options, poll_device

    need_snmpsim()
    data = Path(tempfile.mkdtemp(prefix="dyzur-snmp-status-"))
    os.chmod(data, 0o755)  # the simulator drops to nobody
    try:
        for code in range(1, 5):
            rec = data / f"status-{code}.snmprec"
            rec.write_text(
                "1.3.6.1.2.1.1.1.0|4|UPS\n"
                f"1.3.6.1.2.1.33.1.2.1.0|2|{code}\n"
                f"1.3.6.1.2.1.33.1.2.2.0|2|{120 if code == 3 else 0}\n"
            )
            os.chmod(rec, 0o644)
        sim = SnmpSim(data)
        try:
            devices = [
                {
                    "asset": f"ups-{code}",
                    "host": "127.0.0.1",
                    "port": sim.port,
                    "community": f"status-{code}",
                    "profiles": ["ups-mib"],
                    "timeout": 5,
                }
                for code in range(1, 5)
            ]
            options = parse_options({"devices": devices})
            got = {}
            for device in options.devices:
                result = asyncio.run(poll_device(device, 1.0))
                assert result.up, result.error
                got[device.asset] = {
                    (s.metric, s.labels.get("status")): s.value
                    for s in result.samples
                    if s.metric
                    in (
                        "dyzur_ups_battery_status",
                        "dyzur_ups_battery_low",
                        "dyzur_ups_seconds_on_battery",
                    )
                }
        finally:
            sim.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    for code, current in enumerate(UPS_MIB_STATES, start=1):
        want = {("dyzur_ups_battery_status", s): float(s == current) for s in UPS_MIB_STATES}
        want[("dyzur_ups_battery_low", None)] = float(code in (3, 4))
        want[("dyzur_ups_seconds_on_battery", None)] = 120.0 if code == 3 else 0.0
        assert got[f"ups-{code}"] == want, code
    assert got["ups-1"] != got["ups-2"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "metrics: [{metric: m, value: a, state_set: true}]\n",
            "x.yaml: metrics.0.state_set: needs name_label and names",
        ),
        (
            "metrics: [{metric: m, value: a, name_label: s, names: {1: x}, state_set: yes1}]\n",
            "x.yaml: metrics.0.state_set: expected true or false",
        ),
        (
            "metrics: [{metric: m, value: a, name_label: s, names: {1: x}, state_set: true,"
            " scale: 2}]\n",
            "x.yaml: metrics.0.scale: not with state_set",
        ),
        (
            "metrics: [{metric: m, value: a, name_label: s, names: {1: x}, state_set: true,"
            " labels: {s: y}}]\n",
            "x.yaml: metrics.0.labels.s: is the state set's name_label",
        ),
    ],
)
def test_state_set_errors_name_the_field(tmp_path, text, message):
    from collectors.snmp.profile import ProfileError, load_profile

    path = tmp_path / "x.yaml"
    path.write_text("name: x\nscalars: {a: 1.3.6.1.2.1.33.1.2.1.0}\n" + text)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(err.value).startswith(message), str(err.value)


def test_the_readme_lists_every_metric_of_every_profile():
    import re

    from collectors.snmp.profile import builtin_profiles, describe, resolve_profile

    readme = (Path(__file__).parent.parent / "collectors" / "snmp" / "README.md").read_text()
    documented = set(re.findall(r"^\| `(dyzur_[a-z0-9_]+)` \|", readme, re.M))
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `([a-z0-9-]+)` \|.*\| (.*) \|$", readme, re.M)
    }
    for name in builtin_profiles():
        metrics = set(describe(resolve_profile(name))["metrics"])
        assert metrics <= documented, (name, metrics - documented)
        listed = set(re.findall(r"`(dyzur_[a-z0-9_]+)[{`]", rows[name]))
        assert listed == metrics, (name, metrics ^ listed)
