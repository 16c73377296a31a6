"""The `dyzur` command as a user runs it: exit codes and messages."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from bridge.auth import hash_token
from bridge.clock import WARSAW
from tests.conftest import DATA


def dyzur(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "bridge", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def test_help_lists_every_command_in_its_order():
    """The CLI is a package of modules (bridge/cli/): dyzur --help still lists every command
    and group, the bridge's own first."""
    import re

    r = dyzur("--help")
    assert r.returncode == 0, r.stderr
    listed = re.findall(r"^│ ([a-z]\S*)  ", r.stdout, re.MULTILINE)
    assert listed == [
        "run", "check-config", "init", "agent", "ssh",
        "rules", "token", "sla", "report", "audit", "window", "update", "sinks", "incidents",
        "oncall", "tickets", "user", "cluster",
    ]  # fmt: skip


def test_init_writes_a_config_that_check_config_accepts(tmp_path):
    path = tmp_path / "dyzur.yaml"
    r = dyzur("init", path)
    assert r.returncode == 0, r.stderr
    tokens = (tmp_path / "dyzur.yaml.tokens").read_text().split("\n")
    assert (tmp_path / "dyzur.yaml.tokens").stat().st_mode & 0o077 == 0
    name, role, token = tokens[0].split("\t")
    config = yaml.safe_load(path.read_text())
    assert {"name": name, "sha256": hash_token(token), "role": role} in config["tokens"]
    assert token not in path.read_text()  # the config holds only hashes
    r = dyzur("check-config", path)
    assert r.returncode == 0 and "OK" in r.stdout
    assert dyzur("init", path).returncode != 0  # never overwrites silently


def test_check_config_names_the_field(tmp_path):
    path = tmp_path / "dyzur.yaml"
    path.write_text("clients:\n  - {id: a, name: A}\nassets:\n  - {id: s, client: b}\n")
    r = dyzur("check-config", path)
    assert r.returncode != 0
    assert "assets.0.client: unknown client 'b'" in r.stderr


def test_rules_check(tmp_path):
    r = dyzur("rules", "check", DATA / "test_rules.yaml")
    assert r.returncode == 0 and "OK: 2 rules" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - name: a\n    metric: m\n    when: '> 1'\n    category: usterka\n    title: {pl: x, en: y}\n    description: {pl: x, en: y}\n    thresold: 3\n"
    )
    r = dyzur("rules", "check", bad)
    assert r.returncode != 0
    assert f"{bad}:8:" in r.stderr and "thresold" in r.stderr


def test_token_new_prints_a_token_whose_hash_is_in_the_entry():
    r = dyzur("token", "new", "--name", "agent-x", "--role", "agent")
    assert r.returncode == 0
    token = r.stdout.split("give it to its user): ")[1].split()[0]
    [entry] = yaml.safe_load(r.stdout.split("in dyzur.yaml:\n")[1])
    assert entry == {"name": "agent-x", "sha256": hash_token(token), "role": "agent"}
    r = dyzur("token", "new", "--name", "x", "--role", "root")
    assert r.returncode != 0 and "unknown role 'root'" in r.stderr


def test_check_config_refuses_a_cross_hospital_dependency(tmp_path):
    path = tmp_path / "dyzur.yaml"
    path.write_text(
        "clients:\n  - {id: a, name: A}\n  - {id: b, name: B}\n"
        "assets:\n  - {id: ups-b, client: b, kind: ups}\n  - {id: s, client: a, depends_on: ups-b}\n"
    )
    r = dyzur("check-config", path)
    assert r.returncode == 2
    assert "assets.1.depends_on: asset 'ups-b' belongs to client 'b', not 'a'" in r.stderr


