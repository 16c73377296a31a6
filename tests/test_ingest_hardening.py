"""What an agent sends is input too: streams bound to their token, audit events limited to
what collectors record, NaN timestamps and control characters refused per sample."""

from __future__ import annotations

import pytest

from bridge.auth import hash_token
from bridge.config import parse_config
from tests.conftest import START, TOKENS, auth, config_data

NOW = START.timestamp()


def sample(asset: str = "srv-a1", value: float = 0.95, **labels) -> dict:
    return {
        "metric": "dz_test_disk_used_ratio",
        "labels": {"asset": asset, "mountpoint": "/var", **labels},
        "value": value,
    }


def push(api, body: dict, who: str = "agent"):
    return api.post("/api/v1/samples", json=body, headers=auth(who))


def numbered(agent: str, seq: int, *samples: dict, events=()) -> dict:
    return {"agent": {"id": agent, "seq": seq}, "samples": list(samples), "events": list(events)}


@pytest.fixture
def loaded(tmp_path):
    """The shared config plus a second agent token of szpital-a."""
    data = config_data()
    TOKENS.setdefault("agent-a2", "t-agent-a2-0123456789")
    data["tokens"].append(
        {
            "name": "agent-a2",
            "sha256": hash_token(TOKENS["agent-a2"]),
            "role": "agent",
            "client": "szpital-a",
        }
    )
    return parse_config(data, "test.yaml", tmp_path)


