"""Staged AMMS updates: the test environment first, production only after the gate passed.

A plan has one ``aktualizacja`` ticket and a maintenance window per stage. The ticker drives
it (``tick``): a stage starts when its window opens and runs its runbook over SSH in a thread
of its own (pre-checks on every asset, then the update, then post-checks); after a good test
stage the test assets are watched for ``soak`` seconds, and the gate passes when no awaria or
usterka alert fired on them. Production starts only in its window and only through a passed
gate (or, for a client without a test environment, by an explicit flag). A failed stage stops
the plan and opens a ticket: usterka for the test stage, awaria for production.

Plan state lives in the store and is changed under the store's lock for the plan; one bridge
worker drives a plan at a time (a lease), so several workers never run one runbook twice.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.clock import WARSAW, Clock, local_time
from bridge.lifecycle import TicketLifecycle
from bridge.maintenance import Maintenance, WindowRequest
from bridge.models import (
    Asset,
    AuditEvent,
    Category,
    Client,
    GateState,
    PlanStatus,
    RunbookStep,
    StageState,
    StepRecord,
    SuppressedState,
    UpdatePlan,
    UpdateStage,
)
from bridge.store import Store, TicketFilter
from bridge.texts import stage_name, timeline_text, update_text
from bridge.windows import selected
from collectors.ssh.runner import SshError, SshRunner, SshTarget

log = logging.getLogger(__name__)

LEASE_SECONDS = 120.0
OUTPUT_TAIL = 2000  # characters of a step's output kept on the plan and its tickets
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
GATE_CATEGORIES = (Category.AWARIA, Category.USTERKA)
RunnerFactory = Callable[[], SshRunner]


class UpdateError(ValueError):
    """A plan that cannot be made; the message names the field."""


class GateRefused(ValueError):
    """An approve or hold that the plan's state does not allow (409)."""


class PlanNotFound(LookupError):
    pass


@dataclass(frozen=True)
class StageWindow:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class UpdateRequest:
    client: str
    target_version: str
    runbook: list[RunbookStep]
    prod_window: StageWindow
    test_window: StageWindow | None = None
    soak: float | None = None  # default: updates.soak of the config
    without_test_stage: bool = False
    # Which of the client's assets the update touches, split by environment.
    selector: Mapping[str, str] | None = None


def fill(command: str, version: str, asset: str, environment: str) -> str:
    """A runbook command for one asset: {version}, {asset} and {environment} filled in (other
    braces, such as a shell's ${VAR}, are left alone)."""
    for key, value in (("version", version), ("asset", asset), ("environment", environment)):
        command = command.replace("{" + key + "}", value)
    return command


