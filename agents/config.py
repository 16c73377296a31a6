"""agent.yaml: what one agent measures, where it pushes, where it spools.

Validated with the standard library (the agent stays light); every problem names its field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from collectors.durations import parse_duration
from collectors.yamlfile import YamlError, load_yaml

TOKEN_ENV = "DYZUR_AGENT_TOKEN"  # noqa: S105 - the name of a variable, not a secret
MAX_DURATION = 86400.0  # the longest interval, timeout or shutdown_timeout: 1d


class AgentConfigError(Exception):
    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True)
class BridgeTarget:
    url: str
    token_file: Path | None = None
    ca_file: Path | None = None
    timeout: float = 10.0

    def token(self) -> str:
        """The agent token: from token_file, else from $DYZUR_AGENT_TOKEN. Never logged."""
        if self.token_file is not None:
            try:
                token = self.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise AgentConfigError(
                    "agent config", [f"bridge.token_file: cannot read {self.token_file}: {exc}"]
                ) from None
        else:
            token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise AgentConfigError(
                "agent config", [f"bridge.token_file: no token (set token_file or ${TOKEN_ENV})"]
            )
        return token


@dataclass(frozen=True)
class CollectorSpec:
    name: str
    kind: str
    interval: float
    timeout: float
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentConfig:
    asset: str
    bridge: BridgeTarget
    spool_path: Path
    spool_max_samples: int = 1_000_000
    metrics_listen: tuple[str, int] | None = ("127.0.0.1", 9465)
    jitter: float = 0.1
    shutdown_timeout: float = 10.0
    collectors: list[CollectorSpec] = field(default_factory=list)


class _Reader:
    """Takes fields out of a mapping, collecting problems with their dotted path."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problems.append(f"{path or '(top level)'}: expected a mapping")
            return {}
        return dict(value)

    def done(self, data: dict[str, Any], path: str) -> None:
        for key in data:
            self.problems.append(f"{path}{key}: unknown setting")

    def text(
        self, data: dict[str, Any], key: str, path: str, default: str | None = None
    ) -> str | None:
        value = data.pop(key, default)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            self.problems.append(f"{path}{key}: expected a non-empty string")
            return default
        return value

    def duration(
        self, data: dict[str, Any], key: str, path: str, default: float | None
    ) -> float | None:
        value = data.pop(key, None)
        if value is None:
            return default
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.problems.append(f"{path}{key}: {exc}")
            return default
        if seconds <= 0:
            self.problems.append(f"{path}{key}: must be longer than 0s")
            return default
        if seconds > MAX_DURATION:  # beyond what a thread's wait can take, and no use
            self.problems.append(f"{path}{key}: must be at most 1d")
            return default
        return seconds

    def number(
        self, data: dict[str, Any], key: str, path: str, default: float, low: float, high: float
    ) -> float:
        value = data.pop(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            self.problems.append(f"{path}{key}: expected a number from {low:g} to {high:g}")
            return default
        return value


def _listen(text: str, reader: _Reader) -> tuple[str, int] | None:
    if text in ("", "off"):
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        reader.problems.append(f"metrics.listen: expected HOST:PORT or off, got {text!r}")
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_agent_config(data: Any, source: str, base_dir: Path) -> AgentConfig:
    r = _Reader()
    top = r.mapping(data, "")
    asset = r.text(top, "asset", "") or ""
    if not asset:
        r.problems.append("asset: required: the inventory id of this host")

    b = r.mapping(top.pop("bridge", None), "bridge")
    url = r.text(b, "url", "bridge.") or ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        r.problems.append("bridge.url: expected http(s)://HOST[:PORT], e.g. https://dyzur:8080")
    token_file = r.text(b, "token_file", "bridge.")
    ca_file = r.text(b, "ca_file", "bridge.")
    timeout = r.duration(b, "timeout", "bridge.", 10.0)
    r.done(b, "bridge.")
    bridge = BridgeTarget(
        url=url.rstrip("/"),
        token_file=base_dir / token_file if token_file else None,
        ca_file=base_dir / ca_file if ca_file else None,
        timeout=timeout or 10.0,
    )

    s = r.mapping(top.pop("spool", None), "spool")
    spool_path = base_dir / (r.text(s, "path", "spool.", "spool.db") or "spool.db")
    max_samples = int(r.number(s, "max_samples", "spool.", 1_000_000, 1000, 1e9))
    r.done(s, "spool.")

    m = r.mapping(top.pop("metrics", None), "metrics")
    listen = m.pop("listen", "127.0.0.1:9465")
    metrics_listen = _listen(str(listen) if listen is not False else "off", r)
    r.done(m, "metrics.")

    jitter = float(r.number(top, "jitter", "", 0.1, 0.0, 1.0))
    shutdown_timeout = r.duration(top, "shutdown_timeout", "", 10.0) or 10.0

    collectors = []
    items = top.pop("collectors", None)
    if not isinstance(items, list) or not items:
        r.problems.append("collectors: expected a list of at least one collector")
        items = []
    for i, item in enumerate(items):
        path = f"collectors.{i}."
        c = r.mapping(item, path.rstrip("."))
        name = r.text(c, "name", path) or ""
        if not name:
            r.problems.append(f"{path}name: required")
        kind = r.text(c, "kind", path, name) or name
        interval = r.duration(c, "interval", path, 30.0) or 30.0
        timeout = r.duration(c, "timeout", path, interval) or interval
        options = r.mapping(c.pop("options", None), f"{path}options")
        r.done(c, path)
        collectors.append(CollectorSpec(name, kind, interval, timeout, options))
    r.done(top, "")
    if r.problems:
        raise AgentConfigError(source, r.problems)
    return AgentConfig(
        asset=asset,
        bridge=bridge,
        spool_path=spool_path,
        spool_max_samples=max_samples,
        metrics_listen=metrics_listen,
        jitter=jitter,
        shutdown_timeout=shutdown_timeout,
        collectors=collectors,
    )


def load_agent_config(path: Path | str) -> AgentConfig:
    path = Path(path)
    try:
        data = load_yaml(path)
    except YamlError as exc:
        raise AgentConfigError(str(path), [exc.located]) from None
    return parse_agent_config(data, str(path), path.resolve().parent)
