"""Running a stage's runbook over SSH, in a thread of its own per plan: pre-checks on every
asset, then the update, then post-checks; every command a step record and an ``update.step``
audit event. The first failing step ends the stage, and so does the plan's cancellation (seen
before each command). What the stage came to is handed to ``finished`` (the service)."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from bridge.actions import Action
from bridge.clock import Clock
from bridge.models import (
    Asset,
    AuditEvent,
    PlanStatus,
    RunbookStep,
    StepRecord,
    UpdatePlan,
    UpdateStage,
)
from bridge.store import Store
from bridge.store.base import StaleLease
from bridge.tickets.texts import step_problem
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

OUTPUT_TAIL = 2000  # characters of a step's output kept on the plan and its tickets
PHASES = ("pre_check", "update", "post_check")
RunnerFactory = Callable[[], SshRunner]


@dataclass(frozen=True)
class Problem:
    """Why a step failed or did not run, told in the contract's language (texts.STEP_PROBLEMS)."""

    kind: str  # unreachable, auth, host_key_unknown, host_key_mismatch, timed_out, error
    values: Mapping[str, object]

    def text(self, language: str) -> str:
        return step_problem(language, self.kind, **self.values)


@dataclass(frozen=True)
class Outcome:
    """How a stage's runbook ended: the step that failed (and why), or stopped for the plan's
    cancellation, or neither (every step passed)."""

    failed: StepRecord | None = None
    problem: Problem | None = None
    stopped: bool = False


Finished = Callable[[str, str, Outcome], None]


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a stage's runbook runs under (``update:<plan>``): renewed before each
    command, and each step written only while its token is the newest. A bridge that was away
    past the lease (paused, cut off) finds it taken by another and runs nothing more."""

    lease: str
    owner: str
    token: int
    ttl: float


class LeaseLost(Exception):
    """The runbook's lease moved to another worker: the runbook stops where it is."""


def fill(command: str, version: str, asset: str, environment: str) -> str:
    """A runbook command for one asset: {version}, {asset} and {environment} filled in (other
    braces, such as a shell's ${VAR}, are left alone)."""
    for key, value in (("version", version), ("asset", asset), ("environment", environment)):
        command = command.replace("{" + key + "}", value)
    return command


def updated_assets(plan: UpdatePlan, stage: UpdateStage, steps: Iterable[StepRecord]) -> list[str]:
    """The stage's assets on which every update command ran and succeeded."""
    wanted = sum(1 for s in plan.runbook if s.phase == "update")
    done: dict[str, int] = {}
    for step in steps:
        if step.environment == stage.environment and step.phase == "update" and step.ok:
            done[step.asset] = done.get(step.asset, 0) + 1
    return [a for a in stage.assets if done.get(a, 0) >= wanted]


class Runbooks:
    """The runbook threads of one bridge, one per plan at a time."""

    def __init__(
        self,
        store: Store,
        assets: Mapping[str, Asset],
        clock: Clock,
        runner_factory: RunnerFactory | None,
        config_path: str,
        finished: Finished,
    ) -> None:
        self.store = store
        self.assets = assets
        self.clock = clock
        self.runner_factory = runner_factory
        # For the hint printed with a refused host key: dyzur ssh trust HOST:PORT --config ...
        self.config_path = config_path
        self.finished = finished
        self._threads: dict[str, threading.Thread] = {}
        self._threads_lock = threading.Lock()

    # --- threads ---------------------------------------------------------------------------

    def alive(self, plan_id: str) -> bool:
        with self._threads_lock:
            thread = self._threads.get(plan_id)
            return thread is not None and thread.is_alive()

    def start(self, plan_id: str, environment: str, fence: Fence | None = None) -> None:
        thread = threading.Thread(
            target=self._run_stage,
            args=(plan_id, environment, fence),
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

    def _run_stage(self, plan_id: str, environment: str, fence: Fence | None) -> None:
        plan = self.store.get_plan(plan_id)
        assert plan is not None
        stage = plan.stage(environment)
        assert stage is not None and self.runner_factory is not None
        try:
            with self.runner_factory() as runner:
                outcome = self._run_runbook(runner, plan, stage, fence)
        except (LeaseLost, StaleLease) as exc:
            # The worker holding the plan now settles the stage (interrupted); nothing more
            # runs or is written from here.
            log.warning(
                "update plan %s: the %s stage's runbook stops: %s", plan_id, environment, exc
            )
            return
        except Exception as exc:  # no key file, a bug: the stage fails, it never hangs
            log.exception("update plan %s: the %s stage could not run", plan_id, environment)
            failed = StepRecord(
                plan_id, environment, stage.assets[0], "pre_check", "-", None, "", "",
                self.clock.now(), 0.0, error=f"{type(exc).__name__}: {exc}",
            )  # fmt: skip
            outcome = Outcome(failed)
        self.finished(plan_id, environment, outcome)

    def _run_runbook(
        self, runner: SshRunner, plan: UpdatePlan, stage: UpdateStage, fence: Fence | None
    ) -> Outcome:
        """Every phase on every asset before the next phase; the first failing step ends it,
        and so does the plan's cancellation (seen before each command), and the loss of its
        lease (LeaseLost)."""
        for phase in PHASES:
            for asset_id in stage.assets:
                for step in plan.runbook:
                    if step.phase != phase:
                        continue
                    if self._cancelled(plan.id):
                        return Outcome(stopped=True)
                    if fence is not None:
                        self._renew(fence)
                    record, problem = self._run_step(runner, plan, stage, asset_id, step, fence)
                    if not record.ok:
                        return Outcome(record, problem)
        return Outcome()

    def _renew(self, fence: Fence) -> None:
        token = self.store.lease(fence.lease, fence.owner, fence.ttl, self.clock.time())
        if token != fence.token:
            raise LeaseLost(f"lease {fence.lease!r} is held by another worker now")

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
        fence: Fence | None = None,
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
                result.duration,
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
        with self.store.transaction():
            if fence is not None:  # a worker back from a pause writes nothing more
                self.store.check_fence(fence.lease, fence.token)
            self.store.append_step(record)
            self.store.append_audit(
                AuditEvent(
                    started,
                    "dyzur",
                    Action.UPDATE_STEP,
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
        self,
        plan: UpdatePlan,
        stage: UpdateStage,
        asset_id: str,
        host: str,
        port: int,
        exc: SshError,
    ) -> Problem:
        """A step that could not run: why, as a ticket tells it; a refused host key is also an
        ssh.host_key_* audit event and a WARNING in the bridge's log, with the command that
        records the key once an engineer verified it."""
        hint = f"dyzur ssh trust {host}:{port} --config {self.config_path}"
        where = {"host": host, "port": port}
        if isinstance(exc, UnknownHostKey | HostKeyMismatch):
            values: dict[str, object]
            if isinstance(exc, UnknownHostKey):
                action, values = Action.SSH_HOST_KEY_UNKNOWN, {"presented": exc.fingerprint}
                problem = Problem("host_key_unknown", {**where, **values, "hint": hint})
            else:
                action = Action.SSH_HOST_KEY_MISMATCH
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
