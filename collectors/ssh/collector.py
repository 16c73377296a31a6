"""The ssh collector: agentless checks of AMMS hosts over SSH, in the Nagios plugin convention.

Each host runs the checks of its profile (`profiles/*.yaml`) on one reused SSH connection.
Host keys are verified against dyzur's own known_hosts (`dyzur ssh trust` records them): an
unknown or changed key refuses the connection and is reported as a sample, so the bridge's
rules open a ticket. Every command run is passed to ``on_command`` for the audit trail.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from collectors.base import (
    SSH_COMMAND,
    SSH_HOST_KEY_MISMATCH,
    SSH_HOST_KEY_UNKNOWN,
    Collector,
    CollectorConfigError,
)
from collectors.sample import Sample
from collectors.ssh.known_hosts import KnownHosts
from collectors.ssh.nagios import CheckState, parse, to_samples
from collectors.ssh.runner import (
    CommandEvent,
    HostKeyMismatch,
    SshCredentials,
    SshError,
    SshRunner,
    SshTarget,
    UnknownHostKey,
)

log = logging.getLogger(__name__)
PROFILES = Path(__file__).with_name("profiles")


@dataclass(frozen=True)
class Check:
    name: str
    command: str | None = None
    tcp_port: int | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class Profile:
    checks: tuple[Check, ...]
    version_command: str | None = None


@dataclass(frozen=True)
class Host:
    asset: str
    target: SshTarget
    environment: str
    profile: Profile


def _require(cond: bool, path: str, message: str) -> None:
    if not cond:
        raise CollectorConfigError(f"{path}: {message}")


def load_profile(spec: str, path: str) -> Profile:
    """A profile by name (profiles/NAME.yaml) or by file path."""
    file = Path(spec) if spec.endswith((".yaml", ".yml")) else PROFILES / f"{spec}.yaml"
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError:
        raise CollectorConfigError(f"{path}: no profile {spec!r}") from None
    except yaml.YAMLError as exc:
        raise CollectorConfigError(f"{path}: {file}: invalid YAML: {exc}") from None
    _require(isinstance(data, dict), str(file), "expected a mapping")
    unknown = set(data) - {"checks", "version_command"}
    _require(not unknown, str(file), f"unknown key(s): {', '.join(sorted(unknown))}")
    checks = []
    for i, item in enumerate(data.get("checks") or []):
        where = f"{file}: checks.{i}"
        _require(isinstance(item, dict), where, "expected a mapping")
        unknown = set(item) - {"name", "command", "tcp_port", "timeout"}
        _require(not unknown, where, f"unknown key(s): {', '.join(sorted(unknown))}")
        name = item.get("name")
        _require(isinstance(name, str) and name.isidentifier(), f"{where}.name", "expected a_name")
        command, port = item.get("command"), item.get("tcp_port")
        _require((command is None) != (port is None), where, "needs command or tcp_port")
        _require(command is None or isinstance(command, str), f"{where}.command", "a string")
        _require(
            port is None or (isinstance(port, int) and 0 < port < 65536),
            f"{where}.tcp_port",
            "a port",
        )
        timeout = item.get("timeout", 30)
        _require(
            isinstance(timeout, int | float) and timeout > 0, f"{where}.timeout", "seconds > 0"
        )
        checks.append(Check(name, command, port, float(timeout)))
    version = data.get("version_command")
    _require(version is None or isinstance(version, str), f"{file}: version_command", "a string")
    return Profile(tuple(checks), version)


class SshCollector(Collector):
    kind = "ssh"

    def __init__(
        self,
        name: str,
        hosts: list[Host],
        runner: SshRunner,
        concurrency: int = 8,
    ) -> None:
        super().__init__(name)
        self.hosts = hosts
        self.runner = runner
        self.concurrency = concurrency
        self._assets = {(h.target.host, h.target.port): h.asset for h in hosts}
        self._events: list[dict[str, Any]] = []
        self._events_lock = threading.Lock()
        runner.on_command = self._command_run

    def _record(self, action: str, outcome: str, asset: str, **detail: Any) -> None:
        event = {
            "action": action,
            "outcome": outcome,
            "asset": asset,
            "at": time.time(),
            "detail": detail,
        }
        with self._events_lock:
            self._events.append(event)

    def _command_run(self, event: CommandEvent) -> None:
        """Every command run over SSH becomes an audit event (host, user, command, exit code)."""
        _log_command(event)
        self._record(
            SSH_COMMAND,
            "success" if event.exit_code is not None and not event.error else "failure",
            self._assets.get((event.host, event.port), event.host),
            host=event.host,
            port=event.port,
            user=event.user,
            command=event.command,
            exit_code=event.exit_code,
            timed_out=event.timed_out,
            error=event.error,
        )

    def drain_events(self) -> list[dict[str, Any]]:
        with self._events_lock:
            events, self._events = self._events, []
        return events

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> SshCollector:
        options = dict(options or {})
        allowed = {"known_hosts", "user", "key_file", "use_agent", "jump", "concurrency", "hosts"}
        unknown = set(options) - allowed
        _require(not unknown, "options", f"unknown option(s): {', '.join(sorted(unknown))}")
        known_hosts = options.get("known_hosts")
        if not isinstance(known_hosts, str):
            raise CollectorConfigError("known_hosts: the path of dyzur's known_hosts")
        key_file, use_agent = options.get("key_file"), bool(options.get("use_agent", False))
        _require(key_file is not None or use_agent, "key_file", "a key file, or use_agent: true")
        user = options.get("user")
        concurrency = options.get("concurrency", 8)
        _require(isinstance(concurrency, int) and concurrency > 0, "concurrency", "a number > 0")
        jump = None
        if options.get("jump") is not None:
            j = options["jump"]
            _require(isinstance(j, dict) and isinstance(j.get("host"), str), "jump.host", "a host")
            jump = SshTarget(j["host"], int(j.get("port", 22)), j.get("user"))
        hosts = []
        for i, h in enumerate(options.get("hosts") or []):
            path = f"hosts.{i}"
            _require(isinstance(h, dict), path, "expected a mapping")
            unknown = set(h) - {"asset", "host", "port", "user", "environment", "profile"}
            _require(not unknown, path, f"unknown key(s): {', '.join(sorted(unknown))}")
            for key in ("asset", "host"):
                _require(isinstance(h.get(key), str), f"{path}.{key}", "required")
            env = h.get("environment", "prod")
            _require(env in ("test", "prod"), f"{path}.environment", "test or prod")
            target = SshTarget(h["host"], int(h.get("port", 22)), h.get("user"), jump)
            profile = load_profile(str(h.get("profile", "amms")), f"{path}.profile")
            hosts.append(Host(h["asset"], target, env, profile))
        _require(bool(hosts), "hosts", "at least one host")
        try:
            credentials = SshCredentials(key_file=key_file, use_agent=use_agent)
            runner = SshRunner(
                KnownHosts(known_hosts),
                credentials,
                user=user,
                max_parallel=concurrency,
            )
        except (OSError, ValueError, SshError) as exc:
            raise CollectorConfigError(f"key_file: {exc}") from None
        return cls(name, hosts, runner, concurrency)

    def collect(self, now: float) -> list[Sample]:
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="ssh-host") as pool:
            return [
                s for samples in pool.map(lambda h: self._host(h, now), self.hosts) for s in samples
            ]

    def _host(self, host: Host, now: float) -> list[Sample]:
        labels = {"asset": host.asset, "environment": host.environment}
        out: list[Sample] = []
        mismatch = unknown = 0.0
        up = 1.0
        for check in host.profile.checks:
            if check.tcp_port is not None:
                state = _tcp(host.target.host, check.tcp_port, check.timeout)
                out.append(Sample("dyzur_check_state", {**labels, "check": check.name}, state, now))
                continue
            if up == 0.0:
                continue  # the host does not answer: its commands cannot run
            try:
                result = self.runner.run(host.target, check.command or "", check.timeout)
            except HostKeyMismatch as exc:
                log.error("%s: %s", host.asset, exc)
                mismatch, up = 1.0, 0.0
                self._record(
                    SSH_HOST_KEY_MISMATCH,
                    "failure",
                    host.asset,
                    host=exc.host,
                    port=exc.port,
                    expected=exc.expected_fp,
                    presented=exc.got_fp,
                )
                continue
            except UnknownHostKey as exc:
                log.error("%s: %s (record it with: dyzur ssh trust)", host.asset, exc)
                unknown, up = 1.0, 0.0
                self._record(
                    SSH_HOST_KEY_UNKNOWN,
                    "failure",
                    host.asset,
                    host=exc.host,
                    port=exc.port,
                    presented=exc.fingerprint,
                )
                continue
            except SshError as exc:  # unreachable, authentication refused, ...
                log.warning("%s: %s", host.asset, exc)
                up = 0.0
                continue
            parsed = parse(result.exit_code, result.stdout)
            out += to_samples(parsed, check.name, now, labels)
        if up and host.profile.version_command:
            out += self._version(host, labels, now)
        out += [
            Sample("dyzur_ssh_up", labels, up, now),
            Sample("dyzur_ssh_host_key_mismatch", labels, mismatch, now),
            Sample("dyzur_ssh_host_key_unknown", labels, unknown, now),
        ]
        return out

    def _version(self, host: Host, labels: dict[str, str], now: float) -> list[Sample]:
        try:
            result = self.runner.run(host.target, host.profile.version_command or "", 30.0)
        except SshError:
            return []
        version = result.stdout.strip().splitlines()[0][:64] if result.stdout.strip() else ""
        if result.exit_code != 0 or not version:
            return []
        return [Sample("dyzur_amms_version_info", {**labels, "version": version}, 1.0, now)]


def _tcp(host: str, port: int, timeout: float) -> float:
    """A TCP connect from the agent, as a Nagios state: OK or CRITICAL."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return float(CheckState.CRITICAL)
    return float(CheckState.OK)


def _log_command(event: CommandEvent) -> None:
    log.info(
        "ssh %s@%s:%d ran %r: exit %s",
        event.user,
        event.host,
        event.port,
        event.command,
        event.exit_code,
    )
