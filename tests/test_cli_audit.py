"""`dyzur audit list` against a real bridge process, errors of `--json` commands as JSON, and
the bridge's log in UTC."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml
from typer.testing import CliRunner

import bridge.cli.audit
from bridge.cli import app, utc_log_formatter
from bridge.clock import WARSAW
from tests.conftest import TOKENS, config_data, free_port
from tests.processes import ROOT, RunningBridge

CLEAN_ENV = {"DYZUR_URL": None, "DYZUR_TOKEN": None}
UTC_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) \S+ ")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBridge]:
    """A bridge with tickets of both hospitals and a window an engineer planned."""
    path = tmp_path_factory.mktemp("bridge") / "dyzur.yaml"
    path.write_text(yaml.safe_dump(config_data("sqlite:///var/dyzur.db")))
    b = RunningBridge(path, free_port())
    samples = [
        {
            "metric": "dz_test_disk_used_ratio",
            "labels": {"asset": asset, "mountpoint": "/var"},
            "value": 0.95,
        }
        for asset in ("srv-a1", "srv-b1")
    ]
    r = httpx.post(
        f"{b.url}/api/v1/samples",
        json={"samples": samples},
        headers={"Authorization": f"Bearer {TOKENS['agent']}"},
    )
    assert r.status_code == 200 and r.json()["accepted"] == 2
    day = datetime.now(WARSAW).date() + timedelta(days=30)
    r = cli(
        b.url,
        *("window", "plan", "--client", "szpital-a", "--asset", "srv-a2"),
        *("--start", f"{day}T22:00", "--end", f"{day}T23:00", "--reason", "przegląd"),
    )
    assert r.exit_code == 0, r.output
    yield b
    b.stop()


def cli(url: str, *args: str, who: str = "engineer"):
    return CliRunner().invoke(app, [*args, "--url", url, "--token", TOKENS[who]], env=CLEAN_ENV)


def rows(output: str) -> list[list[str]]:
    """The table's rows (without its header) split on runs of two or more spaces."""
    lines = output.strip().splitlines()
    assert lines[0].split() == [
        "ID", "TIME", "ACTOR", "ACTION", "OUTCOME", "CLIENT", "ASSET", "DETAIL"
    ]  # fmt: skip
    return [re.split(r" {2,}", line) for line in lines[1:]]


def test_audit_list_prints_a_table_newest_first(running):
    r = cli(running.url, "audit", "list")
    assert r.exit_code == 0, r.output
    table = rows(r.stdout)
    actions = [row[3] for row in table]
    assert actions[0] == "window.planned" and actions[-1] == "config.loaded"
    ids = [int(row[0]) for row in table]
    assert ids == sorted(ids, reverse=True)
    planned = table[0]
    assert planned[2] == "jan.kowalski" and planned[4] == "success" and planned[5] == "szpital-a"
    assert "reason=przegląd" in planned[-1]
    # Times to the second in Warsaw, with their offset.
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d:\d\d", planned[1])
    opened = {row[6]: row for row in table if row[3] == "ticket.opened"}
    assert set(opened) == {"srv-a1", "srv-b1"}
    assert (opened["srv-b1"][2], opened["srv-b1"][5]) == ("dyzur", "klinika-b")


