"""Staged AMMS updates: the test environment first, production only after the gate passed.

A plan has one ``aktualizacja`` ticket and a maintenance window per stage. The ticker drives
it (``tick``): what it must do for a plan at a moment is the pure state machine's to say
(``machine.next_actions``); this service applies it. A stage starts when its window opens and
runs its runbook over SSH in a thread of its own (``runner.Runbooks``: pre-checks on every
asset, then the update, then post-checks). When a stage ends, its window ends ``settle``
seconds later, so its hosts' alerts open tickets from then on. After a good test stage the
test assets are watched for ``soak`` seconds; the gate passes when no awaria or usterka alert
or ticket of a test asset was firing, open, fired again or escalated at any moment of the soak,
whenever it was first opened (``gate.soak_findings``). Production starts only in its window and
only through a passed gate, an engineer's approval (over a judgement that found something only
as an override with a reason), or, for a client without a test environment, an explicit flag.
A failed stage stops the plan and opens a ticket: usterka for the test stage, awaria for
production. An engineer may cancel a plan: no later step or stage runs, and a running stage
stops after its current command.

Plan state lives in the store and is changed under the store's lock for the plan; one bridge
worker drives a plan at a time (a lease), so several workers never run one runbook twice.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from bridge.actions import Action, Event
from bridge.clock import WARSAW, Clock, local_iso, local_time
from bridge.errors import Conflict, NotFound
from bridge.maintenance.planning import PLANNING_LOCK, Maintenance, WindowRequest
from bridge.maintenance.updates.gate import Finding, findings_text, soak_findings
from bridge.maintenance.updates.machine import (
    EndMuting,
    Expire,
    FailInterrupted,
    JudgeGate,
    PlanAction,
    SettleCancelled,
    StartStage,
    drive,
)
from bridge.maintenance.updates.runner import (
    Fence,
    Outcome,
    Problem,
    Runbooks,
    RunnerFactory,
    updated_assets,
)
from bridge.maintenance.updates.validation import UpdateError, UpdateRequest, validate
from bridge.models import (
    Asset,
    AuditEvent,
    Category,
    Client,
    GateState,
    PlanStatus,
    StageState,
    StepRecord,
    Ticket,
    UpdatePlan,
    UpdateStage,
)
from bridge.store import Store
from bridge.tickets.changes import Change
from bridge.tickets.lifecycle import TicketLifecycle
from bridge.tickets.texts import (
    gate_name,
    not_run_reason,
    stage_name,
    timeline_text,
    update_text,
)

log = logging.getLogger(__name__)

LEASE_SECONDS = 120.0
# A failed stage opens an Usterka (test) or an Awaria (production); a failed gate an Usterka.
FAILURE_CATEGORIES = (Category.USTERKA, Category.AWARIA)


class GateRefused(Conflict):
    """An approve, hold or cancel that the plan's state does not allow."""


