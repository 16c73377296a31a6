"""The host collector: CPU, load, memory, swap, filesystems, disks, network, boot time, named
processes and (on Windows) services of the machine the agent runs on, through psutil, so
the same code serves Linux and Windows servers (on Linux the process walks read names and
command lines from /proc themselves: see procfs.py). The metrics are listed in README.md here.

Cheap by design, since it runs on old busy hospital servers: regexes are compiled once when
the options are read, what each process matched is remembered and only new processes are
read (all of them every tenth collection), asking only for the attributes the matching needs
(CPU time and memory are read only for the matches), and nothing sleeps: CPU utilisation is
the delta of ``cpu_times()`` since the previous call.

One failing source does not cost the others: a filesystem that cannot be read (or hangs) is
skipped, and a section (say, the network counters) that raises is left out of that
collection; each is logged once when it starts failing and once when it recovers. Only when
every section fails does ``collect`` raise, for the agent to mark the collector down.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from contextlib import suppress
from functools import partial
from typing import Any

import psutil

from collectors.base import Collector, CollectorConfigError
from collectors.host import procfs
from collectors.host.mounts import MountProber
from collectors.host.options import HostOptions, parse_options
from collectors.sample import Sample

log = logging.getLogger(__name__)

# What psutil and the OS raise when a source cannot be read (NotImplementedError is a
# RuntimeError). Anything else is a bug and propagates.
SOURCE_ERRORS: tuple[type[BaseException], ...] = (OSError, RuntimeError, psutil.Error)

# cpu_times() fields already counted inside another field: guest time is part of user time
# on Linux; on Windows interrupt and DPC time are part of system (kernel) time (psutil may
# rename `interrupt` to `irq` there, which on Linux is a time of its own).
_CPU_COUNTED_ELSEWHERE = frozenset({"guest", "guest_nice"})
_CPU_COUNTED_ELSEWHERE_WINDOWS = _CPU_COUNTED_ELSEWHERE | {"interrupt", "irq", "dpc"}
# Idle time: the CPU had nothing to run (iowait: nothing but waiting on a disk).
_CPU_IDLE = frozenset({"idle", "iowait"})

_DEFAULT = object()
# Every this many collections the process rules look at every process's name again.
PROCESS_RESCAN_EVERY = 10


def _readable(read: Callable[[Any], Any], process: Any) -> Any:
    """What a process attribute read gives, or None where it may not be read (another
    user's process) or the process is a zombie, as ``Process.as_dict`` does."""
    try:
        return read(process)
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _process_name(process: Any) -> str:
    return str(process.name())


def _process_cmdline(process: Any) -> list[str]:
    return list(process.cmdline())


class _Health:
    """Logs a source once when it starts failing and once when it recovers."""

    def __init__(self) -> None:
        self.failing: dict[str, str] = {}

    def fail(self, source: str, reason: str) -> None:
        if source not in self.failing:
            log.warning("host collector: %s: %s", source, reason)
        self.failing[source] = reason

    def ok(self, source: str) -> None:
        if self.failing.pop(source, None) is not None:
            log.info("host collector: %s recovered", source)

    def forget(self, source: str, why: str) -> None:
        if self.failing.pop(source, None) is not None:
            log.info("host collector: %s %s", source, why)


class HostCollector(Collector):
    """Measures the host the agent runs on; see README.md in this package for the metrics."""

    kind = "host"

    def __init__(
        self,
        name: str,
        options: HostOptions | None = None,
        *,
        psutil_module: Any = None,
        statvfs: Any = _DEFAULT,
    ) -> None:
        """``psutil_module`` replaces the psutil module (tests pass a fake with captured data;
        it raises psutil's own exceptions); ``statvfs`` replaces ``os.statvfs`` (``None``
        where the OS has none, as on Windows)."""
        super().__init__(name)
        self._ps = psutil if psutil_module is None else psutil_module
        self._windows = bool(getattr(self._ps, "WINDOWS", False))
        self._statvfs: Callable[[str], Any] | None = (
            getattr(os, "statvfs", None) if statvfs is _DEFAULT else statvfs
        )
        self.options = options if options is not None else HostOptions()
        if self.options.services and not self._windows:
            raise CollectorConfigError("services: Windows services can be watched only on Windows")
        self._health = _Health()
        self._prober = MountProber(self._stat_mount, self.options.filesystem_timeout)
        self._cpu_last: Any = None
        self._cpu_skip = _CPU_COUNTED_ELSEWHERE_WINDOWS if self._windows else _CPU_COUNTED_ELSEWHERE
        # On Windows the load average is emulated by a thread that the first call starts;
        # until it has run (5 s) psutil returns zeros, so the first call reports nothing.
        self._load_started = not self._windows
        # Process rules by exact name (case-folded on Windows) and the command-line rules.
        self._by_name: dict[str, tuple[int, ...]] = {}
        self._by_cmdline: list[tuple[int, Any]] = []
        for i, rule in enumerate(self.options.processes):
            if rule.match_name is not None:
                key = self._name_key(rule.match_name)
                self._by_name[key] = (*self._by_name.get(key, ()), i)
            else:
                self._by_cmdline.append((i, rule.match_cmdline))
        # pid -> (psutil.Process, the rules it matched), for every process and for the matches.
        self._process_matches: dict[int, tuple[Any, tuple[int, ...]]] = {}
        self._process_matching: dict[int, tuple[Any, tuple[int, ...]]] = {}
        # How names and command lines are read: by pid from /proc on Linux (a psutil.Process
        # is made for the matches only), else through psutil.Process.
        self._by_pid = psutil_module is None and bool(psutil.LINUX)
        self._read_name: Callable[[Any], str]
        self._read_cmdline: Callable[[Any], list[str]]
        if self._by_pid:
            root = psutil.PROCFS_PATH
            self._read_name = partial(procfs.name, root)
            self._read_cmdline = partial(procfs.cmdline, root)
        else:
            self._read_name = _process_name
            self._read_cmdline = _process_cmdline
        self._process_walks = 0
        self._process_up = [True] * len(self.options.processes)  # as last reported
        self._services: dict[str, Any] = {}  # service name -> psutil WindowsService
        self._sections: list[tuple[str, Callable[[list[Sample], float], None]]] = [
            ("cpu", self._cpu),
            ("load average", self._load),
            ("memory", self._memory),
            ("swap", self._swap),
            ("filesystems", self._filesystems),
            ("disk counters", self._disks),
            ("network counters", self._network),
            ("boot time", self._boot_time),
        ]
        if self.options.processes:
            self._sections.append(("processes", self._processes))
        if self.options.services:
            self._sections.append(("services", self._services_up))

    @classmethod
    def from_options(
        cls,
        name: str,
        options: Mapping[str, Any] | None,
        *,
        psutil_module: Any = None,
        statvfs: Any = _DEFAULT,
    ) -> HostCollector:
        ps = psutil if psutil_module is None else psutil_module
        parsed = parse_options(options, windows=bool(getattr(ps, "WINDOWS", False)))
        return cls(name, parsed, psutil_module=psutil_module, statvfs=statvfs)

    def _name_key(self, name: str) -> str:
        return name.casefold() if self._windows else name

    def collect(self, now: float) -> list[Sample]:
        out: list[Sample] = []
        health = self._health
        failed: list[BaseException] = []
        for section, measure in self._sections:
            try:
                measure(out, now)
            except SOURCE_ERRORS as exc:
                failed.append(exc)
                health.fail(section, f"cannot be read, left out: {exc!r}")
            else:
                health.ok(section)
        if len(failed) == len(self._sections):
            raise RuntimeError(f"every host source failed, the first with: {failed[0]!r}")
        return out

    # --- sections: each appends its samples to `out` ------------------------------------

    def _cpu(self, out: list[Sample], now: float) -> None:
        times = self._ps.cpu_times()
        total = idle = 0.0
        skip = self._cpu_skip
        for field, value in zip(times._fields, times, strict=True):
            if field in skip:
                continue
            total += value
            if field in _CPU_IDLE:
                idle += value
        last, self._cpu_last = self._cpu_last, (total, idle)
        count = self._ps.cpu_count(logical=True)
        if count:
            out.append(Sample("dyzur_cpu_count", {}, float(count), now))
        if last is None:
            return
        d_total = total - last[0]
        if d_total <= 0:  # no tick since the last call (or the counters went back)
            return
        busy = (d_total - (idle - last[1])) / d_total
        out.append(Sample("dyzur_cpu_utilisation_ratio", {}, min(1.0, max(0.0, busy)), now))

    def _load(self, out: list[Sample], now: float) -> None:
        load1, load5, load15 = self._ps.getloadavg()
        if not self._load_started:
            self._load_started = True
            return
        out.append(Sample("dyzur_load1", {}, float(load1), now))
        out.append(Sample("dyzur_load5", {}, float(load5), now))
        out.append(Sample("dyzur_load15", {}, float(load15), now))
        count = self._ps.cpu_count(logical=True)
        if count:
            out.append(Sample("dyzur_load1_per_cpu", {}, load1 / count, now))

    def _memory(self, out: list[Sample], now: float) -> None:
        vm = self._ps.virtual_memory()
        out.append(Sample("dyzur_memory_total_bytes", {}, float(vm.total), now))
        out.append(Sample("dyzur_memory_available_bytes", {}, float(vm.available), now))
        if vm.total > 0:
            used = 1.0 - vm.available / vm.total
            out.append(Sample("dyzur_memory_used_ratio", {}, min(1.0, max(0.0, used)), now))

    def _swap(self, out: list[Sample], now: float) -> None:
        sw = self._ps.swap_memory()
        out.append(Sample("dyzur_swap_total_bytes", {}, float(sw.total), now))
        out.append(Sample("dyzur_swap_used_bytes", {}, float(sw.used), now))
        ratio = min(1.0, max(0.0, sw.used / sw.total)) if sw.total > 0 else 0.0
        out.append(Sample("dyzur_swap_used_ratio", {}, ratio, now))

    def _stat_mount(self, mountpoint: str) -> tuple[Any, Any]:
        """Runs in the prober's worker thread."""
        usage = self._ps.disk_usage(mountpoint)
        vfs = self._statvfs(mountpoint) if self._statvfs is not None else None
        return usage, vfs

    def _filesystems(self, out: list[Sample], now: float) -> None:
        opts = self.options
        exclude_fstypes, exclude_mp = opts.exclude_fstypes, opts.exclude_mountpoints
        chosen: dict[str, Any] = {}  # mountpoint -> partition; the last mount on it wins
        for part in self._ps.disk_partitions(all=False):
            fstype = part.fstype
            # An empty fstype: a drive without media (Windows) or an unknown filesystem.
            if not fstype or fstype.lower() in exclude_fstypes:
                continue
            if self._windows and "cdrom" in part.opts.split(","):
                continue
            if exclude_mp is not None and exclude_mp.search(part.mountpoint):
                continue
            chosen[part.mountpoint] = part
        health = self._health
        for source in [s for s in health.failing if s.startswith("filesystem ")]:
            if source.removeprefix("filesystem ") not in chosen:
                health.forget(source, "is no longer mounted")
        results, hung = self._prober.run(chosen)
        if hung is not None:
            timeout = self.options.filesystem_timeout
            health.fail(
                f"filesystem {hung}", f"no answer within {timeout:g} s, skipped until it answers"
            )
        for mountpoint, part in chosen.items():
            source = f"filesystem {mountpoint}"
            answer = results.get(mountpoint)
            if answer is None:  # stuck, or waiting behind a hung one
                continue
            if isinstance(answer, Exception):
                if not isinstance(answer, SOURCE_ERRORS):
                    raise answer
                health.fail(source, f"cannot be read, skipped: {answer!r}")
                continue
            health.ok(source)
            usage, vfs = answer
            if usage.total <= 0:
                continue
            labels = {"mountpoint": mountpoint, "device": part.device, "fstype": part.fstype}
            out.append(Sample("dyzur_filesystem_size_bytes", labels, float(usage.total), now))
            out.append(Sample("dyzur_filesystem_free_bytes", labels, float(usage.free), now))
            # As psutil's percent (space reserved for root counts as neither), unrounded.
            room = usage.used + usage.free
            if room > 0:
                ratio = min(1.0, max(0.0, usage.used / room))
                out.append(Sample("dyzur_filesystem_used_ratio", labels, ratio, now))
            if vfs is not None and vfs.f_files > 0:
                files, ffree = vfs.f_files, min(vfs.f_ffree, vfs.f_files)
                out.append(Sample("dyzur_filesystem_inodes", labels, float(files), now))
                out.append(Sample("dyzur_filesystem_inodes_free", labels, float(ffree), now))
                ratio = (files - ffree) / files
                out.append(Sample("dyzur_filesystem_inodes_used_ratio", labels, ratio, now))

    def _disks(self, out: list[Sample], now: float) -> None:
        disks = self._ps.disk_io_counters(perdisk=True)
        if not disks:  # None or {}: no disk statistics on this system
            return
        exclude = self.options.exclude_disks
        for device, io in disks.items():
            if exclude is not None and exclude.search(device):
                continue
            labels = {"device": device}
            out.append(Sample("dyzur_disk_read_bytes_total", labels, float(io.read_bytes), now))
            out.append(Sample("dyzur_disk_written_bytes_total", labels, float(io.write_bytes), now))
            out.append(
                Sample("dyzur_disk_reads_completed_total", labels, float(io.read_count), now)
            )
            out.append(
                Sample("dyzur_disk_writes_completed_total", labels, float(io.write_count), now)
            )
            busy_ms = getattr(io, "busy_time", None)
            if busy_ms is not None:
                out.append(
                    Sample("dyzur_disk_io_time_seconds_total", labels, busy_ms / 1000.0, now)
                )

    def _network(self, out: list[Sample], now: float) -> None:
        nics = self._ps.net_io_counters(pernic=True)
        if not nics:
            return
        exclude = self.options.exclude_interfaces
        for interface, io in nics.items():
            if exclude is not None and exclude.search(interface):
                continue
            labels = {"interface": interface}
            out += (
                Sample("dyzur_network_receive_bytes_total", labels, float(io.bytes_recv), now),
                Sample("dyzur_network_transmit_bytes_total", labels, float(io.bytes_sent), now),
                Sample("dyzur_network_receive_errors_total", labels, float(io.errin), now),
                Sample("dyzur_network_transmit_errors_total", labels, float(io.errout), now),
                Sample("dyzur_network_receive_drop_total", labels, float(io.dropin), now),
                Sample("dyzur_network_transmit_drop_total", labels, float(io.dropout), now),
            )

    def _boot_time(self, out: list[Sample], now: float) -> None:
        out.append(Sample("dyzur_boot_time_seconds", {}, float(self._ps.boot_time()), now))

    def _processes(self, out: list[Sample], now: float) -> None:
        self._process_walks += 1
        full = self._process_walks % PROCESS_RESCAN_EVERY == 1
        count, cpu, rss = self._walk_processes(full)
        newly_down = any(not c and up for c, up in zip(count, self._process_up, strict=True))
        if not full and newly_down:
            # Never report a process newly down from the cache: look at every process again.
            count, cpu, rss = self._walk_processes(True)
        self._process_up = [c > 0 for c in count]
        for i, rule in enumerate(self.options.processes):
            labels = {"process": rule.name}
            out += (
                Sample("dyzur_process_up", labels, 1.0 if count[i] else 0.0, now),
                Sample("dyzur_process_count", labels, float(count[i]), now),
                Sample("dyzur_process_cpu_seconds_total", labels, cpu[i], now),
                Sample("dyzur_process_resident_memory_bytes", labels, rss[i], now),
            )

    def _classify(self, process: Any) -> tuple[int, ...]:
        """The process rules a process (a pid, or a psutil.Process: see ``_by_pid``) matches,
        by its name or command line. Only what the rules look at is read."""
        matched: tuple[int, ...] = ()
        if self._by_name:
            name = _readable(self._read_name, process) or ""
            matched = self._by_name.get(name.casefold() if self._windows else name, ())
        if self._by_cmdline:
            cmdline = " ".join(_readable(self._read_cmdline, process) or ())
            matched = (*matched, *(i for i, regex in self._by_cmdline if regex.search(cmdline)))
        return matched

    def _walk_processes(self, full: bool) -> tuple[list[int], list[float], list[float]]:
        """One pass over the processes. Reading a process's name or command line costs 6-25 us
        each, so what each process matched is remembered by pid, the matches with their
        psutil.Process (a pid that a new process took is caught by ``is_running`` on the
        matches, and by the next full walk on the others): a pass lists the pids, reads the
        processes that are new since the last pass and the CPU and memory of the matches, and
        walks nothing else in Python. A full walk reads every process again, which also
        catches a process that exec()'d into another program."""
        n = len(self.options.processes)
        count, cpu, rss = [0] * n, [0.0] * n, [0.0] * n
        ps = self._ps
        known, matching = self._process_matches, self._process_matching
        listed = set(ps.pids())
        for pid in known.keys() - listed:  # ended since the last pass
            del known[pid]
            matching.pop(pid, None)
        by_pid = self._by_pid
        for pid in listed if full else listed - known.keys():
            entry = known.get(pid)
            proc = None if entry is None else entry[0]
            try:
                if by_pid:
                    matched = self._classify(pid)
                    if matched and proc is None:
                        # A psutil.Process for its CPU and memory, and read again once that
                        # exists, so both are surely of the same process (a pid is reused).
                        proc = ps.Process(pid)
                        matched = self._classify(pid)
                else:
                    if proc is None:
                        proc = ps.Process(pid)
                    matched = self._classify(proc)
            except psutil.NoSuchProcess:  # ended meanwhile (also ZombieProcess)
                known.pop(pid, None)
                matching.pop(pid, None)
                continue
            known[pid] = (proc, matched)
            if matched:
                matching[pid] = known[pid]
            else:
                matching.pop(pid, None)
        zombie = psutil.STATUS_ZOMBIE
        for pid, (proc, matched) in list(matching.items()):
            # CPU and memory of the matches only. A process that ended meanwhile, or is a
            # zombie (dead, not yet reaped), does not count; one we may not read counts as
            # running and adds what could be read.
            p_cpu = p_rss = 0.0
            try:
                with proc.oneshot():
                    if not proc.is_running():  # its pid now belongs to another process
                        del known[pid], matching[pid]
                        continue
                    with suppress(psutil.AccessDenied):
                        if proc.status() == zombie:
                            continue
                    with suppress(psutil.AccessDenied):
                        times = proc.cpu_times()
                        p_cpu = times.user + times.system
                    with suppress(psutil.AccessDenied):
                        p_rss = float(proc.memory_info().rss)
            except psutil.NoSuchProcess:  # also ZombieProcess
                known.pop(pid, None)
                matching.pop(pid, None)
                continue
            for i in matched:
                count[i] += 1
                cpu[i] += p_cpu
                rss[i] += p_rss
        return count, cpu, rss

    def _services_up(self, out: list[Sample], now: float) -> None:
        health = self._health
        for name in self.options.services:
            source = f"service {name}"
            try:
                service = self._services.get(name)
                if service is None:
                    service = self._services[name] = self._ps.win_service_get(name)
                running = service.status() == "running"
            except psutil.NoSuchProcess:
                # Not installed (or removed): report it down, and look it up afresh next time.
                self._services.pop(name, None)
                health.fail(source, "no such service, reported down")
                out.append(Sample("dyzur_service_up", {"service": name}, 0.0, now))
                continue
            except (psutil.AccessDenied, OSError) as exc:
                # Unknown is not down: no sample.
                health.fail(source, f"state cannot be read, not reported: {exc!r}")
                continue
            health.ok(source)
            out.append(Sample("dyzur_service_up", {"service": name}, 1.0 if running else 0.0, now))
