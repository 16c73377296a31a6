"""The host collector: on this real machine, through the real rules engine with the host pack,
and on Windows-shaped data given by a fake psutil (no Windows machine runs here)."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import namedtuple
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import psutil
import pytest
import yaml

from collectors.base import CollectorConfigError
from collectors.host import HostCollector
from collectors.host.mounts import MountProber
from collectors.host.options import DEFAULT_EXCLUDE_FSTYPES
from collectors.registry import build_collectors, collector_class
from collectors.sample import Sample
from rules.engine import Engine
from rules.loader import load_rule_files
from rules.model import Condition

HOST_DIR = Path(__file__).resolve().parents[1] / "collectors" / "host"
POSIX = sys.platform != "win32"


def by_metric(samples: list[Sample]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for s in samples:
        out.setdefault(s.metric, []).append(s)
    return out


def one(samples: list[Sample], metric: str, **labels: str) -> Sample:
    found = [s for s in samples if s.metric == metric and dict(s.labels) == labels]
    assert len(found) == 1, (metric, labels, found)
    return found[0]


def series(s: Sample) -> tuple[str, tuple[tuple[str, str], ...]]:
    return s.metric, tuple(sorted(s.labels.items()))


# --- real processes to watch ------------------------------------------------------------


@pytest.fixture
def named_sleep(tmp_path: Path) -> Iterator[Path]:
    """A copy of sleep(1) under a name no other process has, so a rule can match it exactly."""
    if not POSIX or shutil.which("sleep") is None:
        pytest.skip("needs a POSIX sleep")
    exe = tmp_path / "dyzur-sleeper"
    shutil.copy2(shutil.which("sleep"), exe)
    yield exe


@pytest.fixture
def sleeper(named_sleep: Path) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen([str(named_sleep), "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


# --- this machine ------------------------------------------------------------------------


def test_the_registry_builds_it_by_kind():
    assert collector_class("host") is HostCollector
    (built,) = build_collectors([("host", "host", {"exclude_interfaces": "^lo$"})])
    assert isinstance(built, HostCollector)
    assert built.name == "host"
    assert built.kind == "host"


def test_sample_config_is_valid_here():
    options = yaml.safe_load((HOST_DIR / "sample.yaml").read_text(encoding="utf-8"))
    collector = HostCollector.from_options("host", options)
    assert [r.name for r in collector.options.processes] == ["amms", "postgres"]
    samples = collector.collect(time.time())
    assert one(samples, "dyzur_process_up", process="amms").value == 0.0


def test_every_sample_is_stamped_now_and_has_no_asset_label(sleeper):
    collector = HostCollector.from_options(
        "host", {"processes": [{"name": "sleeper", "match_name": "dyzur-sleeper"}]}
    )
    now = 1_800_000_000.5
    for _ in range(2):
        samples = collector.collect(now)
        assert samples
        for s in samples:
            assert s.timestamp == now
            assert "asset" not in s.labels
            assert isinstance(s.value, float)
            assert math.isfinite(s.value)
            assert re.fullmatch(r"dyzur_[a-z0-9_]+", s.metric)


def test_ratios_are_within_0_and_1_and_bytes_not_negative():
    collector = HostCollector.from_options("host", {})
    collector.collect(time.time())
    time.sleep(0.1)
    samples = collector.collect(time.time())
    ratios = [s for s in samples if s.metric.endswith("_ratio")]
    assert {s.metric for s in ratios} >= {
        "dyzur_cpu_utilisation_ratio",
        "dyzur_memory_used_ratio",
        "dyzur_swap_used_ratio",
        "dyzur_filesystem_used_ratio",
    }
    for s in ratios:
        assert 0.0 <= s.value <= 1.0, s
    sized = [s for s in samples if "_bytes" in s.metric]
    assert sized
    for s in sized:
        assert s.value >= 0, s
    m = by_metric(samples)
    assert m["dyzur_memory_total_bytes"][0].value > 0
    assert m["dyzur_memory_available_bytes"][0].value <= m["dyzur_memory_total_bytes"][0].value
    assert m["dyzur_cpu_count"][0].value == psutil.cpu_count()
    load1 = m["dyzur_load1"][0].value
    assert m["dyzur_load1_per_cpu"][0].value == pytest.approx(load1 / psutil.cpu_count())


def test_counters_never_decrease(sleeper):
    collector = HostCollector.from_options(
        "host", {"processes": [{"name": "sleeper", "match_name": "dyzur-sleeper"}]}
    )
    first = {series(s): s.value for s in collector.collect(time.time())}
    time.sleep(0.05)
    second = {series(s): s.value for s in collector.collect(time.time())}
    counters = [k for k in first if k[0].endswith("_total")]
    assert {k[0] for k in counters} >= {
        "dyzur_network_receive_bytes_total",
        "dyzur_process_cpu_seconds_total",
    }
    if psutil.disk_io_counters(perdisk=True):
        assert any(k[0] == "dyzur_disk_read_bytes_total" for k in counters)
    for key in counters:
        assert key in second, key
        assert second[key] >= first[key], (key, first[key], second[key])


def test_root_filesystem_carries_the_labels_the_host_rules_need():
    root = next((p for p in psutil.disk_partitions(all=False) if p.mountpoint == "/"), None)
    if root is None or root.fstype.lower() in DEFAULT_EXCLUDE_FSTYPES:
        pytest.skip(f"/ is not a real filesystem here: {root}")
    samples = HostCollector.from_options("host", {}).collect(time.time())
    labels = {"mountpoint": "/", "device": root.device, "fstype": root.fstype}
    used = one(samples, "dyzur_filesystem_used_ratio", **labels)
    size = one(samples, "dyzur_filesystem_size_bytes", **labels).value
    free = one(samples, "dyzur_filesystem_free_bytes", **labels).value
    assert 0 < free <= size
    usage = psutil.disk_usage("/")
    assert used.value == pytest.approx(usage.percent / 100, abs=0.001)
    if os.statvfs("/").f_files > 0:
        inodes = one(samples, "dyzur_filesystem_inodes_used_ratio", **labels)
        assert 0 <= inodes.value <= 1
        assert one(samples, "dyzur_filesystem_inodes", **labels).value > 0


def test_boot_time_is_in_the_past_and_after_2000():
    now = time.time()
    (boot,) = by_metric(HostCollector.from_options("host", {}).collect(now))[
        "dyzur_boot_time_seconds"
    ]
    assert 946_684_800 < boot.value < now


def test_cpu_utilisation_needs_a_previous_call():
    collector = HostCollector.from_options("host", {})
    first = by_metric(collector.collect(time.time()))
    assert "dyzur_cpu_utilisation_ratio" not in first
    assert "dyzur_cpu_count" in first
    time.sleep(0.1)  # let the CPU clocks tick
    (util,) = by_metric(collector.collect(time.time()))["dyzur_cpu_utilisation_ratio"]
    assert 0.0 <= util.value <= 1.0


def test_a_process_rule_matching_this_test_process_is_up():
    me = psutil.Process()
    collector = HostCollector.from_options(
        "host",
        {
            "processes": [
                {"name": "pytest", "match_cmdline": "pytest"},
                {"name": "me-by-name", "match_name": me.name()},
                {"name": "bogus", "match_name": "no-such-process-dyzur.exe"},
                {"name": "bogus-cmdline", "match_cmdline": r"^no such \d+ command line$"},
            ]
        },
    )
    samples = collector.collect(time.time())
    for name in ("pytest", "me-by-name"):
        assert one(samples, "dyzur_process_up", process=name).value == 1.0
        assert one(samples, "dyzur_process_count", process=name).value >= 1
        assert one(samples, "dyzur_process_resident_memory_bytes", process=name).value > 0
        assert one(samples, "dyzur_process_cpu_seconds_total", process=name).value > 0
    for name in ("bogus", "bogus-cmdline"):
        assert one(samples, "dyzur_process_up", process=name).value == 0.0
        assert one(samples, "dyzur_process_count", process=name).value == 0.0
        assert one(samples, "dyzur_process_cpu_seconds_total", process=name).value == 0.0
        assert one(samples, "dyzur_process_resident_memory_bytes", process=name).value == 0.0
    # The label is the configured name, never a command line.
    assert {s.labels["process"] for s in samples if "process" in s.labels} == {
        "pytest",
        "me-by-name",
        "bogus",
        "bogus-cmdline",
    }


def test_a_process_is_counted_while_it_runs_and_not_once_it_is_a_zombie(named_sleep):
    rule = {"processes": [{"name": "sleeper", "match_name": "dyzur-sleeper"}]}
    collector = HostCollector.from_options("host", rule)
    proc = subprocess.Popen([str(named_sleep), "60"])
    try:
        samples = collector.collect(time.time())
        assert one(samples, "dyzur_process_up", process="sleeper").value == 1.0
        assert one(samples, "dyzur_process_count", process="sleeper").value == 1.0
        assert one(samples, "dyzur_process_resident_memory_bytes", process="sleeper").value > 0
        proc.kill()  # not waited for: it stays a zombie until proc.wait()
        deadline = time.monotonic() + 10
        while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        samples = collector.collect(time.time())
        assert one(samples, "dyzur_process_up", process="sleeper").value == 0.0
        assert one(samples, "dyzur_process_count", process="sleeper").value == 0.0
    finally:
        proc.kill()
        proc.wait()
    samples = collector.collect(time.time())
    assert one(samples, "dyzur_process_up", process="sleeper").value == 0.0


def test_processes_started_and_stopped_between_collections_are_seen(named_sleep):
    """What a process matched is remembered between collections; new and ended processes
    must still be counted at once."""
    rule = {"processes": [{"name": "sleeper", "match_name": "dyzur-sleeper"}]}
    collector = HostCollector.from_options("host", rule)

    def count() -> float:
        return one(collector.collect(time.time()), "dyzur_process_count", process="sleeper").value

    assert count() == 0.0
    first = subprocess.Popen([str(named_sleep), "60"])
    second = None
    try:
        assert count() == 1.0  # a collection that is not a full walk
        second = subprocess.Popen([str(named_sleep), "60"])
        assert count() == 2.0
        first.kill()
        first.wait()
        assert count() == 1.0
        second.kill()
        second.wait()
        assert count() == 0.0
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
                proc.wait()


@pytest.mark.skipif(not psutil.LINUX, reason="/proc is Linux's")
def test_names_and_command_lines_read_from_proc_are_what_psutil_reads(tmp_path, named_sleep):
    """The walks read /proc themselves on Linux; they must see what psutil would, for every
    process of this machine, and for names the kernel cut at 15 characters, arguments with
    spaces, line breaks and bytes that are not UTF-8, and a zombie."""
    from collectors.host import procfs

    long_sleep = tmp_path / "dyzur-a-rather-long-sleeper-name"
    long_sleep.symlink_to(named_sleep)
    long_python = tmp_path / "dyzur-a-rather-long-python-name"
    long_python.symlink_to(sys.executable)
    script = "import time; time.sleep(60)"
    odd = ["with space", "cr\rlf\r\nend", "zażółć", b"\xff not utf-8", ""]
    children = [
        subprocess.Popen([str(long_sleep), "60"]),
        subprocess.Popen([str(long_python), "-c", script, *odd]),
        subprocess.Popen([str(named_sleep), "60"]),
    ]
    children[2].kill()  # not waited for: a zombie until the end
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(children[2].pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)

        def psutils(read):
            try:
                return read()
            except psutil.ZombieProcess:
                return []  # what the walks make of it, as of an empty command line
            except psutil.Error as exc:
                return type(exc)

        def ours(read, pid):
            try:
                return read(psutil.PROCFS_PATH, pid)
            except psutil.Error as exc:
                return type(exc)

        compared = 0
        for pid in psutil.pids():
            try:
                proc = psutil.Process(pid)
            except psutil.NoSuchProcess:
                continue
            for attr, read in (("name", procfs.name), ("cmdline", procfs.cmdline)):
                theirs = psutils(getattr(proc, attr))
                if theirs is psutil.NoSuchProcess:
                    continue  # ended meanwhile
                mine = ours(read, pid)
                if mine is psutil.NoSuchProcess and not proc.is_running():
                    continue
                assert mine == theirs, (pid, attr)
                compared += 1
        assert compared >= 2 * 3
        assert procfs.name(psutil.PROCFS_PATH, children[0].pid) == long_sleep.name
        assert procfs.name(psutil.PROCFS_PATH, children[1].pid) == long_python.name
        args = procfs.cmdline(psutil.PROCFS_PATH, children[1].pid)
        assert args[3:7] == ["with space", "cr\nlf\nend", "zażółć", "\udcff not utf-8"]
        assert procfs.cmdline(psutil.PROCFS_PATH, children[2].pid) == []  # the zombie
    finally:
        for child in children:
            child.kill()
            child.wait()
    with pytest.raises(psutil.NoSuchProcess):
        procfs.cmdline(psutil.PROCFS_PATH, children[0].pid)


def test_process_names_are_read_once_until_the_next_full_walk():
    from collectors.host.collector import PROCESS_RESCAN_EVERY

    fake = FakeWindowsPsutil()
    collector = windows_collector(fake)
    for _ in range(PROCESS_RESCAN_EVERY):
        samples = collector.collect(1000.0)
    system = next(p for p in fake.processes if p.info["name"] == "System")
    assert system.reads == 1  # not read again on each collection
    assert one(samples, "dyzur_process_count", process="amms").value == 3.0
    collector.collect(1000.0)  # every PROCESS_RESCAN_EVERY collections, a full walk
    assert system.reads == 2


@pytest.mark.parametrize(
    ("rule", "names_read", "cmdlines_read"),
    [
        ({"name": "amms", "match_name": "amms.exe"}, True, False),
        ({"name": "sql", "match_cmdline": r"sqlservr\.exe.* -sAMMS"}, False, True),
    ],
)
def test_a_process_walk_reads_only_what_the_rules_look_at(rule, names_read, cmdlines_read):
    """Each name or command line read costs a /proc read per process on a walk."""
    fake = FakeWindowsPsutil()
    collector = HostCollector.from_options(
        "host", {"processes": [rule]}, psutil_module=fake, statvfs=None
    )
    samples = collector.collect(1000.0)
    assert one(samples, "dyzur_process_up", process=rule["name"]).value == 1.0
    system = next(p for p in fake.processes if p.info["name"] == "System")
    assert (getattr(system, "reads", 0) > 0) is names_read
    assert (getattr(system, "cmdline_reads", 0) > 0) is cmdlines_read


def test_a_process_going_down_is_confirmed_by_a_full_walk_once():
    fake = FakeWindowsPsutil()
    collector = windows_collector(fake)
    collector.collect(1000.0)
    collector.collect(1000.0)
    system = next(p for p in fake.processes if p.info["name"] == "System")
    assert system.reads == 1
    fake.processes = [p for p in fake.processes if p.info["name"].lower() != "amms.exe"]
    samples = collector.collect(1000.0)
    assert one(samples, "dyzur_process_up", process="amms").value == 0.0
    assert system.reads == 2  # every process looked at again before reporting amms down
    samples = collector.collect(1000.0)
    assert one(samples, "dyzur_process_up", process="amms").value == 0.0
    assert system.reads == 2  # still down: no walk of every process on each collection


# --- the host rule pack ------------------------------------------------------------------


def test_the_host_pack_metrics_are_produced_and_evaluated():
    rules = load_rule_files(["builtin:hosts"])
    threshold_rules = [r for r in rules if r.condition is not None]
    assert {r.metric for r in threshold_rules} == {
        "dyzur_filesystem_used_ratio",
        "dyzur_filesystem_inodes_used_ratio",
        "dyzur_memory_used_ratio",
        "dyzur_swap_used_ratio",
        "dyzur_load1_per_cpu",
    }
    collector = HostCollector.from_options("host", {})
    collector.collect(time.time())
    now = time.time()
    samples = [
        Sample(s.metric, {**s.labels, "asset": "srv-test"}, s.value, s.timestamp)
        for s in collector.collect(now)
    ]
    engine = Engine(rules)
    engine.evaluate(samples, now)
    expected = sum(1 for s in samples for r in rules if r.metric == s.metric)
    assert engine.evaluations == expected > 0
    for rule in threshold_rules:  # each rule on its own: its metric reached it
        alone = Engine([rule])
        alone.evaluate(samples, now)
        assert alone.evaluations >= 1, rule.name

    # The same rules made to fire on any value: a rule's matchers let the samples through
    # and every identity label (mountpoint for the filesystem rules) is set.
    always = [
        dataclasses.replace(
            r,
            condition=Condition(">=", 0.0),
            clear=Condition("<", 0.0),
            for_seconds=0.0,
            escalation=None,
        )
        for r in threshold_rules
    ]
    transitions = Engine(always).evaluate(samples, now)
    fired: dict[str, list[dict[str, str]]] = {}
    for t in transitions:
        fired.setdefault(t.alert.rule, []).append(t.alert.labels)
    assert set(fired) == {r.name for r in threshold_rules}
    for rule in always:
        for labels in fired[rule.name]:
            assert all(labels.get(name) for name in rule.identity), (rule.name, labels)
    root = next((p for p in psutil.disk_partitions(all=False) if p.mountpoint == "/"), None)
    if root is not None and root.fstype.lower() not in DEFAULT_EXCLUDE_FSTYPES:
        assert "/" in {labels["mountpoint"] for labels in fired["filesystem_usage"]}


def test_the_readme_lists_every_metric():
    documented = set(
        re.findall(r"^\| `(dyzur_[a-z0-9_]+)` \|", (HOST_DIR / "README.md").read_text(), re.M)
    )
    here = HostCollector.from_options("host", {"processes": [{"name": "x", "match_name": "x"}]})
    here.collect(time.time())
    time.sleep(0.05)
    emitted = {s.metric for s in here.collect(time.time())}
    fake = FakeWindowsPsutil()
    windows = windows_collector(fake)
    windows.collect(1000.0)
    fake.advance()
    emitted |= {s.metric for s in windows.collect(1015.0)}
    assert emitted <= documented, emitted - documented
    # What only some systems have: inodes (not on Windows), disk busy time (not on Windows).
    assert documented - emitted <= {
        "dyzur_filesystem_inodes",
        "dyzur_filesystem_inodes_free",
        "dyzur_filesystem_inodes_used_ratio",
        "dyzur_disk_io_time_seconds_total",
    }


# --- options -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"exclude_fstype": ["tmpfs"]}, r"^exclude_fstype: unknown option \(allowed: "),
        ({"exclude_fstypes": "tmpfs"}, r"^exclude_fstypes: expected a list"),
        ({"exclude_fstypes": ["tmpfs", 3]}, r"^exclude_fstypes\.1: expected a non-empty string"),
        ({"exclude_mountpoints": "^/(run"}, r"^exclude_mountpoints: invalid regular expression"),
        ({"exclude_disks": 5}, r"^exclude_disks: expected a regular expression"),
        ({"exclude_interfaces": "[lo"}, r"^exclude_interfaces: invalid regular expression"),
        ({"filesystem_timeout": "5s"}, r"^filesystem_timeout: expected a number of seconds"),
        ({"filesystem_timeout": 0}, r"^filesystem_timeout: must be a positive number"),
        ({"filesystem_timeout": True}, r"^filesystem_timeout: expected a number"),
        ({"processes": {"name": "amms"}}, r"^processes: expected a list of process rules"),
        ({"processes": ["amms.exe"]}, r"^processes\.0: expected a mapping"),
        (
            {"processes": [{"name": "a", "match_name": "a"}, {"name": "pg", "match_cmdline": "("}]},
            r"^processes\.1\.match_cmdline: invalid regular expression '\(': ",
        ),
        (
            {"processes": [{"name": "pg", "match_name": "postgres", "match_cmdline": "pg"}]},
            r"^processes\.0: needs exactly one of match_name .* and match_cmdline .*, not both",
        ),
        ({"processes": [{"name": "pg"}]}, r"^processes\.0: needs exactly one of match_name"),
        ({"processes": [{"match_name": "pg"}]}, r"^processes\.0\.name: expected a non-empty"),
        (
            {"processes": [{"name": "pg", "match_name": "pg", "match": "x"}]},
            r"^processes\.0\.match: unknown option \(allowed: name, match_name, match_cmdline\)",
        ),
        (
            {"processes": [{"name": "pg", "match_cmdline": ""}]},
            r"^processes\.0\.match_cmdline: an empty expression would match every process",
        ),
        (
            {"processes": [{"name": "pg", "match_name": "a"}, {"name": "pg", "match_name": "b"}]},
            r"^processes\.1\.name: duplicate process name 'pg'",
        ),
        ([("processes", [])], r"^options: expected a mapping"),
    ],
)
def test_option_errors_name_the_option(options, message):
    with pytest.raises(CollectorConfigError, match=message):
        HostCollector.from_options("host", options)


@pytest.mark.skipif(not POSIX, reason="services are refused only where there are none")
def test_services_outside_windows_point_to_processes():
    with pytest.raises(CollectorConfigError, match=r"^services: .*only on Windows.*processes:"):
        HostCollector.from_options("host", {"services": ["Spooler"]})
    with pytest.raises(CollectorConfigError, match=r"^services: "):
        HostCollector.from_options("host", {"services": ["Spooler"]}, psutil_module=psutil)
    # An empty list asks for nothing and is fine.
    HostCollector.from_options("host", {"services": []})


def test_options_default_and_empty_exclusions():
    collector = HostCollector.from_options("host", None)
    assert collector.options.exclude_interfaces.search("lo")
    assert not collector.options.exclude_interfaces.search("eth0")
    assert collector.options.exclude_disks.search("sda1")
    assert collector.options.exclude_disks.search("nvme0n1p2")
    assert collector.options.exclude_disks.search("loop3")
    assert not collector.options.exclude_disks.search("sda")
    assert not collector.options.exclude_disks.search("nvme0n1")
    assert not collector.options.exclude_disks.search("PhysicalDrive0")
    everything = HostCollector.from_options(
        "host", {"exclude_interfaces": "", "exclude_fstypes": ["TMPFS"]}
    )
    assert everything.options.exclude_interfaces is None
    assert everything.options.exclude_fstypes == {"tmpfs"}
    samples = everything.collect(time.time())
    if "lo" in (psutil.net_io_counters(pernic=True) or {}):
        assert any(s.labels.get("interface") == "lo" for s in samples)


# --- failing sources, on real psutil with one function replaced -------------------------


class PatchedPsutil:
    """A fake psutil: the real module with some functions replaced, to make a source fail
    in ways this machine cannot be made to (a mount refusing access, a hung mount)."""

    WINDOWS = False

    def __init__(self, **replaced) -> None:
        self.__dict__.update(replaced)

    def __getattr__(self, name):
        return getattr(psutil, name)


def fake_partitions(*mountpoints: str):
    Part = namedtuple("sdiskpart", "device mountpoint fstype opts")
    return lambda all=False: [
        Part(f"/dev/fake{i}", mp, "ext4", "rw") for i, mp in enumerate(mountpoints)
    ]


def test_an_unreadable_filesystem_is_skipped_and_logged_once_each_way(caplog):
    refuse = {"/srv/locked": True}
    usage = psutil.disk_usage("/")

    def disk_usage(mountpoint):
        if mountpoint == "/srv/locked" and refuse["/srv/locked"]:
            raise PermissionError(13, "Permission denied", mountpoint)
        if mountpoint == "/srv/gone":
            raise FileNotFoundError(2, "No such file or directory", mountpoint)
        return usage

    fake = PatchedPsutil(
        disk_partitions=fake_partitions("/srv/a", "/srv/locked", "/srv/gone", "/srv/b"),
        disk_usage=disk_usage,
    )
    collector = HostCollector.from_options("host", {}, psutil_module=fake, statvfs=None)
    caplog.set_level(logging.INFO, logger="collectors.host")
    for _ in range(3):
        samples = collector.collect(time.time())
        mounts = {
            s.labels["mountpoint"] for s in samples if s.metric == "dyzur_filesystem_used_ratio"
        }
        assert mounts == {"/srv/a", "/srv/b"}
        assert "dyzur_memory_used_ratio" in {s.metric for s in samples}
    failing = [r.getMessage() for r in caplog.records]
    assert len(failing) == 2, failing
    assert failing[0].startswith(
        "host collector: filesystem /srv/locked: cannot be read, skipped: PermissionError(13"
    )
    assert failing[1].startswith("host collector: filesystem /srv/gone: cannot be read")
    caplog.clear()
    refuse["/srv/locked"] = False
    samples = collector.collect(time.time())
    assert "/srv/locked" in {s.labels.get("mountpoint") for s in samples}
    collector.collect(time.time())
    assert [r.getMessage() for r in caplog.records] == [
        "host collector: filesystem /srv/locked recovered"
    ]


def test_a_hung_filesystem_costs_one_timeout_once():
    release = threading.Event()
    usage = psutil.disk_usage("/")
    calls: list[str] = []

    def disk_usage(mountpoint):
        calls.append(mountpoint)
        if mountpoint == "/mnt/nfs":
            release.wait(30)
        return usage

    fake = PatchedPsutil(
        disk_partitions=fake_partitions("/srv/a", "/mnt/nfs", "/srv/b"), disk_usage=disk_usage
    )
    collector = HostCollector.from_options(
        "host", {"filesystem_timeout": 0.2}, psutil_module=fake, statvfs=None
    )

    def mounts() -> set[str]:
        return {
            s.labels["mountpoint"]
            for s in collector.collect(time.time())
            if s.metric == "dyzur_filesystem_size_bytes"
        }

    try:
        assert mounts() == {"/srv/a"}  # /srv/b waits behind the hung one this time
        assert mounts() == {"/srv/a", "/srv/b"}  # the hung one is skipped, without waiting
        assert calls.count("/mnt/nfs") == 1
    finally:
        release.set()
    deadline = time.monotonic() + 10
    while "/mnt/nfs" in collector._prober.stuck:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert mounts() == {"/srv/a", "/mnt/nfs", "/srv/b"}


def test_one_worker_stats_the_filesystems_of_every_collection():
    """Starting a thread per collection cost more CPU than the stats themselves."""
    workers: list[threading.Thread] = []

    def stat(mountpoint: str) -> str:
        workers.append(threading.current_thread())
        return mountpoint.upper()

    prober = MountProber(stat, timeout=10)
    for _ in range(3):
        assert prober.run(["/a", "/b"]) == ({"/a": "/A", "/b": "/B"}, None)
    assert len(workers) == 6
    assert len(set(workers)) == 1
    assert workers[0] is not threading.current_thread()


def test_a_stuck_worker_is_replaced_and_an_idle_one_ends():
    release = threading.Event()
    workers: list[threading.Thread] = []

    def stat(mountpoint: str) -> str:
        workers.append(threading.current_thread())
        if mountpoint == "/mnt/nfs":
            release.wait(30)
        return mountpoint

    prober = MountProber(stat, timeout=0.2, idle_exit=0.2)
    try:
        assert prober.run(["/srv/a", "/mnt/nfs"]) == ({"/srv/a": "/srv/a"}, "/mnt/nfs")
        stuck = workers[-1]
        assert prober.run(["/srv/a", "/mnt/nfs"]) == ({"/srv/a": "/srv/a"}, None)
        assert workers[-1] is not stuck  # a new worker, the stuck one still hangs
    finally:
        release.set()
    stuck.join(10)
    assert not stuck.is_alive()  # it answered at last and ended
    assert prober.stuck == set()
    idle = workers[-1]
    idle.join(10)
    assert not idle.is_alive()  # nothing to do for idle_exit: it ended
    assert prober.run(["/srv/a", "/mnt/nfs"]) == (
        {"/srv/a": "/srv/a", "/mnt/nfs": "/mnt/nfs"},
        None,
    )
    assert workers[-1] is not idle


def test_a_failing_section_leaves_the_others_and_all_failing_raises(caplog):
    def broken(*args, **kwargs):
        raise OSError(5, "Input/output error")

    fake = PatchedPsutil(net_io_counters=broken)
    collector = HostCollector.from_options("host", {}, psutil_module=fake)
    caplog.set_level(logging.WARNING, logger="collectors.host")
    metrics = {s.metric for s in collector.collect(time.time())}
    assert "dyzur_memory_used_ratio" in metrics
    assert not any(m.startswith("dyzur_network_") for m in metrics)
    collector.collect(time.time())
    assert [r.getMessage() for r in caplog.records] == [
        "host collector: network counters: cannot be read, left out: "
        "OSError(5, 'Input/output error')"
    ]
    names = [
        "cpu_times",
        "getloadavg",
        "virtual_memory",
        "swap_memory",
        "disk_partitions",
        "disk_io_counters",
        "net_io_counters",
        "boot_time",
    ]
    dead = HostCollector.from_options(
        "host", {}, psutil_module=PatchedPsutil(**dict.fromkeys(names, broken))
    )
    with pytest.raises(RuntimeError, match="every host source failed"):
        dead.collect(time.time())


def test_a_bug_is_not_taken_for_a_failing_source():
    def buggy(*args, **kwargs):
        raise TypeError("a bug")

    collector = HostCollector.from_options(
        "host", {}, psutil_module=PatchedPsutil(virtual_memory=buggy)
    )
    with pytest.raises(TypeError, match="a bug"):
        collector.collect(time.time())


# --- Windows, through a fake psutil ------------------------------------------------------

# Shaped like psutil's results on Windows (psutil/_pswindows.py); the values are made up.
WinCpuTimes = namedtuple("scputimes", "user system idle interrupt dpc")
WinVirtualMemory = namedtuple("svmem", "total available percent used free")
WinSwap = namedtuple("sswap", "total used free percent sin sout")
WinPartition = namedtuple("sdiskpart", "device mountpoint fstype opts")
WinUsage = namedtuple("sdiskusage", "total used free percent")
WinDiskIO = namedtuple(
    "sdiskio", "read_count write_count read_bytes write_bytes read_time write_time"
)
WinNetIO = namedtuple(
    "snetio", "bytes_sent bytes_recv packets_sent packets_recv errin errout dropin dropout"
)
WinProcessTimes = namedtuple("pcputimes", "user system children_user children_system")
WinMemoryInfo = namedtuple(
    "pmem",
    "rss vms num_page_faults peak_wset wset peak_paged_pool paged_pool peak_nonpaged_pool "
    "nonpaged_pool pagefile peak_pagefile private",
)
GiB = 1024**3


class FakeWindowsProcess:
    """A fake psutil.Process as psutil builds it on Windows (no zombies there)."""

    def __init__(self, pid, name, cmdline, user=1.0, system=0.5, rss=100 * 1024**2, fails=None):
        self.pid = pid
        self.info = {"name": name, "cmdline": cmdline}
        self._times = WinProcessTimes(user, system, 0.0, 0.0)
        self._rss = rss
        self._fails = fails  # exception class raised when read

    def oneshot(self):
        return nullcontext()

    def name(self):
        self.reads = getattr(self, "reads", 0) + 1
        return self.info["name"]

    def cmdline(self):
        self.cmdline_reads = getattr(self, "cmdline_reads", 0) + 1
        if self.info["cmdline"] is None:  # another user's process: psutil refuses
            raise psutil.AccessDenied(self.pid)
        return self.info["cmdline"]

    def is_running(self):
        return self._fails is not psutil.NoSuchProcess

    def status(self):
        if self._fails is psutil.NoSuchProcess:
            raise psutil.NoSuchProcess(self.pid)
        return psutil.STATUS_RUNNING

    def cpu_times(self):
        return self._times

    def memory_info(self):
        if self._fails is psutil.AccessDenied:
            raise psutil.AccessDenied(self.pid)
        return WinMemoryInfo(self._rss, self._rss * 2, 1000, self._rss, self._rss, *[0] * 7)


class FakeWindowsService:
    def __init__(self, name, status):
        self._name, self._status = name, status

    def status(self):
        if self._status is psutil.AccessDenied:
            raise psutil.AccessDenied(name=self._name)
        return self._status


class FakeWindowsPsutil:
    """A fake psutil module for a Windows Server with 4 logical CPUs, no Windows machine
    running here: no statvfs, no disk busy_time, drive letters, NTFS, a CD-ROM without media
    and one with a disc, a loopback pseudo-interface, services. ``advance()`` moves the
    counters on as if 15 seconds had passed."""

    WINDOWS = True
    LINUX = False

    def __init__(self):
        self._cpu = WinCpuTimes(5000.0, 2000.0, 50000.0, 100.0, 50.0)
        self._load = (0.0, 0.0, 0.0)  # psutil's emulation answers zeros at first
        self._disk = WinDiskIO(1000, 2000, 10 * GiB, 20 * GiB, 5000, 9000)
        self._net = WinNetIO(5 * GiB, 7 * GiB, 10**6, 2 * 10**6, 0, 0, 3, 0)
        self.services = {
            "Spooler": FakeWindowsService("Spooler", "running"),
            "MSSQL$AMMS": FakeWindowsService("MSSQL$AMMS", "stopped"),
            "Locked": FakeWindowsService("Locked", psutil.AccessDenied),
        }
        self.processes = [
            FakeWindowsProcess(0, "System Idle Process", None),
            FakeWindowsProcess(4, "System", None),
            FakeWindowsProcess(2100, "AMMS.exe", ["C:\\AMMS\\AMMS.exe", "/server"], 30.0, 5.0),
            FakeWindowsProcess(2200, "amms.exe", ["C:\\AMMS\\amms.exe", "/worker"], 10.0, 5.0),
            # Another user's process: the command line is unreadable (None), memory too.
            FakeWindowsProcess(2300, "amms.exe", None, 1.0, 1.0, fails=psutil.AccessDenied),
            # Ended between the listing and the reading.
            FakeWindowsProcess(2400, "amms.exe", None, fails=psutil.NoSuchProcess),
            FakeWindowsProcess(
                3100,
                "sqlservr.exe",
                ["C:\\Program Files\\MSSQL\\sqlservr.exe", "-sAMMS"],
                200.0,
                50.0,
                GiB,
            ),
        ]

    def advance(self):
        c = self._cpu  # 4 CPUs x 15 s = 60 s: 18 busy (12 user, 6 system), 42 idle
        self._cpu = c._replace(
            user=c.user + 12, system=c.system + 6, idle=c.idle + 42, interrupt=c.interrupt + 1
        )
        self._load = (2.4, 1.2, 0.8)
        self._disk = self._disk._replace(read_bytes=self._disk.read_bytes + 4096)
        self._net = self._net._replace(bytes_recv=self._net.bytes_recv + 1500)

    def cpu_times(self):
        return self._cpu

    def cpu_count(self, logical=True):
        return 4 if logical else 2

    def getloadavg(self):
        return self._load

    def virtual_memory(self):
        return WinVirtualMemory(16 * GiB, 4 * GiB, 75.0, 12 * GiB, 4 * GiB)

    def swap_memory(self):
        return WinSwap(8 * GiB, 2 * GiB, 6 * GiB, 25.0, 0, 0)

    def disk_partitions(self, all=False):
        return [
            WinPartition("C:\\", "C:\\", "NTFS", "rw,fixed"),
            WinPartition("D:\\", "D:\\", "", "cdrom"),  # no disc in the drive
            WinPartition("E:\\", "E:\\", "NTFS", "rw,fixed"),
            WinPartition("F:\\", "F:\\", "CDFS", "ro,cdrom"),  # a disc in the drive
        ]

    def disk_usage(self, path):
        return {
            "C:\\": WinUsage(100 * GiB, 93 * GiB, 7 * GiB, 93.0),
            "E:\\": WinUsage(500 * GiB, 100 * GiB, 400 * GiB, 20.0),
        }[path]

    def disk_io_counters(self, perdisk=False, nowrap=True):
        return {"PhysicalDrive0": self._disk}

    def net_io_counters(self, pernic=False, nowrap=True):
        return {"Ethernet0": self._net, "Loopback Pseudo-Interface 1": WinNetIO(*[0] * 8)}

    def boot_time(self):
        return 1_790_000_000.0

    def pids(self):
        return sorted(p.pid for p in self.processes)

    def Process(self, pid):
        for proc in self.processes:
            if proc.pid == pid:
                return proc
        raise psutil.NoSuchProcess(pid)

    def win_service_get(self, name):
        if name not in self.services:
            raise psutil.NoSuchProcess(pid=None, name=name, msg=f"service {name!r} does not exist")
        return self.services[name]


def windows_collector(fake, **options) -> HostCollector:
    base = {
        "processes": [
            {"name": "amms", "match_name": "amms.exe"},
            {"name": "sql", "match_cmdline": r"sqlservr\.exe.* -sAMMS"},
            {"name": "amms-server", "match_cmdline": r"(?i)amms\.exe.*/server"},
        ],
        "services": ["Spooler", "MSSQL$AMMS", "Missing", "Locked"],
    }
    return HostCollector.from_options("host", {**base, **options}, psutil_module=fake, statvfs=None)


def test_windows_shaped_data_gives_sane_samples():
    fake = FakeWindowsPsutil()
    collector = windows_collector(fake)
    first = collector.collect(1000.0)
    m = by_metric(first)
    # No CPU delta yet, and the emulated load average answers zeros at first.
    assert "dyzur_cpu_utilisation_ratio" not in m
    assert not {"dyzur_load1", "dyzur_load1_per_cpu"} & set(m)
    assert one(first, "dyzur_cpu_count").value == 4

    fake.advance()
    samples = collector.collect(1015.0)
    assert {s.timestamp for s in samples} == {1015.0}
    # Interrupt and DPC time are inside system time on Windows: not counted twice.
    assert one(samples, "dyzur_cpu_utilisation_ratio").value == pytest.approx(18 / 60)
    assert one(samples, "dyzur_load1").value == 2.4
    assert one(samples, "dyzur_load1_per_cpu").value == pytest.approx(0.6)
    assert one(samples, "dyzur_memory_used_ratio").value == pytest.approx(0.75)
    assert one(samples, "dyzur_swap_used_ratio").value == pytest.approx(0.25)

    c = {"mountpoint": "C:\\", "device": "C:\\", "fstype": "NTFS"}
    assert one(samples, "dyzur_filesystem_size_bytes", **c).value == 100 * GiB
    assert one(samples, "dyzur_filesystem_free_bytes", **c).value == 7 * GiB
    assert one(samples, "dyzur_filesystem_used_ratio", **c).value == pytest.approx(0.93)
    fs = {s.labels["mountpoint"] for s in samples if s.metric.startswith("dyzur_filesystem_")}
    assert fs == {"C:\\", "E:\\"}  # no CD-ROM drive, with or without a disc
    assert not [s for s in samples if "inodes" in s.metric]  # no statvfs on Windows

    disk = {s.metric: s.value for s in samples if s.labels.get("device") == "PhysicalDrive0"}
    assert disk == {
        "dyzur_disk_read_bytes_total": 10 * GiB + 4096,
        "dyzur_disk_written_bytes_total": 20 * GiB,
        "dyzur_disk_reads_completed_total": 1000,
        "dyzur_disk_writes_completed_total": 2000,
    }  # no busy_time on Windows: no dyzur_disk_io_time_seconds_total
    assert {s.labels["interface"] for s in samples if "interface" in s.labels} == {"Ethernet0"}
    assert one(samples, "dyzur_network_receive_bytes_total", interface="Ethernet0").value == (
        7 * GiB + 1500
    )
    assert one(samples, "dyzur_network_receive_drop_total", interface="Ethernet0").value == 3
    assert one(samples, "dyzur_boot_time_seconds").value == 1_790_000_000.0

    # amms.exe matches AMMS.exe too; the one that ended is not counted; the unreadable one
    # counts, with its CPU time but without memory.
    assert one(samples, "dyzur_process_up", process="amms").value == 1
    assert one(samples, "dyzur_process_count", process="amms").value == 3
    assert one(samples, "dyzur_process_cpu_seconds_total", process="amms").value == 52.0
    assert one(samples, "dyzur_process_resident_memory_bytes", process="amms").value == (
        200 * 1024**2
    )
    assert one(samples, "dyzur_process_count", process="sql").value == 1
    assert one(samples, "dyzur_process_resident_memory_bytes", process="sql").value == GiB
    assert one(samples, "dyzur_process_count", process="amms-server").value == 1
    assert one(samples, "dyzur_process_cpu_seconds_total", process="amms-server").value == 35.0

    # Missing is reported down; Locked, whose state cannot be read, is not reported.
    services = {s.labels["service"]: s.value for s in samples if s.metric == "dyzur_service_up"}
    assert services == {"Spooler": 1.0, "MSSQL$AMMS": 0.0, "Missing": 0.0}

    for s in samples:
        if s.metric.endswith("_ratio"):
            assert 0 <= s.value <= 1, s
        assert s.value >= 0, s
        assert "asset" not in s.labels


def test_windows_samples_meet_the_host_pack():
    fake = FakeWindowsPsutil()
    collector = windows_collector(fake)
    collector.collect(1000.0)
    fake.advance()
    samples = [
        Sample(s.metric, {**s.labels, "asset": "srv-win"}, s.value, s.timestamp)
        for s in collector.collect(1015.0)
    ]
    engine = Engine(load_rule_files(["builtin:hosts"]))
    transitions = engine.evaluate(samples, 1015.0)
    # C:\ is 93 % full: the filesystem rule goes pending for its `for`, on C:\ only.
    assert [(t.alert.rule, t.alert.labels["mountpoint"], t.state) for t in transitions] == [
        ("filesystem_usage", "C:\\", "pending")
    ]


def test_a_windows_service_that_comes_back_is_reported_up_again(caplog):
    fake = FakeWindowsPsutil()
    collector = windows_collector(fake, services=["AMMSUpdate"])
    caplog.set_level(logging.INFO, logger="collectors.host")
    up = lambda: one(collector.collect(1000.0), "dyzur_service_up", service="AMMSUpdate").value  # noqa: E731
    assert up() == 0.0
    assert up() == 0.0
    fake.services["AMMSUpdate"] = FakeWindowsService("AMMSUpdate", "running")
    assert up() == 1.0
    assert [r.getMessage() for r in caplog.records] == [
        "host collector: service AMMSUpdate: no such service, reported down",
        "host collector: service AMMSUpdate recovered",
    ]


def test_windows_service_names_are_checked_for_duplicates_ignoring_case():
    with pytest.raises(CollectorConfigError, match=r"^services\.1: duplicate service 'spooler'"):
        HostCollector.from_options(
            "host", {"services": ["Spooler", "spooler"]}, psutil_module=FakeWindowsPsutil()
        )


def test_cpu_interrupt_time_named_irq_on_windows_is_not_counted_twice():
    # psutil plans to rename Windows' `interrupt` field to `irq` (giampaolo/psutil#2772).
    Renamed = namedtuple("scputimes", "user system idle irq dpc")

    class Fake(FakeWindowsPsutil):
        def cpu_times(self):
            return Renamed(*super().cpu_times())

    fake = Fake()
    collector = windows_collector(fake)
    collector.collect(1000.0)
    fake.advance()
    assert one(collector.collect(1015.0), "dyzur_cpu_utilisation_ratio").value == (
        pytest.approx(18 / 60)
    )


@pytest.mark.parametrize("nothing", [None, {}])
def test_no_disk_or_network_statistics_is_no_error(nothing):
    fake = PatchedPsutil(
        disk_io_counters=lambda perdisk=False, nowrap=True: nothing,
        net_io_counters=lambda pernic=False, nowrap=True: nothing,
    )
    samples = HostCollector.from_options("host", {}, psutil_module=fake).collect(time.time())
    assert not [s for s in samples if s.metric.startswith(("dyzur_disk_", "dyzur_network_"))]
    assert "dyzur_memory_used_ratio" in {s.metric for s in samples}
