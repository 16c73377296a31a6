"""Two real bridge processes on one PostgreSQL and one Redis (README: Running two bridges):
either answers any agent or Alertmanager, each hospital's series are evaluated by one of them,
and either can die."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict

import httpx
import pytest

from tests.cluster import Cluster, RedisServer, at_once
from tests.conftest import auth, free_port
from tests.processes import RunningAgent, wait_for
from tests.rsyslog import Rsyslog
from tests.tcp_proxy import TcpProxy
from tests.test_agent import agent_yaml, last_spooled_seq
from tests.test_alertmanager import am_alert, notification
from tests.test_siem import first_occurrences, ids
from tests.test_sink_webhook import Receiver


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.close()


def test_the_same_alertmanager_firing_sent_to_both_bridges_at_once_opens_one_ticket(cluster):
    """100 alerts, each notification sent to both bridges at the same moment: 100 tickets,
    decided by the database (one open ticket per alert), not by luck."""
    first, second = cluster.start(2)
    for n in range(100):
        body = notification(
            am_alert(fingerprint=f"{n:016x}", instance=f"srv-{'a1' if n % 2 else 'b1'}:9100")
        )
        answers = at_once(
            [
                lambda b=b, body=body: cluster.http.post(
                    f"{b.url}/api/v1/alertmanager", json=body, headers=auth("agent")
                )
                for b in (first, second)
            ]
        )
        assert [a.status_code for a in answers if a is not None] == [200, 200]
    tickets = cluster.tickets()
    per_alert = Counter(t.fingerprint for t in tickets)
    assert len(tickets) == 100 and set(per_alert.values()) == {1}
    assert {t.client for t in tickets} == {"szpital-a", "klinika-b"}
    # Numbers from one sequence: no gap, no repeat, whichever bridge opened the ticket.
    assert sorted(int(t.number.rsplit("-", 1)[1]) for t in tickets) == list(range(1, 101))


MOUNTS = 4  # new disk alerts (tickets) per batch
BATCHES = 120  # per hospital's agent


class Agent:
    """An agent of one hospital behind DNS naming both bridges: each numbered batch goes to
    one bridge, and again (to the next) until one answers 200 — as the agent's spool does."""

    def __init__(self, cluster: Cluster, asset: str, agent_id: str) -> None:
        self.cluster, self.asset, self.agent_id = cluster, asset, agent_id
        self.acknowledged: list[int] = []
        self.refused: Counter[int | str] = Counter()

    def body(self, seq: int, samples: list[dict]) -> dict:
        return {"agent": {"id": self.agent_id, "seq": seq}, "samples": samples}

    def disks(self, seq: int) -> list[dict]:
        return [
            {
                "metric": "dz_test_disk_used_ratio",
                "labels": {"asset": self.asset, "mountpoint": f"/m{seq}-{i}"},
                "value": 0.95,
            }
            for i in range(MOUNTS)
        ]

    def send(self, seq: int, samples: list[dict], start: int = 0) -> dict:
        body = self.body(seq, samples)
        for attempt in range(start, start + 400):
            bridge = self.cluster.bridges[attempt % len(self.cluster.bridges)]
            try:
                answer = self.cluster.http.post(
                    f"{bridge.url}/api/v1/samples", json=body, headers=auth("agent")
                )
            except httpx.TransportError:
                self.refused["connection"] += 1
                continue
            if answer.status_code == 200:
                self.acknowledged.append(seq)
                return answer.json()
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"]
            self.refused[503] += 1
            time.sleep(0.2)
        raise AssertionError(f"batch {seq} of {self.agent_id} was never taken")

    def storm(self, seqs: range) -> None:
        for seq in seqs:
            result = self.send(seq, self.disks(seq), start=seq)
            # A duplicate: an earlier try was taken after all (its answer came too late).
            assert result["duplicate"] or result["accepted"] == MOUNTS, result
            assert not result["rejected"], result


