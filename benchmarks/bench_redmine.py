"""Redmine issues created per second through the Redmine helpdesk sink, beside Redmine's own
rate when issues are created directly through its REST API with the same HTTP client (httpx).

Starts Debian's Redmine (tests/redmine.py: a copy in a temporary directory, its own SQLite
database, WEBrick on a free port). Direct: N ``POST /issues.json`` in a row, each with a
subject, a description and the custom field, as dyzur's user, on one keep-alive connection.
Through the sink: a bridge in this process (its own SQLite store, a fixed clock) opens N
tickets from pushed samples with the outbox stopped; then the outbox starts with the Redmine
sink and the time until its cursor passed the last opening is the sink's (per ticket: the
look-up by dyzur's number in the custom field, then the POST).

    .venv/bin/python benchmarks/bench_redmine.py [--issues 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from bridge.api import create_app  # noqa: E402
from bridge.config import parse_config  # noqa: E402
from bridge.service import Bridge  # noqa: E402
from bridge.store.sqlite import SQLiteStore  # noqa: E402
from tests.conftest import START, FixedClock, auth, config_data  # noqa: E402
from tests.processes import wait_for  # noqa: E402
from tests.redmine import Redmine  # noqa: E402

DESCRIPTION = "Dysk /var jest zapełniony w 95,0 %.\n" * 20  # about a ticket's description


def direct(redmine: Redmine, project: str, issues: int) -> float:
    """Seconds to create ``issues`` issues straight through the REST API."""
    with redmine.client(redmine.dyzur) as http:
        began = time.perf_counter()
        for i in range(issues):
            r = http.post(
                "/issues.json",
                json={
                    "issue": {
                        "project_id": project,
                        "subject": f"[BENCH-{i:06d}] Usterka: Zajętość dysku /m{i} na srv-a1",
                        "description": DESCRIPTION,
                        "custom_fields": [
                            {"id": redmine.custom_field_id, "value": f"BENCH-{i:06d}"}
                        ],
                    }
                },
            )
            assert r.status_code == 201, r.text
        return time.perf_counter() - began


def through_sink(redmine: Redmine, project: str, issues: int, tmp: Path) -> float:
    """Seconds for the sink to create the issues of ``issues`` newly opened tickets."""
    key = tmp / "redmine.key"
    key.write_text(redmine.dyzur.key + "\n")
    key.chmod(0o600)
    data = config_data()
    data["sinks"] = [
        {
            "name": "bench",
            "kind": "redmine",
            "url": redmine.url,
            "api_key_file": "redmine.key",
            "projects": {"default": project},
            "custom_field_id": redmine.custom_field_id,
        }
    ]
    store = SQLiteStore(tmp / "bench.db")
    store.migrate()
    bridge = Bridge(parse_config(data, "bench.yaml", tmp), store=store, clock=FixedClock(START))
    bridge.start(ticker=False)
    with TestClient(create_app(bridge, run_ticker=False)) as api:
        samples = [
            {
                "metric": "dz_test_disk_used_ratio",
                "labels": {"asset": "srv-a1", "mountpoint": f"/m{i}"},
                "value": 0.95,
            }
            for i in range(issues)
        ]
        r = api.post("/api/v1/samples", json={"samples": samples}, headers=auth("agent"))
        assert r.status_code == 200, r.text
    last = store.audit_events(0, 10**7, None)[-1].id or 0
    began = time.perf_counter()
    bridge.outbox.start()
    wait_for(
        lambda: store.cursor("sink:bench").last_id >= last,
        timeout=3600,
        interval=0.05,
        what="every ticket delivered",
    )
    seconds = time.perf_counter() - began
    bridge.close()
    created = len(redmine.issues(project)) if issues <= 100 else None
    assert created in (None, issues), f"{created} issues for {issues} tickets"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        redmine = Redmine(Path(tmp))
        try:
            print(
                f"Redmine {redmine.url} ready in {time.perf_counter() - started:.1f} s "
                + "("
                + ", ".join(f"{k} {v:.1f} s" for k, v in redmine.timings.items())
                + ")"
            )
            n = args.issues
            direct_s = direct(redmine, redmine.project("bench-direct"), n)
            sink_s = through_sink(redmine, redmine.project("bench-sink"), n, Path(tmp))
        finally:
            redmine.stop()
    print(f"Redmine issues created, {n} each (loopback, one connection, httpx):")
    print(f"  REST API directly  {n / direct_s:6.1f} issues/s  ({direct_s:6.2f} s)")
    print(
        f"  through the sink   {n / sink_s:6.1f} issues/s  ({sink_s:6.2f} s; "
        f"{sink_s / direct_s:.2f}x the direct time)"
    )


if __name__ == "__main__":
    main()
