"""The HTTP API: every role on every endpoint, tenant isolation, and bad input."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.conftest import auth


def sample(asset="srv-a1", value=0.95, metric="dz_test_disk_used_ratio", **extra):
    return {
        "metric": metric,
        "labels": {"asset": asset, "mountpoint": "/var"},
        "value": value,
        **extra,
    }


def push(api, samples, who="agent"):
    return api.post("/api/v1/samples", json={"samples": samples}, headers=auth(who))


@pytest.fixture
def two_tickets(api):
    """One ticket for each hospital."""
    r = push(api, [sample("srv-a1"), sample("srv-b1")])
    assert r.status_code == 200
    assert r.json() == {
        "accepted": 2,
        "rejected": [],
        "rejected_events": [],
        "duplicate": False,
        "anomaly": False,
    }
    numbers = {
        t["client"]: t["number"] for t in api.get("/api/v1/tickets", headers=auth("admin")).json()
    }
    return numbers


# --- authentication and roles -------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"),
    [("agent", 200), ("admin", 200), ("engineer", 403), ("client-a", 403)],
)
def test_push_samples_roles(api, who, status):
    assert push(api, [sample()], who).status_code == status


def test_no_token_and_wrong_token_are_401(api, bridge, caplog):
    r = api.post("/api/v1/samples", json={"samples": []})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = api.get("/api/v1/tickets", headers={"Authorization": "Bearer not-a-token-XYZ"})
    assert r.status_code == 401
    assert "token refused" in caplog.text
    assert "not-a-token-XYZ" not in caplog.text  # the secret never reaches a log
    bridge.refusals.flush(everything=True)
    [refused] = [e for e in bridge.store.audit_events() if e.action == "token.refused"]
    assert (refused.actor, refused.outcome) == ("unknown", "failure")
    assert refused.detail["requests"] == ["GET /api/v1/tickets"]
    assert refused.detail["count"] == 1
    assert "not-a-token-XYZ" not in str(refused.detail)  # nor an audit event


def test_a_flood_of_refused_tokens_is_one_audit_event_per_source_and_minute(api, bridge, clock):
    wrong = {"Authorization": "Bearer dz_guessed"}

    def refused(n):
        for i in range(n):
            r = api.get(f"/api/v1/tickets?limit={1 + i % 7}", headers=wrong)
            assert r.status_code == 401
        return [e for e in bridge.store.audit_events() if e.action == "token.refused"]

    assert refused(300) == []  # counted, written when the source's minute is over
    bridge.tick()
    assert refused(0) == []
    clock.advance(61)
    bridge.tick()
    [event] = refused(0)
    assert event.detail["count"] == 300 and event.detail["requests"] == ["GET /api/v1/tickets"]
    assert len(refused(5)) == 1
    bridge.close()  # the minute that is not over yet is written at shutdown, not lost
    [_, second] = refused(0)
    assert second.detail["count"] == 5


@pytest.mark.parametrize(
    ("who", "status"),
    [("agent", 403), ("engineer", 200), ("admin", 200), ("client-a", 200)],
)
def test_list_tickets_roles(api, two_tickets, who, status):
    assert api.get("/api/v1/tickets", headers=auth(who)).status_code == status


def test_a_hospital_sees_only_its_own_tickets(api, two_tickets):
    mine = api.get("/api/v1/tickets", headers=auth("client-a")).json()
    assert [t["client"] for t in mine] == ["szpital-a"]
    theirs = two_tickets["klinika-b"]
    assert api.get(f"/api/v1/tickets/{theirs}", headers=auth("client-a")).status_code == 404
    r = api.get("/api/v1/tickets?client=klinika-b", headers=auth("client-a"))
    assert r.status_code == 403
    own = two_tickets["szpital-a"]
    r = api.get(f"/api/v1/tickets/{own}", headers=auth("client-a"))
    assert r.status_code == 200 and r.json()["timeline"][0]["kind"] == "opened"
    # Filters by asset of another hospital find nothing either.
    assert api.get("/api/v1/tickets?asset=srv-b1", headers=auth("client-a")).json() == []


@pytest.mark.parametrize(
    ("who", "status"),
    [("agent", 403), ("client-a", 403), ("client-b", 403), ("engineer", 200), ("admin", 200)],
)
def test_ack_roles(api, two_tickets, who, status):
    number = two_tickets["szpital-a"]
    r = api.post(f"/api/v1/tickets/{number}/ack", headers=auth(who))
    assert r.status_code == status
    if status == 200:
        assert r.json()["responded_at"] is not None
        assert r.json()["timeline"][-1]["kind"] == "acknowledged"


def test_ack_of_a_missing_ticket_is_404(api):
    assert (
        api.post("/api/v1/tickets/DZ-2026-999999/ack", headers=auth("engineer")).status_code == 404
    )


def test_engineer_resolves_by_hand(api, two_tickets):
    number = two_tickets["szpital-a"]
    assert (
        api.post(f"/api/v1/tickets/{number}/resolve", headers=auth("client-a")).status_code == 403
    )
    r = api.post(f"/api/v1/tickets/{number}/resolve", headers=auth("engineer"))
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    assert r.json()["timeline"][-1]["actor"] == "jan.kowalski"


def test_ticket_view_and_filters(api, two_tickets):
    number = two_tickets["szpital-a"]
    t = api.get(f"/api/v1/tickets/{number}", headers=auth("engineer")).json()
    assert t["title"] == "Zajętość dysku /var na srv-a1: 95,0 %"  # the Polish decimal comma
    assert t["opened_at"] == "2026-11-23T10:00:00+01:00"  # Europe/Warsaw with its offset
    assert t["category"] == "usterka" and t["status"] == "open"
    for query, expected in [
        ("client=klinika-b", ["klinika-b"]),
        ("status=resolved", []),
        ("category=usterka", ["klinika-b", "szpital-a"]),
        ("asset=srv-a1", ["szpital-a"]),
    ]:
        r = api.get(f"/api/v1/tickets?{query}", headers=auth("engineer"))
        assert [x["client"] for x in r.json()] == expected, query


def test_bad_query_parameters_name_the_field(api):
    r = api.get("/api/v1/tickets?status=burning", headers=auth("engineer"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.status"
    r = api.get("/api/v1/tickets?limit=100000", headers=auth("engineer"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.limit"


def follow_pages(api, url: str, who: str) -> list[list[dict]]:
    """Every page of a listing, following the Link header (rel="next") from page to page."""
    result = []
    while url:
        r = api.get(url, headers=auth(who))
        assert r.status_code == 200, r.text
        result.append(r.json())
        link = r.headers.get("link")
        url = link.split(">", 1)[0].removeprefix("<") if link else None
        if link:
            assert link.endswith('rel="next"') and "before=" in link and "offset=" not in link
    return result


@pytest.mark.parametrize(
    ("who", "query"),
    [
        ("engineer", ""),
        ("engineer", "&client=szpital-a&status=open"),
        ("client-a", ""),
        ("client-b", "&category=usterka"),
    ],
)
def test_ticket_pages_follow_the_link_header(api, bridge, who, query):
    from tests.store.test_tickets import fill_for_paging

    fill_for_paging(bridge.store, 30)  # five tickets opened at each second
    everything = api.get(f"/api/v1/tickets?limit=1000{query}", headers=auth(who)).json()
    got = follow_pages(api, f"/api/v1/tickets?limit=4&offset=2{query}", who)
    numbers = [t["number"] for page in got for t in page]
    assert numbers == [t["number"] for t in everything][2:]  # none missed, none repeated
    assert [len(page) for page in got[:-1]] == [4] * (len(got) - 1)
    mine = {"client-a": {"szpital-a"}, "client-b": {"klinika-b"}}.get(who)
    assert mine is None or {t["client"] for page in got for t in page} == mine


def test_a_cursor_never_reaches_another_hospitals_tickets(api, bridge):
    from tests.store.test_tickets import fill_for_paging

    fill_for_paging(bridge.store, 12)
    [theirs, *_] = api.get("/api/v1/tickets?client=klinika-b", headers=auth("engineer")).json()
    missing = api.get("/api/v1/tickets?before=DZ-2026-999999", headers=auth("client-a"))
    r = api.get(f"/api/v1/tickets?before={theirs['number']}", headers=auth("client-a"))
    assert (r.status_code, missing.status_code) == (422, 422)
    assert r.json()["errors"][0]["field"] == "query.before"
    # Refused exactly like a ticket that does not exist: nothing about it leaks.
    assert r.json()["errors"][0]["msg"] == f"no ticket {theirs['number']}"
    assert missing.json()["errors"][0]["msg"] == "no ticket DZ-2026-999999"
    # An engineer's cursor outside the client listed is refused too, not an empty page.
    r = api.get(
        f"/api/v1/tickets?client=szpital-a&before={theirs['number']}", headers=auth("engineer")
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.before"
    # The last page has no next link.
    r = api.get("/api/v1/tickets?limit=1000", headers=auth("client-a"))
    assert r.status_code == 200 and "link" not in r.headers


def test_metrics_need_an_engineer_token(api, two_tickets):
    assert api.get("/metrics").status_code == 401
    assert api.get("/metrics", headers=auth("client-a")).status_code == 403
    r = api.get("/metrics", headers=auth("engineer"))
    assert r.status_code == 200
    text = r.text
    assert "dyzur_samples_ingested_total 2.0" in text
    assert 'dyzur_tickets_opened_total{category="usterka"} 2.0' in text
    assert 'dyzur_alerts{state="firing"} 2.0' in text
    assert "dyzur_rule_evaluations_total 2.0" in text  # two samples, one rule on their metric
    assert "dyzur_ingest_batch_seconds_count 1.0" in text


def test_healthz_answers_without_a_token(api):
    r = api.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_healthz_is_503_when_the_store_is_gone(api, bridge):
    bridge.store.close()
    for suffix in ("", "-wal", "-shm"):
        bridge.store.path.with_name(bridge.store.path.name + suffix).unlink(missing_ok=True)
    r = api.get("/healthz")
    assert r.status_code == 503
    assert r.json() == {"detail": "store unavailable", "errors": [], "conflicts_with": None}


def test_openapi_docs(api):
    assert api.get("/docs").status_code == 200
    spec = api.get("/openapi.json").json()
    assert "/api/v1/samples" in spec["paths"] and "/api/v1/tickets/{number}/ack" in spec["paths"]


# --- bad input ----------------------------------------------------------------------------


def test_oversize_body_is_413_and_nothing_breaks(api, bridge):
    big = {"samples": [sample()] * 200_000}
    r = api.post("/api/v1/samples", json=big, headers=auth("agent"))
    assert r.status_code == 413
    assert "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"samples": ['
        for _ in range(100_000):
            yield json.dumps(sample()).encode() + b","
        yield b"]}"

    r = api.post(
        "/api/v1/samples",
        content=chunks(),
        headers={**auth("agent"), "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert push(api, [sample()]).status_code == 200


def test_malformed_json_is_400(api):
    r = api.post(
        "/api/v1/samples",
        content=b'{"samples": [',
        headers={**auth("agent"), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "malformed JSON" in r.json()["detail"]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"value": "0.5"}, "samples.1.value"),
        ({"value": True}, "samples.1.value"),
        ({"metric": "no spaces allowed"}, "samples.1.metric"),
        ({"labels": {"asset": 5}}, "samples.1.labels.asset"),
        ({"colour": "red"}, "samples.1.colour"),
        ({"timestamp": "yesterday"}, "samples.1.timestamp"),
    ],
)
def test_schema_errors_are_422_naming_the_field(api, bad, field):
    r = push(api, [sample("srv-a1", 0.5), {**sample("srv-a1", 0.95), **bad}])
    assert r.status_code == 422
    assert field in [e["field"] for e in r.json()["errors"]]
    assert field in r.json()["detail"]  # the person reading it is told too
    # The whole batch is refused, so nothing of it was half-applied.
    assert api.get("/api/v1/tickets", headers=auth("admin")).json() == []


def test_bad_samples_are_rejected_one_by_one(api, clock):
    body = (
        '{"samples": ['
        '{"metric": "dz_test_disk_used_ratio", "labels": {"asset": "srv-a1", "mountpoint": "/"}, "value": NaN},'
        '{"metric": "dz_test_disk_used_ratio", "labels": {"asset": "srv-a1", "mountpoint": "/"}, "value": Infinity},'
        '{"metric": "dz_test_disk_used_ratio", "labels": {"asset": "nope", "mountpoint": "/"}, "value": 0.99},'
        '{"metric": "dz_test_disk_used_ratio", "labels": {"mountpoint": "/"}, "value": 0.99},'
        f'{{"metric": "dz_test_disk_used_ratio", "labels": {{"asset": "srv-a1", "mountpoint": "/"}}, "value": 0.99, "timestamp": {clock.time() + 3600}}},'
        '{"metric": "dz_test_disk_used_ratio", "labels": {"asset": "srv-a1", "mountpoint": "/var"}, "value": 0.95}'
        "]}"
    )
    r = api.post(
        "/api/v1/samples",
        content=body,
        headers={**auth("agent"), "Content-Type": "application/json"},
    )
    assert r.status_code == 200
    result = r.json()
    assert result["accepted"] == 1
    assert [(x["index"], x["reason"]) for x in result["rejected"]] == [
        (0, "non_finite"),
        (1, "non_finite"),
        (2, "unknown_asset"),
        (3, "missing_asset"),
        (4, "future_timestamp"),
    ]
    [ticket] = api.get("/api/v1/tickets", headers=auth("admin")).json()
    assert ticket["labels"]["mountpoint"] == "/var"
    metrics = api.get("/metrics", headers=auth("admin")).text
    assert 'dyzur_samples_rejected_total{reason="non_finite"} 2.0' in metrics


def test_an_agent_scoped_to_one_hospital_cannot_report_for_another(api):
    r = push(api, [sample("srv-a1"), sample("srv-b1")], who="agent-a")
    assert r.status_code == 200
    assert r.json()["accepted"] == 1
    assert r.json()["rejected"][0]["reason"] == "forbidden_asset"


# --- numbered agent batches ----------------------------------------------------------------


def numbered(seq: int, value: float, dropped: int = 0) -> dict:
    return {
        "agent": {"id": "agent-7f3a", "seq": seq, "dropped": dropped},
        "samples": [sample("srv-a1", value)],
    }


def test_a_retried_batch_is_taken_once(api):
    def post(body):
        return api.post("/api/v1/samples", json=body, headers=auth("agent")).json()

    assert post(numbered(1, 0.95))["accepted"] == 1
    # The answer got lost and the agent sends batch 1 again: acknowledged, not evaluated.
    assert post(numbered(1, 0.95)) == {
        "accepted": 0,
        "rejected": [],
        "rejected_events": [],
        "duplicate": True,
        "anomaly": False,
    }
    assert post(numbered(4, 0.96, dropped=200))["duplicate"] is False
    assert post(numbered(3, 0.10))["duplicate"] is True  # older than the last one taken
    [ticket] = api.get("/api/v1/tickets", headers=auth("engineer")).json()
    assert ticket["status"] == "open"  # the stale 0.10 did not resolve it
    [stream] = api.get("/api/v1/agents", headers=auth("engineer")).json()
    assert stream["agent_id"] == "agent-7f3a" and stream["asset"] == "srv-a1"
    assert (stream["last_seq"], stream["batches"], stream["samples"]) == (4, 2, 2)
    assert (stream["duplicates"], stream["gaps"], stream["dropped_reported"]) == (2, 2, 200)
    metrics = api.get("/metrics", headers=auth("engineer")).text
    assert 'dyzur_agent_batches_total{outcome="duplicate"} 2.0' in metrics


@pytest.mark.parametrize(
    ("who", "status"), [("agent", 403), ("client-a", 403), ("engineer", 200), ("admin", 200)]
)
def test_agents_view_roles(api, who, status):
    assert api.get("/api/v1/agents", headers=auth(who)).status_code == status


@pytest.mark.parametrize(
    ("agent", "field"),
    [
        ({"id": "a b", "seq": 1}, "agent.id"),
        ({"id": "a", "seq": 0}, "agent.seq"),
        ({"id": "a", "seq": "1"}, "agent.seq"),
        ({"id": "a", "seq": 1, "dropped": -1}, "agent.dropped"),
    ],
)
def test_bad_batch_numbers_are_422(api, agent, field):
    r = api.post("/api/v1/samples", json={"agent": agent, "samples": []}, headers=auth("agent"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == field


def test_a_busy_store_answers_503_and_the_retry_is_taken(loaded, tmp_path, clock):
    from fastapi.testclient import TestClient

    from bridge.api import create_app
    from bridge.service import Bridge
    from bridge.store.sqlite import SQLiteStore

    path = tmp_path / "busy.db"
    store = SQLiteStore(path, busy_timeout=0.05)
    store.migrate()
    bridge = Bridge(loaded, store=store, clock=clock)
    with TestClient(create_app(bridge, run_ticker=False)) as client:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        r = client.post("/api/v1/samples", json=numbered(1, 0.95), headers=auth("agent"))
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        blocker.execute("ROLLBACK")
        r = client.post("/api/v1/samples", json=numbered(1, 0.95), headers=auth("agent"))
        assert r.status_code == 200 and r.json()["accepted"] == 1
    bridge.close()


def test_building_a_bridge_touches_nothing_and_serving_it_starts_it(loaded, store, clock):
    """Another bridge process on the same store: built, it has read and written nothing;
    serving its API starts it, with the alert of the open ticket back in its engine and the
    configuration it loaded recorded (config.loaded, once per start)."""
    from fastapi.testclient import TestClient

    from bridge.api import create_app
    from bridge.service import Bridge
    from rules.model import AlertState

    first = Bridge(loaded, store, clock)
    with TestClient(create_app(first, run_ticker=False)) as client:
        assert push(client, [sample("srv-a1")]).json()["accepted"] == 1
    written = store.audit_events()
    second = Bridge(loaded, store, clock)
    assert store.audit_events() == written
    assert second.ingestor.alert_counts().get(AlertState.FIRING, 0) == 0
    with TestClient(create_app(second, run_ticker=False)):
        assert second.ingestor.alert_counts()[AlertState.FIRING] == 1
        started = [e for e in store.audit_events() if e.action == "config.loaded"]
        assert len(started) == 2


def test_an_agents_audit_events_join_the_trail_once(api, bridge):
    event = {
        "action": "ssh.command",
        "outcome": "success",
        "asset": "srv-a1",
        "at": 1795424400.5,
        "detail": {"host": "10.0.0.5", "user": "dyzur", "command": "check_procs", "exit_code": 0},
    }
    body = {**numbered(1, 0.5), "events": [event, {**event, "asset": "srv-b1"}]}
    for _ in range(2):  # the retry of the same numbered batch adds nothing
        assert api.post("/api/v1/samples", json=body, headers=auth("agent-a")).status_code == 200
    [stored] = [e for e in bridge.store.audit_events() if e.action == "ssh.command"]
    # agent-a may speak only for szpital-a: the event about klinika-b's asset was dropped
    assert (stored.actor, stored.client, stored.asset) == ("agent:agent-a", "szpital-a", "srv-a1")
    assert stored.detail["command"] == "check_procs" and stored.detail["exit_code"] == 0
    bad = {**numbered(2, 0.5), "events": [{**event, "action": "Drop Table"}]}
    r = api.post("/api/v1/samples", json=bad, headers=auth("agent-a"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "events.0.action"


def test_the_deployed_amms_version_is_kept_on_the_asset(api, bridge):
    def version(v: str) -> dict:
        return {
            "metric": "dyzur_amms_version_info",
            "labels": {"asset": "srv-a1", "environment": "prod", "version": v},
            "value": 1.0,
        }

    for v in ("7.3.1", "7.3.1", "7.4.0"):
        assert push(api, [version(v)]).status_code == 200
    assets = {a["id"]: a for a in api.get("/api/v1/assets", headers=auth("engineer")).json()}
    assert assets["srv-a1"]["amms_version"] == "7.4.0"
    assert assets["srv-b1"]["amms_version"] is None
    seen = [
        e.detail["amms_version"]
        for e in bridge.store.audit_events()
        if e.action == "asset.version_seen"
    ]
    assert seen == ["7.3.1", "7.4.0"]  # a change, not every report
    mine = api.get("/api/v1/assets", headers=auth("client-b")).json()
    assert {a["client"] for a in mine} == {"klinika-b"}
    assert api.get("/api/v1/assets", headers=auth("agent")).status_code == 403


# --- numbers and times a datetime or SQLite cannot hold: 422 naming the field -------------

EVENT = '{"action": "ssh.command", "outcome": "success", "asset": "srv-a1", "at": %s}'
STAMPED = (
    '{"metric": "dz_test_disk_used_ratio", "labels": {"asset": "srv-a1", "mountpoint": "/"}, '
    '"value": 0.95, "timestamp": %s}'
)


@pytest.mark.parametrize(
    ("batch", "field"),
    [
        ('"agent": {"id": "ag-1", "seq": 9223372036854775808}', "agent.seq"),
        ('"agent": {"id": "ag-1", "seq": 1, "dropped": 18446744073709551616}', "agent.dropped"),
        ('"agent": {"id": "ag-1", "seq": 1, "dropped": 9223372036854775808}', "agent.dropped"),
        *[
            (f'"agent": {{"id": "ag-1", "seq": 1}}, "events": [{EVENT % at}]', "events.0.at")
            # the last one: 10000-01-01T00:00:00Z
            for at in ("NaN", "Infinity", "-Infinity", "-1e17", "1e17", "253402300800")
        ],
        *[
            (
                f'"agent": {{"id": "ag-1", "seq": 1}}, "samples": [{STAMPED % ts}]',
                "samples.0.timestamp",
            )
            # the last two: before 0001-01-01 and 9999-12-31T23:59:59Z
            for ts in ("Infinity", "-Infinity", "1e17", "-1e17", "-62135596801", "253402300799")
        ],
    ],
)
def test_out_of_range_numbers_are_422_and_the_corrected_batch_is_taken(api, bridge, batch, field):
    body = "{" + batch + ("" if '"samples"' in batch else ', "samples": []') + "}"
    r = api.post(
        "/api/v1/samples",
        content=body,
        headers={**auth("agent"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert r.json()["detail"].startswith(f"{field}: ")
    # Nothing was recorded: no stream, no ticket, no audit event of the agent.
    assert api.get("/api/v1/agents", headers=auth("engineer")).json() == []
    assert api.get("/api/v1/tickets", headers=auth("engineer")).json() == []
    assert not [e for e in bridge.store.audit_events() if e.action == "ssh.command"]
    # The same batch number, corrected, is then taken (not a "duplicate").
    event = json.loads(EVENT % "1795424400.5")
    corrected = {"agent": {"id": "ag-1", "seq": 1}, "samples": [sample()], "events": [event]}
    r = api.post("/api/v1/samples", json=corrected, headers=auth("agent"))
    assert r.status_code == 200 and r.json()["duplicate"] is False
    assert r.json()["accepted"] == 1 and r.json()["rejected_events"] == []
    [ticket] = api.get("/api/v1/tickets", headers=auth("engineer")).json()
    assert ticket["asset"] == "srv-a1"


def test_a_nan_timestamp_is_not_a_schema_error(api):
    """NaN, like a NaN value, refuses only its own sample (the rest of the batch is taken)."""
    body = f'{{"samples": [{STAMPED % "NaN"}, {json.dumps(sample("srv-b1"))}]}}'
    r = api.post(
        "/api/v1/samples",
        content=body,
        headers={**auth("agent"), "Content-Type": "application/json"},
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert [x["index"] for x in r.json()["rejected"]] == [0]


def test_an_offset_sqlite_cannot_hold_is_422(api, two_tickets):
    r = api.get("/api/v1/tickets?offset=9223372036854775808", headers=auth("engineer"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.offset"
    r = api.get("/api/v1/tickets?offset=9223372036854775807", headers=auth("engineer"))
    assert r.status_code == 200 and r.json() == []


@pytest.mark.parametrize(
    "starts_at", ["0001-01-01T00:00:00", "0001-01-01T00:30:00+01:00", "9999-12-31T23:00:00-05:00"]
)
def test_an_alert_starting_outside_what_a_time_holds_is_422(api, starts_at):
    alert = {
        "status": "firing",
        "labels": {"alertname": "HostDown", "asset": "srv-a1"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",  # Alertmanager's "no end yet"
    }
    body = {"version": "4", "status": "firing", "alerts": [alert]}
    r = api.post("/api/v1/alertmanager", json=body, headers=auth("agent"))
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["body.alerts.0.startsAt"]
    alert["startsAt"] = "2026-11-23T08:59:00Z"
    r = api.post("/api/v1/alertmanager", json=body, headers=auth("agent"))
    assert r.status_code == 200 and r.json()["accepted"] == 1


# --- one error body, every answer documented ------------------------------------------------


def test_every_error_answer_has_the_same_body(api, bridge, two_tickets):
    from bridge.api.schemas import ErrorBody

    window = {
        "client": "szpital-a",
        "start": "2026-11-24T22:00:00",
        "end": "2026-11-25T02:00:00",
        "reason": "przegląd",
        "assets": ["srv-a1"],
    }
    assert api.post("/api/v1/windows", json=window, headers=auth("engineer")).status_code == 201
    json_body = {**auth("agent"), "Content-Type": "application/json"}
    answers = {
        401: api.get("/api/v1/tickets"),
        403: api.get("/api/v1/tickets", headers=auth("agent")),
        404: api.get("/api/v1/tickets/DZ-2026-999999", headers=auth("engineer")),
        405: api.delete("/api/v1/tickets", headers=auth("engineer")),
        409: api.post("/api/v1/windows", json=window, headers=auth("engineer")),
        413: api.post("/api/v1/samples", content=b" " * 20_000_000, headers=json_body),
        400: api.post("/api/v1/samples", content=b"{", headers=json_body),
        422: api.get("/api/v1/tickets?limit=0", headers=auth("engineer")),
    }
    for status, r in answers.items():
        assert r.status_code == status, (status, r.text)
        body = r.json()
        assert set(body) == {"detail", "errors", "conflicts_with"}, (status, body)
        ErrorBody.model_validate(body)
        assert body["detail"], status
    assert answers[409].json()["conflicts_with"] == "OS-2026-0001"
    assert answers[422].json()["errors"][0]["field"] == "query.limit"
    # The path that is not there at all answers the same way.
    r = api.get("/api/v1/nothing-here", headers=auth("engineer"))
    assert r.status_code == 404 and set(r.json()) == {"detail", "errors", "conflicts_with"}


def test_the_openapi_resolves_and_documents_every_error_with_one_body(api):
    spec = api.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def refs(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    # No dangling reference (POST /api/v1/samples used to point at "#/$defs/SampleIn").
    for ref in set(refs(spec)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref
    body = spec["paths"]["/api/v1/samples"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/SampleBatch"}
    assert "HTTPValidationError" not in schemas  # FastAPI's other error shape is gone
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status, response in responses.items():
                if status >= "400":
                    content = response["content"]["application/json"]["schema"]
                    assert content == error, (method, path, status)
            documented = set(responses)
            assert "413" in documented, (method, path)
            if path != "/healthz":
                assert {"401", "403"} <= documented, (method, path)
            if "{" in path:
                assert "404" in documented, (method, path)
            if operation.get("parameters") or "requestBody" in operation:
                assert "422" in documented, (method, path)
            if "requestBody" in operation:
                assert "400" in documented, (method, path)