def test_a_bridge_killed_during_a_storm_loses_nothing_acknowledged(cluster):
    """Agents of both hospitals push to both bridges; the bridge holding Szpital A is
    SIGKILLed half way. Every batch answered 200 becomes its tickets, none twice; the other
    bridge takes Szpital A over, and a pending alert's for: timer goes on from where the dead
    bridge left it."""
    cluster.start(2)
    cluster.wait_until_shared()
    victim = cluster.holder_of("szpital-a")
    assert victim is not None
    agents = [Agent(cluster, "srv-a1", "agent-a"), Agent(cluster, "srv-b1", "agent-b")]

    # A pending alert of Szpital A: the service is down since t0, its rule's for: is 60 s.
    t0 = time.time() - 100
    down = {"metric": "dz_test_service_up", "labels": {"asset": "srv-a1", "service": "amms"}}
    agents[0].send(1, [{**down, "value": 0.0, "timestamp": t0}])

    threads = [threading.Thread(target=a.storm, args=(range(2, BATCHES + 1),)) for a in agents]
    for t in threads:
        t.start()
    wait_for(lambda: len(agents[0].acknowledged) > BATCHES // 3, what="the storm to be under way")
    victim.stop(signal.SIGKILL)
    for t in threads:
        t.join()

    survivor = next(b for b in cluster.bridges if b is not victim)
    wait_for(lambda: cluster.holder_of("szpital-a") is survivor, timeout=60, what="the take-over")
    tickets = cluster.tickets()
    per_alert = Counter(t.fingerprint for t in tickets)
    assert set(per_alert.values()) == {1}, [fp for fp, n in per_alert.items() if n > 1]
    for agent in agents:
        first = 1 if agent is agents[0] else 2
        assert sorted(agent.acknowledged) == list(range(first, BATCHES + 1))
        disks = [t for t in tickets if t.rule == "disk_usage" and t.asset == agent.asset]
        mounts = {t.labels["mountpoint"] for t in disks}
        assert mounts == {f"/m{seq}-{i}" for seq in range(2, BATCHES + 1) for i in range(MOUNTS)}
    assert agents[0].refused  # the dead bridge's hospital waited for its new holder

    # The dead bridge's pending alert: 61 s after t0 it fires at once (its timer restored),
    # where a new timer would start pending again.
    agents[0].send(BATCHES + 1, [{**down, "value": 0.0, "timestamp": t0 + 61}])
    down_tickets = [t for t in cluster.tickets() if t.rule == "service_down"]
    assert [t.labels["service"] for t in down_tickets] == ["amms"]


def test_redis_restarted_during_ingest_loses_no_acknowledged_batch(tmp_path):
    """Redis keeps nothing on disk: its restart forgets every lease and handed-over batch.
    What an agent was answered 200 for is in PostgreSQL; the rest it sends again."""
    redis_server = RedisServer(tmp_path)
    cluster = Cluster(tmp_path, redis_url=redis_server.url)
    try:
        cluster.start(2)
        cluster.wait_until_shared()
        agents = [Agent(cluster, "srv-a1", "agent-a"), Agent(cluster, "srv-b1", "agent-b")]
        threads = [threading.Thread(target=a.storm, args=(range(1, BATCHES + 1),)) for a in agents]
        for t in threads:
            t.start()
        wait_for(lambda: len(agents[0].acknowledged) > BATCHES // 4, what="the storm")
        redis_server.kill()
        time.sleep(2)  # Redis away for a moment: hand-overs and lease renewals fail
        redis_server.start()
        for t in threads:
            t.join()
        cluster.wait_until_shared()  # the leases are taken again, with newer tokens
        tickets = cluster.tickets()
        assert set(Counter(t.fingerprint for t in tickets).values()) == {1}
        for agent in agents:
            assert sorted(agent.acknowledged) == list(range(1, BATCHES + 1))
            disks = {t.labels["mountpoint"] for t in tickets if t.asset == agent.asset}
            assert disks == {f"/m{s}-{i}" for s in range(1, BATCHES + 1) for i in range(MOUNTS)}
        assert agents[0].refused or agents[1].refused  # some waited for Redis to come back
        tokens = cluster.read(
            lambda s: [s.next_sequence(f"lease:shard:{c}") for c in ("szpital-a", "klinika-b")]
        )
        assert min(tokens) > 2  # taken again after the restart: tokens went on, not back to 1
    finally:
        cluster.close()
        redis_server.kill()


def test_postgresql_unreachable_for_30_s_answers_503_and_loses_nothing(tmp_path):
    """The bridges reach PostgreSQL through a link that goes down for 30 s: pushes are
    answered 503 with Retry-After meanwhile (a real agent keeps its batches in its spool),
    /healthz tells the load balancer, and afterwards every batch becomes its tickets and the
    agent's spool arrives whole."""
    proxy = TcpProxy(("127.0.0.1", 5432))
    cluster = Cluster(tmp_path, postgres_port=proxy.port)
    real_agent = None
    try:
        bridges = cluster.start(2)
        cluster.wait_until_shared()
        port = int(bridges[1].url.rsplit(":", 1)[1])
        real_agent = RunningAgent(agent_yaml(tmp_path, port, metrics := free_port()), metrics)
        wait_for(lambda: agent_streams(cluster), what="the real agent's first batches")
        agents = [Agent(cluster, "srv-a1", "agent-a"), Agent(cluster, "srv-b1", "agent-b")]
        for agent in agents:
            agent.storm(range(1, 11))
        proxy.cut()
        cut_at = time.monotonic()
        answer = cluster.http.post(
            f"{bridges[0].url}/api/v1/samples",
            json=agents[0].body(11, agents[0].disks(11)),
            headers=auth("agent"),
        )
        assert answer.status_code == 503 and answer.headers["Retry-After"], answer.text
        health = [cluster.http.get(f"{b.url}/healthz") for b in bridges]
        assert [h.status_code for h in health] == [503, 503]
        wait_for(
            lambda: (real_agent.metric("dyzur_agent_spool_batches") or 0) > 2,
            what="the real agent to spool",
        )
        time.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))
        proxy.restore()
        for agent in agents:  # the agents' spools send what was refused, and go on
            agent.storm(range(11, 31))
        tickets = cluster.tickets()
        assert set(Counter(t.fingerprint for t in tickets).values()) == {1}
        for agent in agents:
            disks = {t.labels["mountpoint"] for t in tickets if t.asset == agent.asset}
            assert disks == {f"/m{s}-{i}" for s in range(1, 31) for i in range(MOUNTS)}
        assert [cluster.http.get(f"{b.url}/healthz").status_code for b in bridges] == [200, 200]
        wait_for(
            lambda: real_agent.metric("dyzur_agent_spool_batches") == 0,
            timeout=60,
            what="the real agent's spool to drain",
        )
        real_agent.stop()
        (stream,) = agent_streams(cluster)
        assert stream.last_seq == last_spooled_seq(tmp_path / "spool" / "spool.db")
        assert stream.gaps == 0 and stream.dropped_reported == 0  # every batch, once
    finally:
        if real_agent is not None:
            real_agent.stop()
        cluster.close()
        proxy.close()


