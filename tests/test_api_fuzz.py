"""Schemathesis against the real application (a real config, a real SQLite file): every
operation of the published OpenAPI, fed generated requests with an admin token, answers no 5xx,
only the statuses it documents, and bodies and content types its schema describes.

Generated values alone mostly miss the inventory (a random asset is simply unknown), so a second
run swaps some fields of each case for real ones: the hospitals, their assets, the metrics the
rules watch, times around the test clock, and the tickets, windows and plans made before it.
The total of cases is printed (and must reach MINIMUM_CASES)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import START, TOKENS, auth
from tests.test_api_windows import config_with_amms

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]
# Fuzzing examples per operation; the examples and coverage phases add their own cases.
EXAMPLES_PER_OPERATION = 50
MINIMUM_CASES = 1_000

ASSETS = {
    "szpital-a": ["srv-a1", "srv-a2", "amms-a-test", "amms-a-prod"],
    "klinika-b": ["srv-b1", "ups-b1", "amms-b-prod"],
}
METRICS = {
    "dz_test_disk_used_ratio": "mountpoint",
    "dz_test_service_up": "service",
    "dyzur_amms_version_info": "version",
}


def _seed(client) -> dict[str, list[str]]:
    """A ticket per hospital, a window and an update plan: ids the cases can name."""
    samples = [
        {
            "metric": "dz_test_disk_used_ratio",
            "labels": {"asset": a, "mountpoint": "/"},
            "value": 0.95,
        }
        for a in ("srv-a1", "srv-b1")
    ]
    r = client.post("/api/v1/samples", json={"samples": samples}, headers=auth("agent"))
    assert r.status_code == 200, r.text
    window = {
        "client": "szpital-a",
        "start": "2026-11-24T22:00:00",
        "end": "2026-11-25T02:00:00",
        "reason": "aktualizacja bazy danych",
        "assets": ["srv-a1"],
    }
    r = client.post("/api/v1/windows", json=window, headers=auth("engineer"))
    assert r.status_code == 201, r.text
    plan = {
        "client": "klinika-b",
        "target_version": "7.4.0",
        "prod_window": {"start": "2026-12-01T22:00:00", "end": "2026-12-02T02:00:00"},
        "runbook": {"update": ["true"]},
        "without_test_stage": True,
    }
    r = client.post("/api/v1/updates", json=plan, headers=auth("engineer"))
    assert r.status_code == 201, r.text
    tickets = [t["number"] for t in client.get("/api/v1/tickets", headers=auth("admin")).json()]
    return {
        "number": tickets,
        "window_id": [w["id"] for w in client.get("/api/v1/windows", headers=auth("admin")).json()],
        "plan_id": [p["id"] for p in client.get("/api/v1/updates", headers=auth("admin")).json()],
        "ticket": tickets,
    }


@pytest.fixture
def loaded(tmp_path):
    return config_with_amms(tmp_path)


@pytest.fixture
def known() -> dict[str, list[str]]:
    return {}


@pytest.fixture
def api_schema(bridge, known):
    from fastapi.testclient import TestClient

    from bridge.api import create_app

    app = create_app(bridge, run_ticker=False)
    with TestClient(app) as client:
        known.update(_seed(client))
    config = schemathesis.Config.from_dict(
        {
            "seed": 13,
            "headers": {"Authorization": f"Bearer {TOKENS['admin']}"},
            "generation": {
                "max-examples": EXAMPLES_PER_OPERATION,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


@pytest.fixture(scope="module")
def cases(request: pytest.FixtureRequest):
    """Cases by operation and the status each got."""
    counts: defaultdict[str, Counter[int]] = defaultdict(Counter)
    yield counts
    total = sum(sum(statuses.values()) for statuses in counts.values())
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nschemathesis: {total} cases over {len(counts)} operations")
        for label, statuses in sorted(counts.items()):
            answers = ", ".join(f"{n}x{status}" for status, n in sorted(statuses.items()))
            print(f"  {sum(statuses.values()):5d}  {label}: {answers}")
    assert total >= MINIMUM_CASES, f"only {total} generated cases"


def _realistic(case, known: dict[str, list[str]], draw) -> None:
    """Swap some generated fields for real ones (in place): known ids in the path, the
    hospitals and their assets, watched metrics, and times around the test clock."""

    def pick(values):
        return draw(st.sampled_from(values))

    def maybe() -> bool:
        return draw(st.booleans())

    def span(after: datetime = START) -> dict[str, str]:
        start = after + timedelta(days=draw(st.integers(-3, 400)), hours=draw(st.integers(0, 23)))
        end = start + timedelta(minutes=draw(st.integers(-30, 24 * 60)))
        offset = pick(["", "+01:00", "Z"])
        return {"start": f"{start:%Y-%m-%dT%H:%M:%S}{offset}", "end": f"{end:%Y-%m-%dT%H:%M:%S}"}

    every_asset = [a for assets in ASSETS.values() for a in assets]
    for name in case.path_parameters or {}:
        if known.get(name):
            case.path_parameters[name] = pick(known[name])
    body = case.body
    if not isinstance(body, dict):
        return
    if isinstance(body.get("client"), str):
        body["client"] = pick(sorted(ASSETS))
        if isinstance(body.get("assets"), list):
            body["assets"] = ASSETS[body["client"]][: len(body["assets"])]
    if "start" in body and "end" in body:  # a window: its assets, or a selector
        body.update(span())
        if maybe():
            body["rrule"] = pick([None, "FREQ=WEEKLY;BYDAY=TU", "FREQ=DAILY;COUNT=3"])
        if maybe():
            body["assets"] = ASSETS.get(str(body.get("client")), ["srv-a1"])[
                : draw(st.integers(1, 4))
            ]
            body["selector"] = None
        elif maybe():
            body["assets"] = []
            body["selector"] = pick(["environment=test", "kind=amms", "kind=server"])
    if isinstance(body.get("ticket"), str):
        body["ticket"] = pick(known["ticket"])
    if isinstance(body.get("prod_window"), dict):  # an update plan
        body["selector"] = "kind=amms"
        body["soak"] = pick([None, 0, "30m", body.get("soak")])
        if maybe():  # szpital-a has a test environment, klinika-b has not
            test = span()
            body.update(client="szpital-a", test_window=test, without_test_stage=False)
            after = datetime.fromisoformat(test["end"]).replace(tzinfo=None)
            body["prod_window"] = span(after + timedelta(days=1))
        else:
            body.update(prod_window=span(), test_window=None, without_test_stage=True)
    for sample in body.get("samples") or []:
        if isinstance(sample, dict) and isinstance(sample.get("labels"), dict):
            metric = pick(sorted(METRICS))
            sample["metric"] = metric
            sample["labels"]["asset"] = pick(every_asset)
            sample["labels"].setdefault(METRICS[metric], "/")
    for event in body.get("events") or []:
        if isinstance(event, dict):
            event["asset"] = pick(every_asset)
            event["action"] = "ssh.command"
    for alert in body.get("alerts") or []:
        if isinstance(alert, dict) and isinstance(alert.get("labels"), dict):
            alert["labels"]["asset"] = pick(every_asset)
            alert["labels"].setdefault("alertname", "HostDown")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest):
    # schemathesis' from_fixture names each operation's subtest through Node._nodeid, which
    # pytest 9.2 no longer has (it has the read-only nodeid): give it the attribute it expects.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")
SETTINGS = settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@schema.parametrize()
@SETTINGS
def test_every_operation_answers_what_its_schema_says(case, cases):
    """Schemathesis' own phases: the schema's examples, its boundaries and invalid values
    (coverage), and generated requests (fuzzing)."""
    response = case.call_and_validate(checks=CHECKS)
    cases[case.operation.label][response.status_code] += 1


@schema.parametrize()
@schema.given(data=st.data())
@SETTINGS
def test_realistic_requests_answer_what_the_schema_says(case, data, known, cases):
    """Generated requests with real ids, hospitals, assets, metrics and times mixed in, so that
    they reach past the inventory checks: tickets opened, windows and plans made and refused."""
    _realistic(case, known, data.draw)
    response = case.call_and_validate(checks=CHECKS)
    cases[case.operation.label][response.status_code] += 1
