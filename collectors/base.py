"""The collector interface: given `now`, return samples. Standard library only."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from collectors.sample import Sample

# The audit events collectors record (``drain_events``). An agent sends these and only these;
# the bridge refuses any other action from an agent.
SSH_COMMAND = "ssh.command"
SSH_HOST_KEY_MISMATCH = "ssh.host_key_mismatch"
SSH_HOST_KEY_UNKNOWN = "ssh.host_key_unknown"
AGENT_AUDIT_ACTIONS = frozenset({SSH_COMMAND, SSH_HOST_KEY_MISMATCH, SSH_HOST_KEY_UNKNOWN})


class CollectorConfigError(ValueError):
    """A collector's options are wrong; the message names the option."""


class Collector(ABC):
    """One source of samples, configured by name in the agent's config.

    A collector is built once from its options and then called on its interval. It must not
    keep references to the returned samples, and it may raise: the agent logs the failure,
    marks the collector down and calls it again on the next interval.
    """

    #: The name it is configured by (``kind: host``); its pip extra is declared beside it in
    #: collectors/registry.py.
    kind: ClassVar[str]

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> Collector:
        """Build from the ``options:`` mapping of the config; raise CollectorConfigError."""
        if options:
            raise CollectorConfigError(f"unknown option(s): {', '.join(sorted(options))}")
        return cls(name)

    @abstractmethod
    def collect(self, now: float) -> list[Sample]:
        """Measure now; ``now`` (epoch seconds) is the timestamp of every returned sample."""

    def drain_events(self) -> list[dict[str, Any]]:
        """Audit events recorded since the last call (each SSH command run, a refused host
        key, ...), as dicts with ``action``, ``outcome``, ``asset``, ``at`` and ``detail``.
        The agent sends them to the bridge with the samples; most collectors have none."""
        return []