BAD_FILES = {
    "not UTF-8": ("tick_interval: 5s\n# Łódź\n".encode("cp1250"), "line 2: not UTF-8 text"),
    "nested [": (b"clients: " + b"[" * 10_000 + b"\n", "invalid YAML: nested too deeply"),
    "nested {": (b"clients: " + b"{a: " * 10_000 + b"\n", "invalid YAML: nested too deeply"),
    "tick 0s": (b"tick_interval: 0s\n", "tick_interval: Value error, must be from 0.1s to 10m"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_check_config_gives_a_message_not_a_traceback(tmp_path, case):
    content, message = BAD_FILES[case]
    path = tmp_path / "dyzur.yaml"
    path.write_bytes(content)
    r = dyzur("check-config", path)
    assert r.returncode == 2, r.stderr
    assert f"{path}: {message}" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


@pytest.mark.parametrize("case", ["not UTF-8", "nested [", "nested {"])
def test_the_agent_config_gives_a_message_not_a_traceback(tmp_path, case):
    content, message = BAD_FILES[case]
    path = tmp_path / "agent.yaml"
    path.write_bytes(content)
    r = dyzur("agent", "--config", path, "--once")
    assert r.returncode == 2, r.stderr
    assert f"{path}: {message}" in r.stderr
    assert "Traceback" not in r.stderr, r.stderr


def test_the_agent_config_refuses_an_interval_beyond_a_day(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text(
        "asset: srv-a1\nbridge: {url: 'http://127.0.0.1:9'}\n"
        "collectors:\n  - {name: host, interval: 2d}\n"
    )
    r = dyzur("agent", "--config", path, "--once")
    assert r.returncode == 2, r.stderr
    assert f"{path}: collectors.0.interval: must be at most 1d" in r.stderr


def test_a_deeply_nested_update_plan_file_is_a_message(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_bytes(BAD_FILES["nested ["][0])
    r = dyzur(
        "update", "plan", "--file", path, "--token", "t-0123456789", "--url", "http://127.0.0.1:9"
    )
    assert r.returncode == 2, r.stderr
    assert f"{path}: invalid YAML: nested too deeply" in r.stderr and "Traceback" not in r.stderr


# --- `dyzur window` against a bridge on the tests' controlled clock ---------------------------


@pytest.fixture
def served(bridge):
    """The bridge (its clock set by the test) served over real HTTP in a thread."""
    import threading

    import uvicorn

    from bridge.api import create_app
    from tests.conftest import free_port
    from tests.processes import wait_for

    port = free_port()
    config = uvicorn.Config(
        create_app(bridge, run_ticker=False), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="the bridge to listen")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def window(url, *args, who="engineer"):
    from tests.conftest import TOKENS

    return dyzur("window", *args, "--url", url, "--token", TOKENS[who])


def plan(url, start, end, *extra, asset="srv-a1"):
    return window(
        url,
        *("plan", "--client", "szpital-a", "--asset", asset, "--reason", "aktualizacja"),
        *("--start", start, "--end", end, *extra),
    )


def test_window_plan_refuses_a_start_off_its_rrule_naming_the_first_occurrence(served):
    r = plan(served, "2026-11-24T22:00", "2026-11-25T02:00", "--rrule", "FREQ=WEEKLY;BYDAY=WE")
    assert r.returncode == 2, r.stdout
    assert r.stderr == (
        "start: Tuesday 2026-11-24T22:00:00+01:00 is not an occurrence of rrule "
        "FREQ=WEEKLY;BYDAY=WE; its first occurrence would be Wednesday "
        "2026-11-25T22:00:00+01:00 to 2026-11-26T02:00:00+01:00: plan that start and end, "
        "or change rrule\n"
    )
    r = plan(served, "2026-11-25T22:00", "2026-11-26T02:00", "--rrule", "FREQ=WEEKLY;BYDAY=WE")
    assert r.returncode == 0, r.stderr


def test_window_list_marks_ended_windows_and_shows_a_recurring_ones_next_night(served, clock):
    one_off = plan(served, "2026-11-24T22:00", "2026-11-25T02:00").stdout.split()[1].rstrip(":")
    r = plan(
        served,
        "2026-11-24T22:00",
        "2026-11-25T02:00",
        "--rrule",
        "FREQ=WEEKLY;COUNT=2",
        asset="srv-a2",
    )
    weekly = r.stdout.split()[1].rstrip(":")
    clock.set(datetime(2026, 11, 25, 1, 0, tzinfo=UTC))  # 02:00 in Warsaw: the first night over
    lines = {line.split()[0]: line for line in window(served, "list").stdout.splitlines()}
    assert lines[one_off] == (
        f"{one_off} szpital-a: 2026-11-24T22:00:00+01:00 – 2026-11-25T02:00:00+01:00 "
        "on srv-a1 ENDED"
    )
    assert lines[weekly] == (
        f"{weekly} szpital-a: 2026-11-24T22:00:00+01:00 – 2026-11-25T02:00:00+01:00 on srv-a2 "
        "(every: FREQ=WEEKLY;COUNT=2, next: 2026-12-01T22:00:00+01:00 – "
        "2026-12-02T02:00:00+01:00)"
    )
    clock.set(datetime(2026, 12, 1, 22, 0, tzinfo=UTC))  # 23:00 in Warsaw, the second night
    lines = {line.split()[0]: line for line in window(served, "list").stdout.splitlines()}
    assert lines[weekly].endswith(
        "(every: FREQ=WEEKLY;COUNT=2, now: 2026-12-01T22:00:00+01:00 – "
        "2026-12-02T02:00:00+01:00) ACTIVE"
    )
    clock.set(datetime(2026, 12, 2, 1, 0, tzinfo=UTC))  # its last night is over
    lines = {line.split()[0]: line for line in window(served, "list").stdout.splitlines()}
    assert lines[weekly].endswith("(every: FREQ=WEEKLY;COUNT=2) ENDED")


def test_window_show_tells_two_alerts_of_one_rule_on_one_host_apart(served, bridge):
    from tests.test_lifecycle import disk

    now = bridge.clock.now().astimezone(WARSAW)
    r = plan(served, now.isoformat(), (now + timedelta(hours=2)).isoformat())
    window_id = r.stdout.split()[1].rstrip(":")
    disk(bridge, 0.95, mountpoint="/var")
    disk(bridge, 0.97, mountpoint="/data")
    r = window(served, "show", window_id)
    assert r.returncode == 0, r.stderr
    fired = now.isoformat()
    assert r.stdout.splitlines()[1:] == [
        "  reason: aktualizacja",
        f"  disk_usage on srv-a1 {{mountpoint=/var}} (usterka): fired {fired}, value 0.95, firing",
        f"  disk_usage on srv-a1 {{mountpoint=/data}} (usterka): fired {fired}, value 0.97, firing",
    ]
    assert r.stdout.splitlines()[0].endswith(" ACTIVE")