class PlanNotFound(NotFound):
    def __init__(self, plan_id: str) -> None:
        super().__init__(f"no update plan {plan_id}")
        self.plan_id = plan_id


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
        settle: float = 120.0,
        config_path: str | None = None,
        changed: Callable[[Change], None] | None = None,
    ) -> None:
        self.store = store
        # Told of each ticket the plans open or resolve, once its transaction committed (the
        # bridge counts and logs it like any ticket change).
        self.changed = changed
        self.lifecycle = lifecycle
        self.maintenance = maintenance
        self.clients = clients
        self.assets = assets
        self.clock = clock
        self.soak = soak
        self.settle = settle
        self.owner = f"updates-{uuid.uuid4().hex[:12]}"
        # The deadlines a failure ticket would get, worked out before each unit's transaction
        # (per thread: the ticker and the runbooks' threads edit plans side by side).
        self._unit = threading.local()
        self.runbooks = Runbooks(
            store, assets, clock, runner_factory, config_path or "dyzur.yaml", self._finished
        )

    # --- planning --------------------------------------------------------------------------

    def plan(self, request: UpdateRequest, actor: str) -> UpdatePlan:
        r = request
        valid = validate(
            r, self.clients, self.assets, self.soak, self.runbooks.runner_factory is not None
        )
        lang = valid.client.contract.language
        reason = update_text(lang, "plan_title", version=r.target_version, client=valid.client.name)
        # Everything the windows could be refused for, before the plan takes its number.
        self.maintenance.refuse(
            [
                WindowRequest(r.client, s.window.start, s.window.end, reason, s.assets)
                for s in valid.stages
            ]
        )
        now = self.clock.now()
        year = now.astimezone(WARSAW).year
        plan_id = f"AK-{year}-{self.store.next_sequence(f'update-{year}'):04d}"
        windows = self.maintenance.plan_all(
            [
                WindowRequest(
                    r.client, s.window.start, s.window.end, f"{reason} ({plan_id})", list(s.assets)
                )
                for s in valid.stages
            ],
            actor,
            plan=plan_id,
        )
        plan_stages = [
            UpdateStage(s.environment, window.id, window.start, window.end, list(s.assets))
            for s, window in zip(valid.stages, windows, strict=True)
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
        # The plan's ticket, the plan and its audit event: one unit.
        self._unit.changes = []
        with self.store.transaction():
            self.store.lock(f"plan:{plan_id}")
            ticket = self._open_ticket(
                client=r.client,
                asset=valid.prod_assets[0],
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
                soak=valid.soak,
                ticket=ticket.number,
                created_by=actor,
                created_at=now,
                without_test_stage=r.without_test_stage,
                gate=GateState.NOT_REQUIRED if r.without_test_stage else GateState.WAITING,
            )
            self.store.save_plan(plan)
            self._audit(
                plan,
                Action.UPDATE_PLANNED,
                actor,
                version=r.target_version,
                ticket=ticket.number,
                stages=",".join(f"{s.environment}:{s.window}" for s in plan_stages),
                without_test_stage=r.without_test_stage,
            )
        self._committed()
        return plan

    def get(self, plan_id: str) -> UpdatePlan:
        plan = self.store.get_plan(plan_id)
        if plan is None:
            raise PlanNotFound(plan_id)
        return plan

    # --- the engineer's hand on the gate ---------------------------------------------------

    def approve(
        self, plan_id: str, actor: str, reason: str = "", override: bool = False
    ) -> UpdatePlan:
        """Let production run: only after a test stage whose runbook passed. The soak
        judgement is made now (from the end of the test stage until now) and recorded with the
        approval; over a judgement that found something, or a gate it failed, only with
        ``override`` and a reason (GateRefused naming the findings otherwise)."""
        reason = reason.strip()
        with self._editing(plan_id) as plan:
            test = plan.stage("test")
            _require_active(plan)
            if test is not None and test.state is not StageState.SUCCEEDED:
                raise GateRefused(f"the test stage is {test.state.value}, not succeeded")
            if plan.gate in (GateState.PASSED, GateState.NOT_REQUIRED):
                return plan
            assert test is not None and test.finished_at is not None
            now = self.clock.now()
            findings = self._findings(plan, test, now)
            found = bool(findings) or plan.gate is GateState.FAILED
            if found and not override:
                listed = findings_text(findings, "en") or plan.gate_reason or "the gate failed"
                raise GateRefused(
                    f"the soak judgement ({local_iso(test.finished_at)} to {local_iso(now)}) "
                    f"found: {listed}; to approve over it, give override with a reason"
                )
            if found and not reason:
                raise UpdateError("reason: approving over the soak judgement needs a reason")
            lang = self._language(plan)
            cut_short = ""
            if plan.soak_until is not None and now < plan.soak_until:
                cut_short = timeline_text(lang, "soak_cut_short", until=local_time(plan.soak_until))
            plan.gate_findings = [f.text("en") for f in findings]
            plan.judged_until = now
            _decide(plan, GateState.PASSED, actor, now, reason or "approved")
            plan.gate_override = found
            period = {"since": local_time(test.finished_at), "until": local_time(now)}
            if found:
                self._note(
                    plan,
                    Event.GATE_OVERRIDDEN,
                    actor=actor,
                    reason=reason,
                    findings=findings_text(findings, lang) or plan.gate_reason,
                    cut_short=cut_short,
                    **period,
                )
                self._audit(
                    plan,
                    Action.UPDATE_GATE_OVERRIDDEN,
                    actor,
                    reason=reason,
                    findings=plan.gate_findings,
                    judged_until=local_iso(now),
                )
            else:
                self._note(
                    plan,
                    Event.GATE_APPROVED,
                    actor=actor,
                    reason=plan.gate_reason,
                    cut_short=cut_short,
                    **period,
                )
                self._audit(
                    plan,
                    Action.UPDATE_GATE_APPROVED,
                    actor,
                    reason=plan.gate_reason,
                    findings=[],
                    judged_until=local_iso(now),
                )
            return plan

    def hold(self, plan_id: str, actor: str, reason: str = "") -> UpdatePlan:
        """Stop production from starting until an engineer approves."""
        with self._editing(plan_id) as plan:
            prod = plan.stage("prod")
            _require_active(plan)
            if prod is not None and prod.state is not StageState.PLANNED:
                raise GateRefused(f"production is already {prod.state.value}")
            if plan.gate is GateState.FAILED:
                raise GateRefused("the gate already failed")
            if plan.gate is not GateState.HELD:
                _decide(plan, GateState.HELD, actor, self.clock.now(), reason or "held")
                self._note(plan, Event.GATE_HELD, actor=actor, reason=plan.gate_reason)
                self._audit(plan, Action.UPDATE_GATE_HELD, actor, reason=plan.gate_reason)
            return plan

    def cancel(self, plan_id: str, actor: str, reason: str) -> UpdatePlan:
        """Call a plan off: no later step or stage runs. A stage running now stops after its
        current command (its thread sees the plan cancelled) and is reported as cancelled;
        the windows of stages that did not run are cancelled. Cancelling twice changes
        nothing; a plan that already ended cannot be cancelled (GateRefused)."""
        reason = reason.strip()
        if not reason:
            raise UpdateError("reason: say why the plan is cancelled")
        with self._editing(plan_id) as plan:
            if plan.status is PlanStatus.CANCELLED:
                return plan
            if plan.status is not PlanStatus.ACTIVE:
                raise GateRefused(f"plan {plan_id} is already {plan.status.value}")
            running = [s.environment for s in plan.stages if s.state is StageState.RUNNING]
            plan.status = PlanStatus.CANCELLED
            plan.cancelled_at = self.clock.now()
            plan.cancelled_by = actor
            plan.cancel_reason = reason
            self._note(plan, Event.PLAN_CANCELLED, actor=actor, plan_id=plan.id, reason=reason)
            self._audit(
                plan, Action.UPDATE_CANCELLED, actor, reason=reason, running=",".join(running)
            )
            # The plan_cancelled line says what follows; no "production not run" line.
            self._stop(plan, PlanStatus.CANCELLED, None, actor, release=not running)
            if not running:  # nothing left half done: the update is over
                self._resolve(plan.ticket, actor)
            return plan

    # --- the ticker ------------------------------------------------------------------------

    def tick(self) -> None:
        """Do what the state machine says for every plan that may need it: start stages whose
        window opened, judge gates whose soak ended, close plans; and settle a stage whose
        runner is gone."""
        candidates = self.store.plans(status=PlanStatus.ACTIVE) + [
            p
            for p in self.store.plans(status=PlanStatus.CANCELLED)
            if any(s.state is StageState.RUNNING for s in p.stages)
        ]
        for candidate in candidates:
            name = f"update:{candidate.id}"
            token = self.store.lease(name, self.owner, LEASE_SECONDS, self.clock.time())
            if token is None:
                continue  # another worker drives it
            try:
                self._drive(candidate.id, Fence(name, self.owner, token, LEASE_SECONDS))
            except Exception:  # one plan's trouble must not stop the others
                log.exception("update plan %s: tick failed", candidate.id)

    def _drive(self, plan_id: str, fence: Fence) -> None:
        with self._editing(plan_id) as plan:
            now = self.clock.now()
            alive = self.runbooks.alive(plan.id)
            done = drive(plan, now, alive, lambda action: self._apply(plan, action, now))
        for action in done:  # the runbook's thread, once the plan says the stage runs
            if isinstance(action, StartStage):
                self.runbooks.start(plan_id, action.environment, fence)

    def _apply(self, plan: UpdatePlan, action: PlanAction, now: datetime) -> None:
        """One action of the state machine, inside ``_editing``."""
        if isinstance(action, JudgeGate):
            test = plan.stage("test")
            assert test is not None
            self._judge_gate(plan, test)
            return
        stage = plan.stage(action.environment)
        assert stage is not None
        if isinstance(action, StartStage):
            stage.state = StageState.RUNNING
            stage.started_at = now
            lang = self._language(plan)
            self._note(
                plan,
                Event.STAGE_STARTED,
                stage=stage_name(lang, stage.environment),
                assets=", ".join(stage.assets),
            )
            self._audit(plan, Action.UPDATE_STAGE_STARTED, stage=stage.environment)
        elif isinstance(action, Expire):
            self._expire(plan, stage, action.reason)
        elif isinstance(action, FailInterrupted):
            stage.updated = self._updated(plan, stage)
            self._fail(plan, stage, None)
        elif isinstance(action, SettleCancelled):
            stage.updated = self._updated(plan, stage)
            self._stage_cancelled(plan, stage, interrupted=True)
        elif isinstance(action, EndMuting):
            self._end_muting(plan, stage)

    def wait(self, timeout: float = 60.0) -> None:
        """Wait for the runbooks running now (tests, and a clean shutdown)."""
        self.runbooks.wait(timeout)

    # --- outcomes (inside _editing) --------------------------------------------------------

    def _finished(self, plan_id: str, environment: str, outcome: Outcome) -> None:
        """A stage's runbook ended (in its thread): record how, and end its muting."""
        with self._editing(plan_id) as plan:
            stage = plan.stage(environment)
            assert stage is not None
            stage.updated = self._updated(plan, stage)
            if outcome.failed is not None:
                self._fail(plan, stage, outcome.failed, outcome.problem)
            elif outcome.stopped:
                self._stage_cancelled(plan, stage)
            else:
                self._succeed(plan, stage)
            self._end_muting(plan, stage)

    def _updated(self, plan: UpdatePlan, stage: UpdateStage) -> list[str]:
        return updated_assets(plan, stage, self.store.steps(plan.id))

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
                    Action.ASSET_VERSION_SET,
                    "success",
                    plan.client,
                    asset_id,
                    {"amms_version": plan.target_version, "plan": plan.id},
                )
            )
        lang = self._language(plan)
        self._note(
            plan,
            Event.STAGE_SUCCEEDED,
            stage=stage_name(lang, stage.environment),
            version=plan.target_version,
            assets=", ".join(stage.assets),
        )
        self._audit(plan, Action.UPDATE_STAGE_SUCCEEDED, stage=stage.environment)
        if plan.status is not PlanStatus.ACTIVE:  # cancelled during its last command
            self.store.release_lease(f"update:{plan.id}", self.owner)
            return
        if stage.environment == "test":
            if plan.gate is GateState.WAITING:
                plan.gate = GateState.SOAKING
            plan.soak_until = now + timedelta(seconds=plan.soak)
            self._note(plan, Event.SOAK, until=local_time(plan.soak_until))
            return
        plan.status = PlanStatus.COMPLETED
        self._note(plan, Event.PLAN_COMPLETED, version=plan.target_version)
        self._audit(plan, Action.UPDATE_COMPLETED, version=plan.target_version)
        self._resolve(plan.ticket, "dyzur")

    def _stage_cancelled(
        self, plan: UpdatePlan, stage: UpdateStage, interrupted: bool = False
    ) -> None:
        """A running stage of a cancelled plan stopped after its command (or its runner is
        gone): which of its hosts were updated and which were not."""
        lang = self._language(plan)
        stage.state = StageState.CANCELLED
        stage.finished_at = self.clock.now()
        not_updated = [a for a in stage.assets if a not in stage.updated]
        self._note(
            plan,
            Event.STAGE_CANCELLED_INTERRUPTED if interrupted else Event.STAGE_CANCELLED,
            stage=stage_name(lang, stage.environment),
            updated=", ".join(stage.updated) or "—",
            not_updated=", ".join(not_updated) or "—",
        )
        self._audit(
            plan,
            Action.UPDATE_STAGE_CANCELLED,
            stage=stage.environment,
            updated=",".join(stage.updated),
            not_updated=",".join(not_updated),
        )
        self.store.release_lease(f"update:{plan.id}", self.owner)

    def _end_muting(self, plan: UpdatePlan, stage: UpdateStage) -> None:
        """The stage is over: its window mutes its hosts for the settle time, then ends."""
        assert stage.finished_at is not None
        at = stage.finished_at + timedelta(seconds=self.settle)
        window = self.maintenance.end_early(stage.window, at, "dyzur", plan=plan.id)
        if window is not None:
            self._note(
                plan,
                Event.MUTING_ENDS,
                assets=", ".join(stage.assets),
                at=local_time(window.end),
                window=window.id,
            )

    def _fail(
        self,
        plan: UpdatePlan,
        stage: UpdateStage,
        step: StepRecord | None,
        problem: Problem | None = None,
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
            asset = stage.assets[0]
            description = f"Plan {plan.id}: {text}"
        else:
            asset = step.asset
            stage.failure = f"{step.phase} `{step.command}` on {step.asset}: " + (
                step.error or f"exit code {step.exit_code}"
            )
            where = {"asset": asset, "phase": step.phase, "command": step.command}
            if step.exit_code is None:  # it never ran: no connection, a refused host key
                told = problem.text(lang) if problem is not None else step.error or "—"
                text = timeline_text(lang, "stage_not_run_step", stage=name, problem=told, **where)
                description = update_text(
                    lang, "failed_description_not_run", plan=plan.id, problem=told, **where
                )
            else:
                values = {
                    **where,
                    "exit_code": step.exit_code,
                    "error": (problem.text(lang) + " ") if problem is not None else "",
                    "output": step.output or "—",
                }
                text = timeline_text(lang, "stage_failed", stage=name, **values)
                description = update_text(lang, "failed_description", plan=plan.id, **values)
        self.lifecycle.note(plan.ticket, Event.STAGE_FAILED, text)
        category = Category.USTERKA if stage.environment == "test" else Category.AWARIA
        ticket = self._open_ticket(
            client=plan.client,
            asset=asset,
            rule="amms_update_failed",
            fingerprint=f"update:{plan.id}:{stage.environment}",
            category=category,
            title=update_text(
                lang, "failed_title", version=plan.target_version, stage=name, asset=asset
            ),
            description=description,
            text=text,
            labels={"plan": plan.id, "stage": stage.environment},
            deadline=self._unit.deadlines.get(category),
        )
        stage.failure_ticket = ticket.number
        self._note(plan, Event.FAILURE_TICKET, ticket=ticket.number)
        self._audit(
            plan,
            Action.UPDATE_STAGE_FAILED,
            outcome="failure",
            stage=stage.environment,
            failure=stage.failure,
            ticket=ticket.number,
        )
        why = None
        if stage.environment == "test":
            plan.gate = GateState.FAILED
            plan.gate_reason = f"the test stage failed: {stage.failure}"
            if step is None:
                why = not_run_reason(lang, "test_interrupted", ticket=ticket.number)
            else:
                why = not_run_reason(
                    lang, "test_failed", ticket=ticket.number, asset=asset, phase=step.phase,
                    command=step.command,
                )  # fmt: skip
        self._stop(plan, PlanStatus.FAILED, why)

    def _judge_gate(self, plan: UpdatePlan, test: UpdateStage) -> None:
        """At the end of the soak: passed if no awaria or usterka alert or ticket of a test
        asset was firing, open, fired again or escalated at any moment of it. A failed
        judgement opens a usterka and keeps production back; an engineer may still approve
        over it (``approve(override=True)``) until the production window ends."""
        assert test.finished_at is not None
        now = self.clock.now()
        findings = self._findings(plan, test, now)
        lang = self._language(plan)
        period = {"since": local_time(test.finished_at), "until": local_time(now)}
        plan.gate_findings = [f.text("en") for f in findings]
        plan.judged_until = now
        plan.gate_by = "dyzur"
        plan.gate_at = now
        if not findings:
            plan.gate = GateState.PASSED
            plan.gate_reason = "post-checks OK; no awaria or usterka alert or ticket of the test "
            plan.gate_reason += "assets in the soak"
            self._note(plan, Event.GATE_PASSED, **period)
            self._audit(plan, Action.UPDATE_GATE_PASSED, reason=plan.gate_reason)
            return
        plan.gate = GateState.FAILED
        plan.gate_reason = f"the soak judgement found: {findings_text(findings, 'en')}"
        told = findings_text(findings, lang)
        text = timeline_text(lang, "gate_failed", findings=told, plan=plan.id, **period)
        self.lifecycle.note(plan.ticket, Event.GATE_FAILED, text)
        ticket = self._open_ticket(
            client=plan.client,
            asset=test.assets[0],
            rule="amms_update_gate",
            fingerprint=f"update:{plan.id}:gate",
            category=Category.USTERKA,
            title=update_text(lang, "gate_title", version=plan.target_version),
            description=update_text(
                lang, "gate_description", plan=plan.id, findings=told, **period
            ),
            text=text,
            labels={"plan": plan.id, "stage": "test"},
            deadline=self._unit.deadlines.get(Category.USTERKA),
        )
        plan.gate_ticket = ticket.number
        self._note(plan, Event.FAILURE_TICKET, ticket=ticket.number)
        self._audit(
            plan,
            Action.UPDATE_GATE_FAILED,
            outcome="failure",
            findings=plan.gate_findings,
            ticket=ticket.number,
        )

    def _findings(self, plan: UpdatePlan, test: UpdateStage, until: datetime) -> list[Finding]:
        return soak_findings(self.store, self.assets, plan, test, until)

    def _expire(self, plan: UpdatePlan, stage: UpdateStage, reason: str) -> None:
        lang = self._language(plan)
        self._note(
            plan, Event.PLAN_EXPIRED, stage=stage_name(lang, stage.environment), reason=reason
        )
        self._audit(plan, Action.UPDATE_EXPIRED, outcome="failure", stage=stage.environment)
        if stage.environment == "test":
            why = not_run_reason(lang, "test_missed")
        elif plan.gate is GateState.FAILED and plan.judged_until is not None:
            test = plan.stage("test")
            assert test is not None
            findings = self._findings(plan, test, plan.judged_until)
            why = not_run_reason(lang, "gate_failed", findings=findings_text(findings, lang))
        else:
            why = not_run_reason(lang, "gate", gate=gate_name(lang, plan.gate.value))
        self._stop(plan, PlanStatus.EXPIRED, why)

    def _stop(
        self,
        plan: UpdatePlan,
        status: PlanStatus,
        why: str | None,
        actor: str = "dyzur",
        release: bool = True,
    ) -> None:
        """The plan ends (a cancelled plan keeps its status): stages that did not run never
        will (production after a failed test), and their windows are cancelled so they mute
        nothing. ``why`` production did not run goes on the plan's ticket, which stays open."""
        if plan.status is PlanStatus.ACTIVE:
            plan.status = status
        for stage in plan.stages:
            if stage.state is StageState.PLANNED:
                stage.state = StageState.NOT_RUN
                self.maintenance.cancel_within(stage.window, actor, plan=plan.id)
        prod = plan.stage("prod")
        if why is not None and prod is not None and prod.state is StageState.NOT_RUN:
            self._note(plan, Event.PROD_NOT_RUN, why=why)
        if release:
            self.store.release_lease(f"update:{plan.id}", self.owner)

    # --- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _editing(self, plan_id: str) -> Iterator[UpdatePlan]:
        """Read, change and save a plan in one store transaction holding the plan's lock
        (workers, threads) and the planning lock (a step may cancel or end the plan's windows;
        roles.py's lock order: plan, planning, then alerts). The lifecycle and planning calls
        made inside join it (their ``*_within``/``note``/``open_ticket``/``end_early``)."""
        before = self.store.get_plan(plan_id)  # whose contract the deadlines follow
        now = self.clock.now()
        self._unit.deadlines = (
            {c: self.lifecycle.deadline(before.client, c, now) for c in FAILURE_CATEGORIES}
            if before is not None and before.status is PlanStatus.ACTIVE
            else {}
        )
        self._unit.changes = []
        with self.store.transaction():
            self.store.lock(f"plan:{plan_id}")
            self.store.lock(PLANNING_LOCK)
            plan = self.get(plan_id)
            yield plan
            self.store.save_plan(plan)
        self._committed()

    def _open_ticket(self, **fields: Any) -> Ticket:
        """Inside the unit: ``lifecycle.open_ticket``, told once the unit committed."""
        ticket = self.lifecycle.open_ticket(**fields)
        self._pending().append(Change(ticket, "opened"))
        return ticket

    def _resolve(self, number: str | None, actor: str) -> None:
        """Inside the unit: resolve the plan's ticket, told once the unit committed."""
        if number is None:
            return
        before = self.store.get_ticket(number)
        ticket = self.lifecycle.resolve_within(number, actor)
        if before is not None and before.is_open:
            self._pending().append(Change(ticket, "resolved"))

    def _pending(self) -> list[Change]:
        """The ticket changes of this thread's unit, told when it commits."""
        if not hasattr(self._unit, "changes"):
            self._unit.changes = []
        return self._unit.changes

    def _committed(self) -> None:
        changes, self._unit.changes = self._pending(), []
        if self.changed is not None:
            for change in changes:
                self.changed(change)

    def _language(self, plan: UpdatePlan) -> str:
        client = self.clients.get(plan.client)
        return client.contract.language if client is not None else "pl"

    def _note(self, plan: UpdatePlan, kind: Event, actor: str = "dyzur", **values: object) -> None:
        text = timeline_text(self._language(plan), kind, **values, actor=actor)
        self.lifecycle.note(plan.ticket, kind, text, actor)

    def _audit(
        self,
        plan: UpdatePlan,
        action: Action,
        actor: str = "dyzur",
        outcome: str = "success",
        **detail: object,
    ) -> None:
        event = AuditEvent(
            self.clock.now(), actor, action, outcome, plan.client, None, {"plan": plan.id, **detail}
        )
        self.store.append_audit(event)


def _require_active(plan: UpdatePlan) -> None:
    """An engineer's decision on the gate needs a plan still running (GateRefused)."""
    if plan.status is not PlanStatus.ACTIVE:
        raise GateRefused(f"plan {plan.id} is {plan.status.value}")


def _decide(plan: UpdatePlan, gate: GateState, actor: str, at: datetime, reason: str) -> None:
    """An engineer's decision on the gate: what, who, when and why."""
    plan.gate, plan.gate_by, plan.gate_at, plan.gate_reason = gate, actor, at, reason
