"""Staged AMMS updates against a real OpenSSH server (tests/sshd.py) with a controlled clock.

Each "host" is a directory on the sshd machine; the runbook writes the version there, so what
ran where (and what never ran) is visible on disk, as it would be on a real AMMS host. The
runbook logs in as a dedicated non-root user (tests.sshd.dedicated_user), as dyzur does on an
AMMS host; its directories therefore live outside root's tmp_path.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

pytest.importorskip("paramiko")

from bridge.actions import Action
from bridge.config import ConfigError, load_config, parse_config
from bridge.maintenance.planning import WindowConflict, WindowOfPlan, WindowRequest
from bridge.maintenance.updates import GateRefused, StageWindow, UpdateError, UpdateRequest
from bridge.maintenance.updates.service import LEASE_SECONDS
from bridge.models import (
    Category,
    GateState,
    PlanStatus,
    RunbookStep,
    StageState,
    TicketStatus,
)
from bridge.service import Bridge
from bridge.store import TicketFilter
from bridge.store.sqlite import SQLiteStore
from collectors.ssh.known_hosts import KnownHosts, record, trust
from tests.conftest import DATA, START, config_data
from tests.processes import wait_for
from tests.sshd import Sshd, dedicated_user, keygen
from tests.test_lifecycle import disk

TEST_WINDOW = StageWindow(START + timedelta(hours=1), START + timedelta(hours=3))
# 23:00-03:00 in Warsaw: production at night, outside the service hours
PROD_WINDOW = StageWindow(START + timedelta(hours=13), START + timedelta(hours=17))
SOAK = timedelta(minutes=30)


SETTLE = timedelta(minutes=2)  # updates.settle's default
HOSTS = ("amms-a-test", "amms-a-test-2", "amms-a-prod", "amms-b-prod")


@pytest.fixture(scope="module")
def login() -> str:
    """The runbook's login on the hosts: not root."""
    name = dedicated_user()
    assert name != "root"
    return name


