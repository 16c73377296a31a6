"""`dyzur tickets`, `dyzur --version`, the start banner and the bridge's INFO lines, and
`dyzur init`'s local agent: the CLI against a real bridge process over HTTP and HTTPS."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from bridge.cli import app
from bridge.cli.tickets import queue_order, time_left
from bridge.clock import WARSAW
from tests.conftest import TOKENS, config_data, free_port
from tests.processes import ROOT, RunningBridge, tls_bridge_config, wait_for

# Neither the developer's nor CI's environment may choose the bridge or the token.
CLEAN_ENV = {"DYZUR_URL": None, "DYZUR_TOKEN": None}
UTC_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO ")


def dyzur(url: str, *args: str, who: str | None = "engineer", token: str | None = None):
    """Run the CLI as a user would, with --url and the token of ``who`` (or ``token``)."""
    options = ["--url", url]
    if who is not None or token is not None:
        options += ["--token", token if token is not None else TOKENS[who]]
    return CliRunner().invoke(app, [*args, *options], env=CLEAN_ENV)


def push(bridge: RunningBridge, *samples: tuple[str, str, float]) -> None:
    """Samples of the test rules' disk_usage metric: (asset, mountpoint, value)."""
    body = {
        "samples": [
            {
                "metric": "dz_test_disk_used_ratio",
                "labels": {"asset": a, "mountpoint": m},
                "value": v,
            }
            for a, m, v in samples
        ]
    }
    headers = {"Authorization": f"Bearer {TOKENS['agent']}"}
    r = httpx.post(f"{bridge.url}/api/v1/samples", json=body, headers=headers, verify=bridge.verify)
    assert r.status_code == 200 and not r.json()["rejected"], r.text


def api(bridge: RunningBridge, path: str, who: str = "engineer") -> httpx.Response:
    headers = {"Authorization": f"Bearer {TOKENS[who]}"}
    return httpx.get(f"{bridge.url}{path}", headers=headers, verify=bridge.verify)


def ticket_of(bridge: RunningBridge, asset: str, mountpoint: str) -> dict:
    found = api(bridge, f"/api/v1/tickets?asset={asset}").json()
    [ticket] = [t for t in found if t["labels"].get("mountpoint") == mountpoint]
    return ticket


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBridge]:
    """A bridge (ticking every 0.2 s) with five open tickets: szpital-a (standard hours) has
    usterka and awaria ones, klinika-b (24/7) an awaria and a usterka."""
    path = tmp_path_factory.mktemp("bridge") / "dyzur.yaml"
    data = config_data("sqlite:///var/dyzur.db") | {"tick_interval": 0.2}
    path.write_text(yaml.safe_dump(data))
    path.with_name("dyzur.yaml.tokens").write_text("engineer\tengineer\tt-engineer-0123456789\n")
    b = RunningBridge(path, free_port())
    push(
        b,
        ("srv-a1", "/var", 0.95),
        ("srv-a1", "/data", 0.99),
        ("srv-a2", "/var", 0.93),
        ("srv-b1", "/var", 0.99),
        ("srv-b1", "/data", 0.95),
    )
    yield b
    b.stop()


# --- tickets list -------------------------------------------------------------------------


def listed_numbers(stdout: str) -> list[str]:
    return re.findall(r"DZ-\d{4}-\d{6}", stdout)


