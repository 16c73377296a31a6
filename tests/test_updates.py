"""Staged AMMS updates against a real OpenSSH server (tests/sshd.py) with a controlled clock.

Each "host" is a directory on the sshd machine; the runbook writes the version there, so what
ran where (and what never ran) is visible on disk, as it would be on a real AMMS host.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

pytest.importorskip("paramiko")

from bridge.config import parse_config
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
from bridge.updates import GateRefused, StageWindow, UpdateError, UpdateRequest
from collectors.ssh.known_hosts import KnownHosts, record, trust
from tests.conftest import DATA, START, config_data
from tests.sshd import Sshd, keygen
from tests.test_lifecycle import disk

TEST_WINDOW = StageWindow(START + timedelta(hours=1), START + timedelta(hours=3))
# 23:00-03:00 in Warsaw: production at night, outside the service hours
PROD_WINDOW = StageWindow(START + timedelta(hours=13), START + timedelta(hours=17))
SOAK = timedelta(minutes=30)


@pytest.fixture
def sshd(tmp_path: Path):
    server = Sshd(tmp_path / "sshd")
    key = keygen(tmp_path / "id_ed25519")
    server.authorize(Path(f"{key}.pub"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def hosts(tmp_path: Path) -> Path:
    """One directory per AMMS host, reached over SSH by the runbook."""
    root = tmp_path / "hosts"
    for asset in ("amms-a-test", "amms-a-prod", "amms-b-prod"):
        (root / asset).mkdir(parents=True)
    return root


def _config(tmp_path: Path, port: int, trusted: bool = True) -> dict:
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
    data["ssh"] = {"known_hosts": "known_hosts", "key_file": "id_ed25519"}
    data["updates"] = {"soak": "30m"}
    return data


@pytest.fixture
def loaded(tmp_path, sshd):
    return parse_config(_config(tmp_path, sshd.port), "test.yaml", tmp_path)


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


def test_a_full_staged_update(bridge, clock, hosts):
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
    assert first["host"] == "127.0.0.1" and first["user"] and first["exit_code"] == 0
    assert first["command"] == f"test -d {hosts}/amms-a-test"
    assert len(first["output_sha256"]) == 64
    assert [s.output.strip() for s in bridge.store.steps(p.id) if s.phase == "update"] == [
        "updated amms-a-test",
        "updated amms-a-prod",
    ]
    assert open_tickets(bridge, Category.USTERKA) == []
    assert open_tickets(bridge, Category.AWARIA) == []


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


def test_an_alert_on_the_test_asset_during_the_soak_closes_the_gate(bridge, clock, hosts):
    p = plan(bridge, hosts)
    at(bridge, clock, TEST_WINDOW.start)
    clock.advance(300)
    disk(bridge, 0.95, asset="amms-a-test")  # muted by the test window, recorded against it
    assert open_tickets(bridge, Category.USTERKA) == []
    p = bridge.updates.get(p.id)
    at(bridge, clock, p.soak_until)
    p = bridge.updates.get(p.id)
    assert p.gate is GateState.FAILED and p.status is PlanStatus.FAILED
    assert "disk_usage on amms-a-test" in p.gate_reason
    [gate_ticket] = [t for t in open_tickets(bridge, Category.USTERKA) if t.rule != "disk_usage"]
    assert "disk_usage on amms-a-test" in gate_ticket.description
    at(bridge, clock, PROD_WINDOW.start)
    assert version_on(hosts, "amms-a-prod") is None


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
            "prod_window.start: production starts after the test window",
        ),
        ({"selector": {"kind": "ups"}}, "selector: kind=ups matches no production asset"),
    ],
)
def test_a_bad_plan_is_refused_naming_the_field(bridge, hosts, change, message):
    with pytest.raises(UpdateError, match=message):
        plan(bridge, hosts, **change)
    assert bridge.store.plans() == [] and bridge.store.windows() == []


def test_an_unknown_host_key_refuses_the_runbook(tmp_path, sshd, store, clock, hosts):
    loaded = parse_config(_config(tmp_path, sshd.port, trusted=False), "t.yaml", tmp_path)
    bridge = Bridge(loaded, store=store, clock=clock)
    try:
        p = plan(bridge, hosts)
        at(bridge, clock, TEST_WINDOW.start)
        p = bridge.updates.get(p.id)
        assert p.status is PlanStatus.FAILED
        [step] = bridge.store.steps(p.id)
        assert step.exit_code is None and "SHA256:" in step.error
        assert "not in dyzur's known_hosts" in step.error or "unknown" in step.error.lower()
        assert version_on(hosts, "amms-a-test") is None
    finally:
        bridge.close()


def test_a_stage_interrupted_by_a_restart_fails_and_production_never_runs(
    loaded, store, clock, hosts
):
    first = Bridge(loaded, store=store, clock=clock)
    p = plan(first, hosts)
    clock.set(TEST_WINDOW.start)
    first.updates.tick = lambda: None  # this worker dies before it runs anything
    p.stages[0].state = StageState.RUNNING
    store.save_plan(p)
    first.store.lease(f"update:{p.id}", first.updates.owner, clock.time(), 120)
    first.close()
    store.migrate()
    second = Bridge(loaded, store=store, clock=clock)
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