@pytest.fixture
def shared(tmp_path: Path, login: str):
    """A directory the runbook's login reaches (root's tmp_path is closed to other users)."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    root = Path(tempfile.mkdtemp(prefix="dyzur-updates-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def sshd(tmp_path: Path, shared: Path):
    server = Sshd(shared / "sshd")
    key = keygen(tmp_path / "id_ed25519")
    server.authorize(Path(f"{key}.pub"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def hosts(shared: Path, login: str) -> Path:
    """One directory per AMMS host, reached over SSH by the runbook (and owned by its login)."""
    root = shared / "hosts"
    for asset in HOSTS:
        (root / asset).mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(root / asset, login, login)
    return root


def _config(tmp_path: Path, port: int, login: str, trusted: bool = True) -> dict:
    known = KnownHosts(tmp_path / "known_hosts")
    if trusted:
        key, _fp, _known = trust(known, "127.0.0.1", port)
        record(known, "127.0.0.1", port, key)
    ssh = {"host": "127.0.0.1", "port": port}
    data = config_data()
    data["rule_files"] = [str(DATA / "test_rules.yaml")]
    data["assets"] += [
        {"id": "amms-a-test", "client": "szpital-a", "kind": "amms", "environment": "test"},
        {"id": "amms-a-prod", "client": "szpital-a", "kind": "amms", "environment": "prod"},
        {"id": "amms-b-prod", "client": "klinika-b", "kind": "amms", "environment": "prod"},
    ]
    for asset in data["assets"][-3:]:
        asset["ssh"] = ssh
    data["ssh"] = {"known_hosts": "known_hosts", "key_file": "id_ed25519", "user": login}
    data["updates"] = {"soak": "30m"}
    return data


@pytest.fixture
def loaded(tmp_path, sshd, login):
    return parse_config(_config(tmp_path, sshd.port, login), "test.yaml", tmp_path)


def bridge_of(tmp_path: Path, data: dict, store, clock) -> Bridge:
    """A bridge whose config is a file (dyzur run --config): its path is in the hints."""
    path = tmp_path / "dyzur.yaml"
    path.write_text(yaml.safe_dump(data))
    bridge = Bridge(load_config(path), store=store, clock=clock)
    bridge.start(ticker=False)
    return bridge


def runbook(hosts: Path, post_check: str | None = None) -> list[RunbookStep]:
    host = f"{hosts}/{{asset}}"
    return [
        RunbookStep("pre_check", f"test -d {host}", 30),
        RunbookStep("update", f"echo {{version}} > {host}/version && echo updated {{asset}}", 60),
        RunbookStep("post_check", post_check or f"grep -qx {{version}} {host}/version", 30),
    ]


def plan(bridge: Bridge, hosts: Path, **kw):
    request = UpdateRequest(
        client=kw.pop("client", "szpital-a"),
        target_version=kw.pop("version", "5.2.1"),
        runbook=kw.pop("runbook", None) or runbook(hosts),
        prod_window=kw.pop("prod_window", PROD_WINDOW),
        test_window=kw.pop("test_window", TEST_WINDOW),
        **kw,
    )
    return bridge.updates.plan(request, "jan.kowalski")


def at(bridge: Bridge, clock, when) -> None:
    """Move the clock, let the ticker act, and wait for a runbook it started."""
    clock.set(when)
    bridge.tick()
    bridge.updates.wait(60)


def version_on(hosts: Path, asset: str) -> str | None:
    path = hosts / asset / "version"
    return path.read_text().strip() if path.exists() else None


def audit(bridge: Bridge, action: str) -> list:
    return [e for e in bridge.store.audit_events() if e.action == action]


def open_tickets(bridge: Bridge, category: Category) -> list:
    query = TicketFilter(category=category, status=TicketStatus.OPEN)
    return bridge.store.list_tickets(query)


def window(bridge: Bridge, window_id: str):
    return next(w for w in bridge.store.windows() if w.id == window_id)


def notes(bridge: Bridge, number: str, kind: str) -> list[str]:
    return [e.message for e in bridge.store.timeline(number) if e.kind == kind]


def test_a_full_staged_update(bridge, clock, hosts, login):
    p = plan(bridge, hosts)
    ticket = bridge.store.get_ticket(p.ticket)
    assert ticket.category is Category.AKTUALIZACJA and ticket.reaction_due == TEST_WINDOW.start
    assert ticket.title == "Aktualizacja AMMS do wersji 5.2.1: Szpital A"
    assert [s.environment for s in p.stages] == ["test", "prod"]
    assert [s.assets for s in p.stages] == [["amms-a-test"], ["amms-a-prod"]]
    windows = {w.id: w for w in bridge.store.windows()}
    assert windows[p.stages[1].window].plan == p.id

    at(bridge, clock, TEST_WINDOW.start - timedelta(minutes=1))
    assert version_on(hosts, "amms-a-test") is None  # not before its window

    at(bridge, clock, TEST_WINDOW.start)
    p = bridge.updates.get(p.id)
    assert p.stages[0].state is StageState.SUCCEEDED and p.gate is GateState.SOAKING
    assert version_on(hosts, "amms-a-test") == "5.2.1"
    assert version_on(hosts, "amms-a-prod") is None
    assert bridge.store.asset_facts()["amms-a-test"]["amms_version"] == "5.2.1"

    at(bridge, clock, p.soak_until - timedelta(seconds=1))
    assert bridge.updates.get(p.id).gate is GateState.SOAKING
    at(bridge, clock, p.soak_until)
    assert bridge.updates.get(p.id).gate is GateState.PASSED

    at(bridge, clock, PROD_WINDOW.start)
    p = bridge.updates.get(p.id)
    assert p.status is PlanStatus.COMPLETED and p.stages[1].state is StageState.SUCCEEDED
    assert version_on(hosts, "amms-a-prod") == "5.2.1"
    assert bridge.store.asset_facts()["amms-a-prod"]["amms_version"] == "5.2.1"
    ticket = bridge.store.get_ticket(p.ticket)
    assert ticket.status is TicketStatus.RESOLVED
    kinds = [e.kind for e in bridge.store.timeline(p.ticket)]
    assert kinds[:3] == ["opened", "stage_started", "stage_succeeded"]
    assert "gate_passed" in kinds and "plan_completed" in kinds
    # every step is an audit event: host, user, command, exit code, output digest
    steps = audit(bridge, "update.step")
    assert len(steps) == 6
    first = steps[0].detail
    assert first["host"] == "127.0.0.1" and first["user"] == login and first["exit_code"] == 0
    assert first["command"] == f"test -d {hosts}/amms-a-test"
    assert len(first["output_sha256"]) == 64
    assert [s.output.strip() for s in bridge.store.steps(p.id) if s.phase == "update"] == [
        "updated amms-a-test",
        "updated amms-a-prod",
    ]
    assert open_tickets(bridge, Category.USTERKA) == []
    assert open_tickets(bridge, Category.AWARIA) == []
    # every audit action the update wrote is a named one (bridge/actions.py)
    assert {e.action for e in bridge.store.audit_events()} <= set(Action)


def test_a_failed_post_check_in_test_stops_the_plan_and_production_never_runs(bridge, clock, hosts):
    p = plan(bridge, hosts, runbook=runbook(hosts, post_check="echo 'AMMS nie wstał'; exit 2"))
    at(bridge, clock, TEST_WINDOW.start)
    p = bridge.updates.get(p.id)
    assert p.status is PlanStatus.FAILED and p.gate is GateState.FAILED
    assert [s.state for s in p.stages] == [StageState.FAILED, StageState.NOT_RUN]
    [fault] = open_tickets(bridge, Category.USTERKA)
    assert fault.number == p.stages[0].failure_ticket and fault.asset == "amms-a-test"
    assert "AMMS nie wstał" in fault.description and "kodem 2" in fault.description
    timeline = bridge.store.timeline(p.ticket)
    assert any("AMMS nie wstał" in e.message for e in timeline if e.kind == "stage_failed")
    # The plan's Aktualizacja ticket says production was not run, and why, and stays open.
    assert bridge.store.get_ticket(p.ticket).status is TicketStatus.OPEN
    [why] = notes(bridge, p.ticket, "prod_not_run")
    assert why == (
        "Produkcja nie została zaktualizowana: etap testowy nieudany: krok post_check "
        f"`echo 'AMMS nie wstał'; exit 2` na amms-a-test (zgłoszenie {fault.number}). "
        "Zgłoszenie pozostaje otwarte do decyzji inżyniera."
    )
    # the production window is cancelled, and its hour passes without anything running
    prod_window = next(w for w in bridge.store.windows() if w.id == p.stages[1].window)
    assert prod_window.cancelled_at is not None
    with pytest.raises(GateRefused):
        bridge.updates.approve(p.id, "jan.kowalski")
    at(bridge, clock, PROD_WINDOW.start + timedelta(minutes=5))
    assert version_on(hosts, "amms-a-prod") is None
    assert [s.asset for s in bridge.store.steps(p.id)] == ["amms-a-test"] * 3
    assert open_tickets(bridge, Category.AWARIA) == []
    assert audit(bridge, "update.stage_failed")[0].outcome == "failure"
    assert bridge.store.get_ticket(p.ticket).status is TicketStatus.OPEN


def test_a_failure_tickets_deadline_is_worked_out_before_the_plans_transaction(
    bridge, clock, hosts, monkeypatch
):
    """Service-calendar arithmetic never runs while the plan's transaction holds the store."""
    from tests.test_transactions import Probes

    probes = Probes(monkeypatch, bridge)
    p = plan(bridge, hosts, runbook=runbook(hosts, post_check="exit 2"))
    at(bridge, clock, TEST_WINDOW.start)
    [fault] = open_tickets(bridge, Category.USTERKA)
    assert fault.number == bridge.updates.get(p.id).stages[0].failure_ticket
    assert fault.reaction_due is not None
    assert "deadline" in probes.seen and "deadline" not in probes.held_during()


def test_an_alert_on_the_test_asset_during_the_soak_closes_the_gate(bridge, clock, hosts):
    p = plan(bridge, hosts)
    at(bridge, clock, TEST_WINDOW.start)
    clock.advance(300)
    # The test window ended with the settle time: the alert opens its ticket at once.
    disk(bridge, 0.95, asset="amms-a-test")
    [fault] = open_tickets(bridge, Category.USTERKA)
    assert fault.opened_at == clock.now()
    p = bridge.updates.get(p.id)
    at(bridge, clock, p.soak_until)
    p = bridge.updates.get(p.id)
    # Closed; production waits for an engineer's override until its window ends.
    assert p.gate is GateState.FAILED and p.status is PlanStatus.ACTIVE
    assert f"{fault.number} (Fault (Usterka), disk_usage on amms-a-test): opened " in p.gate_reason
    [gate_ticket] = [t for t in open_tickets(bridge, Category.USTERKA) if t.rule != "disk_usage"]
    # A Polish contract: the gate's reason in Polish.
    assert f"{fault.number} (Usterka, disk_usage na amms-a-test): otwarte " in (
        gate_ticket.description
    )
    assert " on amms-a-test" not in gate_ticket.description
    at(bridge, clock, PROD_WINDOW.start)
    assert version_on(hosts, "amms-a-prod") is None
    at(bridge, clock, PROD_WINDOW.end)
    p = bridge.updates.get(p.id)
    assert p.status is PlanStatus.EXPIRED and p.stages[1].state is StageState.NOT_RUN
    [why] = notes(bridge, p.ticket, "prod_not_run")
    assert "bramce zamkniętej przez ocenę okresu obserwacji" in why and fault.number in why
    assert bridge.store.get_ticket(p.ticket).status is TicketStatus.OPEN


