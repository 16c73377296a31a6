"""Staged AMMS updates: the test environment first, production only after the gate passed.

A plan has one ``aktualizacja`` ticket and a maintenance window per stage. The ticker drives
it (``tick``): a stage starts when its window opens and runs its runbook over SSH in a thread
of its own (pre-checks on every asset, then the update, then post-checks). When a stage ends,
its window ends ``settle`` seconds later, so its hosts' alerts open tickets from then on.
After a good test stage the test assets are watched for ``soak`` seconds; the gate passes
when no awaria or usterka alert or ticket of a test asset was firing, open, fired again or
escalated at any moment of the soak, whenever it was first opened. Production starts only in
its window and only through a passed gate, an engineer's approval (over a judgement that
found something only as an override with a reason), or, for a client without a test
environment, an explicit flag. A failed stage stops the plan and opens a ticket: usterka for
the test stage, awaria for production. An engineer may cancel a plan: no later step or stage
runs, and a running stage stops after its current command.

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

from bridge.clock import WARSAW, Clock, local_iso, local_time
from bridge.maintenance.planning import Maintenance, WindowRequest
from bridge.maintenance.windows import covered_assets, selected
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
    Ticket,
    TicketStatus,
    UpdatePlan,
    UpdateStage,
)
from bridge.store import Store, TicketFilter
from bridge.tickets.lifecycle import TicketLifecycle
from bridge.tickets.texts import (
    finding_text,
    gate_name,
    not_run_reason,
    stage_name,
    step_problem,
    timeline_text,
    update_text,
)
from collectors.base import SSH_HOST_KEY_MISMATCH, SSH_HOST_KEY_UNKNOWN
from collectors.durations import format_duration
from collectors.ssh.runner import (
    HostKeyMismatch,
    SshAuthFailed,
    SshError,
    SshRunner,
    SshTarget,
    SshUnreachable,
    UnknownHostKey,
)

log = logging.getLogger(__name__)

LEASE_SECONDS = 120.0
OUTPUT_TAIL = 2000  # characters of a step's output kept on the plan and its tickets
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
GATE_CATEGORIES = (Category.AWARIA, Category.USTERKA)
# What a ticket's timeline says happened to it, for the soak judgement.
TICKET_EVENTS = ("opened", "reopened", "refired", "escalated", "recovered", "resolved")
RunnerFactory = Callable[[], SshRunner]


class UpdateError(ValueError):
    """A plan that cannot be made; the message names the field."""


class GateRefused(ValueError):
    """An approve or hold that the plan's state does not allow (409)."""


class PlanNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Problem:
    """Why a step failed or did not run, told in the contract's language (texts.STEP_PROBLEMS)."""

    kind: str  # unreachable, auth, host_key_unknown, host_key_mismatch, timed_out, error
    values: Mapping[str, object]

    def text(self, language: str) -> str:
        return step_problem(language, self.kind, **self.values)


@dataclass(frozen=True)
class Finding:
    """One thing the soak judgement found on a test asset: a ticket (``ticket``) or an alert
    muted in a window (``window``), with what happened to it: (kind, when) in order."""

    asset: str
    rule: str
    category: Category
    ticket: str | None
    window: str | None
    events: tuple[tuple[str, datetime], ...]

    def text(self, language: str) -> str:
        return finding_text(
            language,
            ticket=self.ticket,
            rule=self.rule,
            asset=self.asset,
            category=self.category.value,
            window=self.window,
            events=[(kind, local_time(at)) for kind, at in self.events],
        )


