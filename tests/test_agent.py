"""The agent: its config, its spool, and the agent process against the real bridge."""

from __future__ import annotations

import json
import logging
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from agents.agent import Agent
from agents.config import AgentConfigError, CollectorSpec, parse_agent_config
from agents.spool import Spool
from collectors import Collector, Sample
from tests.conftest import DATA, TOKENS, auth, config_data, free_port
from tests.processes import ROOT, RunningAgent, RunningBridge, tls_bridge_config, wait_for


def agent_yaml(tmp_path: Path, bridge_port: int, metrics_port: int, **extra) -> Path:
    (tmp_path / "agent.token").write_text(TOKENS["agent-a"] + "\n")
    data = {
        "asset": "srv-a1",
        "bridge": {"url": f"http://127.0.0.1:{bridge_port}", "token_file": "agent.token"},
        "spool": {"path": "spool/spool.db"},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
        "jitter": 0,
        "collectors": [{"name": "host", "interval": "0.5s", "timeout": "10s"}],
        **extra,
    }
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- config ---------------------------------------------------------------------------------


def test_config_defaults_and_paths_relative_to_the_file(tmp_path):
    config = parse_agent_config(
        {
            "asset": "srv-a1",
            "bridge": {"url": "https://dyzur.example:8443/", "ca_file": "ca.pem"},
            "collectors": [{"name": "host"}],
        },
        "agent.yaml",
        tmp_path,
    )
    assert config.bridge.url == "https://dyzur.example:8443"
    assert config.bridge.ca_file == tmp_path / "ca.pem"
    assert config.spool_path == tmp_path / "spool.db"
    assert config.metrics_listen == ("127.0.0.1", 9465)
    assert config.collectors == [CollectorSpec("host", "host", 30.0, 30.0, {})]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"asset": None}, "asset: required"),
        ({"bridge": {"url": "ftp://x"}}, "bridge.url: expected http(s)://"),
        ({"bridge": {"url": "http://x", "verify": False}}, "bridge.verify: unknown setting"),
        ({"spool": {"max_samples": 5}}, "spool.max_samples: expected a number from 1000"),
        ({"metrics": {"listen": "nowhere"}}, "metrics.listen: expected HOST:PORT or off"),
        ({"collectors": []}, "collectors: expected a list of at least one collector"),
        ({"collectors": [{"name": "host", "interval": "often"}]}, "collectors.0.interval:"),
        ({"collectors": [{"name": "host", "interval": "0s"}]}, "collectors.0.interval: must be"),
        ({"colour": "red"}, "colour: unknown setting"),
    ],
)
def test_config_errors_name_the_field(tmp_path, edit, expected):
    data = {"asset": "srv-a1", "bridge": {"url": "http://x"}, "collectors": [{"name": "host"}]}
    data.update(edit)
    with pytest.raises(AgentConfigError) as info:
        parse_agent_config(data, "agent.yaml", tmp_path)
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