def test_an_engineers_hold_keeps_production_back_until_approved(bridge, clock, hosts):
    p = plan(bridge, hosts)
    bridge.updates.hold(p.id, "anna.nowak", "czekamy na potwierdzenie szpitala")
    at(bridge, clock, TEST_WINDOW.start)
    at(bridge, clock, TEST_WINDOW.start + SOAK)
    p = bridge.updates.get(p.id)
    assert p.stages[0].state is StageState.SUCCEEDED and p.gate is GateState.HELD
    at(bridge, clock, PROD_WINDOW.start)
    assert bridge.updates.get(p.id).stages[1].state is StageState.PLANNED
    assert version_on(hosts, "amms-a-prod") is None
    p = bridge.updates.approve(p.id, "anna.nowak", "szpital potwierdził")
    assert p.gate is GateState.PASSED and p.gate_by == "anna.nowak"
    at(bridge, clock, PROD_WINDOW.start + timedelta(minutes=10))
    assert version_on(hosts, "amms-a-prod") == "5.2.1"
    actions = [e.action for e in bridge.store.audit_events() if e.action.startswith("update.gate")]
    assert actions == ["update.gate_held", "update.gate_approved"]
    assert audit(bridge, "update.gate_held")[0].actor == "anna.nowak"


def test_a_hold_through_the_production_window_expires_the_plan(bridge, clock, hosts):
    p = plan(bridge, hosts)
    at(bridge, clock, TEST_WINDOW.start)
    bridge.updates.hold(p.id, "anna.nowak")
    at(bridge, clock, PROD_WINDOW.end)
    p = bridge.updates.get(p.id)
    assert p.status is PlanStatus.EXPIRED and p.stages[1].state is StageState.NOT_RUN
    assert version_on(hosts, "amms-a-prod") is None
    with pytest.raises(GateRefused):
        bridge.updates.hold(p.id, "anna.nowak")


def test_approval_needs_a_test_stage_that_passed(bridge, hosts):
    p = plan(bridge, hosts)
    with pytest.raises(GateRefused, match="test stage is planned"):
        bridge.updates.approve(p.id, "anna.nowak")


def test_a_failed_production_stage_opens_an_awaria(bridge, clock, hosts):
    (hosts / "amms-a-prod" / "broken").touch()
    p = plan(bridge, hosts, runbook=runbook(hosts, f"test ! -e {hosts}/{{asset}}/broken"))
    at(bridge, clock, TEST_WINDOW.start)
    at(bridge, clock, TEST_WINDOW.start + SOAK)
    at(bridge, clock, PROD_WINDOW.start)
    p = bridge.updates.get(p.id)
    assert p.status is PlanStatus.FAILED and p.stages[1].state is StageState.FAILED
    [outage] = open_tickets(bridge, Category.AWARIA)
    assert outage.asset == "amms-a-prod" and outage.reaction_due is not None
    # opened at 23:00 on a standard contract: due two service hours after 07:00 next morning
    assert outage.reaction_due.hour == 8  # 09:00 in Warsaw (UTC+1)


def test_a_client_without_a_test_environment_needs_the_explicit_flag(bridge, clock, hosts):
    with pytest.raises(UpdateError, match="test_window: klinika-b has no test asset"):
        plan(bridge, hosts, client="klinika-b", test_window=None)
    p = plan(bridge, hosts, client="klinika-b", test_window=None, without_test_stage=True)
    assert [s.environment for s in p.stages] == ["prod"] and p.gate is GateState.NOT_REQUIRED
    at(bridge, clock, PROD_WINDOW.start)
    assert bridge.updates.get(p.id).status is PlanStatus.COMPLETED
    assert version_on(hosts, "amms-b-prod") == "5.2.1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "5.2; rm -rf /"}, "target_version"),
        ({"runbook": [RunbookStep("pre_check", "true")]}, "runbook.update"),
        ({"client": "nowy"}, "client: unknown client"),
        (
            {"test_window": StageWindow(PROD_WINDOW.start, PROD_WINDOW.end)},
            "prod_window.start: .*; production starts after the test window",
        ),
        ({"selector": {"kind": "ups"}}, "selector: kind=ups matches no production asset"),
        (
            {"prod_window": StageWindow(TEST_WINDOW.end - timedelta(hours=1), PROD_WINDOW.end)},
            "prod_window.start: 2026-11-23T12:00:00[+]01:00 is before the test window's end",
        ),
        (
            {"soak": 10 * 3600.0 + 1},
            "soak: 10h1s is longer than the 10h from test_window.end .* to prod_window.start",
        ),
    ],
)
def test_a_bad_plan_is_refused_naming_the_field(bridge, hosts, change, message):
    with pytest.raises(UpdateError, match=message):
        plan(bridge, hosts, **change)
    assert bridge.store.plans() == [] and bridge.store.windows() == []


def test_an_unknown_host_key_refuses_the_runbook(
    tmp_path, sshd, store, clock, hosts, login, caplog
):
    bridge = bridge_of(tmp_path, _config(tmp_path, sshd.port, login, trusted=False), store, clock)
    hint = f"dyzur ssh trust 127.0.0.1:{sshd.port} --config {tmp_path / 'dyzur.yaml'}"
    try:
        p = plan(bridge, hosts)
        with caplog.at_level(logging.WARNING, logger="bridge.maintenance.updates"):
            at(bridge, clock, TEST_WINDOW.start)
        p = bridge.updates.get(p.id)
        assert p.status is PlanStatus.FAILED
        [step] = bridge.store.steps(p.id)
        assert step.exit_code is None and "SHA256:" in step.error
        assert "unknown SSH host key" in step.error and step.error.endswith(hint)
        assert version_on(hosts, "amms-a-test") is None
        # Seen: an audit event of its own and a WARNING naming the command that records it.
        [event] = audit(bridge, "ssh.host_key_unknown")
        assert event.outcome == "failure" and event.asset == "amms-a-test"
        assert event.detail["presented"] in step.error and event.detail["plan"] == p.id
        [warning] = [r for r in caplog.records if "host key" in r.getMessage()]
        assert warning.levelno == logging.WARNING and hint in warning.getMessage()
        # The ticket says the connection was refused, in Polish; no "exit code -".
        [fault] = open_tickets(bridge, Category.USTERKA)
        assert "nie został wykonany: połączenie odrzucone: nieznany klucz hosta SSH" in (
            fault.description
        )
        assert hint in fault.description and "kodem" not in fault.description
        [failed] = notes(bridge, p.ticket, "stage_failed")
        assert "nie został wykonany: połączenie odrzucone" in failed and "kodem" not in failed
    finally:
        bridge.close()