def test_a_nan_timestamp_is_rejected_per_sample(api, bridge):
    body = {"samples": [{**sample(), "timestamp": float("nan")}, sample(mountpoint="/data")]}
    r = api.post(
        "/api/v1/samples",
        content=_json_with_nan(body),
        headers={**auth("agent"), "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    [rejected] = r.json()["rejected"]
    assert rejected["index"] == 0 and "timestamp" in rejected["detail"]
    [ticket] = api.get("/api/v1/tickets", headers=auth("engineer")).json()
    assert ticket["labels"]["mountpoint"] == "/data"


def _json_with_nan(body: dict) -> bytes:
    import json

    return json.dumps(body).encode()  # json writes NaN as the bare token NaN


@pytest.mark.parametrize(
    "value",
    [
        "srv\x00",  # NUL
        "\x1b[2J/var",  # ESC: clears an engineer's terminal
        "/var\x85",  # C1 next line
        "/\u202egnp.exe",  # right-to-left override
        "/var\u2066x\u2069",  # isolates
    ],
)
def test_control_and_bidi_characters_in_labels_are_refused_per_sample(api, value):
    r = push(api, {"samples": [sample(mountpoint=value), sample(mountpoint="/ok")]})
    assert r.status_code == 200
    [rejected] = r.json()["rejected"]
    assert rejected == {
        "index": 0,
        "reason": "control_character",
        "detail": "label 'mountpoint' holds a control or bidi character",
    }
    titles = [t["title"] for t in api.get("/api/v1/tickets", headers=auth("engineer")).json()]
    assert len(titles) == 1 and "/ok" in titles[0]


def test_polish_letters_and_spaces_in_labels_are_fine(api):
    r = push(api, {"samples": [sample(mountpoint="/dane/Łódź zażółć\u00a0gęślą")]})
    assert r.json()["accepted"] == 1 and r.json()["rejected"] == []


def test_a_stream_belongs_to_the_token_that_opened_it(api, bridge):
    assert push(api, numbered("ag-7", 1, sample()), "agent-a").status_code == 200
    # Another token (even of the same hospital) may not write into it, let alone poison it.
    r = push(api, numbered("ag-7", 10**15, sample(value=0.1)), "agent-a2")
    assert r.status_code == 403
    assert "ag-7" in r.text and "another token" in r.text
    r = push(api, numbered("ag-7", 2, sample(value=0.96)), "agent-a")
    assert r.status_code == 200 and r.json()["duplicate"] is False
    [stream] = api.get("/api/v1/agents", headers=auth("engineer")).json()
    assert (stream["owner"], stream["last_seq"], stream["batches"]) == ("agent-a", 2, 2)
    [ticket] = api.get("/api/v1/tickets", headers=auth("engineer")).json()
    assert ticket["status"] == "open"  # the forged 0.1 did not resolve it
    bridge.refusals.flush(everything=True)
    [refused] = [e for e in bridge.store.audit_events() if e.action == "agent.stream_refused"]
    assert refused.actor == "agent:agent-a2" and refused.detail["count"] == 1


def test_a_seq_jump_beyond_the_gap_is_an_anomaly_not_a_poisoned_stream(api, bridge):
    assert push(api, numbered("ag-8", 1, sample()), "agent-a").status_code == 200
    r = push(api, numbered("ag-8", 9_000_000_000, sample(mountpoint="/x")), "agent-a")
    assert r.status_code == 200
    assert r.json()["anomaly"] is True and r.json()["accepted"] == 1  # the samples are taken
    r = push(api, numbered("ag-8", 2, sample(mountpoint="/y")), "agent-a")
    assert r.json()["duplicate"] is False  # the agent's next real batch is still taken
    [stream] = api.get("/api/v1/agents", headers=auth("engineer")).json()
    assert (stream["last_seq"], stream["anomalies"], stream["jump_seq"]) == (2, 1, 9_000_000_000)
    [event] = [e for e in bridge.store.audit_events() if e.action == "agent.seq_anomaly"]
    assert event.detail["seq"] == 9_000_000_000 and event.client == "szpital-a"
    metrics = api.get("/metrics", headers=auth("engineer")).text
    assert 'dyzur_agent_batches_total{outcome="anomaly"} 1.0' in metrics


def ssh_event(**overrides) -> dict:
    event = {
        "action": "ssh.command",
        "outcome": "success",
        "asset": "srv-a1",
        "at": NOW - 60,
        "detail": {"host": "10.0.0.5", "user": "dyzur", "command": "uptime", "exit_code": 0},
    }
    return {**event, **overrides}


def test_agents_record_only_what_collectors_do(api, bridge):
    events = [
        ssh_event(),
        ssh_event(action="update.gate_approved"),
        ssh_event(action="ticket.resolved"),
        ssh_event(asset="srv-b1"),  # another hospital's asset
        ssh_event(asset="srv-nope"),
        ssh_event(at=0),  # 1970: long before any spool could have kept it
        ssh_event(at=NOW + 3600),  # an hour ahead, beyond max_clock_skew
        ssh_event(action="ssh.host_key_unknown", outcome="failure", at=NOW - 6 * 86400),
    ]
    r = push(api, numbered("ag-9", 1, sample(), events=events), "agent-a")
    assert r.status_code == 200
    assert [(e["index"], e["reason"]) for e in r.json()["rejected_events"]] == [
        (1, "unknown_action"),
        (2, "unknown_action"),
        (3, "forbidden_asset"),
        (4, "unknown_asset"),
        (5, "bad_time"),
        (6, "bad_time"),
    ]
    assert "update.gate_approved" in r.json()["rejected_events"][0]["detail"]
    stored = [e for e in bridge.store.audit_events() if e.actor == "agent:agent-a"]
    assert [(e.action, e.asset) for e in stored] == [
        ("ssh.command", "srv-a1"),
        ("ssh.host_key_unknown", "srv-a1"),
    ]
    assert r.json()["accepted"] == 1  # the samples of the batch are not spoilt


def test_a_body_that_may_hold_a_forbidden_character_is_always_noticed():
    """The API skips the label check of a batch only when its body cannot hold any control or
    bidi character: every one of them, however the agent's JSON encoder writes it, is seen."""
    import json

    from bridge.sources.samples import _FORBIDDEN_CHARACTER, may_hold_forbidden_characters

    forbidden = [chr(c) for c in range(0x2100) if _FORBIDDEN_CHARACTER.match(chr(c))]
    assert len(forbidden) == 32 + 1 + 32 + 1 + 2 + 5 + 4  # C0, DEL, C1, ALM, LRM/RLM, ...
    for char in forbidden:
        for ascii_only in (True, False):
            body = json.dumps(
                {"samples": [sample(mountpoint=f"/v{char}ar")]}, ensure_ascii=ascii_only
            )
            assert may_hold_forbidden_characters(body.encode()), (hex(ord(char)), ascii_only)
    plain = json.dumps({"samples": [sample(mountpoint="/var/lib/postgresql")] * 3}).encode()
    assert not may_hold_forbidden_characters(plain)