def test_the_agent_command_names_a_bad_collector_option(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text(
        "asset: srv-a1\nbridge: {url: 'http://127.0.0.1:9'}\n"
        "collectors: [{name: host, options: {processes: [{name: x, match_cmdline: '('}]}}]\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "bridge", "agent", "--config", str(config), "--once", "--print"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2
    assert "collectors: host: processes.0.match_cmdline: invalid regular expression" in r.stderr


def test_a_missing_token_is_a_clear_error_and_the_token_never_shows(tmp_path, monkeypatch):
    monkeypatch.delenv("DYZUR_AGENT_TOKEN", raising=False)
    config = parse_agent_config(
        {"asset": "a", "bridge": {"url": "http://x"}, "collectors": [{"name": "host"}]},
        "agent.yaml",
        tmp_path,
    )
    with pytest.raises(AgentConfigError, match="no token"):
        config.bridge.token()
    monkeypatch.setenv("DYZUR_AGENT_TOKEN", "s3cret-token")
    assert config.bridge.token() == "s3cret-token"
    assert "s3cret" not in repr(config)


# --- spool ----------------------------------------------------------------------------------


def test_spool_keeps_order_and_survives_reopening(tmp_path):
    spool = Spool(tmp_path / "s.db", max_samples=1000)
    seqs = [spool.put(f"[{i}]".encode(), 10) for i in range(3)]
    assert seqs == [1, 2, 3] and (spool.batches, spool.samples) == (3, 30)
    first = spool.oldest()
    spool.remove(first)
    agent_id = spool.agent_id
    spool.close()
    again = Spool(tmp_path / "s.db", max_samples=1000)
    assert again.agent_id == agent_id
    assert [again.oldest().body] == [b"[1]"] and again.batches == 2
    assert again.put(b"[3]", 10) == 4  # numbers are never reused


def test_a_full_spool_drops_the_oldest_and_counts_them_for_good(tmp_path):
    spool = Spool(tmp_path / "s.db", max_samples=1000)
    for i in range(4):
        spool.put(f"[{i}]".encode(), 400)
    assert (spool.batches, spool.samples, spool.dropped) == (2, 800, 800)
    assert spool.oldest().body == b"[2]"
    spool.close()
    assert Spool(tmp_path / "s.db", max_samples=1000).dropped == 800


def test_a_put_that_fails_on_a_full_spool_leaves_it_as_it_was(tmp_path):
    spool = Spool(tmp_path / "s.db", max_samples=1000)
    for i in range(2):
        spool.put(f"[{i}]".encode(), 400)
    with sqlite3.connect(tmp_path / "s.db") as other:  # the insert fails after the drops
        other.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON batches BEGIN SELECT RAISE(ABORT, 'full'); END"
        )
    with pytest.raises(sqlite3.IntegrityError, match="full"):
        spool.put(b"[2]", 400)
    assert (spool.batches, spool.samples, spool.dropped) == (2, 800, 0)
    reopened = Spool(tmp_path / "s.db", max_samples=1000)
    assert (reopened.batches, reopened.samples, reopened.dropped) == (2, 800, 0)
    assert spool.oldest().body == b"[0]"


def test_the_oldest_batch_is_the_one_put_last_only_while_it_is_alone(tmp_path):
    spool = Spool(tmp_path / "s.db", max_samples=1000)
    spool.put(b"[1]", 1)
    assert spool.oldest().body == b"[1]"
    spool.put(b"[2]", 1)
    assert spool.oldest().body == b"[1]"
    spool.remove(spool.oldest())
    assert spool.oldest().body == b"[2]"
    spool.remove(spool.oldest())
    assert spool.oldest() is None
    spool.put(b"[3]", 1)
    newest = spool.oldest()
    assert (newest.seq, newest.body) == (3, b"[3]")


# --- collectors that misbehave ------------------------------------------------------------


class HangingCollector(Collector):
    """A fake of a collector stuck on a dead network mount: collect blocks until released."""

    kind = "hanging"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.release = threading.Event()

    def collect(self, now: float) -> list[Sample]:
        self.release.wait()
        return [Sample("dz_test_hanging", {}, 1.0, now)]


class CountingCollector(Collector):
    kind = "counting"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.runs = 0

    def collect(self, now: float) -> list[Sample]:
        self.runs += 1
        return [Sample("dz_test_runs_total", {}, float(self.runs), now)]


def test_a_hanging_collector_does_not_delay_the_others(tmp_path, caplog):
    config = parse_agent_config(
        {
            "asset": "srv-a1",
            "bridge": {"url": "http://127.0.0.1:9", "token_file": "t"},
            "spool": {"path": "spool.db"},
            "jitter": 0,
            "collectors": [
                {"name": "hang", "interval": "0.2s", "timeout": "0.3s"},
                {"name": "steady", "interval": "0.2s"},
            ],
        },
        "agent.yaml",
        tmp_path,
    )
    (tmp_path / "t").write_text("token")
    hang, steady = HangingCollector("hang"), CountingCollector("steady")
    agent = Agent(config, collectors=[hang, steady])
    agent.open()
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger="agents")
    for runner in agent.runners:
        runner.start(stop)
    time.sleep(2.0)
    assert steady.runs >= 8  # every 0.2 s, whatever the hanging one does
    hang_runner = agent.runners[0]
    assert hang_runner.up is False
    failing = [r for r in caplog.records if "collector hang is failing" in r.getMessage()]
    assert len(failing) == 1  # logged once when it started failing, not on every run
    exposition = httpx.Response(200, content=_exposition(agent)).text
    assert 'dyzur_collector_up{collector="hang"} 0.0' in exposition
    assert 'dyzur_collector_up{collector="steady"} 1.0' in exposition
    hang.release.set()
    wait_for(lambda: hang_runner.up, timeout=5, what="the hanging collector to recover")
    assert any("collector hang recovered" in r.getMessage() for r in caplog.records)
    stop.set()
    for runner in agent.runners:
        runner.join(2)
    # Its failure reached the spool too, as dyzur_collector_up 0 for the bridge's rules.
    bodies = []
    while (batch := agent.spool.oldest()) is not None:
        bodies += json.loads(batch.body)
        agent.spool.remove(batch)
    health = [
        (s["labels"]["collector"], s["value"])
        for s in bodies
        if s["metric"] == "dyzur_collector_up"
    ]
    assert ("hang", 0.0) in health and ("steady", 1.0) in health
    agent.close()