def test_a_changed_host_key_refuses_the_runbook_and_is_audited(
    tmp_path, sshd, store, clock, hosts, login, caplog
):
    data = _config(tmp_path, sshd.port, login)
    sshd.restart(new_host_key_type="ed25519")  # a reinstalled host, or someone in between
    bridge = bridge_of(tmp_path, data, store, clock)
    try:
        p = plan(bridge, hosts)
        with caplog.at_level(logging.WARNING, logger="bridge.maintenance.updates"):
            at(bridge, clock, TEST_WINDOW.start)
        [event] = audit(bridge, "ssh.host_key_mismatch")
        assert event.outcome == "failure" and event.asset == "amms-a-test"
        assert event.detail["expected"] != event.detail["presented"]
        assert any(
            r.levelno == logging.WARNING and "HOST KEY" in r.getMessage()
            and f"--config {tmp_path / 'dyzur.yaml'}" in r.getMessage()
            for r in caplog.records
        )  # fmt: skip
        [fault] = open_tickets(bridge, Category.USTERKA)
        assert "KLUCZ HOSTA SSH serwera" in fault.description and "kodem" not in fault.description
        assert bridge.updates.get(p.id).stages[1].state is StageState.NOT_RUN
    finally:
        bridge.close()


def test_an_unreachable_host_reads_as_a_refused_connection(bridge, sshd, clock, hosts):
    p = plan(bridge, hosts)
    sshd.stop()  # nothing listens on its port any more
    at(bridge, clock, TEST_WINDOW.start)
    [step] = bridge.store.steps(p.id)
    assert step.exit_code is None
    assert step.error.startswith(f"no SSH connection to 127.0.0.1:{sshd.port} (")
    [fault] = open_tickets(bridge, Category.USTERKA)
    assert (
        f"krok pre_check `test -d {hosts}/amms-a-test` na amms-a-test nie został wykonany: brak "
        f"połączenia SSH z 127.0.0.1:{sshd.port} (" in fault.description
    )
    assert "Connection refused" in fault.description and "kodem -" not in fault.description
    stage = bridge.updates.get(p.id).stages[0]
    assert stage.failure.startswith(f"pre_check `test -d {hosts}/amms-a-test` on amms-a-test: ")


def test_a_stage_interrupted_by_a_restart_fails_and_production_never_runs(
    loaded, store, clock, hosts
):
    first = Bridge(loaded, store=store, clock=clock)
    first.start(ticker=False)
    p = plan(first, hosts)
    clock.set(TEST_WINDOW.start)
    first.updates.tick = lambda: None  # this worker dies before it runs anything
    p.stages[0].state = StageState.RUNNING
    store.save_plan(p)
    first.store.lease(f"update:{p.id}", first.updates.owner, 120, clock.time())
    first.close()
    store.migrate()
    second = Bridge(loaded, store=store, clock=clock)
    second.start(ticker=False)
    try:
        at(second, clock, TEST_WINDOW.start + timedelta(seconds=30))
        assert second.updates.get(p.id).stages[0].state is StageState.RUNNING  # lease held
        at(second, clock, TEST_WINDOW.start + timedelta(minutes=3))
        p = second.updates.get(p.id)
        assert p.status is PlanStatus.FAILED and p.stages[0].failure == "interrupted"
        assert p.stages[1].state is StageState.NOT_RUN
        assert open_tickets(second, Category.USTERKA)[0].rule == "amms_update_failed"
    finally:
        second.close()


# --- the gate judges the whole soak (issue 14, item 1) ----------------------------------------


def test_a_usterka_opened_before_the_test_stage_that_escalates_in_the_soak_fails_the_gate(
    bridge, clock, hosts
):
    disk(bridge, 0.95, asset="amms-a-test")  # a Usterka on the test host, before the plan
    [fault] = open_tickets(bridge, Category.USTERKA)
    p = plan(bridge, hosts)
    at(bridge, clock, TEST_WINDOW.start)
    p = bridge.updates.get(p.id)
    assert p.gate is GateState.SOAKING
    clock.set(p.stages[0].finished_at + timedelta(minutes=10))
    disk(bridge, 0.99, asset="amms-a-test")  # in the soak it becomes an Awaria
    assert bridge.store.get_ticket(fault.number).category is Category.AWARIA
    at(bridge, clock, p.soak_until)
    p = bridge.updates.get(p.id)
    assert p.gate is GateState.FAILED
    [finding] = p.gate_findings
    assert finding.startswith(
        f"{fault.number} (Outage (Awaria), disk_usage on amms-a-test): open since "
    )
    assert ", escalated " in finding and finding in p.gate_reason
    [gate_ticket] = [t for t in open_tickets(bridge, Category.USTERKA) if t.rule != "disk_usage"]
    assert f"{fault.number} (Awaria, disk_usage na amms-a-test): otwarte od " in (
        gate_ticket.description
    )
    assert "kategoria podniesiona" in gate_ticket.description
    at(bridge, clock, PROD_WINDOW.start + timedelta(minutes=5))
    assert version_on(hosts, "amms-a-prod") is None  # production is not updated
    assert bridge.updates.get(p.id).stages[1].state is StageState.PLANNED


def test_a_ticket_resolved_before_the_soak_does_not_count(bridge, clock, hosts):
    disk(bridge, 0.95, asset="amms-a-test")
    clock.advance(60)
    disk(bridge, 0.80, asset="amms-a-test")  # recovered and resolved before the update
    p = plan(bridge, hosts)
    at(bridge, clock, TEST_WINDOW.start)
    at(bridge, clock, bridge.updates.get(p.id).soak_until)
    p = bridge.updates.get(p.id)
    assert p.gate is GateState.PASSED and p.gate_findings == []
    [passed] = notes(bridge, p.ticket, "gate_passed")
    assert "nie miały alertów ani zgłoszeń kategorii Awaria lub Usterka" in passed


