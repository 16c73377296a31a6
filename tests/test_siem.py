"""Audit events reach a real rsyslog: complete, parseable, escaped, in order, nothing lost;
and the audit chain shows an edited or deleted event."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme
import yaml

from bridge.audit import verify_store
from bridge.clock import Clock
from bridge.delivery.outbox import Outbox
from bridge.delivery.siem import Destination, SiemConsumer
from bridge.metrics import BridgeMetrics
from bridge.models import AuditEvent
from bridge.store.sqlite import MIGRATIONS, SQLiteStore, _apply_script
from tests.conftest import config_data
from tests.processes import wait_for
from tests.rsyslog import Rsyslog


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "audit.db")
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def rsyslog(tmp_path):
    r = Rsyslog(tmp_path / "rsyslog")
    r.start()
    yield r
    r.stop()


@pytest.fixture
def forwarders():
    """Start an outbox forwarding to SIEM destinations; all are stopped at the end."""
    started = []

    def start(store, *destinations) -> tuple[Outbox, BridgeMetrics]:
        metrics = BridgeMetrics()
        outbox = Outbox(store, Clock())
        for destination in destinations:
            outbox.register(SiemConsumer(destination, metrics))
        outbox.start()
        started.append(outbox)
        return outbox, metrics

    yield start
    for f in started:
        f.stop()


def add(store, n: int, client: str = "szpital-a", **fields) -> list[AuditEvent]:
    return [
        store.append_audit(
            AuditEvent(
                datetime.now(UTC),
                fields.get("actor", "jan.kowalski"),
                fields.get("action", "ticket.opened"),
                "success",
                client,
                fields.get("asset", "srv-a1"),
                {"ticket": f"DZ-2026-{i:06d}"},
            )
        )
        for i in range(n)
    ]


def ids(rsyslog: Rsyslog) -> list[int]:
    return [int(rsyslog.sd(r)["id"]) for r in rsyslog.records() if rsyslog.sd(r)]


def first_occurrences(seq: list[int]) -> list[int]:
    seen: set[int] = set()
    return [i for i in seq if not (i in seen or seen.add(i))]


def test_events_arrive_complete_over_tcp_and_udp(store, rsyslog, forwarders):
    events = add(store, 20)
    forwarders(
        store,
        Destination.from_url("soc-tcp", f"tcp://127.0.0.1:{rsyslog.tcp_port}"),
        Destination.from_url("soc-udp", f"udp://127.0.0.1:{rsyslog.udp_port}"),
    )
    wait_for(lambda: len(rsyslog.records()) >= 40, timeout=20, what="40 messages")
    records = rsyslog.records()
    assert len(records) == 40
    by_id: dict[int, list[dict]] = {}
    for record in records:
        by_id.setdefault(int(rsyslog.sd(record)["id"]), []).append(record)
    assert sorted(by_id) == [e.id for e in events]
    for event in events:
        for record in by_id[event.id]:  # one over TCP, one over UDP
            sd = rsyslog.sd(record)
            assert sd["action"] == "ticket.opened" and record["msgid"] == "ticket.opened"
            assert (sd["actor"], sd["client"], sd["asset"]) == (
                "jan.kowalski",
                "szpital-a",
                "srv-a1",
            )
            assert sd["hash"] == event.hash and sd["outcome"] == "success"
            assert rsyslog.sd(record, "detail@32473") == {"ticket": event.detail["ticket"]}
            assert record["appname"] == "dyzur"


def test_cef_format(store, rsyslog, forwarders):
    [event] = add(store, 1)
    forwarders(
        store,
        Destination.from_url("soc-cef", f"tcp://127.0.0.1:{rsyslog.tcp_port}", format="cef"),
    )
    [record] = wait_for(rsyslog.records, timeout=20, what="the CEF message")
    assert record["msg"].startswith("CEF:0|dyzur|dyzur|")
    assert f"externalId={event.id}" in record["msg"] and "suser=jan.kowalski" in record["msg"]


def test_injection_attempts_arrive_escaped(store, rsyslog, forwarders):
    hostile = 'x"] [forged@32473 id="999"]\n<13>1 2026-01-01T00:00:00Z evil - - - forged\\'
    store.append_audit(
        AuditEvent(
            datetime.now(UTC),
            hostile,
            "ssh.command",
            "success",
            "szpital-a",
            "amms]\nprod",
            {"command": hostile, "weird key=]": "v"},
        )
    )
    forwarders(store, Destination.from_url("soc", f"tcp://127.0.0.1:{rsyslog.tcp_port}"))
    [record] = wait_for(rsyslog.records, timeout=20, what="the message")
    sd = record["tree"]["rfc5424-sd"]
    assert set(sd) == {"dyzur@32473", "detail@32473"}  # no forged element
    actor = sd["dyzur@32473"]["actor"]
    # The quote and bracket survive as data; the newline arrives as a visible \n.
    assert actor.startswith('x"] [forged@32473 id="999"]') and "\n" not in actor
    assert "\\n<13>1" in actor
    assert sd["dyzur@32473"]["asset"] == "amms]\\nprod"
    assert "\n" not in record["msg"]
    assert len(rsyslog.records()) == 1  # the embedded "<13>1 ..." did not become a message


def test_rsyslog_away_and_back_nothing_lost_order_kept(store, rsyslog, forwarders):
    destination = Destination.from_url("soc", f"tcp://127.0.0.1:{rsyslog.tcp_port}")
    forwarders(store, destination)
    first = add(store, 50)
    wait_for(lambda: len(ids(rsyslog)) >= 50, timeout=20, what="the first 50")
    rsyslog.stop()
    during = add(store, 100)  # written while the SIEM is away: they wait in the store
    rsyslog.start()
    after = add(store, 50)
    expected = [e.id for e in first + during + after]
    wait_for(lambda: set(ids(rsyslog)) >= set(expected), timeout=60, what="every event")
    # At least once, in order: any repeat is a resend of what was unconfirmed at the stop.
    assert first_occurrences(ids(rsyslog)) == expected


def test_a_full_queue_keeps_the_newest_and_reports_the_drop(store, tmp_path, forwarders):
    r = Rsyslog(tmp_path / "later")  # configured, not yet started: the SIEM is away
    destination = Destination.from_url(
        "soc", f"tcp://127.0.0.1:{r.tcp_port}", max_queue=10, clients=frozenset({"szpital-a"})
    )
    _, metrics = forwarders(store, destination)
    events = add(store, 30)
    add(store, 5, client="klinika-b")  # not this SIEM's
    wait_for(
        lambda: metrics.siem_dropped.labels("soc")._value.get() >= 20, timeout=20, what="drops"
    )
    r.start()
    try:
        wait_for(lambda: len(ids(r)) >= 11, timeout=30, what="the queue and the report")
        got = first_occurrences(ids(r))
        assert got[:10] == [e.id for e in events[-10:]]
        [report] = [rec for rec in r.records() if rec["msgid"] == "siem.events_dropped"]
        assert r.sd(report, "detail@32473") == {"destination": "soc", "dropped": "20"}
        assert all(r.sd(rec)["client"] == "szpital-a" for rec in r.records())
    finally:
        r.stop()


def test_each_hospital_gets_only_its_own_events(store, tmp_path, forwarders):
    hospital, company = Rsyslog(tmp_path / "hospital"), Rsyslog(tmp_path / "company")
    hospital.start()
    company.start()
    try:
        mine = add(store, 3, client="szpital-a")
        theirs = add(store, 3, client="klinika-b")
        forwarders(
            store,
            Destination.from_url(
                "szpital-a-siem",
                f"tcp://127.0.0.1:{hospital.tcp_port}",
                clients=frozenset({"szpital-a"}),
            ),
            Destination.from_url("company", f"tcp://127.0.0.1:{company.tcp_port}"),
        )
        wait_for(lambda: len(ids(company)) >= 6, timeout=20, what="the company's events")
        wait_for(lambda: len(ids(hospital)) >= 3, timeout=20, what="the hospital's events")
        assert first_occurrences(ids(hospital)) == [e.id for e in mine]
        assert first_occurrences(ids(company)) == [e.id for e in mine + theirs]
    finally:
        hospital.stop()
        company.stop()


def test_an_upgraded_store_goes_on_where_each_siem_was(tmp_path, rsyslog, forwarders):
    """A store written before the outbox: its SIEM cursor becomes the consumer's, so after the
    upgrade nothing already delivered is sent again and nothing is skipped."""
    path = tmp_path / "old.db"
    version = next(i for i, m in enumerate(MIGRATIONS) if "CREATE TABLE outbox_cursors" in m)
    with sqlite3.connect(path) as conn:
        for script in MIGRATIONS[:version]:
            _apply_script(conn, script)
        conn.execute(f"PRAGMA user_version = {version}")
    old = SQLiteStore(path)  # audit events written by the old bridge, 6 of them delivered
    events = add(old, 10)
    old.close()
    tamper(path, f"INSERT INTO siem_cursors VALUES ('soc', {events[5].id}, 0)")
    store = SQLiteStore(path)
    store.migrate()
    outbox, _ = forwarders(
        store, Destination.from_url("soc", f"tcp://127.0.0.1:{rsyslog.tcp_port}")
    )
    try:
        wait_for(lambda: len(ids(rsyslog)) >= 4, timeout=20, what="the 4 undelivered events")
        assert ids(rsyslog) == [e.id for e in events[6:]]
    finally:
        outbox.stop()
        store.close()


@pytest.fixture
def tls_rsyslog(tmp_path):
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path / "tls"
    d.mkdir()
    ca.cert_pem.write_to_path(d / "ca.pem")
    server.cert_chain_pems[0].write_to_path(d / "server.pem")
    server.private_key_pem.write_to_path(d / "server-key.pem")
    r = Rsyslog(
        tmp_path / "rsyslog-tls", tls=(d / "ca.pem", d / "server.pem", d / "server-key.pem")
    )
    r.start()
    yield r, d / "ca.pem"
    r.stop()


def test_tls_with_the_right_ca_delivers(store, tls_rsyslog, forwarders):
    r, ca = tls_rsyslog
    events = add(store, 10)
    forwarders(store, Destination.from_url("soc", f"tls://127.0.0.1:{r.tcp_port}", ca_file=ca))
    wait_for(lambda: len(ids(r)) >= 10, timeout=20, what="events over TLS")
    assert first_occurrences(ids(r)) == [e.id for e in events]


def test_tls_with_a_wrong_ca_is_refused(store, tls_rsyslog, forwarders, tmp_path, caplog):
    r, _ = tls_rsyslog
    other = trustme.CA()
    other.cert_pem.write_to_path(tmp_path / "other-ca.pem")
    add(store, 5)
    caplog.set_level(logging.ERROR, logger="bridge.delivery.siem")
    _, metrics = forwarders(
        store,
        Destination.from_url(
            "soc", f"tls://127.0.0.1:{r.tcp_port}", ca_file=tmp_path / "other-ca.pem"
        ),
    )
    wait_for(
        lambda: metrics.siem_failures.labels("soc")._value.get() >= 1, timeout=20, what="a refusal"
    )
    assert r.records() == []
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    assert store.cursor("siem:soc").last_id == 0  # nothing counted as delivered


def test_tls_with_a_client_certificate_when_the_siem_asks_for_one(store, tmp_path, forwarders):
    ca = trustme.CA()
    d = tmp_path / "mtls"
    d.mkdir()
    ca.cert_pem.write_to_path(d / "ca.pem")
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(d / "server.pem")
    server.private_key_pem.write_to_path(d / "server-key.pem")
    client = ca.issue_cert("dyzur-bridge.example.pl")
    client.cert_chain_pems[0].write_to_path(d / "client.pem")
    client.private_key_pem.write_to_path(d / "client-key.pem")
    r = Rsyslog(
        tmp_path / "rsyslog-mtls",
        tls=(d / "ca.pem", d / "server.pem", d / "server-key.pem"),
        require_client_cert=True,
    )
    r.start()
    try:
        events = add(store, 3)
        url = f"tls://127.0.0.1:{r.tcp_port}"
        _, without = forwarders(store, Destination.from_url("anon", url, ca_file=d / "ca.pem"))
        wait_for(
            lambda: without.siem_failures.labels("anon")._value.get() >= 1,
            timeout=20,
            what="the SIEM to refuse a client without a certificate",
        )
        assert store.cursor("siem:anon").last_id == 0
        forwarders(
            store,
            Destination.from_url(
                "mtls",
                url,
                ca_file=d / "ca.pem",
                client_cert=d / "client.pem",
                client_key=d / "client-key.pem",
            ),
        )
        wait_for(lambda: len(ids(r)) >= 3, timeout=20, what="events with a client certificate")
        assert first_occurrences(ids(r)) == [e.id for e in events]
        assert store.cursor("siem:anon").last_id == 0  # still refused
    finally:
        r.stop()


# --- the chain ---------------------------------------------------------------------------


def tamper(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(sql)


def test_the_chain_is_intact_until_someone_edits_or_deletes(tmp_path):
    store = SQLiteStore(tmp_path / "chain.db")
    store.migrate()
    add(store, 6)
    report = verify_store(store)
    assert report.intact and report.events == 6
    tamper(tmp_path / "chain.db", "UPDATE audit_events SET actor = 'nobody' WHERE id = 3")
    report = verify_store(store)
    assert (report.broken_at, report.problem) == (3, "its content was changed after it was written")
    store.close()


def test_a_deleted_event_is_found(tmp_path):
    store = SQLiteStore(tmp_path / "chain.db")
    store.migrate()
    add(store, 6)
    tamper(tmp_path / "chain.db", "DELETE FROM audit_events WHERE id = 4")
    report = verify_store(store)
    assert (report.broken_at, report.problem) == (5, "event(s) 4 before it were deleted")
    tamper(tmp_path / "chain.db", "DELETE FROM audit_events WHERE id >= 5")
    report = verify_store(store)
    assert report.broken_at == 4 and "deleted" in report.problem
    store.close()


def test_a_deleted_newest_event_is_found(tmp_path):
    store = SQLiteStore(tmp_path / "chain.db")
    store.migrate()
    add(store, 3)
    tamper(tmp_path / "chain.db", "DELETE FROM audit_events WHERE id = 3")
    report = verify_store(store)
    assert (report.broken_at, report.problem) == (3, "the newest events 3-3 were deleted")
    store.close()


def test_audit_verify_command(tmp_path):
    path = tmp_path / "dyzur.yaml"
    path.write_text(yaml.safe_dump(config_data("sqlite:///var/dyzur.db")))
    store = SQLiteStore(tmp_path / "var/dyzur.db")
    store.migrate()
    add(store, 4)
    store.close()

    def verify():
        return subprocess.run(
            [sys.executable, "-m", "bridge", "audit", "verify", "--config", str(path)],
            capture_output=True,
            text=True,
        )

    r = verify()
    assert r.returncode == 0 and "OK: 4 audit events, chain intact" in r.stdout
    tamper(tmp_path / "var/dyzur.db", "UPDATE audit_events SET detail = '{}' WHERE id = 2")
    r = verify()
    assert r.returncode == 1
    assert "BROKEN at audit event 2: its content was changed" in r.stderr