def test_audit_list_filters(running):
    def listed(*args, who="engineer"):
        r = cli(running.url, "audit", "list", *args, who=who)
        assert r.exit_code == 0, r.output
        return [(row[3], row[5], row[6]) for row in rows(r.stdout)] if "ID" in r.stdout else []

    assert listed("--action", "ticket.opened", "--client", "klinika-b") == [
        ("ticket.opened", "klinika-b", "srv-b1")
    ]
    assert listed("--actor", "jan.kowalski") == [("window.planned", "szpital-a", "-")]
    assert {a for a, _, _ in listed("--asset", "srv-a1")} == {"ticket.opened"}
    assert {a for a, _, _ in listed("--action", "window.*")} == {"window.planned"}
    assert listed("--order", "oldest", "--limit", "1") == [("config.loaded", "-", "-")]
    tomorrow = (datetime.now(WARSAW) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    r = cli(running.url, "audit", "list", "--since", tomorrow)
    assert r.exit_code == 0 and r.stdout.strip() == "(no audit events)"
    # A hospital's token: its own hospital's events only.
    assert {c for _, c, _ in listed(who="client-a")} == {"szpital-a"}


def test_audit_list_pages_through_the_api(running, monkeypatch):
    everything = json.loads(cli(running.url, "audit", "list", "--json").stdout)
    monkeypatch.setattr(bridge.cli.audit, "AUDIT_PAGE", 2)
    r = cli(running.url, "audit", "list", "--format", "json", "--limit", "3")
    assert [e["id"] for e in json.loads(r.stdout)] == [e["id"] for e in everything[:3]]
    r = cli(running.url, "audit", "list", "--format", "json", "--limit", "1000")
    assert json.loads(r.stdout) == everything


def test_audit_list_refused_for_an_agent_in_text_and_in_json(running):
    r = cli(running.url, "audit", "list", who="agent")
    assert r.exit_code == 2 and r.stderr.strip() == "role 'agent' may not do this"
    r = cli(running.url, "audit", "list", "--json", who="agent")
    assert r.exit_code == 2 and r.stdout == ""
    assert json.loads(r.stderr) == {
        "detail": "role 'agent' may not do this",
        "errors": [],
        "conflicts_with": None,
        "status": 403,
    }
    r = cli(running.url, "audit", "list", "--format", "json", "--since", "yesterday")
    error = json.loads(r.stderr)
    assert r.exit_code == 2 and error["status"] == 422
    assert [e["field"] for e in error["errors"]] == ["query.since"]


# --- --json errors are JSON ---------------------------------------------------------------


def test_json_commands_print_their_errors_as_json(running):
    r = cli(running.url, "window", "list", "--json", who="agent")
    assert r.exit_code == 2 and json.loads(r.stderr)["status"] == 403
    r = CliRunner().invoke(
        app, ["window", "list", "--json", "--url", running.url, "--token", "wrong"], env=CLEAN_ENV
    )
    error = json.loads(r.stderr)
    assert r.exit_code == 2 and error["status"] == 401 and error["detail"] == "invalid bearer token"
    r = cli(
        running.url,
        *("window", "plan", "--client", "szpital-a", "--asset", "srv-a1", "--json"),
        *("--start", "2026-13-01T22:00", "--end", "2026-12-01T23:00", "--reason", "x"),
    )
    error = json.loads(r.stderr)
    assert r.exit_code == 2 and error["status"] == 422
    assert "body.start" in [e["field"] for e in error["errors"]]
    # No bridge there, and no token: the CLI's own errors, same shape, no status.
    port = free_port()
    r = CliRunner().invoke(
        app,
        ["update", "status", "--json", "--url", f"http://127.0.0.1:{port}", "--token", "t"],
        env=CLEAN_ENV,
    )
    error = json.loads(r.stderr)
    assert r.exit_code == 2 and error["status"] is None
    assert error["detail"].startswith(f"cannot reach the bridge at http://127.0.0.1:{port}")
    r = CliRunner().invoke(app, ["window", "list", "--json"], env=CLEAN_ENV)
    assert r.exit_code == 2
    assert json.loads(r.stderr)["detail"] == "no token: give --token or set DYZUR_TOKEN"
    # Without --json, text as before.
    r = cli(running.url, "window", "list", who="agent")
    assert r.exit_code == 2 and r.stderr.strip() == "role 'agent' may not do this"


def dyzur(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"},
    )


def test_usage_errors_of_json_commands_are_json(tmp_path):
    r = dyzur("window", "cancel", "--json")  # the window's id is missing
    assert r.returncode == 2 and r.stdout == ""
    error = json.loads(r.stderr)
    assert error["status"] is None and "missing argument 'id'" in error["detail"].lower()
    assert [e["field"] for e in error["errors"]] == ["ID"]
    r = dyzur("audit", "list", "--format", "json", "--ca-file", str(tmp_path / "no-ca.pem"))
    error = json.loads(r.stderr)
    assert r.returncode == 2 and [e["field"] for e in error["errors"]] == ["--ca-file"]
    r = dyzur("update", "status", "--json", "--bogus")
    assert r.returncode == 2 and "--bogus" in json.loads(r.stderr)["detail"]
    # Without --json a usage error is text, as before.
    r = dyzur("window", "cancel")
    assert r.returncode == 2 and "missing argument 'id'" in r.stderr.lower()
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.stderr)


# --- the bridge's log ---------------------------------------------------------------------


def test_the_bridge_log_gives_its_times_in_utc(running):
    lines = [line for line in running.output().splitlines() if line.strip()]
    assert any("dyzur bridge:" in line for line in lines)
    assert any("uvicorn.error Uvicorn running on" in line for line in lines)
    assert [line for line in lines if not UTC_LINE.match(line)] == []


def test_the_log_formatter_writes_utc_whatever_the_local_zone(monkeypatch):
    record = logging.LogRecord("dyzur", logging.WARNING, __file__, 1, "token refused", (), None)
    record.created = datetime(2026, 3, 29, 1, 30, 15, 250000, tzinfo=UTC).timestamp()
    record.msecs = 250.0
    monkeypatch.setenv("TZ", "Europe/Warsaw")  # 03:30 there, after the change to summer time
    time.tzset()
    try:
        text = utc_log_formatter().format(record)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert text == "2026-03-29T01:30:15.250Z WARNING dyzur token refused"
