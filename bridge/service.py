"""One running bridge: config, store, clock, engine, lifecycle and metrics, wired together.

Wiring only: the constructor builds every service with its collaborators passed in and does
no I/O; ``start()`` restores the engine's state from the store, records the configuration
loaded and starts the time-driven work; ``stop()`` ends it and ``close()`` closes the store.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from bridge.actions import Action
from bridge.audit import AuditQueries
from bridge.clock import Clock, utc_iso
from bridge.config import (
    LoadedConfig,
    OncallSettings,
    RedmineSinkConfig,
    siem_destinations,
    sink_consumers,
)
from bridge.delivery.oncall.channels import build_channel
from bridge.delivery.oncall.desk import OncallDesk
from bridge.delivery.oncall.links import PageLinks, load_link_key
from bridge.delivery.oncall.pager import Pager
from bridge.delivery.oncall.responses import PageResponses
from bridge.delivery.outbox import LEASE_SECONDS as OUTBOX_LEASE
from bridge.delivery.outbox import Outbox
from bridge.delivery.siem import SiemConsumer
from bridge.delivery.sinks import FailedDeliveries, TicketSink, without_userinfo
from bridge.delivery.sinks.redmine import RedmineApi
from bridge.delivery.sinks.redmine_responses import RedmineResponses
from bridge.maintenance.planning import Maintenance
from bridge.maintenance.queries import CalendarFeed, PlanQueries, WindowQueries
from bridge.maintenance.updates import Updates
from bridge.metrics import BridgeMetrics
from bridge.models import AuditEvent, Ticket
from bridge.refusals import RefusalAudit
from bridge.sources.alertmanager import AlertmanagerReceiver
from bridge.sources.alertmanager import rule_of as alertmanager_rule_of
from bridge.sources.handover import ClusterIntake
from bridge.sources.samples import Ingestor, Intake
from bridge.sources.shards import Shards
from bridge.sources.versions import AmmsVersions
from bridge.store import Store, StoreError, open_store
from bridge.tickets.desk import TicketDesk
from bridge.tickets.incident_desk import IncidentDesk
from bridge.tickets.lifecycle import TicketLifecycle
from bridge.users import Logins
from collectors.ssh.known_hosts import KnownHosts
from collectors.ssh.runner import SshCredentials, SshRunner
from rules.engine import Engine
from rules.sharded import ShardedEngine

if TYPE_CHECKING:
    from bridge.store.redis_coordination import RedisCoordination

log = logging.getLogger(__name__)

# The lease of the time-driven work done by one bridge of several (deadlines, windows'
# releases, incidents' releases, update plans, escalations), renewed at every tick.
TICKER_LEASE = "ticker"


class Bridge:
    def __init__(self, loaded: LoadedConfig, store: Store, clock: Clock | None = None) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.clock = clock or Clock()
        self.store = store
        self.metrics = BridgeMetrics()
        # Who this bridge is among several: its leases and its reads of handed-over batches.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.coordination = self._coordination()
        self.engine: Engine | ShardedEngine = (
            Engine(loaded.rules)
            if self.coordination is None
            else ShardedEngine(
                loaded.rules,
                {a.id: a.client for a in loaded.assets.values()},
                valid=lambda client: self.shards is not None and self.shards.valid(client),
            )
        )
        self.maintenance = Maintenance(self.store, loaded.clients, loaded.assets, self.clock)
        self.lifecycle = TicketLifecycle(
            self.store,
            loaded.clients,
            loaded.assets,
            self.clock,
            self.config.reopen_period,
            self.config.sla.at_risk_share,
            muter=self.maintenance,
            incidents=self.config.incidents,
            last_seen=self.engine.last_seen,
        )
        self.versions = AmmsVersions(self.store, self.store, loaded.assets)
        self.ingestor = Ingestor(
            self.engine,
            self.lifecycle,
            self.store,
            loaded.assets,
            self.clock,
            self.metrics,
            self.config.max_clock_skew,
            self.config.agent_events_max_age,
            self.config.max_seq_gap,
            versions=self.versions,
            external_rules=alertmanager_rule_of,
        )
        self.updates = Updates(
            self.store,
            self.lifecycle,
            self.maintenance,
            loaded.clients,
            loaded.assets,
            self.clock,
            self._ssh_runner if self.config.ssh is not None else None,
            self.config.updates.soak,
            self.config.updates.settle,
            str(loaded.path) if loaded.path is not None else None,
            changed=self.metrics.count_change,
        )
        self.alertmanager = AlertmanagerReceiver(
            self.config.alertmanager, self.lifecycle, self.store, loaded.assets, self.metrics
        )
        # Among several bridges: the hospitals this one evaluates, and the batches of the
        # others handed over to the bridge holding them.
        self.shards: Shards | None = None
        self.intake: Intake = self.ingestor
        if self.coordination is not None:
            self.shards = Shards(
                self.coordination,
                list(loaded.clients),
                self.owner,
                self.config.cluster.lease,
                take=self.ingestor.take_shard,
                drop=self.ingestor.drop_shard,
                metrics=self.metrics,
                info={"started": utc_iso(self.clock.now())},
            )
            self.intake = ClusterIntake(
                self.ingestor,
                self.shards,
                self.coordination,
                loaded.assets,
                self.metrics,
                timeout=self.config.cluster.handover_timeout,
                dead_letter_after=self.config.cluster.dead_letter_after,
            )
        # What leaves dyzur: the outbox and its consumers, the SIEMs first.
        self.outbox = Outbox(
            self.store,
            self.clock,
            owner=self.owner,
            lease_seconds=(
                OUTBOX_LEASE if self.coordination is None else self.config.cluster.lease
            ),
        )
        # Whatever commits an outbox entry (a ticket change, a page) wakes the consumers at
        # once, instead of at their next look a second later.
        self.store.watch_appends(self.outbox.notify)
        for destination in siem_destinations(self.config, loaded.base_dir):
            self.outbox.register(SiemConsumer(destination, self.metrics))
        for sink in sink_consumers(
            self.config, loaded.base_dir, self.store, loaded.clients, loaded.assets
        ):
            self.outbox.register(sink)
        self.refusals = RefusalAudit(self.store.append_audit, self.clock)
        # What the API reads, each a narrow service.
        self.tickets = TicketDesk(self.store, self.lifecycle, self.metrics, self.store)
        self.incidents = IncidentDesk(
            self.store,
            self.store,
            loaded.assets,
            self.config.incidents,
            self.lifecycle.incidents,
            self.ingestor.rule_of,
        )
        # The way back of each Redmine sink: what the helpdesk does there reaches the tickets.
        self.helpdesk_responses = self._helpdesk_responses()
        self._pollers: list[threading.Thread] = []
        self.windows = WindowQueries(self.store, loaded.assets, self.clock)
        self.plans = PlanQueries(self.store)
        self.calendar = CalendarFeed(self.store, self.store, loaded.clients, self.clock)
        self.trail = AuditQueries(self.store)
        # The pages' users and sessions, with the guard against guessed passwords.
        self.logins = Logins(
            self.store,
            self.config.users,
            self.config.web,
            self.clock,
            notify=self.outbox.notify,
            refused=self.refused,
        )
        self.deliveries = FailedDeliveries(self.store)
        # The rota (who is on duty; its overrides read from the store at each question) and
        # what people do with it. Without an oncall section nobody is ever on duty.
        self.oncall = OncallDesk(
            self.config.oncall or OncallSettings(),
            self.store,
            loaded.clients,
            loaded.assets,
            self.clock,
        )
        # Paging the person on duty (and the next when nobody acknowledges): what pages, the
        # escalation and fallback on the ticker, one outbox consumer per channel.
        self.page_links = self._page_links()
        self.pager = self._pager()
        if self.pager is not None:
            for consumer in self.pager.consumers():
                self.outbox.register(consumer)
        # The link in a page: the ticket shown, and acknowledged once (bridge.web's page).
        self.page_responses = self._page_responses()
        # The helpdesk sinks count in the bridge's metrics and park changes by its clock.
        self.sinks = [
            w.consumer for w in self.outbox.workers.values() if isinstance(w.consumer, TicketSink)
        ]
        for sink in self.sinks:
            sink.attach(self.clock, self.metrics)
        self._watch()
        self._started = False
        self._ticker_failing = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def _coordination(self) -> RedisCoordination | None:
        """Redis between bridges (``coordination:``): the store's leases move there."""
        if self.config.coordination is None:
            return None
        from bridge.store.redis_coordination import RedisCoordination

        coordination = RedisCoordination(
            self.config.coordination,
            prefix=self.config.cluster.prefix,
            tokens=self.store.next_sequence,
        )
        self.store.use_leases(coordination)
        return coordination

    @classmethod
    def open(cls, loaded: LoadedConfig, clock: Clock | None = None) -> Bridge:
        """A bridge on the store its configuration names, opened (and migrated) now."""
        return cls(loaded, open_store(loaded.config.store, loaded.base_dir), clock)

    def start(self, *, ticker: bool = True) -> None:
        """Put the alerts of open tickets back into the engine, start watching the reporting
        assets and record ``config.loaded``; with ``ticker``, start the time-driven work and
        the SIEM forwarding. Starting again changes nothing."""
        if not self._started:
            self._started = True
            self.ingestor.start()
            self.audit(
                Action.CONFIG_LOADED,
                clients=len(self.loaded.clients),
                assets=len(self.loaded.assets),
                rules=len(self.loaded.rules),
                tokens=len(self.config.tokens),
                siem=[d.name for d in self.config.siem],
                sinks=[f"{s.kind}:{s.name}" for s in self.config.sinks],
            )
            for sink in self.config.sinks:  # what each sink is, never its secret
                self.audit(
                    Action.SINK_CONFIGURED,
                    sink=sink.name,
                    kind=sink.kind,
                    url=without_userinfo(sink.url),
                    clients=sink.clients,
                )
        if ticker:
            self.start_ticker()

    def _watch(self) -> None:
        """Gauges read at scrape time. Labels stay bounded: clients, categories, states —
        never a ticket number or free text."""
        watch = self.metrics.watch
        watch(
            "dyzur_alerts",
            "Alerts of dyzur's rules by state.",
            ["state"],
            lambda: {(s.value,): n for s, n in self.ingestor.alert_counts().items()},
        )
        watch(
            "dyzur_rule_series",
            "Series the rules engine keeps state for (bounded: stale ones are dropped).",
            [],
            lambda: {(): self.ingestor.series_count()},
        )
        watch(
            "dyzur_sla_open_tickets",
            "Open tickets without a response that are at risk or past their deadline.",
            ["client", "category", "state"],
            lambda: dict(self.store.sla_counts().items()),
        )
        watch(
            "dyzur_tickets",
            "Tickets by client, category and status.",
            ["client", "category", "status"],
            lambda: dict(self.store.ticket_counts().items()),
        )
        watch(
            "dyzur_maintenance_windows_active",
            "Maintenance windows running now, by client.",
            ["client"],
            self._active_windows,
        )
        watch(
            "dyzur_transition_queue",
            "Alert transitions waiting for the store (retried every tick).",
            [],
            lambda: {(): self.ingestor.queued_transitions},
        )
        watch(
            "dyzur_update_plans",
            "Update plans by status.",
            ["status"],
            lambda: Counter((p.status.value,) for p in self.store.plans()),
        )
        watch(
            "dyzur_sink_oldest_undelivered_seconds",
            "Age of the oldest ticket change a helpdesk sink has not delivered yet (0: none).",
            ["sink"],
            lambda: {(s.sink,): s.undelivered_age(self.clock.now()) for s in self.sinks},
        )
        watch(
            "dyzur_incident_storms_open",
            "Whether a hospital has an open storm ticket (alerts beyond its storm budget).",
            ["client"],
            self._open_storms,
        )
        watch(
            "dyzur_sink_parked",
            "Ticket changes a helpdesk sink parked (refused, or waiting behind a refused one) "
            "until dyzur sinks retry.",
            ["sink"],
            self._parked_per_sink,
        )
        if self.coordination is not None:
            self._watch_cluster(self.coordination)

    def _watch_cluster(self, coordination: RedisCoordination) -> None:
        """Among several bridges: read from Redis at scrape time (nothing when it is away)."""
        watch = self.metrics.watch

        def safely(
            read: Callable[[], Mapping[tuple[str, ...], float]],
        ) -> Callable[[], Mapping[tuple[str, ...], float]]:
            def guarded() -> Mapping[tuple[str, ...], float]:
                try:
                    return read()
                except StoreError:
                    return {}

            return guarded

        watch(
            "dyzur_cluster_hospitals_held",
            "Whether this bridge evaluates a hospital's series now (holds its shard lease).",
            ["client"],
            lambda: {
                (c,): int(self.shards is not None and self.shards.valid(c))
                for c in self.loaded.clients
            },
        )
        watch(
            "dyzur_cluster_bridges_alive",
            "Bridges whose heartbeat in Redis has not run out.",
            [],
            safely(lambda: {(): len(coordination.members())}),
        )
        watch(
            "dyzur_cluster_leases_held",
            "The leases this bridge holds now (shards, the ticker, outbox consumers, plans).",
            ["lease"],
            safely(
                lambda: {
                    (name,): 1
                    for name, (owner, _, _) in coordination.holders().items()
                    if owner == self.owner
                }
            ),
        )
        watch(
            "dyzur_cluster_stream_lag",
            "Batches handed over for a hospital and not yet taken by the bridge holding it.",
            ["client"],
            safely(lambda: {(c,): n for c, n in coordination.stream_lag().items()}),
        )
        watch(
            "dyzur_cluster_dead_letters",
            "Handed-over batches that failed too often and wait in the dead-letter stream.",
            [],
            safely(lambda: {(): coordination.dead_letters()}),
        )

    def _open_storms(self) -> dict[tuple[str, ...], int]:
        storms = self.lifecycle.incidents.open_storms()
        return {(c,): int(c in storms) for c in self.loaded.clients}

    def _parked_per_sink(self) -> dict[tuple[str, ...], int]:
        counts = self.store.parked_counts()
        return {(s.sink,): counts.get(s.sink, 0) for s in self.sinks}

    def _active_windows(self) -> dict[tuple[str, ...], int]:
        active = self.maintenance.schedule().active(self.clock.now())
        counts = Counter((w.client,) for w, _ in active)
        return {(c,): counts.get((c,), 0) for c in self.loaded.clients}

    def audit(
        self, action: str, actor: str = "dyzur", outcome: str = "success", **detail: object
    ) -> None:
        """Record an audit event that belongs to no ticket (configuration, tokens, ...)."""
        self.store.append_audit(AuditEvent(self.clock.now(), actor, action, outcome, detail=detail))
        self.outbox.notify()

    def refused(
        self,
        action: str,
        source: str,
        request: str,
        actor: str = "unknown",
        client: str | None = None,
        **detail: object,
    ) -> None:
        """A request refused for its credentials: logged now, audited once a minute per source
        and actor with a count (``token.missing``, ``token.refused``, ``role.refused``,
        ``agent.stream_refused``)."""
        by = "" if actor == "unknown" else f" by {actor}"
        log.warning("%s: %s from %s%s", action.replace(".", " "), request, source, by)
        self.metrics.refusals.labels(action.partition(".")[0]).inc()
        self.refusals.refused(action, source, request, actor, client, **detail)

    def _ssh_runner(self) -> SshRunner:
        """A runner for one update stage, with the bridge's key and known_hosts."""
        ssh = self.config.ssh
        assert ssh is not None
        base = self.loaded.base_dir
        return SshRunner(
            KnownHosts(base / ssh.known_hosts),
            SshCredentials(
                key_file=base / ssh.key_file if ssh.key_file else None, use_agent=ssh.use_agent
            ),
            user=ssh.user,
            connect_timeout=ssh.connect_timeout,
        )

    def _helpdesk_responses(self) -> list[RedmineResponses]:
        """One poller per Redmine sink, for the responses made in Redmine (under a lease)."""
        return [
            RedmineResponses(
                s.name,
                RedmineApi(s.url, self.loaded.base_dir / s.api_key_file),
                s.custom_field_id,
                self.store,
                self.lifecycle,
                self.loaded.clients,
                self.clock,
                self.outbox.owner,
                interval=s.poll_interval,
                responded=self.tickets.responded,
                notify=self.outbox.notify,
            )
            for s in self.config.sinks
            if isinstance(s, RedmineSinkConfig)
        ]

    def _page_links(self) -> PageLinks | None:
        """The signed one-time links of pages: with oncall.link_key_file and public_url."""
        oncall, public_url = self.config.oncall, self.config.public_url
        if oncall is None or oncall.link_key_file is None or public_url is None:
            return None
        return PageLinks(load_link_key(self.loaded.base_dir / oncall.link_key_file), public_url)

    def _page_responses(self) -> PageResponses | None:
        oncall = self.config.oncall
        if oncall is None or self.page_links is None:
            return None
        return PageResponses(
            self.page_links,
            self.store,
            self.lifecycle,
            {person.id: person for person in oncall.people},
            self.clock,
            responded=self.tickets.responded,
            notify=self.outbox.notify,
            refused=self.refused,
            metrics=self.metrics,
        )

    def _pager(self) -> Pager | None:
        oncall = self.config.oncall
        if oncall is None:
            return None
        senders = {
            name: build_channel(name, channel, self.loaded.base_dir)
            for name, channel in oncall.channels.items()
        }
        return Pager(
            oncall,
            self.oncall.rota,
            self.store,
            self.lifecycle,
            self.lifecycle.calendar,
            self.loaded.clients,
            self.loaded.assets,
            self.clock,
            senders,
            links=self.page_links,
            metrics=self.metrics,
            owner=self.outbox.owner,
            notify=self.outbox.notify,
        )

    def start_ticker(self) -> None:
        """Evaluate time-driven rules (absence) and retries every ``tick_interval``, and
        forward audit events to the SIEMs."""
        if self._ticker is not None:
            return
        self.outbox.start()
        self._stop.clear()
        for responses in self.helpdesk_responses:
            poller = threading.Thread(
                target=responses.run, args=(self._stop,), name=responses.name, daemon=True
            )
            poller.start()
            self._pollers.append(poller)
        self._ticker = threading.Thread(target=self._tick_loop, name="dyzur-ticker", daemon=True)
        self._ticker.start()
        if self.shards is not None and isinstance(self.intake, ClusterIntake):
            for name, loop in (
                ("dyzur-shards", self.shards.run),
                ("dyzur-intake", self.intake.run),
            ):
                thread = threading.Thread(target=loop, args=(self._stop,), name=name, daemon=True)
                thread.start()
                self._pollers.append(thread)

    def tick(self) -> None:
        """Time-driven work: absence rules, retries, and reaction deadlines. Among several
        bridges, each evaluates the absence rules of its hospitals, and the rest is done by
        the holder of the ticker's lease."""
        singleton = self._holds_ticker()
        if singleton:
            self.maintenance.announce()  # windows started and ended, logged
        self.ingestor.tick(releases=singleton)
        if not singleton:
            return
        self.check_deadlines()
        self.updates.tick()
        if self.pager is not None:
            self.pager.tick()  # escalation and fallback; wakes the outbox itself
        if self.refusals.flush():
            self.outbox.notify()

    def _holds_ticker(self) -> bool:
        if self.coordination is None:
            return True
        ttl = max(15.0, 3 * self.config.tick_interval)
        try:
            held = self.store.lease(TICKER_LEASE, self.owner, ttl, self.clock.time()) is not None
        except StoreError as exc:  # Redis away: whoever holds it keeps it until it runs out
            if not self._ticker_failing:  # once when it starts failing, not every tick
                log.warning("cannot renew the ticker's lease: %s", exc)
            self._ticker_failing = True
            return False
        self._ticker_failing = False
        return held

    def check_deadlines(self) -> None:
        for change in self.lifecycle.check_deadlines():
            self.metrics.sla_events.labels(change.action).inc()

    def acknowledge(self, number: str, actor: str) -> Ticket:
        """An engineer's first response, timed in service hours for the metrics."""
        return self.tickets.acknowledge(number, actor)

    def ping(self) -> None:
        """Raise when this bridge cannot take writes: the store (or, among several bridges,
        Redis) does not answer."""
        self.store.ping()
        if self.coordination is not None:
            self.coordination.ping()

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.config.tick_interval):
            try:
                self.tick()
            except Exception:  # the ticker must survive anything; the error is logged
                log.exception("tick failed")

    def stop(self) -> None:
        """End the time-driven work and the forwarding; refusals still counted are audited."""
        self.refusals.flush(everything=True)
        self.outbox.stop()
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None
        for poller in self._pollers:
            poller.join(timeout=15)
        self._pollers.clear()

    def close(self) -> None:
        self.stop()
        if self.coordination is not None:
            self.coordination.close()
        self.store.close()