def test_list_is_the_queue_by_reaction_deadline_as_a_table_json_and_csv(running):
    every = api(running, "/api/v1/tickets").json()
    assert len(every) == 5
    # All open and waiting for a response: by deadline (two opened together: by number).
    expected = sorted(every, key=lambda t: (datetime.fromisoformat(t["reaction_due"]), t["number"]))
    expected_numbers = [t["number"] for t in expected]

    r = dyzur(running.url, "tickets", "list")
    assert r.exit_code == 0, r.output
    assert listed_numbers(r.stdout) == expected_numbers
    header = r.stdout.splitlines()[0].split()
    assert header == ["NUMBER", "LEFT", "DUE", "CATEGORY", "CLIENT", "ASSET", "STATUS", "TITLE"]
    first = next(line for line in r.stdout.splitlines() if expected_numbers[0] in line)
    due = datetime.fromisoformat(expected[0]["reaction_due"]).astimezone(WARSAW)
    assert due.strftime("%Y-%m-%d %H:%M") in first
    assert expected[0]["client"] in first and expected[0]["category"] in first
    assert "\x1b[" not in r.stdout  # no colours when not on a terminal

    r = dyzur(running.url, "tickets", "list", "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == expected  # the API's tickets, in queue order
    assert json.loads(dyzur(running.url, "tickets", "list", "--json").stdout) == expected

    r = dyzur(running.url, "tickets", "list", "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["number"] for row in rows] == expected_numbers
    assert rows[0]["reaction_due"] == expected[0]["reaction_due"]
    assert rows[0]["title"] == expected[0]["title"] and rows[0]["responded_at"] == ""


def test_list_filters_as_the_api(running):
    every = api(running, "/api/v1/tickets").json()

    def numbers(*args: str) -> list[str]:
        r = dyzur(running.url, "tickets", "list", "--format", "json", *args)
        assert r.exit_code == 0, r.output
        return sorted(t["number"] for t in json.loads(r.stdout))

    def matching(**fields: str) -> list[str]:
        return sorted(t["number"] for t in every if fields.items() <= t.items())

    assert numbers("--client", "szpital-a") == matching(client="szpital-a")
    assert numbers("--category", "awaria") == matching(category="awaria")
    assert numbers("--asset", "srv-b1") == matching(asset="srv-b1")
    assert numbers("--client", "klinika-b", "--category", "usterka") == matching(
        client="klinika-b", category="usterka"
    )
    assert len(matching(category="awaria")) == 2 and len(matching(asset="srv-b1")) == 2
    # --limit keeps the most urgent.
    r = dyzur(running.url, "tickets", "list", "--limit", "2")
    first_two = listed_numbers(dyzur(running.url, "tickets", "list").stdout)[:2]
    assert listed_numbers(r.stdout) == first_two
    r = dyzur(running.url, "tickets", "list", "--status", "resolved", "--asset", "srv-a2")
    assert r.exit_code == 0 and r.stdout == "(no tickets)\n"
    r = dyzur(running.url, "tickets", "list", "--category", "bogus")
    assert r.exit_code == 2 and r.stderr.startswith("query.category: ")
    r = dyzur(running.url, "tickets", "list", "--format", "xml")
    assert r.exit_code == 2 and r.stderr == "--format: expected table, json or csv, got 'xml'\n"


def ticket(number: str, due: datetime | None, status="open", responded=False) -> dict:
    return {
        "number": number,
        "status": status,
        "reaction_due": due.isoformat() if due else None,
        "responded_at": "2026-11-23T10:00:00+01:00" if responded else None,
    }


def test_the_queue_order_puts_the_overdue_first_then_the_waiting_by_deadline():
    now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    queue = [
        ticket("DZ-2026-000001", now + timedelta(hours=1), responded=True),
        ticket("DZ-2026-000002", now + timedelta(hours=3)),
        ticket("DZ-2026-000003", None),
        ticket("DZ-2026-000004", now - timedelta(hours=2, minutes=5)),
        ticket("DZ-2026-000005", now - timedelta(minutes=1), status="resolved"),
        ticket("DZ-2026-000006", now + timedelta(minutes=20)),
        ticket("DZ-2026-000007", now - timedelta(days=2, hours=1)),
    ]
    ordered = [t["number"][-1] for t in sorted(queue, key=queue_order)]
    assert ordered == ["7", "4", "6", "2", "5", "1", "3"]
    left = {t["number"][-1]: time_left(t, now) for t in queue}
    assert left == {
        "1": "responded",
        "2": "3h 00m",
        "3": "-",
        "4": "overdue 2h 05m",
        "5": "-",
        "6": "0h 20m",
        "7": "overdue 2d 1h",
    }


# --- show, ack, note, resolve ------------------------------------------------------------


def test_show_gives_the_fields_labels_values_and_timeline(running):
    t = ticket_of(running, "srv-b1", "/data")
    r = dyzur(running.url, "tickets", "show", t["number"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == f"{t['number']}  usterka  open  klinika-b / srv-b1"
    assert f"  title:        {t['title']}" in lines
    assert "  rule:         disk_usage" in lines
    assert "  labels:       asset=srv-b1, mountpoint=/data" in lines
    assert "  last value:   0.95 (fired 1 time(s))" in lines
    assert f"  reaction due: {t['reaction_due']} (running)" in lines
    [opened] = [line for line in lines if " dyzur  opened: " in line]
    assert opened.startswith(f"  {t['opened_at']}  dyzur  opened: ")
    r = dyzur(running.url, "tickets", "show", t["number"], "--json")
    assert json.loads(r.stdout)["timeline"][0]["kind"] == "opened"
    r = dyzur(running.url, "tickets", "show", "DZ-2026-999999")
    assert r.exit_code == 2 and r.stderr == "no ticket DZ-2026-999999\n" and r.stdout == ""


def test_an_engineer_acknowledges_notes_and_resolves_with_a_note(running):
    n = ticket_of(running, "srv-a2", "/var")["number"]
    r = dyzur(running.url, "tickets", "ack", n)
    assert r.exit_code == 0, r.output
    t = api(running, f"/api/v1/tickets/{n}").json()
    assert t["responded_by"] == "jan.kowalski"
    assert r.stdout == (
        f"{n}: first response by jan.kowalski at {t['responded_at']}, within the deadline\n"
    )
    r = dyzur(running.url, "tickets", "ack", n)  # the first one counts
    assert r.exit_code == 0 and f"at {t['responded_at']}" in r.stdout

    r = dyzur(running.url, "tickets", "note", n, "Sprawdzam z informatykiem szpitala.")
    assert r.exit_code == 0, r.output
    assert r.stdout == f"{n}: note written by jan.kowalski\n"
    r = dyzur(running.url, "tickets", "note", n, "druga\x1b[2Klinia")
    assert r.exit_code == 2
    assert r.stderr.startswith("body.text: Value error, control character U+001B")

    r = dyzur(running.url, "tickets", "resolve", n, "--note", "Wyczyszczono /var.")
    assert r.exit_code == 0, r.output
    t = api(running, f"/api/v1/tickets/{n}").json()
    assert t["status"] == "resolved"
    assert r.stdout == f"{n}: resolved at {t['resolved_at']} (note written)\n"
    shown = dyzur(running.url, "tickets", "show", n).stdout
    assert f"  resolved:     {t['resolved_at']}" in shown
    notes = [line for line in shown.splitlines() if "jan.kowalski  note: " in line]
    assert [line.split("note: ")[1] for line in notes] == [
        "Sprawdzam z informatykiem szpitala.",
        "Wyczyszczono /var.",
    ]
    assert shown.index("note: Wyczyszczono") < shown.index("jan.kowalski  resolved: ")
    # The audit trail names the token's user.
    events = api(running, "/api/v1/audit?action=ticket.*&asset=srv-a2", who="admin").json()
    mine = [(e["action"], e["actor"]) for e in events if e["detail"].get("ticket") == n]
    assert ("ticket.note", "jan.kowalski") in mine and ("ticket.resolved", "jan.kowalski") in mine
    assert n in dyzur(running.url, "tickets", "list", "--status", "resolved").stdout
    assert n not in dyzur(running.url, "tickets", "list").stdout


def test_a_hospital_token_sees_only_its_own_tickets_and_cannot_act(running):
    a_numbers = sorted(t["number"] for t in api(running, "/api/v1/tickets?client=szpital-a").json())
    b_ticket = ticket_of(running, "srv-b1", "/var")
    r = dyzur(running.url, "tickets", "list", "--status", "all", who="client-a")
    assert r.exit_code == 0, r.output
    assert sorted(listed_numbers(r.stdout)) == a_numbers and "klinika-b" not in r.stdout
    r = dyzur(running.url, "tickets", "list", "--client", "klinika-b", who="client-a")
    assert r.exit_code == 2 and r.stderr == "a client token sees only its own client\n"
    r = dyzur(running.url, "tickets", "show", b_ticket["number"], who="client-a")
    assert r.exit_code == 2 and r.stderr == f"no ticket {b_ticket['number']}\n"

    own = ticket_of(running, "srv-a1", "/data")
    for verb in (["ack"], ["resolve"], ["note"]):
        args = [*verb, own["number"]] + (["x"] if verb == ["note"] else [])
        r = dyzur(running.url, "tickets", *args, who="client-a")
        assert r.exit_code == 2, (verb, r.output)
        assert r.stderr == "role 'client' may not do this\n" and r.stdout == ""
    r = dyzur(running.url, "tickets", "ack", own["number"], "--json", who="client-a")
    assert r.exit_code == 2 and r.stdout == ""
    error = json.loads(r.stderr)
    assert error["status"] == 403 and error["detail"] == "role 'client' may not do this"
    after = api(running, f"/api/v1/tickets/{own['number']}").json()
    assert after["responded_at"] is None and after["status"] == "open"
    assert [e["kind"] for e in after["timeline"]] == ["opened"]


def test_no_token_a_wrong_one_and_an_unreachable_bridge(running):
    r = dyzur(running.url, "tickets", "list", who=None)
    assert r.exit_code == 2 and r.stderr == "no token: give --token or set DYZUR_TOKEN\n"
    r = dyzur(running.url, "tickets", "ack", "DZ-2026-000001", token="t-wrong-0123456789")
    assert r.exit_code == 2 and f"the bridge at {running.url} refused the token" in r.stderr
    assert "t-wrong" not in r.output
    dead = f"http://127.0.0.1:{free_port()}"
    r = dyzur(dead, "tickets", "list")
    assert r.exit_code == 2 and r.stderr.startswith(f"cannot reach the bridge at {dead}: ")
    assert TOKENS["engineer"] not in r.output
    env = {"DYZUR_URL": running.url, "DYZUR_TOKEN": TOKENS["engineer"]}
    r = CliRunner().invoke(app, ["tickets", "list", "--format", "csv"], env=env)
    assert r.exit_code == 0 and r.stdout.startswith("number,client,asset,")


# --- the bridge's log --------------------------------------------------------------------


def test_the_banner_says_where_everything_is(running):
    config = running.log.with_name("dyzur.yaml")
    port = running.url.rsplit(":", 1)[1]
    messages = [line.split(" INFO dyzur ", 1)[1] for line in running.output().splitlines()
                if " INFO dyzur " in line]  # fmt: skip
    assert messages[0].startswith(
        f"dyzur bridge: version {version('dyzur')}, 2 clients, 4 assets, "
    )
    assert messages[0].endswith(f", config {config}")
    assert messages[1:5] == [
        f"listening on http://127.0.0.1:{port}",
        f"store: {config.parent / 'var' / 'dyzur.db'} (SQLite)",
        f"tokens: {config}.tokens (the plain tokens; the config holds their hashes)",
        f"pages: http://127.0.0.1:{port}/ui/ - API docs: http://127.0.0.1:{port}/docs",
    ]
    assert messages[5].startswith("log in")
    if not yaml.safe_load(config.read_text()).get("users"):
        assert " user new --name NAME --role engineer` " in messages[5]
        assert f"log in at http://127.0.0.1:{port}/login" in messages[5]


def test_each_ticket_change_is_one_info_line_with_utc_times(running):
    t = ticket_of(running, "srv-b1", "/var")
    n = t["number"]
    r = dyzur(running.url, "tickets", "resolve", n)
    assert r.exit_code == 0, r.output
    resolved = api(running, f"/api/v1/tickets/{n}").json()["resolved_at"]

    def mine() -> list[str]:
        return [line for line in running.output().splitlines() if f" ticket {n} " in line]

    due = datetime.fromisoformat(t["reaction_due"]).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    at = datetime.fromisoformat(resolved).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = wait_for(lambda: len(mine()) >= 2 and mine(), what="the resolve's log line")
    assert [line.split(" INFO bridge.tickets ", 1)[1] for line in lines] == [
        f"ticket {n} opened: awaria, klinika-b srv-b1, rule disk_usage, reaction due {due}",
        f"ticket {n} resolved: awaria, klinika-b srv-b1, rule disk_usage, at {at}",
    ]
    assert all(UTC_LINE.match(line) for line in lines)
    # Each of the five tickets opened is logged once.
    opened = re.findall(r" ticket (DZ-\d{4}-\d{6}) opened: ", running.output())
    assert sorted(opened) == sorted(t["number"] for t in api(running, "/api/v1/tickets").json())


def test_a_window_starting_and_ending_is_one_info_line_each(running):
    now = datetime.now(WARSAW).replace(microsecond=0)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    r = dyzur(
        running.url,
        *("window", "plan", "--client", "klinika-b", "--asset", "ups-b1"),
        *("--start", start.isoformat(), "--end", end.isoformat(), "--reason", "bateria"),
    )
    assert r.exit_code == 0, r.output
    window = r.stdout.split()[1].rstrip(":")

    def logged(word: str) -> list[str]:
        return [
            line for line in running.output().splitlines() if f" window {window} {word}" in line
        ]

    started = wait_for(lambda: logged("started"), what="the window's start in the log")
    span = f"klinika-b, 1 asset, {start.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} - "
    span += f"{end.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    assert [line.split(" INFO bridge.maintenance.planning ")[1] for line in started] == [
        f"window {window} started: {span}"
    ]
    assert dyzur(running.url, "window", "cancel", window).exit_code == 0
    [ended] = wait_for(lambda: logged("ended"), what="the window's end in the log")
    assert re.fullmatch(
        rf"window {window} ended early at \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ: {re.escape(span)}",
        ended.split(" INFO bridge.maintenance.planning ")[1],
    )
    assert len(logged("started")) == 1


# --- HTTPS --------------------------------------------------------------------------------


def test_the_verbs_over_https_with_a_ca_file(tmp_path: Path):
    from bridge.users import hash_password

    config = tls_bridge_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["users"] = [
        {"name": "anna.nowak", "role": "engineer", "password": hash_password("długie hasło 1")}
    ]
    config.write_text(yaml.safe_dump(data))
    ca = str(tmp_path / "ca.pem")
    bridge = RunningBridge(config, free_port(), ca=tmp_path / "ca.pem")
    try:
        push(bridge, ("srv-a1", "/var", 0.95))
        [t] = api(bridge, "/api/v1/tickets").json()
        n = t["number"]
        r = dyzur(bridge.url, "tickets", "list", "--ca-file", ca)
        assert r.exit_code == 0, r.output
        assert listed_numbers(r.stdout) == [n]
        r = dyzur(bridge.url, "tickets", "ack", n, "--ca-file", ca)
        assert r.exit_code == 0 and "first response by jan.kowalski" in r.stdout
        r = dyzur(bridge.url, "tickets", "note", n, "przez HTTPS", "--ca-file", ca)
        assert r.exit_code == 0, r.output
        r = dyzur(bridge.url, "tickets", "resolve", n, "--ca-file", ca, "--note", "koniec")
        assert r.exit_code == 0 and "resolved at" in r.stdout
        r = dyzur(bridge.url, "tickets", "show", n, "--ca-file", ca, who="client-a")
        assert r.exit_code == 0 and "jan.kowalski  note: przez HTTPS" in r.stdout
        r = dyzur(bridge.url, "tickets", "ack", n, "--ca-file", ca, who="client-a")
        assert r.exit_code == 2 and r.stderr == "role 'client' may not do this\n"
        r = dyzur(bridge.url, "tickets", "list")  # not signed by a CA the system trusts
        assert r.exit_code == 2 and "CERTIFICATE_VERIFY_FAILED" in r.stderr
        assert f"INFO dyzur listening on {bridge.url}\n" in bridge.output()
        # The banner names the users to log in as, on the bridge's own scheme.
        login = f"INFO dyzur log in at {bridge.url}/login as a user of the config (1: anna.nowak)"
        assert login + "\n" in bridge.output()
    finally:
        bridge.stop()


# --- dyzur --version, dyzur init and its local agent --------------------------------------


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=120,
    )


def test_version_is_the_package_s():
    r = run("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"dyzur {version('dyzur')}\n"


def test_init_writes_a_local_agent_that_pushes_to_the_bridge_at_once(tmp_path: Path):
    config = tmp_path / "dyzur.local.yaml"
    r = run("init", config)
    assert r.returncode == 0, r.stderr
    agent, token_file = tmp_path / "dyzur.local.agent.yaml", tmp_path / "dyzur.local.agent.token"
    assert f"wrote {agent}, a local agent" in r.stdout
    assert f"agent --config {agent} --once" in r.stdout
    assert token_file.stat().st_mode & 0o077 == 0
    tokens = {
        name: token
        for name, _, token in (line.split("\t") for line in config.with_name(
            "dyzur.local.yaml.tokens").read_text().splitlines())
    }  # fmt: skip
    assert token_file.read_text().strip() == tokens["agent"]
    assert yaml.safe_load(agent.read_text())["bridge"]["url"] == "http://127.0.0.1:8080"
    # Never overwritten silently, the agent's files neither.
    config.rename(tmp_path / "moved.yaml")
    r = run("init", config)
    assert r.returncode == 2 and r.stderr == f"{agent} exists; use --force to overwrite it\n"
    (tmp_path / "moved.yaml").rename(config)

    # The generated pair as it is, but on a free port instead of 8080 (which may be taken).
    port = free_port()
    config.write_text(config.read_text().replace("port: 8080", f"port: {port}"))
    agent.write_text(agent.read_text().replace(":8080", f":{port}"))
    bridge = RunningBridge(config, port)
    try:
        r = run("agent", "--config", agent, "--once", cwd=tmp_path.parent)
        assert r.returncode == 0, r.stderr
        headers = {"Authorization": f"Bearer {tokens['engineer']}"}
        streams = httpx.get(f"{bridge.url}/api/v1/agents", headers=headers).json()
        [stream] = [s for s in streams if s["asset"] == "srv-sw-01"]
        assert stream["batches"] >= 1 and stream["samples"] > 0 and stream["owner"] == "agent"
        output = bridge.output()
        assert f"tokens: {config}.tokens (the plain tokens" in output
        assert f"store: {tmp_path / 'var' / 'dyzur.db'} (SQLite)" in output
    finally:
        bridge.stop()