def test_another_plans_failed_update_of_the_test_host_in_the_soak_fails_the_gate(
    bridge, clock, hosts
):
    """Only the plan's own tickets are left out of its judgement: a second plan whose test
    stage failed on the same test host during the soak is a finding; the first plan's own
    gate ticket is not."""
    first = plan(bridge, hosts, soak=5 * 3600)
    at(bridge, clock, TEST_WINDOW.start)
    second_test = StageWindow(TEST_WINDOW.end + timedelta(minutes=30), TEST_WINDOW.end + SOAK * 3)
    second_prod = StageWindow(PROD_WINDOW.end + SOAK, PROD_WINDOW.end + SOAK * 4)
    second = plan(
        bridge,
        hosts,
        version="5.2.2",
        runbook=runbook(hosts, post_check="echo 'AMMS nie wstał'; exit 2"),
        test_window=second_test,
        prod_window=second_prod,
    )
    at(bridge, clock, second_test.start)
    second = bridge.updates.get(second.id)
    assert second.status is PlanStatus.FAILED
    failed = second.stages[0].failure_ticket
    assert bridge.store.get_ticket(failed).asset == "amms-a-test"

    at(bridge, clock, bridge.updates.get(first.id).soak_until)
    first = bridge.updates.get(first.id)
    assert first.gate is GateState.FAILED
    [finding] = first.gate_findings
    assert finding.startswith(f"{failed} (Fault (Usterka), amms_update_failed on amms-a-test)")
    # Approving over it judges again: the same finding, not the gate ticket just opened.
    first = bridge.updates.approve(first.id, "anna.nowak", "szpital sprawdził", override=True)
    assert first.gate_override and first.gate_findings == [finding]


@pytest.mark.parametrize("language", ["pl", "en"])
def test_the_gate_ticket_speaks_the_contract_language(
    tmp_path, sshd, store, clock, hosts, login, language
):
    data = _config(tmp_path, sshd.port, login)
    data["clients"][0]["contract"]["language"] = language
    bridge = bridge_of(tmp_path, data, store, clock)
    try:
        p = plan(bridge, hosts)
        at(bridge, clock, TEST_WINDOW.start)
        clock.advance(600)
        disk(bridge, 0.95, asset="amms-a-test")
        at(bridge, clock, bridge.updates.get(p.id).soak_until)
        [fault] = [t for t in open_tickets(bridge, Category.USTERKA) if t.rule == "disk_usage"]
        [gate] = [t for t in open_tickets(bridge, Category.USTERKA) if t.rule != "disk_usage"]
        expected = {
            "pl": f"{fault.number} (Usterka, disk_usage na amms-a-test): otwarte ",
            "en": f"{fault.number} (Fault (Usterka), disk_usage on amms-a-test): opened ",
        }
        assert expected[language] in gate.description
        assert ("Produkcja nie zostanie" in gate.description) == (language == "pl")
        [closed] = notes(bridge, p.ticket, "gate_failed")
        assert expected[language] in closed
    finally:
        bridge.close()


# --- approval is an informed override (item 2) ------------------------------------------------


def test_approving_over_a_failing_soak_needs_an_override_with_a_reason(bridge, clock, hosts):
    p = plan(bridge, hosts)
    at(bridge, clock, TEST_WINDOW.start)
    clock.advance(600)
    disk(bridge, 0.95, asset="amms-a-test")  # fires during the soak
    [fault] = open_tickets(bridge, Category.USTERKA)
    with pytest.raises(GateRefused, match=f"found: {fault.number} .*override with a reason"):
        bridge.updates.approve(p.id, "anna.nowak", "szpital czeka")
    with pytest.raises(UpdateError, match=r"^reason: "):
        bridge.updates.approve(p.id, "anna.nowak", "", override=True)
    assert bridge.updates.get(p.id).gate is GateState.SOAKING  # nothing changed
    p = bridge.updates.approve(p.id, "anna.nowak", "dysk testowy, bez związku", override=True)
    assert p.gate is GateState.PASSED and p.gate_override and p.gate_by == "anna.nowak"
    [finding] = p.gate_findings
    assert finding.startswith(f"{fault.number} (Fault (Usterka), disk_usage on amms-a-test)")
    [line] = notes(bridge, p.ticket, "gate_overridden")
    assert line.startswith("Bramka zatwierdzona przez anna.nowak WBREW ocenie okresu obserwacji")
    assert fault.number in line and "Uzasadnienie: dysk testowy, bez związku." in line
    assert "zakończona zatwierdzeniem przed planowanym końcem" in line  # not "watched"
    [event] = audit(bridge, "update.gate_overridden")
    assert event.actor == "anna.nowak" and event.detail["findings"] == p.gate_findings
    assert event.detail["reason"] == "dysk testowy, bez związku"
    assert audit(bridge, "update.gate_approved") == []
    at(bridge, clock, PROD_WINDOW.start)
    assert version_on(hosts, "amms-a-prod") == "5.2.1"


def test_a_failed_gate_can_be_approved_only_as_an_override(bridge, clock, hosts):
    p = plan(bridge, hosts)
    at(bridge, clock, TEST_WINDOW.start)
    clock.advance(600)
    disk(bridge, 0.95, asset="amms-a-test")
    clock.advance(60)
    disk(bridge, 0.80, asset="amms-a-test")  # recovered: the ticket is resolved in the soak
    at(bridge, clock, bridge.updates.get(p.id).soak_until)
    assert bridge.updates.get(p.id).gate is GateState.FAILED
    with pytest.raises(GateRefused, match="override"):
        bridge.updates.approve(p.id, "anna.nowak", "OK")
    p = bridge.updates.approve(p.id, "anna.nowak", "alarm chwilowy", override=True)
    assert p.gate is GateState.PASSED and p.gate_override
    assert ", resolved " in p.gate_findings[0]


def test_an_approval_in_the_soak_says_how_long_it_was_watched(bridge, clock, hosts):
    p = plan(bridge, hosts)
    at(bridge, clock, TEST_WINDOW.start)
    clock.advance(300)
    p = bridge.updates.approve(p.id, "anna.nowak", "pilne")
    assert p.gate is GateState.PASSED and not p.gate_override and p.gate_findings == []
    assert p.judged_until == clock.now()
    [line] = notes(bridge, p.ticket, "gate_approved")
    assert line.startswith("Bramka zatwierdzona przez anna.nowak: pilne. Ocena okresu obserwacji")
    assert "brak alertów i zgłoszeń" in line
    assert "Obserwacja zakończona zatwierdzeniem przed planowanym końcem" in line
    [event] = audit(bridge, "update.gate_approved")
    assert event.actor == "anna.nowak" and event.detail["findings"] == []


# --- a plan can be called off (item 3) --------------------------------------------------------