def agent_streams(cluster: Cluster) -> list:
    """The real agent's stream as the store counts it (the test's own agents excluded)."""
    streams = cluster.read(lambda s: s.agent_streams())
    return [a for a in streams if a.agent_id not in ("agent-a", "agent-b")]  # type: ignore[attr-defined]


SINK_CHANGES = ("ticket.", "sla.", "window.alert_released")


def test_a_bridge_paused_past_its_leases_and_resumed_sends_nothing_stale(tmp_path):
    """The bridge holding a hospital and the helpdesk webhook's deliveries is stopped
    (SIGSTOP) for longer than its leases while agents push, then resumed: the other took its
    work over; every acknowledged batch is its tickets once, the helpdesk got each change
    once, in order per ticket, and a real rsyslog (the SIEM) every audit event in order —
    nothing the paused one still had in hand."""
    receiver = Receiver()
    threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
    (tmp_path / "webhook.secret").write_bytes(b"cluster-webhook-secret\n")
    (tmp_path / "webhook.secret").chmod(0o600)
    hook = {"name": "hook", "kind": "webhook", "url": receiver.url, "secret_file": "webhook.secret"}
    rsyslog = Rsyslog(tmp_path / "rsyslog")
    rsyslog.start()
    siem = {"name": "soc", "url": f"tcp://127.0.0.1:{rsyslog.tcp_port}"}
    cluster = Cluster(tmp_path, sinks=[hook], siem=[siem])
    try:
        cluster.start(2)
        cluster.wait_until_shared()
        owner = wait_for(lambda: cluster.lease_owner("sink:hook"), what="the webhook's lease")
        victim = next(b for b in cluster.bridges if b.proc.pid == int(owner.split(":")[1]))
        agents = [Agent(cluster, "srv-a1", "agent-a"), Agent(cluster, "srv-b1", "agent-b")]
        threads = [threading.Thread(target=a.storm, args=(range(1, BATCHES + 1),)) for a in agents]
        for t in threads:
            t.start()
        wait_for(lambda: len(agents[0].acknowledged) > BATCHES // 4, what="the storm")
        victim.proc.send_signal(signal.SIGSTOP)
        time.sleep(10)  # past its 6 s leases: the other bridge takes its work over
        victim.proc.send_signal(signal.SIGCONT)
        for t in threads:
            t.join()

        tickets = cluster.tickets()
        assert set(Counter(t.fingerprint for t in tickets).values()) == {1}
        for agent in agents:
            disks = {t.labels["mountpoint"] for t in tickets if t.asset == agent.asset}
            assert disks == {f"/m{s}-{i}" for s in range(1, BATCHES + 1) for i in range(MOUNTS)}
        trail = cluster.read(lambda s: s.audit_events(0, 1_000_000, None))
        expected: dict[str, list[int]] = defaultdict(list)
        for event in trail:
            if event.action.startswith(SINK_CHANGES) and "ticket" in event.detail:
                expected[event.detail["ticket"]].append(event.id)
        total = sum(map(len, expected.values()))
        wait_for(lambda: len(receiver.taken) >= total, timeout=60, what=f"{total} changes")
        assert receiver.taken_on("/hook") == dict(expected)  # once each, in order per ticket
        assert len(receiver.taken) == total
        # The SIEM: every event, at least once, in the order of the trail.
        everything = [e.id for e in cluster.read(lambda s: s.audit_events(0, 1_000_000, None))]
        wait_for(lambda: set(ids(rsyslog)) >= set(everything), timeout=60, what="the SIEM")
        assert first_occurrences(ids(rsyslog))[: len(everything)] == everything
        assert victim.proc.poll() is None  # resumed, alive, and not in the way
    finally:
        rsyslog.stop()
        cluster.close()
        receiver.server.shutdown()
        receiver.server.server_close()


def dyzur(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=60
    )


def test_cluster_status_says_who_holds_what(cluster):
    bridges = cluster.start(2)
    cluster.wait_until_shared()
    status = dyzur("cluster", "status", "--config", str(cluster.config), "--json")
    assert status.returncode == 0, status.stderr
    found = json.loads(status.stdout)
    owners = {b.proc.pid: b for b in bridges}
    assert len(found["bridges"]) == 2
    held_by = {c: int(owner.split(":")[1]) for c, owner in found["hospitals"].items()}
    assert set(held_by) == {"szpital-a", "klinika-b"} and set(held_by.values()) == set(owners)
    assert "ticker" in found["leases"] and found["dead_letters"] == 0
    text = dyzur("cluster", "status", "--config", str(cluster.config))
    assert "HOSPITAL" in text.stdout and "szpital-a" in text.stdout and text.returncode == 0
    for bridge in bridges:  # a clean stop lets go of every hospital at once
        bridge.stop()
    status = dyzur("cluster", "status", "--config", str(cluster.config), "--json")
    assert status.returncode == 1  # hospitals held by nobody: their alerts wait
    assert json.loads(status.stdout)["hospitals"] == {"szpital-a": None, "klinika-b": None}
