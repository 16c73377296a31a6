"""The agent pushes after idle pauses longer than the bridge's keep-alive without false errors.

uvicorn closes a kept-alive connection after 5 s of silence (its default, which the bridge
keeps). An agent whose collector runs less often writes its next request into that closed
connection; it must send the batch again at once on a fresh connection, not report the bridge
as failing, back off and spool.
"""

from __future__ import annotations

import re
import signal

from tests.conftest import free_port
from tests.processes import RunningAgent, RunningBridge, wait_for
from tests.test_agent import agent_yaml, bridge_config, last_spooled_seq, streams

__all__ = ["bridge_config"]  # the fixture, imported for the tests below

UVICORN_KEEP_ALIVE = 5.0  # seconds; uvicorn's default, which `dyzur run` does not change
INTERVAL = UVICORN_KEEP_ALIVE + 2.0  # every push after the first follows a pause > keep-alive


def push_problems(log: str) -> list[str]:
    """ERROR and WARNING lines of the agent's pushing (not of its collectors)."""
    return [
        line
        for line in log.splitlines()
        if re.search(r" (ERROR|WARNING) agents\.(agent|push) ", line)
    ]


def test_pushes_after_pauses_longer_than_the_keep_alive_are_not_failures(tmp_path, bridge_config):
    port = free_port()
    bridge = RunningBridge(bridge_config, port)
    config = agent_yaml(
        tmp_path,
        port,
        metrics_port := free_port(),
        collectors=[{"name": "host", "interval": f"{INTERVAL:g}s", "timeout": "5s"}],
    )
    agent = RunningAgent(config, metrics_port)
    try:
        # Batch 1 opens the connection; batches 2 and 3 each come after the bridge closed it.
        wait_for(
            lambda: streams(bridge) and streams(bridge)[0]["batches"] >= 3,
            timeout=6 * INTERVAL,
            what="three pushes",
        )
        assert agent.metric("dyzur_agent_push_failures_total") == 0
        assert push_problems(agent.output()) == []
        assert agent.stop(signal.SIGTERM) == 0
        [stream] = streams(bridge)
    finally:
        agent.stop(signal.SIGKILL)
        bridge.stop()
    # Every batch arrived exactly once, none was spooled for later.
    last = last_spooled_seq(tmp_path / "spool/spool.db")
    assert (stream["last_seq"], stream["batches"], stream["duplicates"]) == (last, last, 0)
    assert push_problems(agent.output()) == []