def test_cancelling_a_running_stage_stops_it_after_its_current_command(
    tmp_path, sshd, store, clock, hosts, login, shared
):
    data = _config(tmp_path, sshd.port, login)
    ssh = {"host": "127.0.0.1", "port": sshd.port}
    data["assets"].append(
        {"id": "amms-a-test-2", "client": "szpital-a", "kind": "amms", "environment": "test",
         "ssh": ssh}
    )  # fmt: skip
    bridge = bridge_of(tmp_path, data, store, clock)
    go = shared / "go"
    host = f"{hosts}/{{asset}}"
    steps = [
        RunbookStep("pre_check", f"test -d {host}", 30),
        # The update of the first host waits until the test has cancelled the plan.
        RunbookStep(
            "update",
            f"echo {{version}} > {host}/version && touch {host}/started && "
            f"until [ -e {go} ]; do sleep 0.05; done",
            60,
        ),
        RunbookStep("post_check", f"grep -qx {{version}} {host}/version", 30),
    ]
    try:
        p = plan(bridge, hosts, runbook=steps)
        assert p.stages[0].assets == ["amms-a-test", "amms-a-test-2"]
        clock.set(TEST_WINDOW.start)
        bridge.tick()
        wait_for(lambda: (hosts / "amms-a-test" / "started").exists(), what="the update")
        cancelled = bridge.updates.cancel(p.id, "anna.nowak", "szpital odwołał aktualizację")
        assert cancelled.status is PlanStatus.CANCELLED
        go.touch()
        bridge.updates.wait(60)
        p = bridge.updates.get(p.id)
        test, prod = p.stages
        assert test.state is StageState.CANCELLED and test.updated == ["amms-a-test"]
        assert prod.state is StageState.NOT_RUN
        assert version_on(hosts, "amms-a-test") == "5.2.1"
        assert version_on(hosts, "amms-a-test-2") is None
        ran = [(s.asset, s.phase) for s in bridge.store.steps(p.id)]
        assert ran == [
            ("amms-a-test", "pre_check"),
            ("amms-a-test-2", "pre_check"),
            ("amms-a-test", "update"),
        ]
        [line] = notes(bridge, p.ticket, "stage_cancelled")
        assert "Zaktualizowane: amms-a-test. Niezaktualizowane: amms-a-test-2." in line
        [called_off] = notes(bridge, p.ticket, "plan_cancelled")
        assert "anulowany przez anna.nowak: szpital odwołał aktualizację" in called_off
        assert bridge.store.get_ticket(p.ticket).status is TicketStatus.OPEN  # hosts to check
        assert window(bridge, prod.window).cancelled_by == "anna.nowak"
        assert window(bridge, test.window).end == test.finished_at + SETTLE
        [event] = audit(bridge, "update.cancelled")
        assert event.actor == "anna.nowak" and event.detail["reason"].startswith("szpital")
        [stopped] = audit(bridge, "update.stage_cancelled")
        assert stopped.detail["not_updated"] == "amms-a-test-2"
        # Nothing runs later: not in production's window either.
        at(bridge, clock, PROD_WINDOW.start + timedelta(minutes=5))
        assert version_on(hosts, "amms-a-prod") is None
        assert len(bridge.store.steps(p.id)) == 3
    finally:
        go.touch()
        bridge.close()


def test_a_cancelled_plan_runs_nothing_and_frees_its_windows(bridge, clock, hosts):
    p = plan(bridge, hosts)
    with pytest.raises(UpdateError, match=r"^reason: "):
        bridge.updates.cancel(p.id, "anna.nowak", " ")
    p = bridge.updates.cancel(p.id, "anna.nowak", "przesunięte na przyszły tydzień")
    assert p.status is PlanStatus.CANCELLED and p.cancelled_by == "anna.nowak"
    assert [s.state for s in p.stages] == [StageState.NOT_RUN, StageState.NOT_RUN]
    assert all(window(bridge, s.window).cancelled_at is not None for s in p.stages)
    assert bridge.updates.cancel(p.id, "jan.kowalski", "again").cancelled_by == "anna.nowak"
    at(bridge, clock, TEST_WINDOW.start)
    at(bridge, clock, PROD_WINDOW.start)
    assert bridge.store.steps(p.id) == []
    assert version_on(hosts, "amms-a-test") is None and version_on(hosts, "amms-a-prod") is None
    # Nothing was left half done: the Aktualizacja ticket says so and is closed.
    ticket = bridge.store.get_ticket(p.ticket)
    assert ticket.status is TicketStatus.RESOLVED
    assert "przesunięte na przyszły tydzień" in notes(bridge, p.ticket, "plan_cancelled")[0]
    with pytest.raises(GateRefused):
        bridge.updates.approve(p.id, "anna.nowak", "x", override=True)


def test_a_plans_window_is_cancelled_only_with_its_plan(bridge, clock, hosts):
    p = plan(bridge, hosts)
    with pytest.raises(WindowOfPlan, match=f"update plan {p.id}; cancel the plan instead: "):
        bridge.maintenance.cancel(p.stages[1].window, "anna.nowak")
    assert window(bridge, p.stages[1].window).cancelled_at is None
    at(bridge, clock, TEST_WINDOW.start)
    assert version_on(hosts, "amms-a-test") == "5.2.1"
    at(bridge, clock, bridge.updates.get(p.id).soak_until)
    p = bridge.updates.cancel(p.id, "anna.nowak", "decyzja szpitala")
    assert window(bridge, p.stages[1].window).cancelled_at is not None
    with pytest.raises(GateRefused, match=r"is cancelled"):
        bridge.updates.hold(p.id, "anna.nowak")
    at(bridge, clock, PROD_WINDOW.start)
    assert version_on(hosts, "amms-a-prod") is None


def test_a_finished_plan_cannot_be_cancelled(bridge, clock, hosts):
    p = plan(bridge, hosts, client="klinika-b", test_window=None, without_test_stage=True)
    at(bridge, clock, PROD_WINDOW.start)
    with pytest.raises(GateRefused, match="is already completed"):
        bridge.updates.cancel(p.id, "anna.nowak", "za późno")


# --- muting ends with the work (item 4) -------------------------------------------------------