def findings_text(findings: list[Finding], language: str) -> str:
    return "; ".join(f.text(language) for f in findings)


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
        settle: float = 120.0,
        config_path: str | None = None,
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.maintenance = maintenance
        self.clients = clients
        self.assets = assets
        self.clock = clock
        self.runner_factory = runner_factory
        self.soak = soak
        self.settle = settle
        # For the hint printed with a refused host key: dyzur ssh trust HOST:PORT --config ...
        self.config_path = config_path or "dyzur.yaml"
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
            self._refuse_unreachable_production(r)
        for asset_id in test_assets + prod_assets:
            if self.assets[asset_id].ssh is None:
                raise UpdateError(f"assets: {asset_id} has no ssh address in the configuration")
        stages = [("prod", r.prod_window, prod_assets)]
        if not r.without_test_stage:
            assert r.test_window is not None
            stages.insert(0, ("test", r.test_window, test_assets))
        lang = client.contract.language
        reason = update_text(lang, "plan_title", version=r.target_version, client=client.name)
        # Everything the windows could be refused for, before the plan takes its number.
        self.maintenance.refuse(
            [WindowRequest(r.client, w.start, w.end, reason, list(a)) for _, w, a in stages]
        )
        now = self.clock.now()
        year = now.astimezone(WARSAW).year
        plan_id = f"AK-{year}-{self.store.next_sequence(f'update-{year}'):04d}"
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

    def _refuse_unreachable_production(self, r: UpdateRequest) -> None:
        """A plan whose production can never start: its window begins before the test window
        ends, or the soak outlasts the time between them."""
        test, prod = r.test_window, r.prod_window
        assert test is not None
        if prod.start < test.end:
            raise UpdateError(
                f"prod_window.start: {local_iso(prod.start)} is before the test window's end "
                f"({local_iso(test.end)}); production starts after the test window"
            )
        soak = self.soak if r.soak is None else r.soak
        gap = (prod.start - test.end).total_seconds()
        if soak > gap:
            raise UpdateError(
                f"soak: {format_duration(soak)} is longer than the {format_duration(gap)} from "
                f"test_window.end ({local_iso(test.end)}) to prod_window.start "
                f"({local_iso(prod.start)}); a test stage that ends late would leave production "
                "no time: shorten the soak or move the windows apart"
            )

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
            if plan.status is not PlanStatus.ACTIVE:
                raise GateRefused(f"plan {plan_id} is {plan.status.value}")
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
            plan.gate = GateState.PASSED
            plan.gate_by = actor
            plan.gate_at = now
            plan.gate_reason = reason or "approved"
            plan.gate_override = found
            period = {"since": local_time(test.finished_at), "until": local_time(now)}
            if found:
                self._note(
                    plan,
                    "gate_overridden",
                    actor=actor,
                    reason=reason,
                    findings=findings_text(findings, lang) or plan.gate_reason,
                    cut_short=cut_short,
                    **period,
                )
                self._audit(
                    plan,
                    "update.gate_overridden",
                    actor,
                    reason=reason,
                    findings=plan.gate_findings,
                    judged_until=local_iso(now),
                )
            else:
                self._note(
                    plan,
                    "gate_approved",
                    actor=actor,
                    reason=plan.gate_reason,
                    cut_short=cut_short,
                    **period,
                )
                self._audit(
                    plan,
                    "update.gate_approved",
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
            if plan.status is not PlanStatus.ACTIVE:
                raise GateRefused(f"plan {plan_id} is {plan.status.value}")
            if prod is not None and prod.state is not StageState.PLANNED:
                raise GateRefused(f"production is already {prod.state.value}")
            if plan.gate is GateState.FAILED:
                raise GateRefused("the gate already failed")
            if plan.gate is not GateState.HELD:
                plan.gate = GateState.HELD
                plan.gate_by = actor
                plan.gate_at = self.clock.now()
                plan.gate_reason = reason or "held"
                self._note(plan, "gate_held", actor=actor, reason=plan.gate_reason)
                self._audit(plan, "update.gate_held", actor, reason=plan.gate_reason)
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
            self._note(plan, "plan_cancelled", actor=actor, plan_id=plan.id, reason=reason)
            self._audit(plan, "update.cancelled", actor, reason=reason, running=",".join(running))
            # The plan_cancelled line says what follows; no "production not run" line.
            self._stop(plan, PlanStatus.CANCELLED, None, actor, release=not running)
            if not running:  # nothing left half done: the update is over
                self.lifecycle.resolve(plan.ticket, actor)
            return plan

    # --- the ticker ------------------------------------------------------------------------

    def tick(self) -> None:
        """Start stages whose window opened, judge gates whose soak ended, close plans; and
        settle a cancelled plan's stage whose runner is gone."""
        candidates = self.store.plans(status=PlanStatus.ACTIVE) + [
            p
            for p in self.store.plans(status=PlanStatus.CANCELLED)
            if any(s.state is StageState.RUNNING for s in p.stages)
        ]
        for candidate in candidates:
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
                    stage.updated = self._updated(plan, stage)
                    if plan.status is PlanStatus.CANCELLED:
                        self._stage_cancelled(plan, stage, interrupted=True)
                    else:
                        self._fail(plan, stage, None)
                    self._end_muting(plan, stage)
                    return
            if plan.status is not PlanStatus.ACTIVE:
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
        problem: Problem | None = None
        stopped = False
        try:
            with self.runner_factory() as runner:
                failed, problem, stopped = self._run_runbook(runner, plan, stage)
        except Exception as exc:  # no key file, a bug: the stage fails, it never hangs
            log.exception("update plan %s: the %s stage could not run", plan_id, environment)
            failed = StepRecord(
                plan_id, environment, stage.assets[0], "pre_check", "-", None, "", "",
                self.clock.now(), 0.0, error=f"{type(exc).__name__}: {exc}",
            )  # fmt: skip
        with self._editing(plan_id) as plan:
            stage = plan.stage(environment)
            assert stage is not None
            stage.updated = self._updated(plan, stage)
            if failed is not None:
                self._fail(plan, stage, failed, problem)
            elif stopped:
                self._stage_cancelled(plan, stage)
            else:
                self._succeed(plan, stage)
            self._end_muting(plan, stage)

    def _run_runbook(
        self, runner: SshRunner, plan: UpdatePlan, stage: UpdateStage
    ) -> tuple[StepRecord | None, Problem | None, bool]:
        """Every phase on every asset before the next phase; the first failing step ends it,
        and so does the plan's cancellation (seen before each command). Returns the failed
        step and its problem, and whether it stopped for a cancellation."""
        for phase in ("pre_check", "update", "post_check"):
            for asset_id in stage.assets:
                for step in plan.runbook:
                    if step.phase != phase:
                        continue
                    if self._cancelled(plan.id):
                        return None, None, True
                    record, problem = self._run_step(runner, plan, stage, asset_id, step)
                    if not record.ok:
                        return record, problem, False
        return None, None, False

    def _cancelled(self, plan_id: str) -> bool:
        plan = self.store.get_plan(plan_id)
        return plan is not None and plan.status is PlanStatus.CANCELLED

    def _run_step(
        self,
        runner: SshRunner,
        plan: UpdatePlan,
        stage: UpdateStage,
        asset_id: str,
        step: RunbookStep,
    ) -> tuple[StepRecord, Problem | None]:
        address = self.assets[asset_id].ssh
        assert address is not None
        target = SshTarget(address.host, address.port, address.user)
        command = fill(step.command, plan.target_version, asset_id, stage.environment)
        started = self.clock.now()
        exit_code: int | None = None
        problem: Problem | None = None
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
                problem = Problem("timed_out", {"timeout": f"{step.timeout:g}"})
        except SshError as exc:
            problem = self._refused(plan, stage, asset_id, address.host, address.port, exc)
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
            error=problem.text("en") if problem is not None else None,
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
                    "error": record.error,
                },
            )
        )
        return record, problem

    def _refused(
        self, plan: UpdatePlan, stage: UpdateStage, asset_id: str, host: str, port: int, exc
    ) -> Problem:
        """A step that could not run: why, as a ticket tells it; a refused host key is also an
        ssh.host_key_* audit event and a WARNING in the bridge's log, with the command that
        records the key once an engineer verified it."""
        hint = f"dyzur ssh trust {host}:{port} --config {self.config_path}"
        where = {"host": host, "port": port}
        if isinstance(exc, UnknownHostKey | HostKeyMismatch):
            if isinstance(exc, UnknownHostKey):
                action, values = SSH_HOST_KEY_UNKNOWN, {"presented": exc.fingerprint}
                problem = Problem("host_key_unknown", {**where, **values, "hint": hint})
            else:
                action = SSH_HOST_KEY_MISMATCH
                values = {"expected": exc.expected_fp, "presented": exc.got_fp}
                problem = Problem("host_key_mismatch", {**where, **values, "hint": hint})
            log.warning(
                "update plan %s, %s stage, %s: %s", plan.id, stage.environment, asset_id,
                problem.text("en"),
            )  # fmt: skip
            self.store.append_audit(
                AuditEvent(
                    self.clock.now(),
                    "dyzur",
                    action,
                    "failure",
                    plan.client,
                    asset_id,
                    {**where, **values, "plan": plan.id, "stage": stage.environment},
                )
            )
            return problem
        if isinstance(exc, SshAuthFailed):
            return Problem("auth", {**where, "user": exc.user, "reason": exc.reason})
        if isinstance(exc, SshUnreachable):
            return Problem("unreachable", {**where, "reason": exc.reason})
        return Problem("error", {"error": str(exc)})

    def _updated(self, plan: UpdatePlan, stage: UpdateStage) -> list[str]:
        """The stage's assets on which every update command ran and succeeded."""
        wanted = sum(1 for s in plan.runbook if s.phase == "update")
        done: dict[str, int] = {}
        for step in self.store.steps(plan.id):
            if step.environment == stage.environment and step.phase == "update" and step.ok:
                done[step.asset] = done.get(step.asset, 0) + 1
        return [a for a in stage.assets if done.get(a, 0) >= wanted]

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
        if plan.status is not PlanStatus.ACTIVE:  # cancelled during its last command
            self.store.release_lease(f"update:{plan.id}", self.owner)
            return
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
            "stage_cancelled_interrupted" if interrupted else "stage_cancelled",
            stage=stage_name(lang, stage.environment),
            updated=", ".join(stage.updated) or "—",
            not_updated=", ".join(not_updated) or "—",
        )
        self._audit(
            plan,
            "update.stage_cancelled",
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
                "muting_ends",
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
        self.lifecycle.note(plan.ticket, "stage_failed", text)
        category = Category.USTERKA if stage.environment == "test" else Category.AWARIA
        ticket = self.lifecycle.open_ticket(
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
        )
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
            self._note(plan, "gate_passed", **period)
            self._audit(plan, "update.gate_passed", reason=plan.gate_reason)
            return
        plan.gate = GateState.FAILED
        plan.gate_reason = f"the soak judgement found: {findings_text(findings, 'en')}"
        told = findings_text(findings, lang)
        text = timeline_text(lang, "gate_failed", findings=told, plan=plan.id, **period)
        self.lifecycle.note(plan.ticket, "gate_failed", text)
        ticket = self.lifecycle.open_ticket(
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
        )
        self._note(plan, "failure_ticket", ticket=ticket.number)
        self._audit(
            plan,
            "update.gate_failed",
            outcome="failure",
            findings=plan.gate_findings,
            ticket=ticket.number,
        )

    def _findings(self, plan: UpdatePlan, test: UpdateStage, until: datetime) -> list[Finding]:
        """What the test assets went through from the end of the test stage to ``until``:
        every awaria or usterka ticket open at some moment of it (opened before or during it,
        fired again, escalated, reopened, resolved in it), and every such alert muted in a
        window that was firing in it. The plan's own tickets do not count."""
        assert test.finished_at is not None
        since = test.finished_at
        found: list[Finding] = []
        for asset_id in test.assets:
            tickets: dict[str, Ticket] = {}
            for query in (
                TicketFilter(asset=asset_id, status=TicketStatus.OPEN, limit=1000),
                TicketFilter(asset=asset_id, limit=1000),
            ):
                tickets.update((t.number, t) for t in self.store.list_tickets(query))
            for ticket in sorted(tickets.values(), key=lambda t: (t.opened_at, t.number)):
                if ticket.fingerprint.startswith("update:") or ticket.opened_at > until:
                    continue
                if ticket.category not in GATE_CATEGORIES:
                    continue
                events = self._ticket_events(ticket, since, until)
                if events:
                    found.append(
                        Finding(asset_id, ticket.rule, ticket.category, ticket.number, None, events)
                    )
        assets = set(test.assets)
        for window in self.store.windows(plan.client):
            if not assets.intersection(covered_assets(window, self.assets)):
                continue
            for record in self.store.suppressed_alerts(window=window.id):
                if (
                    record.asset not in assets
                    or record.category not in GATE_CATEGORIES
                    or record.state is SuppressedState.RELEASED  # its ticket is judged above
                    or record.fired_at > until
                    or (record.recovered_at is not None and record.recovered_at <= since)
                ):
                    continue
                events = [("firing_since" if record.fired_at < since else "fired", record.fired_at)]
                if record.recovered_at is not None and record.recovered_at <= until:
                    events.append(("recovered", record.recovered_at))
                found.append(
                    Finding(
                        record.asset, record.rule, record.category, None, window.id, tuple(events)
                    )
                )
        return found

    def _ticket_events(
        self, ticket: Ticket, since: datetime, until: datetime
    ) -> tuple[tuple[str, datetime], ...]:
        """What a ticket did in [since, until], with "open since" first when it was open as the
        period began; empty when it was closed all along."""
        open_at_since, opened_last = False, ticket.opened_at
        events: list[tuple[str, datetime]] = []
        for entry in self.store.timeline(ticket.number):
            if entry.kind not in TICKET_EVENTS or entry.at > until:
                continue
            if entry.at < since:
                if entry.kind in ("opened", "reopened"):
                    open_at_since, opened_last = True, entry.at
                elif entry.kind == "resolved":
                    open_at_since = False
                continue
            events.append((entry.kind, entry.at))
        if open_at_since:
            events.insert(0, ("open_since", opened_last))
        return tuple(events)

    def _expire(self, plan: UpdatePlan, stage: UpdateStage, reason: str) -> None:
        lang = self._language(plan)
        self._note(plan, "plan_expired", stage=stage_name(lang, stage.environment), reason=reason)
        self._audit(plan, "update.expired", outcome="failure", stage=stage.environment)
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
                self.maintenance.cancel(stage.window, actor, plan=plan.id)
        prod = plan.stage("prod")
        if why is not None and prod is not None and prod.state is StageState.NOT_RUN:
            self._note(plan, "prod_not_run", why=why)
        if release:
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