class FlakyCollector(Collector):
    """Raises on its first runs, as a collector does while a device is being restarted."""

    kind = "flaky"

    def __init__(self, name: str, failures: int) -> None:
        super().__init__(name)
        self.failures = failures

    def collect(self, now: float) -> list[Sample]:
        if self.failures:
            self.failures -= 1
            raise OSError("device busy")
        return [Sample("dz_test_ok", {}, 1.0, now)]


def test_a_raising_collector_is_logged_once_each_way_and_reported_down(tmp_path, caplog):
    config = parse_agent_config(
        {
            "asset": "srv-a1",
            "bridge": {"url": "http://127.0.0.1:9"},
            "spool": {"path": "spool.db"},
            "collectors": [{"name": "flaky", "interval": "1s"}],
        },
        "agent.yaml",
        tmp_path,
    )
    agent = Agent(config, collectors=[FlakyCollector("flaky", failures=3)])
    agent.spool = Spool(tmp_path / "spool.db", 10_000)
    [runner] = agent.runners
    caplog.set_level(logging.INFO, logger="agents")
    assert [runner.run_once() for _ in range(4)] == [False, False, False, True]
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "collector flaky is failing: OSError: device busy",
        "collector flaky recovered",
    ]
    spooled = []
    while (batch := agent.spool.oldest()) is not None:
        spooled.append([(s["metric"], s["value"]) for s in json.loads(batch.body)][:2])
        agent.spool.remove(batch)
    assert [b[0] for b in spooled] == [("dyzur_collector_up", 0.0)] * 3 + [("dz_test_ok", 1.0)]


def test_a_full_spool_is_reported_to_the_bridge_when_it_returns(tmp_path, bridge_config):
    port = free_port()
    config = agent_yaml(
        tmp_path,
        port,
        metrics_port := free_port(),
        spool={"path": "spool/spool.db", "max_samples": 1000},
        collectors=[{"name": "host", "interval": "0.1s"}],
    )
    agent = RunningAgent(config, metrics_port)  # the bridge is away
    bridge = None
    try:
        wait_for(lambda: (agent.metric("dyzur_agent_samples_dropped_total") or 0) > 0, what="loss")
        bridge = RunningBridge(bridge_config, port)
        # Once the spool has drained the bridge knows exactly what the agent lost.
        wait_for(
            lambda: (
                agent.metric("dyzur_agent_spool_batches") == 0
                and streams(bridge)[0]["dropped_reported"]
                == agent.metric("dyzur_agent_samples_dropped_total")
            ),
            what="the loss to be reported",
        )
    finally:
        agent.stop(signal.SIGKILL)
        if bridge is not None:
            bridge.stop()


def _exposition(agent: Agent) -> bytes:
    from prometheus_client import generate_latest

    return generate_latest(agent.metrics.registry)


# --- the agent process against the real bridge ---------------------------------------------


@pytest.fixture
def bridge_config(tmp_path: Path) -> Path:
    path = tmp_path / "dyzur.yaml"
    path.write_text(yaml.safe_dump(config_data("sqlite:///var/dyzur.db")))
    return path


def streams(bridge: RunningBridge) -> list[dict]:
    return httpx.get(
        f"{bridge.url}/api/v1/agents", headers=auth("engineer"), verify=bridge.verify, timeout=5
    ).json()


def last_spooled_seq(spool: Path) -> int:
    with sqlite3.connect(spool) as conn:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'batches'").fetchone()
        waiting = conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
    assert waiting == 0, f"{waiting} batches still spooled"
    return row[0]


