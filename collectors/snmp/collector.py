"""The SNMP collector (``kind: snmp``): UPS units and storage arrays, polled by profile."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from collectors.base import Collector
from collectors.sample import Sample
from collectors.snmp.options import SnmpOptions, parse_options
from collectors.snmp.poller import Backend, PollResult, PysnmpBackend, RowHints, poll_all

log = logging.getLogger(__name__)


class SnmpCollector(Collector):
    """Polls every configured device on each ``collect``, at most ``concurrency`` at once,
    through the ``backend`` the options chose.

    Failures are logged once when they start and once when they end (a device going silent,
    a metric whose value cannot be read), never on every poll. The row count of each device's
    tables is kept from one poll to the next, to ask for all rows in one request.
    """

    kind = "snmp"

    def __init__(self, name: str, options: SnmpOptions) -> None:
        super().__init__(name)
        self.options = options
        self._down: set[str] = set()
        self._failing: set[tuple[str, str]] = set()
        #: How many values were skipped in total, per (asset, metric).
        self.skipped: dict[tuple[str, str], int] = {}
        self.backend = make_backend(options.backend)
        self.rows: RowHints = {}

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> SnmpCollector:
        return cls(name, parse_options(options))

    def __repr__(self) -> str:
        return (
            f"SnmpCollector(name={self.name!r}, devices={len(self.options.devices)}, "
            f"backend={self.options.backend!r})"
        )

    def poll(self, now: float) -> list[PollResult]:
        """Poll all devices once (a private event loop per call)."""
        return asyncio.run(
            poll_all(
                self.options.devices,
                now,
                self.options.concurrency,
                backend=self.backend,
                rows=self.rows,
            )
        )

    def collect(self, now: float) -> list[Sample]:
        results = self.poll(now)
        samples: list[Sample] = []
        for result in results:
            self._note(result)
            samples.extend(result.samples)
        return samples

    def _note(self, result: PollResult) -> None:
        asset = result.asset
        if not result.up:
            if asset not in self._down:
                self._down.add(asset)
                log.warning(
                    "%s: SNMP device %s does not answer: %s", self.name, asset, result.error
                )
            return
        if asset in self._down:
            self._down.discard(asset)
            log.info("%s: SNMP device %s answers again", self.name, asset)
        failing_now = set()
        for metric, reason in result.skipped:
            key = (asset, metric)
            self.skipped[key] = self.skipped.get(key, 0) + 1
            if key not in self._failing and key not in failing_now:
                log.warning("%s: %s: skipped %s: %s", self.name, asset, metric, reason)
            failing_now.add(key)
        for key in self._failing - failing_now:
            if key[0] == asset:
                log.info("%s: %s: %s is readable again", self.name, asset, key[1])
        self._failing = {k for k in self._failing if k[0] != asset} | failing_now


def make_backend(name: str) -> Backend:
    """The backend called ``name`` in the options (validated there)."""
    if name == "netsnmp":
        from collectors.snmp.netsnmp import NetSnmpBackend

        return NetSnmpBackend()
    return PysnmpBackend()