def test_an_outage_after_production_completed_is_ticketed_at_once(bridge, clock, hosts):
    # Klinika B: 24/7, no test environment; production alone.
    p = plan(bridge, hosts, client="klinika-b", test_window=None, without_test_stage=True)
    at(bridge, clock, PROD_WINDOW.start)
    p = bridge.updates.get(p.id)
    done = p.stages[0].finished_at
    assert p.status is PlanStatus.COMPLETED
    assert window(bridge, p.stages[0].window).end == done + SETTLE  # no longer 03:00
    [muting] = notes(bridge, p.ticket, "muting_ends")
    assert muting.startswith("Alerts of amms-b-prod are muted until ")
    # An alert within the settle time is muted, and opens its ticket once it has passed.
    clock.set(done + timedelta(minutes=1))
    disk(bridge, 0.95, asset="amms-b-prod", mountpoint="/var")
    assert open_tickets(bridge, Category.USTERKA) == []
    at(bridge, clock, done + SETTLE)
    [settled] = open_tickets(bridge, Category.USTERKA)
    assert settled.opened_at == done + SETTLE
    # Six minutes after completion an Awaria opens at once: its 2-hour clock starts now.
    clock.set(done + timedelta(minutes=6))
    disk(bridge, 0.99, asset="amms-b-prod", mountpoint="/data")
    [outage] = open_tickets(bridge, Category.AWARIA)
    assert outage.opened_at == done + timedelta(minutes=6)
    assert outage.reaction_due == done + timedelta(minutes=6, hours=2)
    [event] = audit(bridge, "window.ended_early")
    assert event.detail["plan"] == p.id and event.detail["planned_end"].endswith("03:00:00+01:00")


def test_a_failed_stage_stops_muting_after_the_settle_time(
    tmp_path, sshd, store, clock, hosts, login
):
    data = _config(tmp_path, sshd.port, login)
    data["updates"]["settle"] = "5m"
    bridge = bridge_of(tmp_path, data, store, clock)
    try:
        p = plan(bridge, hosts, runbook=runbook(hosts, post_check="exit 1"))
        at(bridge, clock, TEST_WINDOW.start)
        test = bridge.updates.get(p.id).stages[0]
        assert test.state is StageState.FAILED
        assert window(bridge, test.window).end == test.finished_at + timedelta(minutes=5)
        clock.set(test.finished_at + timedelta(minutes=5))
        disk(bridge, 0.95, asset="amms-a-test")
        assert [t.rule for t in open_tickets(bridge, Category.USTERKA)] == [
            "disk_usage",
            "amms_update_failed",
        ]
    finally:
        bridge.close()


def test_the_settle_time_is_bounded(tmp_path, sshd, login):
    data = _config(tmp_path, sshd.port, login)
    data["updates"]["settle"] = "2h"
    with pytest.raises(ConfigError, match=r"updates\.settle: .*from 0s to 1h"):
        parse_config(data, "test.yaml", tmp_path)


# --- plans that can never reach production (item 5) --------------------------------------------


def test_a_refused_plan_takes_no_plan_number(bridge, clock, hosts):
    blocking = bridge.maintenance.plan(
        WindowRequest(
            "szpital-a", PROD_WINDOW.start, PROD_WINDOW.end, "wymiana dysków", ["amms-a-prod"]
        ),
        "anna.nowak",
    )
    with pytest.raises(WindowConflict):
        plan(bridge, hosts)
    with pytest.raises(UpdateError, match=r"^soak: "):
        plan(bridge, hosts, soak=11 * 3600.0)
    bridge.maintenance.cancel(blocking.id, "anna.nowak")
    assert plan(bridge, hosts).id == "AK-2026-0001"


# --- over HTTP ---------------------------------------------------------------------------------


def _body(hosts: Path, **change) -> dict:
    host = f"{hosts}/{{asset}}"
    return {
        "client": "szpital-a",
        "target_version": "5.3.0",
        "test_window": {"start": "2026-11-23T11:00:00", "end": "2026-11-23T13:00:00"},
        "prod_window": {"start": "2026-11-23T23:00:00+01:00", "end": "2026-11-24T03:00:00+01:00"},
        "runbook": {
            "pre_checks": [f"test -d {host}"],
            "update": [{"command": f"echo {{version}} > {host}/version", "timeout": "5m"}],
            "post_checks": [f"grep -qx {{version}} {host}/version"],
        },
        "soak": "15m",
        **change,
    }


def test_the_updates_api(api, bridge, clock, hosts):
    from tests.conftest import auth

    r = api.post("/api/v1/updates", json=_body(hosts), headers=auth("client-a"))
    assert r.status_code == 403
    r = api.post("/api/v1/updates", json=_body(hosts), headers=auth("engineer"))
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["stages"][0]["start"] == "2026-11-23T11:00:00+01:00" and p["soak_seconds"] == 900
    assert [s["phase"] for s in p["runbook"]] == ["pre_check", "update", "post_check"]
    r = api.post(f"/api/v1/updates/{p['id']}/approve", headers=auth("engineer"))
    assert r.status_code == 409 and "test stage is planned" in r.json()["detail"]
    r = api.post(
        f"/api/v1/updates/{p['id']}/hold", json={"reason": "RODO"}, headers=auth("engineer")
    )
    assert r.status_code == 200 and r.json()["gate"] == "held"
    at(bridge, clock, TEST_WINDOW.start)
    shown = api.get(f"/api/v1/updates/{p['id']}", headers=auth("client-a")).json()
    assert [s["exit_code"] for s in shown["steps"]] == [0, 0, 0]
    assert shown["stages"][0]["state"] == "succeeded"
    assert api.get(f"/api/v1/updates/{p['id']}", headers=auth("client-b")).status_code == 404
    assert api.get("/api/v1/updates", headers=auth("client-b")).json() == []
    r = api.post(f"/api/v1/updates/{p['id']}/approve", headers=auth("client-a"))
    assert r.status_code == 403
    r = api.post(f"/api/v1/updates/{p['id']}/approve", headers=auth("engineer"))
    assert r.status_code == 200 and r.json()["gate"] == "passed"
    # the stages are in the calendar feed
    from icalendar import Calendar

    feed = api.get("/api/v1/calendar.ics", headers=auth("client-a")).content
    uids = {str(e["UID"]) for e in Calendar.from_ical(feed).walk("VEVENT")}
    assert uids == {f"{p['id']}-test@dyzur", f"{p['id']}-prod@dyzur"}


def test_bad_update_plans_get_a_4xx_naming_the_field(api, hosts):
    from tests.conftest import auth

    cases = [
        (_body(hosts, runbook={"update": []}), "body.runbook.update"),
        (_body(hosts, soak="forever"), "body.soak"),
        (_body(hosts, target_version="../../etc"), "target_version"),
        (_body(hosts, selector="colour=red"), "selector"),
        (_body(hosts, client="klinika-b", test_window=None), "test_window"),
        (_body(hosts, extra=1), "body.extra"),
    ]
    for body, field in cases:
        r = api.post("/api/v1/updates", json=body, headers=auth("engineer"))
        assert r.status_code == 422, (body, r.text)
        assert field in r.text
    assert api.get("/api/v1/updates", headers=auth("engineer")).json() == []
    r = api.post("/api/v1/updates/AK-2026-0099/approve", headers=auth("engineer"))
    assert r.status_code == 404


