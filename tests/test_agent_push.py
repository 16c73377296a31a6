"""The agent's HTTP client against a real HTTP/1.1 peer on loopback, answering as the bridge or
a proxy in front of it may: Content-Length, chunked, up to the close, after a 100 Continue,
with Connection: close, HTTP/1.0, and dropping a kept-alive connection without a word.

The agent's own client (not http.client) must read each of them and reuse a connection only
when the peer keeps it; the real bridge's answers are covered by tests/test_agent.py.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest

from agents.config import AgentConfigError, BridgeTarget
from agents.push import BridgeClient, Outcome
from agents.spool import Spool, SpooledBatch

TOKEN = "agent-token-0123456789"
TAKEN = b'{"taken":1,"rejected":[]}'


def answer(body: bytes = TAKEN, status: str = "200 OK", *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in (f"HTTP/1.1 {status}", *headers))
    return head.encode() + b"\r\n" + body


def sized(body: bytes = TAKEN, status: str = "200 OK", *headers: str) -> bytes:
    return answer(body, status, f"Content-Length: {len(body)}", *headers)


class Peer:
    """A real HTTP server on a free loopback port. Each request gets the next of ``answers``:
    (bytes to send, whether to close the connection after them)."""

    def __init__(self, answers: list[tuple[bytes, bool]]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.answers = answers
        self.requests: list[tuple[bytes, dict[str, str], bytes]] = []
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            conn, _ = self.listener.accept()
            self.connections += 1
            with conn, conn.makefile("rb") as reader:
                while self.answers:
                    line = reader.readline()
                    if not line:
                        break
                    headers = {}
                    while (header := reader.readline()) not in (b"\r\n", b""):
                        name, _, value = header.decode().partition(":")
                        headers[name.strip().lower()] = value.strip()
                    body = reader.read(int(headers["content-length"]))
                    self.requests.append((line, headers, body))
                    data, close = self.answers.pop(0)
                    conn.sendall(data)
                    if close:
                        break

    def client(self) -> BridgeClient:
        return BridgeClient(BridgeTarget(url=f"http://127.0.0.1:{self.port}", timeout=10), TOKEN)

    def close(self) -> None:
        self.thread.join(10)
        self.listener.close()


def batch(seq: int) -> SpooledBatch:
    sample = {"metric": "dz_test", "labels": {"asset": "a"}, "value": 1.0, "timestamp": 1.0}
    return SpooledBatch(seq, 1, json.dumps([sample], separators=(",", ":")).encode())


CHUNKED = (
    answer(b"", "200 OK", "Transfer-Encoding: chunked")
    + b"8\r\n" + TAKEN[:8] + b"\r\n"
    + f"{len(TAKEN) - 8:x};ext=1\r\n".encode() + TAKEN[8:] + b"\r\n"
    + b"0\r\nX-Trailer: 1\r\n\r\n"
)  # fmt: skip
HTTP10 = sized().replace(b"HTTP/1.1", b"HTTP/1.0", 1)
HTTP10_KEPT = sized(TAKEN, "200 OK", "Connection: keep-alive").replace(b"HTTP/1.1", b"HTTP/1.0", 1)

# (the answer, whether the peer closes after it), whether the client may send the next batch
# on the same connection.
FRAMINGS = {
    "length": ((sized(), False), True),
    "chunked": ((CHUNKED, False), True),
    "continue": ((answer(b"", "100 Continue") + sized(), False), True),
    "close": ((sized(TAKEN, "200 OK", "Connection: close"), True), False),
    "to-the-close": ((answer(TAKEN, "200 OK", "Connection: close"), True), False),
    "http1.0": ((HTTP10, True), False),
    "http1.0-keep-alive": ((HTTP10_KEPT, False), True),
}


@pytest.mark.parametrize(("first", "reused"), FRAMINGS.values(), ids=FRAMINGS.keys())
def test_every_framing_of_an_answer_is_read(first, reused):
    peer = Peer([first, (sized(), False)])
    client = peer.client()
    try:
        assert client.push("spool-1", batch(1), 0).outcome is Outcome.TAKEN
        assert client.push("spool-1", batch(2), 0).outcome is Outcome.TAKEN
    finally:
        client.close()
        peer.close()
    assert [json.loads(body)["agent"]["seq"] for _, _, body in peer.requests] == [1, 2]
    assert peer.connections == (1 if reused else 2)


def test_the_request_is_one_post_with_the_batch_and_its_number():
    peer = Peer([(sized(), False), (sized(), False)])
    client = peer.client()
    events = b'{"samples":[],"events":[{"action":"ssh.command"}]}'
    try:
        client.push("spool-1", batch(7), 3)
        client.push("spool-1", SpooledBatch(8, 0, events), 3)
    finally:
        client.close()
        peer.close()
    (line, headers, body), (_, _, with_events) = peer.requests
    assert line == b"POST /api/v1/samples HTTP/1.1\r\n"
    assert headers["host"] == f"127.0.0.1:{peer.port}"
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body) == {
        "agent": {"id": "spool-1", "seq": 7, "dropped": 3},
        "samples": json.loads(batch(7).body),
    }
    assert json.loads(with_events) == {
        "agent": {"id": "spool-1", "seq": 8, "dropped": 3},
        "samples": [],
        "events": [{"action": "ssh.command"}],
    }


def test_a_kept_connection_the_peer_dropped_is_not_a_failure():
    # The peer answers and closes without saying so, as uvicorn does after its keep-alive:
    # the next batch goes again at once on a fresh connection.
    peer = Peer([(sized(), True), (sized(), False)])
    client = peer.client()
    try:
        assert client.push("spool-1", batch(1), 0).outcome is Outcome.TAKEN
        assert client.push("spool-1", batch(2), 0).outcome is Outcome.TAKEN
    finally:
        client.close()
        peer.close()
    assert peer.connections == 2
    assert [json.loads(body)["agent"]["seq"] for _, _, body in peer.requests] == [1, 2]


def test_refusals_and_failures_keep_their_outcomes():
    peer = Peer(
        [
            (sized(b'{"detail":"bad"}', "422 Unprocessable Entity"), False),
            (sized(b"busy", "503 Service Unavailable", "Retry-After: 1"), False),
            (b"SSH-2.0-OpenSSH\r\n", True),  # not HTTP at all
        ]
    )
    client = peer.client()
    try:
        refused = client.push("spool-1", batch(1), 0)
        busy = client.push("spool-1", batch(2), 0)
        garbage = client.push("spool-1", batch(3), 0)
    finally:
        client.close()
        peer.close()
    assert (refused.outcome, refused.detail) == (
        Outcome.REFUSED,
        'bridge answered 422: {"detail":"bad"}',
    )
    assert (busy.outcome, busy.detail) == (Outcome.RETRY, "bridge answered 503: busy")
    assert garbage.outcome is Outcome.RETRY and "bridge unreachable" in garbage.detail


def test_a_token_that_cannot_go_into_a_header_is_refused_at_start():
    target = BridgeTarget(url="http://127.0.0.1:9")
    with pytest.raises(AgentConfigError, match="visible ASCII"):
        BridgeClient(target, "abc\r\nX-Injected: 1")
    with pytest.raises(AgentConfigError, match="visible ASCII"):
        BridgeClient(target, "zażółć")


def test_a_removal_leaves_the_next_batch_synced(tmp_path):
    """Removals are not synced (a lost one only sends a batch again, which the bridge takes
    once); the batches put after one must still be."""
    spool = Spool(tmp_path / "s.db", max_samples=1000)
    spool.put(b"[1]", 1)
    spool.remove(spool.oldest())
    full = 2
    assert spool._conn.execute("PRAGMA synchronous").fetchone()[0] == full
    assert spool.oldest() is None and spool.batches == 0
    assert spool.put(b"[2]", 1) == 2
    spool.close()
