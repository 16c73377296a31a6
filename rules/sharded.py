"""The rules engine of a bridge among several: one ``Engine`` per hospital it holds.

Bridges share the hospitals between them (``bridge.sources.shards``): each hospital's series
are evaluated by one bridge at a time, which holds that hospital's state — its series, pending
and firing alerts, absence timers. ``ShardedEngine`` answers like one ``Engine`` over the
hospitals taken (``take``, with the state restored from the store) and forgets a hospital's
state when it is dropped. Samples of a hospital not held are not evaluated here: the caller
hands them to the bridge that holds it. Pure: no I/O, no clock reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from collectors.sample import Sample
from rules.engine import Engine
from rules.model import Alert, AlertState, Rule, Transition


class ShardedEngine:
    def __init__(
        self,
        rules: Sequence[Rule],
        client_of: Mapping[str, str],
        *,
        valid: Callable[[str], bool] = lambda client: True,
        staleness: float | None = None,
    ) -> None:
        """``client_of``: each asset's hospital. ``valid``: whether a hospital taken is still
        held (its lease not run out): time-driven rules are evaluated only for those."""
        self._rules = list(rules)
        self._staleness = staleness
        self._client_of = client_of
        self._valid = valid
        self._engines: dict[str, Engine] = {}
        self._retired = 0  # evaluations of engines dropped since
        # The rules by name, as Engine has them (and to refuse duplicates at once).
        self.rules = Engine(self._rules, staleness).rules

    # --- hospitals -------------------------------------------------------------------------

    def take(
        self,
        client: str,
        alerts: Iterable[Alert],
        *,
        expect: Iterable[str],
        exempt: Iterable[str],
        now: float,
    ) -> None:
        """Start evaluating ``client``'s series from its state in the store: the firing and
        pending ``alerts``, the assets that must report (``expect``, as seen at ``now``) and
        those absence rules never fire for (``exempt``). Taking it again starts it afresh."""
        engine = Engine(self._rules, self._staleness)
        engine.exempt(exempt)
        engine.restore(alerts)
        engine.expect(expect, now)
        self.drop(client)
        self._engines[client] = engine

    def drop(self, client: str) -> None:
        """Forget ``client``'s state (another bridge evaluates it now)."""
        engine = self._engines.pop(client, None)
        if engine is not None:
            self._retired += engine.evaluations

    def holds(self, client: str) -> bool:
        return client in self._engines

    @property
    def clients(self) -> list[str]:
        return sorted(self._engines)

    def valid(self) -> list[str]:
        """The hospitals taken and still held (their leases not run out)."""
        return [c for c in sorted(self._engines) if self._valid(c)]

    # --- Engine's interface ----------------------------------------------------------------

    @property
    def evaluations(self) -> int:
        return self._retired + sum(e.evaluations for e in self._engines.values())

    def evaluate(self, samples: Iterable[Sample], now: float) -> list[Transition]:
        """The samples of the hospitals held, each by its hospital's engine; the others are
        ignored (they are another bridge's)."""
        per_client: dict[str, list[Sample]] = {}
        client_of = self._client_of.get
        for sample in samples:
            client = client_of(sample.labels.get("asset", ""))
            if client is not None and client in self._engines:
                per_client.setdefault(client, []).append(sample)
        out: list[Transition] = []
        for client, mine in per_client.items():
            out += self._engines[client].evaluate(mine, now)
        return out

    def tick(self, now: float) -> list[Transition]:
        out: list[Transition] = []
        for client, engine in self._engines.items():
            if self._valid(client):
                out += engine.tick(now)
        return out

    def _engine_of(self, asset: str | None) -> Engine | None:
        client = self._client_of.get(asset or "")
        return None if client is None else self._engines.get(client)

    def restore(self, alerts: Iterable[Alert]) -> None:
        for alert in alerts:
            engine = self._engine_of(alert.labels.get("asset"))
            if engine is not None:
                engine.restore([alert])

    def expect(self, assets: Iterable[str], now: float) -> None:
        for asset in assets:
            engine = self._engine_of(asset)
            if engine is not None:
                engine.expect([asset], now)

    def exempt(self, assets: Iterable[str]) -> None:
        for asset in assets:
            engine = self._engine_of(asset)
            if engine is not None:
                engine.exempt([asset])

    def last_seen(self, asset: str) -> float | None:
        engine = self._engine_of(asset)
        return None if engine is None else engine.last_seen(asset)

    def series_count(self) -> int:
        return sum(e.series_count() for e in self._engines.values())

    def alerts(self) -> list[Alert]:
        return [a for e in self._engines.values() for a in e.alerts()]

    def counts(self) -> dict[AlertState, int]:
        total = {AlertState.PENDING: 0, AlertState.FIRING: 0}
        for engine in self._engines.values():
            for state, n in engine.counts().items():
                total[state] += n
        return total