def test_an_override_and_a_cancel_over_http(api, bridge, clock, hosts):
    from tests.conftest import auth

    p = api.post("/api/v1/updates", json=_body(hosts), headers=auth("engineer")).json()
    approve, cancel = f"/api/v1/updates/{p['id']}/approve", f"/api/v1/updates/{p['id']}/cancel"
    at(bridge, clock, TEST_WINDOW.start)
    clock.advance(600)
    disk(bridge, 0.95, asset="amms-a-test")
    [fault] = open_tickets(bridge, Category.USTERKA)
    r = api.post(approve, json={"reason": "OK"}, headers=auth("engineer"))
    assert r.status_code == 409 and fault.number in r.json()["detail"]
    assert "override" in r.json()["detail"]
    r = api.post(approve, json={"override": True}, headers=auth("engineer"))
    assert r.status_code == 422 and r.json()["detail"].startswith("reason: ")
    r = api.post(
        approve, json={"override": True, "reason": "znany problem"}, headers=auth("engineer")
    )
    assert r.status_code == 200, r.text
    shown = r.json()
    assert shown["gate"] == "passed" and shown["gate_override"] is True
    assert shown["gate_findings"][0].startswith(f"{fault.number} (Fault (Usterka), disk_usage ")
    assert shown["judged_until"] == "2026-11-23T11:10:00+01:00"
    assert shown["stages"][0]["updated"] == ["amms-a-test"]

    # A window of the plan is cancelled only with the plan.
    prod_window = shown["stages"][1]["window"]
    r = api.post(f"/api/v1/windows/{prod_window}/cancel", headers=auth("engineer"))
    assert r.status_code == 409
    assert f"stage of update plan {p['id']}" in r.json()["detail"]
    assert f"dyzur update cancel {p['id']} --reason" in r.json()["detail"]

    r = api.post(cancel, json={"reason": "nie dziś"}, headers=auth("client-a"))
    assert r.status_code == 403
    r = api.post(cancel, json={}, headers=auth("engineer"))
    assert r.status_code == 422 and "body.reason" in r.text
    r = api.post(cancel, json={"reason": "szpital prosi o przesunięcie"}, headers=auth("engineer"))
    assert r.status_code == 200, r.text
    shown = r.json()
    assert shown["status"] == "cancelled" and shown["cancelled_by"] == "jan.kowalski"
    assert shown["cancel_reason"] == "szpital prosi o przesunięcie"
    assert shown["stages"][1]["state"] == "not_run"
    listed = api.get("/api/v1/windows?include_cancelled=true", headers=auth("engineer")).json()
    assert [w["cancelled_by"] for w in listed if w["id"] == prod_window] == ["jan.kowalski"]
    [event] = audit(bridge, "update.cancelled")
    assert event.actor == "jan.kowalski" and event.client == "szpital-a"
    at(bridge, clock, PROD_WINDOW.start)
    assert version_on(hosts, "amms-a-prod") is None
    r = api.post("/api/v1/updates/AK-2026-0099/cancel", json={"reason": "x"}, headers=auth("admin"))
    assert r.status_code == 404


def test_the_tickets_of_a_plan_are_logged_and_counted_like_any_ticket(bridge, clock, hosts, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="bridge"):
        p = plan(bridge, hosts)
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith(f"ticket {p.ticket} opened: aktualizacja") for line in lines)
    counted = bridge.metrics.registry.get_sample_value(
        "dyzur_tickets_opened_total", {"category": "aktualizacja"}
    )
    assert counted == 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bridge"):
        bridge.updates.cancel(p.id, "jan.kowalski", "szpital przełożył aktualizację")
    assert any(r.getMessage().startswith(f"ticket {p.ticket} resolved") for r in caplog.records)


def test_a_runbook_whose_lease_was_taken_while_it_ran_writes_and_runs_nothing_more(
    tmp_path, sshd, store, clock, hosts, login, shared
):
    """Its bridge was away (paused) past the plan's lease during a command, and another
    bridge took the plan over (the stage failed as interrupted): when the command ends, its
    step is refused by the lease's fencing token, and no further command runs."""
    data = _config(tmp_path, sshd.port, login)
    ssh = {"host": "127.0.0.1", "port": sshd.port}
    data["assets"].append(
        {"id": "amms-a-test-2", "client": "szpital-a", "kind": "amms", "environment": "test",
         "ssh": ssh}
    )  # fmt: skip
    first = bridge_of(tmp_path, data, store, clock)
    other = Bridge(load_config(tmp_path / "dyzur.yaml"), store=SQLiteStore(store.path), clock=clock)
    other.start(ticker=False)
    go = shared / "go"
    host = f"{hosts}/{{asset}}"
    steps = [
        RunbookStep("pre_check", f"test -d {host}", 30),
        RunbookStep(
            "update",
            f"echo {{version}} > {host}/version && touch {host}/started && "
            f"until [ -e {go} ]; do sleep 0.05; done",
            60,
        ),
        RunbookStep("post_check", f"grep -qx {{version}} {host}/version", 30),
    ]
    try:
        p = plan(first, hosts, runbook=steps)
        clock.set(TEST_WINDOW.start)
        first.tick()
        wait_for(lambda: (hosts / "amms-a-test" / "started").exists(), what="the update")
        # The first bridge is away past the lease: the other one drives the plan now.
        clock.set(TEST_WINDOW.start + timedelta(seconds=LEASE_SECONDS + 1))
        other.updates.tick()
        taken_over = other.updates.get(p.id)
        assert taken_over.stages[0].state is StageState.FAILED
        assert taken_over.stages[0].failure == "interrupted"
        go.touch()  # the command ends on the first bridge
        first.updates.wait(60)
        ran = [(s.asset, s.phase) for s in store.steps(p.id)]
        assert ran == [("amms-a-test", "pre_check"), ("amms-a-test-2", "pre_check")]
        assert version_on(hosts, "amms-a-test-2") is None  # nothing ran after it
        assert not (hosts / "amms-a-test-2" / "started").exists()
        assert [e.detail["phase"] for e in audit(first, "update.step")] == ["pre_check"] * 2
        final = first.updates.get(p.id)
        assert final.stages[0].state is StageState.FAILED  # settled once, by the other bridge
        assert final.stages[0].failure == "interrupted"
    finally:
        go.touch()
        first.close()
        other.close()