def test_bridge_away_and_back_every_batch_arrives_once_in_order(tmp_path, bridge_config):
    port = free_port()
    bridge = RunningBridge(bridge_config, port)
    agent = RunningAgent(agent_yaml(tmp_path, port, metrics_port := free_port()), metrics_port)
    try:
        wait_for(lambda: streams(bridge) and streams(bridge)[0]["batches"] >= 3, what="pushes")
        bridge.stop()
        wait_for(lambda: (agent.metric("dyzur_agent_spool_batches") or 0) >= 4, what="spooling")
        bridge = RunningBridge(bridge_config, port)
        wait_for(lambda: agent.metric("dyzur_agent_spool_batches") == 0, what="the replay")
        assert agent.stop(signal.SIGTERM) == 0  # graceful: finishes and flushes
    finally:
        agent.stop(signal.SIGKILL)
        bridge.stop()
    bridge = RunningBridge(bridge_config, port)
    try:
        [stream] = streams(bridge)
    finally:
        bridge.stop()
    last = last_spooled_seq(tmp_path / "spool/spool.db")
    # Every batch the agent ever spooled, 1..last, was taken exactly once and in order:
    # a repeat or a batch out of order would count as a duplicate and not be taken.
    assert (stream["last_seq"], stream["batches"]) == (last, last)
    assert (stream["duplicates"], stream["gaps"], stream["dropped_reported"]) == (0, 0, 0)
    assert stream["asset"] == "srv-a1"
    assert "cannot push to the bridge, spooling" in agent.output()
    assert "bridge reachable again" in agent.output()


def test_sigkill_while_spooling_loses_nothing(tmp_path, bridge_config):
    port = free_port()
    config = agent_yaml(tmp_path, port, metrics_port := free_port())
    spool = tmp_path / "spool/spool.db"
    agent = RunningAgent(config, metrics_port)  # the bridge is not there yet
    try:
        wait_for(lambda: (agent.metric("dyzur_agent_spool_batches") or 0) >= 3, what="spooling")
    finally:
        agent.stop(signal.SIGKILL)
    with sqlite3.connect(spool) as conn:
        spooled = [r[0] for r in conn.execute("SELECT seq FROM batches ORDER BY seq")]
    assert spooled[:3] == [1, 2, 3]
    bridge = RunningBridge(bridge_config, port)
    agent = RunningAgent(config, metrics_port)
    try:
        wait_for(
            lambda: streams(bridge) and streams(bridge)[0]["last_seq"] > spooled[-1],
            what="the spooled batches to arrive",
        )
        assert agent.stop(signal.SIGTERM) == 0
        [stream] = streams(bridge)
    finally:
        agent.stop(signal.SIGKILL)
        bridge.stop()
    last = last_spooled_seq(spool)
    assert (stream["last_seq"], stream["batches"], stream["duplicates"]) == (last, last, 0)


def test_the_bridge_evaluates_the_agents_samples_and_notices_its_silence(tmp_path):
    data = config_data("sqlite:///var/dyzur.db")
    data["rule_files"].append(str(DATA / "fast_silence.yaml"))
    data["tick_interval"] = "0.5s"
    bridge_config = tmp_path / "dyzur.yaml"
    bridge_config.write_text(yaml.safe_dump(data))
    port = free_port()
    bridge = RunningBridge(bridge_config, port)
    agent = RunningAgent(agent_yaml(tmp_path, port, metrics_port := free_port()), metrics_port)

    def silence_tickets() -> list[dict]:
        tickets = httpx.get(
            f"{bridge.url}/api/v1/tickets?asset=srv-a1", headers=auth("engineer"), timeout=5
        ).json()
        return [t for t in tickets if t["rule"] == "agent_silent_fast" and t["status"] == "open"]

    try:
        wait_for(lambda: streams(bridge) and streams(bridge)[0]["batches"] >= 2, what="pushes")
        metrics = httpx.get(f"{bridge.url}/metrics", headers=auth("engineer")).text
        evaluations = next(
            float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("dyzur_rule_evaluations_total ")
        )
        assert evaluations > 0  # the host pack's rules saw the agent's samples
        time.sleep(4)
        assert silence_tickets() == []  # reporting every 0.5 s: not silent
        agent.stop(signal.SIGKILL)  # the host dies
        [ticket] = wait_for(silence_tickets, timeout=20, what="the silence ticket")
        assert ticket["category"] == "awaria" and ticket["title"] == "Agent na srv-a1 milczy"
    finally:
        agent.stop(signal.SIGKILL)
        bridge.stop()


