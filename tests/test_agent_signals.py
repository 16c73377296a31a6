"""Stopping the agent with repeated signals: it always exits cleanly with its spool flushed.

GNU `timeout` (and a service manager stopping a process group) sends SIGTERM to the agent and
then to its group, so the agent gets two signals in quick succession. A second signal handled
while the first handler holds a lock (Event.set) used to deadlock the agent for good.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest

from tests.conftest import free_port
from tests.processes import Process, RunningAgent, RunningBridge, wait_for
from tests.test_agent import agent_yaml, bridge_config, last_spooled_seq, streams

__all__ = ["bridge_config"]  # the fixture, imported for the tests below

ROUNDS = 6  # agent processes per pair of signals, one after the other on the same spool
EXIT_WAIT = 60.0  # generous: a clean stop takes about a second; a deadlocked agent never ends


def spin(seconds: float) -> None:
    """Wait far shorter than time.sleep can: the second signal must land while the agent
    is still handling the first."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def double_signals_until_exit(agent: RunningAgent, first: int, second: int) -> int | None:
    """Send ``first`` then ``second`` a few microseconds apart, again and again until the agent
    exits; its exit status, or None when it did not exit (deadlocked)."""
    proc = agent.proc
    rng = random.Random(proc.pid)
    deadline = time.monotonic() + EXIT_WAIT
    while proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(first)  # send_signal does nothing once the process has been reaped
        spin(rng.uniform(0, 150e-6))
        proc.send_signal(second)
        time.sleep(0.003)
    try:
        return proc.wait(timeout=1)
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.parametrize(
    ("first", "second"),
    [(signal.SIGTERM, signal.SIGTERM), (signal.SIGINT, signal.SIGTERM)],
    ids=["SIGTERM+SIGTERM", "SIGINT+SIGTERM"],
)
def test_repeated_double_signals_stop_the_agent_cleanly(tmp_path, bridge_config, first, second):
    port = free_port()
    bridge = RunningBridge(bridge_config, port)
    config = agent_yaml(tmp_path, port, metrics_port := free_port())
    spool = tmp_path / "spool/spool.db"
    try:
        for round_ in range(ROUNDS):
            agent = RunningAgent(config, metrics_port)
            try:
                # Running, its handlers installed, pushing: then the signals come.
                wait_for(
                    lambda a=agent: (a.metric("dyzur_agent_samples_pushed_total") or 0) > 0,
                    what=f"round {round_}: the agent to push",
                )
                status = double_signals_until_exit(agent, first, second)
            finally:
                agent.stop(signal.SIGKILL)
            assert status is not None, f"round {round_}: the agent hung:\n{agent.output()}"
            assert status == 0, f"round {round_}: exit status {status}:\n{agent.output()}"
            # Flushed: nothing waits in the spool, and the spool opens again next round.
            last = last_spooled_seq(spool)
        [stream] = streams(bridge)
    finally:
        bridge.stop()
    # Every batch of every round arrived exactly once.
    assert (stream["last_seq"], stream["batches"], stream["duplicates"]) == (last, last, 0)
    assert "Traceback" not in agent.output()


HANGING_AGENT = """
import sys, threading
from agents.agent import Agent
from agents.config import load_agent_config
from collectors import Collector
from collectors.registry import build_collectors

class Hanging(Collector):
    kind = "hanging"

    def collect(self, now):
        threading.Event().wait()  # a read on a dead network mount: it never returns
        return []

config = load_agent_config(sys.argv[1])
specs = [(s.name, s.kind, s.options) for s in config.collectors if s.name != "hang"]
sys.exit(Agent(config, [*build_collectors(specs), Hanging("hang")]).run())
"""


def test_a_collector_hanging_for_good_does_not_keep_the_agent_from_exiting(tmp_path, bridge_config):
    """Its run is abandoned after the timeout; at exit, nothing may wait for it (the thread
    pool the runs used to go through was joined at interpreter exit: the agent never ended)."""
    port = free_port()
    bridge = RunningBridge(bridge_config, port)
    config = agent_yaml(
        tmp_path,
        port,
        free_port(),
        collectors=[
            {"name": "host", "interval": "0.5s"},
            {"name": "hang", "kind": "host", "interval": "0.5s", "timeout": "0.5s"},
        ],
    )
    agent = Process(["-c", HANGING_AGENT, str(config)], tmp_path / "agent.log")
    try:
        wait_for(lambda: streams(bridge) and streams(bridge)[0]["batches"] >= 3, what="pushes")
        agent.proc.send_signal(signal.SIGTERM)
        try:
            status = agent.proc.wait(EXIT_WAIT)
        except subprocess.TimeoutExpired:
            status = None
        assert status == 0, f"exit status {status} (None: it hung):\n{agent.output()}"
        [stream] = streams(bridge)
    finally:
        agent.stop(signal.SIGKILL)
        bridge.stop()
    assert "collector hang is failing: timed out after 0.5s" in agent.output()
    last = last_spooled_seq(tmp_path / "spool/spool.db")  # flushed before exiting
    assert (stream["last_seq"], stream["batches"], stream["duplicates"]) == (last, last, 0)