class Updates:
    def __init__(
        self,
        store: Store,
        lifecycle: TicketLifecycle,
        maintenance: Maintenance,
        clients: Mapping[str, Client],
        assets: Mapping[str, Asset],
        clock: Clock,
        runner_factory: RunnerFactory | None,
        soak: float,
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.maintenance = maintenance
        self.clients = clients
        self.assets = assets
        self.clock = clock
        self.runner_factory = runner_factory
        self.soak = soak
        self.owner = f"updates-{uuid.uuid4().hex[:12]}"
        self._threads: dict[str, threading.Thread] = {}
        self._threads_lock = threading.Lock()

    # --- planning --------------------------------------------------------------------------

    def plan(self, request: UpdateRequest, actor: str) -> UpdatePlan:
        r = request
        client = self.clients.get(r.client)
        if client is None:
            raise UpdateError(f"client: unknown client {r.client!r}")
        if not VERSION_PATTERN.match(r.target_version):
            raise UpdateError("target_version: letters, digits and . _ + - (up to 64)")
        if not any(step.phase == "update" for step in r.runbook):
            raise UpdateError("runbook.update: at least one update command")
        if self.runner_factory is None:
            raise UpdateError("ssh: the bridge has no ssh settings to run runbooks with")
        selector = dict(r.selector) if r.selector is not None else {"kind": "amms"}
        chosen = selected(self.assets, r.client, selector)
        what = ", ".join(f"{k}={v}" for k, v in selector.items())
        test_assets = [a.id for a in chosen if a.environment == "test"]
        prod_assets = [a.id for a in chosen if a.environment == "prod"]
        if not prod_assets:
            raise UpdateError(f"selector: {what} matches no production asset of {r.client}")
        if r.without_test_stage:
            if r.test_window is not None:
                raise UpdateError("test_window: not with without_test_stage")
        else:
            if not test_assets:
                raise UpdateError(
                    f"test_window: {r.client} has no test asset matching {what}; plan production "
                    "alone only with without_test_stage: true"
                )
            if r.test_window is None:
                raise UpdateError("test_window: the test stage needs a window")
            if r.test_window.end > r.prod_window.start:
                raise UpdateError("prod_window.start: production starts after the test window")
        for asset_id in test_assets + prod_assets:
            if self.assets[asset_id].ssh is None:
                raise UpdateError(f"assets: {asset_id} has no ssh address in the configuration")
        stages = [("prod", r.prod_window, prod_assets)]
        if not r.without_test_stage:
            assert r.test_window is not None
            stages.insert(0, ("test", r.test_window, test_assets))
        now = self.clock.now()
        year = now.astimezone(WARSAW).year
        plan_id = f"AK-{year}-{self.store.next_sequence(f'update-{year}'):04d}"
        lang = client.contract.language
        reason = update_text(lang, "plan_title", version=r.target_version, client=client.name)
        windows = self.maintenance.plan_all(
            [
                WindowRequest(r.client, w.start, w.end, f"{reason} ({plan_id})", list(assets))
                for _, w, assets in stages
            ],
            actor,
            plan=plan_id,
        )
        plan_stages = [
            UpdateStage(env, window.id, window.start, window.end, list(assets))  # type: ignore[arg-type]
            for (env, _, assets), window in zip(stages, windows, strict=True)
        ]
        lines = "\n".join(
            update_text(
                lang,
                "stage_line",
                stage=stage_name(lang, s.environment),
                start=local_time(s.start),
                end=local_time(s.end),
                assets=", ".join(s.assets),
            )
            for s in plan_stages
        )
        steps = "; ".join(f"{s.phase}: {s.command}" for s in r.runbook)
        ticket = self.lifecycle.open_ticket(
            client=r.client,
            asset=prod_assets[0],
            rule="amms_update",
            fingerprint=f"update:{plan_id}",
            category=Category.AKTUALIZACJA,
            title=reason,
            description=update_text(
                lang, "plan_description", version=r.target_version, stages=lines, steps=steps
            ),
            text=timeline_text(lang, "update_planned", plan=plan_id, stages=lines),
            actor=actor,
            labels={"plan": plan_id, "version": r.target_version},
            due=plan_stages[0].start,
        )
        plan = UpdatePlan(
            id=plan_id,
            client=r.client,
            target_version=r.target_version,
            runbook=list(r.runbook),
            stages=plan_stages,
            soak=self.soak if r.soak is None else r.soak,
            ticket=ticket.number,
            created_by=actor,
            created_at=now,
            without_test_stage=r.without_test_stage,
            gate=GateState.NOT_REQUIRED if r.without_test_stage else GateState.WAITING,
        )
        self.store.save_plan(plan)
        self._audit(
            plan,
            "update.planned",
            actor,
            version=r.target_version,
            ticket=ticket.number,
            stages=",".join(f"{s.environment}:{s.window}" for s in plan_stages),
            without_test_stage=r.without_test_stage,
        )
        return plan

    def get(self, plan_id: str) -> UpdatePlan:
        plan = self.store.get_plan(plan_id)
        if plan is None:
            raise PlanNotFound(plan_id)
        return plan

    # --- the engineer's hand on the gate ---------------------------------------------------

    def approve(self, plan_id: str, actor: str, reason: str = "") -> UpdatePlan:
        """Let production run: only after a test stage whose runbook passed."""
        with self._editing(plan_id) as plan:
            test = plan.stage("test")
            if plan.status is not PlanStatus.ACTIVE:
                raise GateRefused(f"plan {plan_id} is {plan.status.value}")
            if plan.gate is GateState.FAILED:
                raise GateRefused("the gate failed; production never follows a failed test")
            if test is not None and test.state is not StageState.SUCCEEDED:
                raise GateRefused(f"the test stage is {test.state.value}, not succeeded")
            if plan.gate in (GateState.PASSED, GateState.NOT_REQUIRED):
                return plan
            self._decide(plan, GateState.PASSED, actor, reason or "approved", "gate_approved")
            return plan

    def hold(self, plan_id: str, actor: str, reason: str = "") -> UpdatePlan:
        """Stop production from starting until an engineer approves."""
        with self._editing(plan_id) as plan:
            prod = plan.stage("prod")
            if plan.status is not PlanStatus.ACTIVE:
                raise GateRefused(f"plan {plan_id} is {plan.status.value}")
            if prod is not None and prod.state is not StageState.PLANNED:
                raise GateRefused(f"production is already {prod.state.value}")
            if plan.gate is GateState.FAILED:
                raise GateRefused("the gate already failed")
            if plan.gate is not GateState.HELD:
                self._decide(plan, GateState.HELD, actor, reason or "held", "gate_held")
            return plan

    def _decide(
        self, plan: UpdatePlan, gate: GateState, actor: str, reason: str, kind: str
    ) -> None:
        plan.gate = gate
        plan.gate_by = actor
        plan.gate_at = self.clock.now()
        plan.gate_reason = reason
        self._note(plan, kind, actor=actor, reason=reason)
        action = {"gate_held": "update.gate_held", "gate_approved": "update.gate_approved"}
        self._audit(plan, action.get(kind, f"update.gate_{gate.value}"), actor, reason=reason)

    # --- the ticker ------------------------------------------------------------------------

    def tick(self) -> None:
        """Start stages whose window opened, judge gates whose soak ended, close plans."""
        for candidate in self.store.plans(status=PlanStatus.ACTIVE):
            name = f"update:{candidate.id}"
            if not self.store.lease(name, self.owner, self.clock.time(), LEASE_SECONDS):
                continue  # another worker drives it
            try:
                self._drive(candidate.id)
            except Exception:  # one plan's trouble must not stop the others
                log.exception("update plan %s: tick failed", candidate.id)

    def _drive(self, plan_id: str) -> None:
        start: UpdateStage | None = None
        with self._editing(plan_id) as plan:
            now = self.clock.now()
            for stage in plan.stages:
                if stage.state is StageState.RUNNING and not self._running(plan.id):
                    # Ours after a restart, or a worker that died: nobody knows how far it got.
                    self._fail(plan, stage, None)
                    return
            test, prod = plan.stage("test"), plan.stage("prod")
            assert prod is not None
            if test is not None and test.state is StageState.PLANNED:
                if now >= test.end:
                    self._expire(plan, test, "the bridge did not run in the window")
                elif now >= test.start:
                    start = test
            soaked = plan.soak_until is not None and now >= plan.soak_until
            if test is not None and plan.gate is GateState.SOAKING and soaked:
                self._judge_gate(plan, test)
            if plan.status is PlanStatus.ACTIVE and prod.state is StageState.PLANNED:
                if now >= prod.end:
                    self._expire(plan, prod, f"gate {plan.gate.value}")
                elif now >= prod.start and plan.gate in (GateState.PASSED, GateState.NOT_REQUIRED):
                    start = prod
            if start is not None:
                start.state = StageState.RUNNING
                start.started_at = now
                lang = self._language(plan)
                self._note(
                    plan,
                    "stage_started",
                    stage=stage_name(lang, start.environment),
                    assets=", ".join(start.assets),
                )
                self._audit(plan, "update.stage_started", stage=start.environment)
        if start is not None:
            self._start_thread(plan_id, start.environment)

    def _running(self, plan_id: str) -> bool:
        with self._threads_lock:
            thread = self._threads.get(plan_id)
            return thread is not None and thread.is_alive()

    def _start_thread(self, plan_id: str, environment: str) -> None:
        thread = threading.Thread(
            target=self._run_stage,
            args=(plan_id, environment),
            name=f"dyzur-update-{plan_id}-{environment}",
            daemon=True,
        )
        with self._threads_lock:
            self._threads[plan_id] = thread
        thread.start()

    def wait(self, timeout: float = 60.0) -> None:
        """Wait for the runbooks running now (tests, and a clean shutdown)."""
        with self._threads_lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)

    # --- running a stage -------------------------------------------------------------------

    def _run_stage(self, plan_id: str, environment: str) -> None:
        plan = self.get(plan_id)
        stage = plan.stage(environment)
        assert stage is not None and self.runner_factory is not None
        failed: StepRecord | None = None
        try:
            with self.runner_factory() as runner:
                failed = self._run_runbook(runner, plan, stage)
        except Exception as exc:  # no key file, a bug: the stage fails, it never hangs
            log.exception("update plan %s: the %s stage could not run", plan_id, environment)
            failed = StepRecord(
                plan_id, environment, stage.assets[0], "pre_check", "-", None, "", "",
                self.clock.now(), 0.0, error=f"{type(exc).__name__}: {exc}",
            )  # fmt: skip
        with self._editing(plan_id) as plan:
            stage = plan.stage(environment)
            assert stage is not None
            if failed is not None:
                self._fail(plan, stage, failed)
            else:
                self._succeed(plan, stage)

    def _run_runbook(
        self, runner: SshRunner, plan: UpdatePlan, stage: UpdateStage
    ) -> StepRecord | None:
        """Every phase on every asset before the next phase; the first failing step ends it."""
        for phase in ("pre_check", "update", "post_check"):
            for asset_id in stage.assets:
                for step in plan.runbook:
                    if step.phase != phase:
                        continue
                    record = self._run_step(runner, plan, stage, asset_id, step)
                    if not record.ok:
                        return record
        return None

    def _run_step(
        self,
        runner: SshRunner,
        plan: UpdatePlan,
        stage: UpdateStage,
        asset_id: str,
        step: RunbookStep,
    ) -> StepRecord:
        address = self.assets[asset_id].ssh
        assert address is not None
        target = SshTarget(address.host, address.port, address.user)
        command = fill(step.command, plan.target_version, asset_id, stage.environment)
        started = self.clock.now()
        exit_code: int | None = None
        error = None
        output = ""
        duration = 0.0
        try:
            result = runner.run(target, command, timeout=step.timeout)
            exit_code, output, duration = (
                result.exit_code,
                result.stdout + result.stderr,
                (result.duration),
            )
            if result.timed_out:
                error = f"timed out after {step.timeout:g} s"
        except SshError as exc:
            error = str(exc)
        record = StepRecord(
            plan=plan.id,
            environment=stage.environment,
            asset=asset_id,
            phase=step.phase,
            command=command,
            exit_code=exit_code,
            output=output[-OUTPUT_TAIL:],
            digest=hashlib.sha256(output.encode()).hexdigest(),
            started_at=started,
            duration=duration,
            error=error,
        )
        self.store.append_step(record)
        self.store.append_audit(
            AuditEvent(
                started,
                "dyzur",
                "update.step",
                "success" if record.ok else "failure",
                plan.client,
                asset_id,
                {
                    "plan": plan.id,
                    "stage": stage.environment,
                    "phase": step.phase,
                    "host": address.host,
                    "port": address.port,
                    "user": address.user or runner.user,
                    "command": command,
                    "exit_code": exit_code,
                    "output_sha256": record.digest,
                    "error": error,
                },
            )
        )
        return record

    # --- outcomes (inside _editing) --------------------------------------------------------

    def _succeed(self, plan: UpdatePlan, stage: UpdateStage) -> None:
        now = self.clock.now()
        stage.state = StageState.SUCCEEDED
        stage.finished_at = now
        for asset_id in stage.assets:
            self.store.set_asset_fact(asset_id, "amms_version", plan.target_version, now)
            self.store.append_audit(
                AuditEvent(
                    now,
                    "dyzur",
                    "asset.version_set",
                    "success",
                    plan.client,
                    asset_id,
                    {"amms_version": plan.target_version, "plan": plan.id},
                )
            )
        lang = self._language(plan)
        self._note(
            plan,
            "stage_succeeded",
            stage=stage_name(lang, stage.environment),
            version=plan.target_version,
            assets=", ".join(stage.assets),
        )
        self._audit(plan, "update.stage_succeeded", stage=stage.environment)
        if stage.environment == "test":
            if plan.gate is GateState.WAITING:
                plan.gate = GateState.SOAKING
            plan.soak_until = now + timedelta(seconds=plan.soak)
            self._note(plan, "soak", until=local_time(plan.soak_until))
            return
        plan.status = PlanStatus.COMPLETED
        self._note(plan, "plan_completed", version=plan.target_version)
        self._audit(plan, "update.completed", version=plan.target_version)
        self.lifecycle.resolve(plan.ticket, "dyzur")

    def _fail(
        self,
        plan: UpdatePlan,
        stage: UpdateStage,
        step: StepRecord | None,
    ) -> None:
        """A failed stage stops the plan and opens a ticket: usterka (test), awaria (prod).
        Without ``step`` the stage was interrupted (the bridge stopped while it ran)."""
        now = self.clock.now()
        lang = self._language(plan)
        stage.state = StageState.FAILED
        stage.finished_at = now
        name = stage_name(lang, stage.environment)
        if step is None:
            stage.failure = "interrupted"
            text = timeline_text(lang, "stage_interrupted", stage=name)
            values = {
                "asset": stage.assets[0], "phase": "-", "command": "-", "exit_code": "-",
                "error": "", "output": text,
            }  # fmt: skip
        else:
            stage.failure = f"{step.phase} `{step.command}` on {step.asset}: " + (
                step.error or f"exit code {step.exit_code}"
            )
            values = {
                "asset": step.asset,
                "phase": step.phase,
                "command": step.command,
                "exit_code": "-" if step.exit_code is None else step.exit_code,
                "error": f"{step.error}. " if step.error else "",
                "output": step.output or "—",
            }
            text = timeline_text(lang, "stage_failed", stage=name, **values)
        self.lifecycle.note(plan.ticket, "stage_failed", text)
        category = Category.USTERKA if stage.environment == "test" else Category.AWARIA
        ticket = self.lifecycle.open_ticket(
            client=plan.client,
            asset=values["asset"],  # type: ignore[arg-type]
            rule="amms_update_failed",
            fingerprint=f"update:{plan.id}:{stage.environment}",
            category=category,
            title=update_text(
                lang, "failed_title", version=plan.target_version, stage=name,
                asset=values["asset"],
            ),
            description=update_text(lang, "failed_description", plan=plan.id, **values),
            text=text,
            labels={"plan": plan.id, "stage": stage.environment},
        )  # fmt: skip
        stage.failure_ticket = ticket.number
        self._note(plan, "failure_ticket", ticket=ticket.number)
        self._audit(
            plan,
            "update.stage_failed",
            outcome="failure",
            stage=stage.environment,
            failure=stage.failure,
            ticket=ticket.number,
        )
        if stage.environment == "test":
            plan.gate = GateState.FAILED
            plan.gate_reason = "the test stage failed"
        self._stop(plan, PlanStatus.FAILED)

    def _judge_gate(self, plan: UpdatePlan, test: UpdateStage) -> None:
        """At the end of the soak: passed if no awaria or usterka alert of the test assets was
        firing after the test stage finished."""
        alerts = self._alerts_during_soak(plan, test)
        lang = self._language(plan)
        if not alerts:
            plan.gate = GateState.PASSED
            plan.gate_by = "dyzur"
            plan.gate_at = self.clock.now()
            plan.gate_reason = "post-checks OK, no alerts during the soak"
            self._note(plan, "gate_passed", reason=plan.gate_reason)
            self._audit(plan, "update.gate_passed", reason=plan.gate_reason)
            return
        listed = ", ".join(alerts)
        plan.gate = GateState.FAILED
        plan.gate_by = "dyzur"
        plan.gate_at = self.clock.now()
        plan.gate_reason = f"alerts during the soak: {listed}"
        self._note(plan, "gate_failed", reason=plan.gate_reason)
        ticket = self.lifecycle.open_ticket(
            client=plan.client,
            asset=test.assets[0],
            rule="amms_update_gate",
            fingerprint=f"update:{plan.id}:gate",
            category=Category.USTERKA,
            title=update_text(lang, "gate_title", version=plan.target_version),
            description=update_text(lang, "gate_description", plan=plan.id, alerts=listed),
            text=timeline_text(lang, "gate_failed", reason=plan.gate_reason),
            labels={"plan": plan.id, "stage": "test"},
        )
        self._note(plan, "failure_ticket", ticket=ticket.number)
        self._audit(plan, "update.gate_failed", outcome="failure", alerts=listed)
        self._stop(plan, PlanStatus.FAILED)

    def _alerts_during_soak(self, plan: UpdatePlan, test: UpdateStage) -> list[str]:
        assert test.started_at is not None and test.finished_at is not None
        since, soak_start, soak_end = test.started_at, test.finished_at, plan.soak_until
        assert soak_end is not None
        found = []
        for record in self.store.suppressed_alerts(window=test.window):
            still = record.recovered_at is None or record.recovered_at > soak_start
            if (
                record.category in GATE_CATEGORIES
                and since <= record.fired_at < soak_end
                and still
                and record.state is not SuppressedState.RELEASED
            ):
                found.append(f"{record.rule} on {record.asset}")
        for asset_id in test.assets:
            for ticket in self.store.list_tickets(TicketFilter(asset=asset_id, limit=1000)):
                if ticket.fingerprint.startswith("update:") or ticket.opened_at < since:
                    continue
                still = ticket.resolved_at is None or ticket.resolved_at > soak_start
                if ticket.category in GATE_CATEGORIES and ticket.opened_at < soak_end and still:
                    found.append(f"{ticket.rule} on {asset_id} ({ticket.number})")
        return found

    def _expire(self, plan: UpdatePlan, stage: UpdateStage, reason: str) -> None:
        lang = self._language(plan)
        self._note(plan, "plan_expired", stage=stage_name(lang, stage.environment), reason=reason)
        self._audit(plan, "update.expired", outcome="failure", stage=stage.environment)
        self._stop(plan, PlanStatus.EXPIRED)

    def _stop(self, plan: UpdatePlan, status: PlanStatus) -> None:
        """The plan ends: stages that did not run never will (production after a failed test),
        and their windows are cancelled so they mute nothing."""
        plan.status = status
        for stage in plan.stages:
            if stage.state is StageState.PLANNED:
                stage.state = StageState.NOT_RUN
                self.maintenance.cancel(stage.window, "dyzur")
        self.store.release_lease(f"update:{plan.id}", self.owner)

    # --- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _editing(self, plan_id: str) -> Iterator[UpdatePlan]:
        """Read, change and save a plan under the store's lock for it (workers, threads)."""
        with self.store.alert_lock(f"update:{plan_id}"):
            plan = self.get(plan_id)
            yield plan
            self.store.save_plan(plan)

    def _language(self, plan: UpdatePlan) -> str:
        client = self.clients.get(plan.client)
        return client.contract.language if client is not None else "pl"

    def _note(self, plan: UpdatePlan, kind: str, actor: str = "dyzur", **values: object) -> None:
        text = timeline_text(self._language(plan), kind, **values, actor=actor)
        self.lifecycle.note(plan.ticket, kind, text, actor)

    def _audit(
        self,
        plan: UpdatePlan,
        action: str,
        actor: str = "dyzur",
        outcome: str = "success",
        **detail: object,
    ) -> None:
        event = AuditEvent(
            self.clock.now(), actor, action, outcome, plan.client, None, {"plan": plan.id, **detail}
        )
        self.store.append_audit(event)