def test_the_agent_pushes_over_verified_tls_only(tmp_path):
    bridge_config = tls_bridge_config(tmp_path)
    port = free_port()
    bridge = RunningBridge(bridge_config, port, ca=tmp_path / "ca.pem")

    def once(**bridge_settings) -> subprocess.CompletedProcess:
        config = agent_yaml(tmp_path, port, 9)
        settings = yaml.safe_load(config.read_text())
        settings["bridge"].update(url=f"https://127.0.0.1:{port}", **bridge_settings)
        config.write_text(yaml.safe_dump(settings))
        return subprocess.run(
            [sys.executable, "-m", "agents", "--config", str(config), "--once"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )

    try:
        # Without our CA the system trust store does not know the bridge: refused, kept.
        r = once()
        assert r.returncode == 1
        assert "CERTIFICATE_VERIFY_FAILED" in r.stderr
        assert streams(bridge) == []
        r = once(ca_file="ca.pem")
        assert r.returncode == 0, r.stderr
        [stream] = streams(bridge)
        assert (stream["batches"], stream["last_seq"]) == (2, 2)  # the kept batch, then the new
    finally:
        bridge.stop()
    assert TOKENS["agent-a"] not in r.stderr


def test_agent_once_print_from_an_agent_only_install(tmp_path):
    """`pip install dyzur[agent]` in a fresh venv: no FastAPI, uvicorn, Redis or pydantic,
    and `dyzur agent --once --print` prints this host's samples."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin/pip"), "install", "--quiet", f"{ROOT}[agent]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    installed = subprocess.run(
        [str(venv / "bin/pip"), "list", "--format=json"], capture_output=True, text=True
    ).stdout
    names = {p["name"].lower().replace("_", "-") for p in json.loads(installed)}
    assert {"psutil", "prometheus-client", "dyzur"} <= names
    heavy = {"fastapi", "uvicorn", "starlette", "redis", "pydantic", "typer", "jinja2", "httpx"}
    assert not names & heavy
    config = agent_yaml(tmp_path, 9, 9)
    r = subprocess.run(
        [str(venv / "bin/dyzur"), "agent", "--config", str(config), "--once", "--print"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert 'dyzur_memory_used_ratio{asset="srv-a1"}' in r.stdout
    assert 'dyzur_collector_up{asset="srv-a1",collector="host"} 1' in r.stdout
    assert not (tmp_path / "spool").exists()  # --print neither spools nor pushes
    r = subprocess.run([str(venv / "bin/dyzur"), "run"], capture_output=True, text=True)
    assert r.returncode != 0 and "pip install 'dyzur[bridge]'" in r.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_agents_metrics_answer_scrapes_at_once_beside_silent_clients(
    tmp_path, bridge_config, host
):
    """/metrics is answered from the agent's main thread (which also waits for SIGTERM): a
    client that connects and says nothing must hold neither the scrapes nor the stop."""
    port = free_port()
    bridge = RunningBridge(bridge_config, port)
    metrics_port = free_port()
    config = agent_yaml(
        tmp_path, port, metrics_port, metrics={"listen": f"[{host}]:{metrics_port}"}
    )
    agent = RunningAgent(config, metrics_port)
    agent.metrics_url = f"http://{'[::1]' if ':' in host else host}:{metrics_port}/metrics"
    silent: list[socket.socket] = []
    try:
        wait_for(lambda: (agent.metric("dyzur_agent_samples_pushed_total") or 0) > 0, what="a push")
        silent = [socket.create_connection((host, metrics_port)) for _ in range(5)]
        answers: list[str] = []

        def scrape() -> None:
            answers.append(httpx.get(agent.metrics_url, timeout=10).text)

        scrapers = [threading.Thread(target=scrape) for _ in range(20)]
        for t in scrapers:
            t.start()
        for t in scrapers:
            t.join(30)
        assert len(answers) == 20
        assert all("dyzur_agent_samples_collected_total" in a for a in answers)
        assert agent.stop(signal.SIGTERM, timeout=30) == 0, agent.output()
    finally:
        for s in silent:
            s.close()
        agent.stop(signal.SIGKILL)
        bridge.stop()
    assert "Traceback" not in agent.output()
