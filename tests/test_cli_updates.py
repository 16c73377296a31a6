"""`dyzur window` and `dyzur update`: the CLI against a real bridge process over HTTP(S)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from bridge.cli import app
from bridge.cli.update import _plan
from bridge.clock import WARSAW
from collectors.ssh.known_hosts import KnownHosts, record, trust
from tests.conftest import TOKENS, config_data, free_port
from tests.processes import RunningBridge, tls_bridge_config, wait_for
from tests.test_updates import hosts, login, shared, sshd  # noqa: F401 (fixtures)

# Neither the developer's nor CI's environment may choose the bridge or the token.
CLEAN_ENV = {"DYZUR_URL": None, "DYZUR_TOKEN": None}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBridge]:
    path = tmp_path_factory.mktemp("bridge") / "dyzur.yaml"
    path.write_text(yaml.safe_dump(config_data("sqlite:///var/dyzur.db")))
    b = RunningBridge(path, free_port())
    yield b
    b.stop()


def dyzur(url: str, *args: str, who: str | None = "engineer", token: str | None = None):
    """Run the CLI as a user would, with --url and the token of ``who`` (or ``token``)."""
    options = ["--url", url]
    if who is not None or token is not None:
        options += ["--token", token if token is not None else TOKENS[who]]
    return CliRunner().invoke(app, [*args, *options], env=CLEAN_ENV)


def later(days: int, hour: int) -> str:
    """A Warsaw wall-clock time, without an offset, ``days`` from today: the real clock runs."""
    day = datetime.now(WARSAW).date() + timedelta(days=days)
    return f"{day.isoformat()}T{hour:02d}:00:00"


def warsaw(naive: str) -> str:
    """What the bridge prints for a time sent without an offset."""
    return datetime.fromisoformat(naive).replace(tzinfo=WARSAW).isoformat()


def plan_window(url: str, asset: str, start: str, end: str, *extra: str, who="engineer"):
    return dyzur(
        url,
        *("window", "plan", "--client", "szpital-a", "--asset", asset),
        *("--start", start, "--end", end, "--reason", "aktualizacja systemu", *extra),
        who=who,
    )


def test_an_engineer_plans_lists_and_cancels_a_window_and_overlaps_are_refused(running):
    start, end = later(2, 22), later(3, 2)
    r = plan_window(running.url, "srv-a1", start, end, "--rrule", "FREQ=WEEKLY")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("planned OS-")
    window_id = r.stdout.split()[1].rstrip(":")
    line = f"{warsaw(start)} – {warsaw(end)} on srv-a1 (every: FREQ=WEEKLY)"
    assert r.stdout == f"planned {window_id}: {line}\n"

    r = dyzur(running.url, "window", "list", "--client", "szpital-a")
    assert r.exit_code == 0, r.output
    assert f"{window_id} szpital-a: {line}\n" in r.stdout

    # The audit trail and the window name the token, not "the CLI".
    r = dyzur(running.url, "window", "list", "--json")
    [mine] = [w for w in json.loads(r.stdout) if w["id"] == window_id]
    assert mine["created_by"] == "jan.kowalski" and mine["start"] == warsaw(start)

    r = plan_window(running.url, "srv-a1", later(2, 23), later(3, 1))
    assert r.exit_code == 2
    assert f"overlaps window {window_id}" in r.stderr and r.stdout == ""

    r = dyzur(running.url, "window", "cancel", window_id)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"cancelled {window_id}: ")
    assert "cancelled by jan.kowalski" in r.stdout
    assert window_id not in dyzur(running.url, "window", "list").stdout
    r = dyzur(running.url, "window", "list", "--all")
    assert f"{window_id} szpital-a: {line} cancelled by jan.kowalski" in r.stdout


def test_an_active_window_and_a_client_token(running):
    now = datetime.now(WARSAW).replace(microsecond=0)
    start, end = (now - timedelta(hours=1)).isoformat(), (now + timedelta(hours=1)).isoformat()
    r = plan_window(running.url, "srv-a2", start, end)
    assert r.exit_code == 0, r.output
    window_id = r.stdout.split()[1].rstrip(":")
    assert r.stdout.rstrip().endswith(" ACTIVE")

    # A client token reads its own hospital's windows but may not plan or cancel one.
    r = dyzur(running.url, "window", "list", who="client-a")
    assert r.exit_code == 0 and f"{window_id} szpital-a: " in r.stdout
    r = plan_window(running.url, "srv-a2", later(9, 22), later(10, 2), who="client-a")
    assert r.exit_code == 2
    assert r.stderr == "role 'client' may not do this\n"
    r = dyzur(running.url, "window", "cancel", window_id, who="client-a")
    assert r.exit_code == 2 and "may not" in r.stderr
    # Another hospital's token does not see it at all.
    assert window_id not in dyzur(running.url, "window", "list", who="client-b").stdout
    assert dyzur(running.url, "window", "cancel", window_id).exit_code == 0


def test_the_api_s_field_errors_are_shown_one_a_line(running):
    r = plan_window(running.url, "srv-a1", "jutro", later(4, 2))
    assert r.exit_code == 2
    assert r.stderr.startswith("body.start: Input should be a valid datetime")
    r = plan_window(running.url, "srv-b1", later(4, 22), later(5, 2))
    assert r.exit_code == 2
    assert r.stderr == "assets: 'srv-b1' is not an asset of szpital-a\n"


def test_a_missing_or_wrong_token_and_an_unreachable_bridge(running):
    r = dyzur(running.url, "window", "list", who=None)
    assert r.exit_code == 2 and r.stderr == "no token: give --token or set DYZUR_TOKEN\n"
    r = dyzur(running.url, "update", "status", token="t-wrong-0123456789")
    assert r.exit_code == 2
    assert f"the bridge at {running.url} refused the token" in r.stderr
    assert "t-wrong" not in r.output  # a token is never printed

    dead = f"http://127.0.0.1:{free_port()}"
    r = dyzur(dead, "window", "list")
    assert r.exit_code == 2
    assert r.stderr.startswith(f"cannot reach the bridge at {dead}: ")
    assert TOKENS["engineer"] not in r.output


def test_url_and_token_from_the_environment(running):
    env = {"DYZUR_URL": running.url, "DYZUR_TOKEN": TOKENS["engineer"]}
    r = CliRunner().invoke(app, ["update", "status"], env=env)
    assert r.exit_code == 0, r.output
    assert r.stdout == "(no update plans)\n"
    r = CliRunner().invoke(app, ["update", "status", "--json"], env=env)
    assert json.loads(r.stdout) == []


def test_update_plan_names_the_line_of_broken_yaml(running, tmp_path: Path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("client: szpital-a\ntarget_version: 5.4.0\nrunbook:\n  update: [a\n")
    r = dyzur(running.url, "update", "plan", "--file", str(plan))
    assert r.exit_code == 2
    # the line to fix: where the bracket opened, not the end of the file where YAML noticed it
    assert r.stderr.startswith(f"{plan}: line 4: invalid YAML: ")
    assert "(noticed at line 5)" in r.stderr


def test_update_plan_shows_why_the_bridge_refuses_it(running, tmp_path: Path):
    plan = tmp_path / "plan.yaml"
    body = {
        "client": "klinika-b",
        "target_version": "5.4.0",
        "test_window": {"start": later(5, 18), "end": later(5, 20)},
        "runbook": {"update": ["amms-update {version}"]},
    }
    plan.write_text(yaml.safe_dump(body))
    r = dyzur(running.url, "update", "plan", "--file", str(plan))
    assert r.exit_code == 2
    assert r.stderr == "body.prod_window: Field required\n"
    # Each refused field on its own line.
    plan.write_text(yaml.safe_dump({**body, "runbook": None, "soak": "forever"}))
    r = dyzur(running.url, "update", "plan", "--file", str(plan))
    assert r.exit_code == 2
    assert r.stderr.splitlines()[:2] == [
        "body.prod_window: Field required",
        "body.runbook: Input should be a valid dictionary or object to extract fields from",
    ]
    assert r.stderr.splitlines()[2].startswith("body.soak: ")

    # Times in YAML (datetimes once loaded) go to the API as ISO 8601.
    plan.write_text(
        yaml.safe_dump(body)
        + f"prod_window:\n  start: {later(6, 22)}\n  end: {later(7, 2)}+01:00\n"
    )
    r = dyzur(running.url, "update", "plan", "--file", str(plan))
    assert r.exit_code == 2
    # The test config has no ssh settings: every runbook is refused, with the API's reason.
    assert r.stderr == "ssh: the bridge has no ssh settings to run runbooks with\n"
    r = dyzur(running.url, "update", "plan", "--file", str(plan), who="client-b")
    assert r.exit_code == 2 and "may not" in r.stderr


def test_update_status_approve_and_hold_of_no_plan(running):
    r = dyzur(running.url, "update", "status")
    assert r.exit_code == 0 and r.stdout == "(no update plans)\n"
    r = dyzur(running.url, "update", "status", "AK-2026-0099")
    assert r.exit_code == 2 and r.stderr == "no update plan AK-2026-0099\n"
    r = dyzur(running.url, "update", "approve", "AK-2026-0099", "--reason", "testy OK")
    assert r.exit_code == 2 and r.stderr == "no update plan AK-2026-0099\n"
    r = dyzur(running.url, "update", "hold", "AK-2026-0099")
    assert r.exit_code == 2 and "no update plan" in r.stderr


def test_https_with_ca_file(tmp_path: Path):
    tls_bridge_config(tmp_path)
    bridge = RunningBridge(tmp_path / "dyzur.yaml", free_port(), ca=tmp_path / "ca.pem")
    try:
        r = dyzur(bridge.url, "window", "list", "--ca-file", str(tmp_path / "ca.pem"))
        assert r.exit_code == 0, r.output
        assert r.stdout == "(no windows)\n"
        r = dyzur(bridge.url, "window", "list")  # not signed by a CA the system trusts
        assert r.exit_code == 2
        assert r.stderr.startswith(f"cannot reach the bridge at {bridge.url}: ")
        assert "CERTIFICATE_VERIFY_FAILED" in r.stderr
    finally:
        bridge.stop()


def test_an_update_planned_held_and_refused_approval(tmp_path: Path):
    """A bridge with ssh settings takes the plan; its windows lie days ahead, so nothing runs."""
    data = config_data("sqlite:///var/dyzur.db")
    ssh = {"host": "127.0.0.1", "port": free_port()}
    data["assets"] += [
        {"id": "amms-a-test", "client": "szpital-a", "kind": "amms", "environment": "test"},
        {"id": "amms-a-prod", "client": "szpital-a", "kind": "amms", "environment": "prod"},
    ]
    for asset in data["assets"][-2:]:
        asset["ssh"] = ssh
    data["ssh"] = {"known_hosts": "known_hosts", "key_file": "id_ed25519"}
    (tmp_path / "id_ed25519").write_text("")
    (tmp_path / "dyzur.yaml").write_text(yaml.safe_dump(data))
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "client: szpital-a\ntarget_version: 5.4.0\n"
        f"test_window: {{start: {later(5, 18)}, end: {later(5, 20)}}}\n"
        f"prod_window: {{start: '{later(6, 22)}', end: '{later(7, 2)}'}}\n"
        "runbook:\n  pre_checks: [amms-status]\n  update: ['amms-update {version}']\n"
    )
    bridge = RunningBridge(tmp_path / "dyzur.yaml", free_port())
    try:
        r = dyzur(bridge.url, "update", "plan", "--file", str(plan))
        assert r.exit_code == 0, r.output
        header, test, prod, gate = r.stdout.splitlines()
        assert header.startswith("planned AK-") and " szpital-a -> 5.4.0: active, ticket " in header
        plan_id = header.split()[1]
        span = re.escape(f"{warsaw(later(5, 18))} – {warsaw(later(5, 20))}")
        assert re.fullmatch(rf"  test: {span} on amms-a-test \(window OS-\d+-\d+\): planned", test)
        assert prod.startswith(f"  prod: {warsaw(later(6, 22))} – {warsaw(later(7, 2))} on ")
        assert prod.endswith(": planned") and gate == "  gate: waiting"

        r = dyzur(bridge.url, "update", "status")
        assert r.stdout == f"{plan_id} szpital-a 5.4.0: active, gate waiting\n"
        r = dyzur(bridge.url, "update", "hold", plan_id, "--reason", "czekamy na dostawcę")
        assert r.exit_code == 0, r.output
        assert r.stdout.startswith(f"{plan_id}: gate held by jan.kowalski at ")
        assert r.stdout.endswith(": czekamy na dostawcę\n")
        r = dyzur(bridge.url, "update", "approve", plan_id)
        assert r.exit_code == 2
        assert r.stderr == "the test stage is planned, not succeeded\n"
        r = dyzur(bridge.url, "update", "status", plan_id, "--json")
        shown = json.loads(r.stdout)
        assert shown["gate"] == "held" and shown["gate_by"] == "jan.kowalski"
        assert shown["steps"] == []
        r = dyzur(bridge.url, "update", "status", plan_id)
        assert r.stdout.splitlines()[-1].startswith("  gate: held by jan.kowalski at ")
    finally:
        bridge.stop()
    # The steps a stage ran (over SSH, tested elsewhere) as status prints them.
    step = {"environment": "test", "asset": "amms-a-test", "phase": "pre_check"}
    shown["steps"] = [
        {**step, "command": "amms-status", "exit_code": 0, "error": None},
        {**step, "command": "amms-update 5.4.0", "exit_code": None, "error": "timed out"},
    ]
    assert _plan(shown).splitlines()[-2:] == [
        "  amms-a-test pre_check: amms-status -> exit 0",
        "  amms-a-test pre_check: amms-update 5.4.0 -> error: timed out",
    ]


def test_an_override_and_a_cancel_through_the_cli(tmp_path: Path, sshd, hosts, login):  # noqa: F811
    """A bridge process runs the test stage over SSH at once (its window has begun); an alert of
    the test host in the soak makes approval an override, and the plan is then called off."""
    key, _fp, _known = trust(KnownHosts(tmp_path / "known_hosts"), "127.0.0.1", sshd.port)
    record(KnownHosts(tmp_path / "known_hosts"), "127.0.0.1", sshd.port, key)
    data = config_data("sqlite:///var/dyzur.db")
    ssh = {"host": "127.0.0.1", "port": sshd.port}
    data["assets"] += [
        {"id": "amms-a-test", "client": "szpital-a", "kind": "amms", "environment": "test"},
        {"id": "amms-a-prod", "client": "szpital-a", "kind": "amms", "environment": "prod"},
    ]
    for asset in data["assets"][-2:]:
        asset["ssh"] = ssh
    data["ssh"] = {"known_hosts": "known_hosts", "key_file": "id_ed25519", "user": login}
    data["updates"] = {"soak": "30m", "settle": "0s"}
    data["tick_interval"] = "0.2s"
    (tmp_path / "dyzur.yaml").write_text(yaml.safe_dump(data))
    now = datetime.now(WARSAW).replace(microsecond=0, tzinfo=None)
    host = f"{hosts}/{{asset}}"
    plan = {
        "client": "szpital-a",
        "target_version": "5.5.0",
        "test_window": {"start": now - timedelta(minutes=1), "end": now + timedelta(hours=1)},
        "prod_window": {"start": now + timedelta(hours=2), "end": now + timedelta(hours=4)},
        "runbook": {"update": [f"echo {{version}} > {host}/version"]},
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    bridge = RunningBridge(tmp_path / "dyzur.yaml", free_port())
    try:
        r = dyzur(bridge.url, "update", "plan", "--file", str(tmp_path / "plan.yaml"))
        assert r.exit_code == 0, r.output
        plan_id = r.stdout.split()[1]

        def tested():
            shown = json.loads(dyzur(bridge.url, "update", "status", plan_id, "--json").stdout)
            return shown if shown["stages"][0]["state"] == "succeeded" else None

        shown = wait_for(tested, what="the test stage")
        assert (hosts / "amms-a-test" / "version").read_text() == "5.5.0\n"
        sample = {"metric": "dz_test_disk_used_ratio", "value": 0.95,
                  "labels": {"asset": "amms-a-test", "mountpoint": "/var"}}  # fmt: skip
        r = httpx.post(
            f"{bridge.url}/api/v1/samples",
            json={"samples": [sample]},
            headers={"Authorization": f"Bearer {TOKENS['agent']}"},
        )
        assert r.status_code == 200 and r.json()["accepted"] == 1
        [ticket] = wait_for(lambda: _tickets(bridge.url), what="the disk ticket")

        r = dyzur(bridge.url, "update", "approve", plan_id, "--reason", "testy OK")
        assert r.exit_code == 2
        assert f"found: {ticket} (Fault (Usterka), disk_usage on amms-a-test): opened " in r.stderr
        assert "give override with a reason" in r.stderr
        r = dyzur(bridge.url, "update", "approve", plan_id, "--override")
        assert r.exit_code == 2 and r.stderr.startswith("reason: ")
        r = dyzur(
            bridge.url, "update", "approve", plan_id, "--override", "--reason", "znany problem"
        )
        assert r.exit_code == 0, r.output
        gate, judged, finding = r.stdout.splitlines()
        assert gate.startswith(f"{plan_id}: gate passed OVER THE SOAK JUDGEMENT by jan.kowalski ")
        assert gate.endswith(": znany problem")
        assert judged.startswith(f"  soak judgement {shown['stages'][0]['finished_at']} – ")
        assert judged.endswith(": found")
        assert finding.startswith(f"    {ticket} (Fault (Usterka), disk_usage on amms-a-test)")

        prod_window = shown["stages"][1]["window"]
        r = dyzur(bridge.url, "window", "cancel", prod_window)
        assert r.exit_code == 2
        assert r.stderr == (
            f"window {prod_window} is a stage of update plan {plan_id}; cancel the plan instead: "
            f"dyzur update cancel {plan_id} --reason ... (POST /api/v1/updates/{plan_id}/cancel)\n"
        )
        r = dyzur(bridge.url, "update", "cancel", plan_id)
        assert r.exit_code == 2 and "--reason" in r.output
        r = dyzur(
            bridge.url, "update", "cancel", plan_id, "--reason", "szpital odwołał", who="client-a"
        )
        assert r.exit_code == 2 and "may not" in r.stderr
        r = dyzur(bridge.url, "update", "cancel", plan_id, "--reason", "szpital odwołał")
        assert r.exit_code == 0, r.output
        lines = r.stdout.splitlines()
        assert lines[0].startswith(f"{plan_id} szpital-a -> 5.5.0: cancelled, ticket ")
        assert lines[1].startswith("  cancelled by jan.kowalski at ")
        assert lines[1].endswith(": szpital odwołał")
        assert lines[3].startswith("  prod: ") and lines[3].endswith(": not_run")
        r = dyzur(bridge.url, "window", "list", "--all")
        assert f"{prod_window} szpital-a: " in r.stdout and "cancelled by jan.kowalski" in r.stdout
    finally:
        bridge.stop()


def _tickets(url: str) -> list[str]:
    r = httpx.get(
        f"{url}/api/v1/tickets",
        params={"asset": "amms-a-test"},
        headers={"Authorization": f"Bearer {TOKENS['engineer']}"},
    )
    return [t["number"] for t in r.json() if t["rule"] == "disk_usage"]
