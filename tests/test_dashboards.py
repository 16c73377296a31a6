"""Grafana dashboards (dashboards/*.json) and their provisioning: checked as files, then every
PromQL expression of every panel and variable run against a real Prometheus that scrapes a real
bridge (with tickets, SLA, Alertmanager alerts, a maintenance window and a failing SIEM) and a
real agent (host collector, SNMP polling of a simulated UPS and storage array, SSH checks of an
AMMS host served by a real sshd)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import TOKENS, auth, config_data, free_port
from tests.processes import ROOT, RunningAgent, RunningBridge, wait_for
from tests.promstack import Prometheus
from tests.sshd import Sshd, keygen
from tests.test_snmp_profiles import SnmpSim, need_snmpsim

DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
PROVISIONING = ROOT / "dashboards" / "provisioning"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PLUGINS = Path("/usr/lib/nagios/plugins")

# What Grafana would put in place of the variables. $asset is what Grafana sends for several
# selected values of a multi-value variable: every asset of the hospital the agent reports.
HOSPITAL_ASSETS = {"srv-a1", "ups-a", "nas-a", "amms-a"}
VALUES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "client": "szpital-a",
    "asset": "(" + "|".join(sorted(HOSPITAL_ASSETS)) + ")",
    "agent": "srv-a1",
}
# Values each query variable must list once everything runs.
EXPECTED_VALUES = {
    "client": {"szpital-a", "klinika-b"},
    "asset": HOSPITAL_ASSETS,
    "agent": {"srv-a1"},
}
VARIABLE = re.compile(r"\$\{?(\w+)\}?")
LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$")


# --- reading the dashboards -----------------------------------------------------------------


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def panels(board: dict) -> list[dict]:
    """Every panel, those nested in (collapsed) rows included."""
    out = []
    for panel in board.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def variables(board: dict) -> list[dict]:
    return board.get("templating", {}).get("list", [])


def variable_query(var: dict) -> str:
    query = var.get("query")
    return query.get("query", "") if isinstance(query, dict) else str(query or "")


def targets() -> list[tuple[str, str, dict]]:
    """(dashboard, panel title and refId, target) of every target of every dashboard."""
    return [
        (path.stem, f"{panel['title']} [{target.get('refId')}]", target)
        for path in DASHBOARDS
        for panel in panels(load(path))
        for target in panel.get("targets", [])
    ]


def query_variables() -> list[tuple[str, str, str]]:
    return [
        (path.stem, var["name"], variable_query(var))
        for path in DASHBOARDS
        for var in variables(load(path))
        if var.get("type") == "query"
    ]


def substitute(expr: str) -> str:
    """The expression as Grafana sends it to Prometheus; an unknown variable fails."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        assert name in VALUES, f"no test value for ${name} in {expr}"
        return VALUES[name]

    return VARIABLE.sub(value, expr)


def legend_labels(legend: str) -> set[str]:
    """The labels a legend format names: "{{client}} {{state}}" -> {client, state}."""
    return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))


# --- static checks --------------------------------------------------------------------------


def test_there_are_dashboards():
    assert [p.stem for p in DASHBOARDS] == ["dyzur-agents", "dyzur-hospital", "dyzur-overview"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_a_dashboard_has_a_stable_identity_and_a_current_schema(path):
    board = load(path)
    assert board["uid"] == path.stem  # links and provisioning keep working across imports
    assert board["id"] is None
    assert board["schemaVersion"] >= 39
    assert board["title"] and "dyzur" in board["tags"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_panel_ids_are_unique(path):
    ids = [p["id"] for p in panels(load(path))]
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids in {sorted(ids)}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_query_goes_to_the_datasource_variable(path):
    board = load(path)
    [var] = [v for v in variables(board) if v["name"] == "datasource"]
    assert (var["type"], var["query"]) == ("datasource", "prometheus")
    for panel in panels(board):
        if panel["type"] == "row" and "datasource" not in panel:
            continue
        assert panel.get("datasource") == DATASOURCE, f"{path.name}: {panel['title']}"
        for target in panel.get("targets", []):
            assert target.get("datasource") == DATASOURCE, f"{path.name}: {panel['title']}"
    for var in variables(board):
        if var["type"] == "query":
            assert var.get("datasource") == DATASOURCE, f"{path.name}: ${var['name']}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_target_has_an_expression_with_known_variables(path):
    board = load(path)
    defined = {v["name"] for v in variables(board)} | {"__rate_interval", "__interval", "__range"}
    for panel in panels(board):
        if panel["type"] != "row":
            assert panel.get("targets"), f"{path.name}: {panel['title']} has no query"
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            assert expr.strip(), f"{path.name}: {panel['title']} {target.get('refId')}: no expr"
            used = set(VARIABLE.findall(expr))
            assert used <= defined, f"{path.name}: {panel['title']}: {used - defined} undefined"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_panels_do_not_overlap(path):
    def box(panel: dict) -> tuple[int, int, int, int]:
        g = panel["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        return g["x"], g["y"], g["x"] + g["w"], g["y"] + g["h"]

    def overlap(a: dict, b: dict) -> bool:
        ax1, ay1, ax2, ay2 = box(a)
        bx1, by1, bx2, by2 = box(b)
        return ax1 < bx2 and bx1 < ax2 and ay1 < by2 and by1 < ay2

    top = load(path)["panels"]
    groups = [top] + [p["panels"] for p in top if p.get("panels")]  # a collapsed row's own
    for group in groups:
        for a, b in combinations(group, 2):
            assert not overlap(a, b), f"{path.name}: {a['title']!r} overlaps {b['title']!r}"


def test_provisioning_loads_the_dashboards_into_a_folder():
    config = yaml.safe_load((PROVISIONING / "dashboards.yaml").read_text())
    assert config["apiVersion"] == 1
    [provider] = config["providers"]
    assert provider["type"] == "file" and provider["folder"] == "dyzur"
    assert provider["options"]["path"].startswith("/")
    assert provider["options"]["foldersFromFilesStructure"] is False


def test_the_example_datasource_is_the_one_the_dashboards_start_on():
    config = yaml.safe_load((PROVISIONING / "datasources.yaml").read_text())
    assert config["apiVersion"] == 1
    [source] = config["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http")
    for path in DASHBOARDS:
        [var] = [v for v in variables(load(path)) if v["name"] == "datasource"]
        assert var["current"]["value"] == source["uid"], path.name


# --- against a real Prometheus --------------------------------------------------------------


def amms_profile(path: Path, listener_port: int) -> Path:
    if not (PLUGINS / "check_dummy").exists():
        if os.environ.get("CI"):
            pytest.fail("monitoring-plugins-basic is required under CI")
        pytest.skip("monitoring-plugins-basic not installed")
    path.write_text(
        f"""
checks:
  - name: amms_processes
    command: {PLUGINS}/check_dummy 0 "2 processes"
  - name: db_tablespace
    command: printf 'WARNING - tablespace USERS 91%%|USERS=91%%;85;95\\n'; exit 1
  - name: db_listener
    tcp_port: {listener_port}
version_command: echo 7.3.1
"""
    )
    return path


def bridge_config(path: Path) -> Path:
    data = config_data("sqlite:///var/dyzur.db")
    data["rule_files"] = ["builtin:hosts", "builtin:ups", "builtin:storage", "builtin:amms"]
    data["tick_interval"] = "1s"
    # 24/7 with a 2 s reaction time for an awaria: its ticket is breached at the next tick.
    data["clients"][0]["contract"] = {
        "language": "pl",
        "hours": "24/7",
        "reaction": {"awaria": "2s"},
    }
    data["assets"] += [
        {"id": "ups-a", "client": "szpital-a", "kind": "ups", "reports": False},
        {"id": "nas-a", "client": "szpital-a", "kind": "storage", "reports": False},
        {"id": "amms-a", "client": "szpital-a", "kind": "amms", "reports": False},
    ]
    # A SIEM nobody listens on: a backlog and send failures.
    data["siem"] = [{"name": "soc", "url": f"tcp://127.0.0.1:{free_port()}"}]
    path.write_text(yaml.safe_dump(data))
    return path


def agent_config(
    workdir: Path, bridge_port: int, metrics_port: int, sim: SnmpSim, sshd: Sshd, key: Path
) -> Path:
    """The agent of srv-a1: the host itself, a UPS and a storage array over SNMP, an AMMS host
    over SSH."""
    (workdir / "agent.token").write_text(TOKENS["agent-a"])
    snmp = [
        ("ups-a", "apc-smartups-powernet", "apc-powernet"),
        ("nas-a", "isilon-onefs", "host-resources-storage"),
    ]
    ssh = {
        "known_hosts": str(workdir / "known_hosts"),
        "key_file": str(key),
        "hosts": [
            {
                "asset": "amms-a",
                "host": "127.0.0.1",
                "port": sshd.port,
                "environment": "prod",
                "profile": str(amms_profile(workdir / "amms.yaml", sshd.port)),
            }
        ],
    }
    data = {
        "asset": "srv-a1",
        "bridge": {"url": f"http://127.0.0.1:{bridge_port}", "token_file": "agent.token"},
        "spool": {"path": "spool.db"},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
        "jitter": 0,
        "collectors": [
            {"name": "host", "interval": "1s", "timeout": "10s"},
            {
                "name": "snmp",
                "interval": "2s",
                "timeout": "20s",
                "options": {
                    "devices": [
                        {
                            "asset": asset,
                            "host": "127.0.0.1",
                            "port": sim.port,
                            "community": community,
                            "profiles": [profile],
                            "timeout": 2,
                        }
                        for asset, community, profile in snmp
                    ]
                },
            },
            {"name": "amms", "kind": "ssh", "interval": "2s", "timeout": "20s", "options": ssh},
        ],
    }
    path = workdir / "agent.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def trust_host_key(sshd: Sshd, known_hosts: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "bridge", "ssh", "trust", f"127.0.0.1:{sshd.port}",
         "--known-hosts", str(known_hosts), "--yes"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


def make_tickets_and_a_window(bridge: RunningBridge) -> None:
    """An awaria for szpital-a (breached at once), a usterka for klinika-b, both from
    Alertmanager, and a maintenance window of klinika-b running now."""
    now = datetime.now(UTC)
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": name, "severity": severity, "asset": asset},
            "annotations": {"summary": summary},
            "startsAt": now.isoformat(),
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": fingerprint,
        }
        for name, severity, asset, summary, fingerprint in (
            ("AmmsDbDown", "critical", "srv-a2", "Baza AMMS nie odpowiada", "a1b2c3d4e5f60718"),
            ("DiskSlow", "warning", "srv-b1", "Disk latency high", "b1b2c3d4e5f60718"),
        )
    ]
    body = {"version": "4", "status": "firing", "receiver": "dyzur", "groupKey": "{}:{}",
            "truncatedAlerts": 0, "alerts": alerts}  # fmt: skip
    with httpx.Client(base_url=bridge.url, timeout=10) as http:
        r = http.post("/api/v1/alertmanager", json=body, headers=auth("agent"))
        assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
        window = {
            "client": "klinika-b",
            "start": (now - timedelta(minutes=1)).isoformat(),
            "end": (now + timedelta(hours=2)).isoformat(),
            "reason": "przegląd serwisowy",
            "assets": ["srv-b1"],
        }
        r = http.post("/api/v1/windows", json=window, headers=auth("engineer"))
        assert r.status_code == 201, r.text


def prometheus_config(bridge_port: int, agent_metrics_port: int) -> dict:
    """The jobs the dashboards read (dyzur-bridge, dyzur-agent), scraped every second. The agent
    target's labels name its asset and hospital (client); honor_labels keeps the asset label of
    the samples it collected (ups-a, not srv-a1) instead of renaming it exported_asset."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "dyzur-bridge",
                "authorization": {"type": "Bearer", "credentials": TOKENS["engineer"]},
                "static_configs": [{"targets": [f"127.0.0.1:{bridge_port}"]}],
            },
            {
                "job_name": "dyzur-agent",
                "honor_labels": True,
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{agent_metrics_port}"],
                        "labels": {"asset": "srv-a1", "client": "szpital-a"},
                    }
                ],
            },
        ],
    }


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> Iterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("dashboards")
    need_snmpsim()
    with ExitStack() as stack:
        sim = SnmpSim()
        stack.callback(sim.stop)
        sshd = Sshd(workdir / "sshd")
        key = keygen(workdir / "id_ed25519")
        sshd.authorize(Path(f"{key}.pub"))
        sshd.start()
        stack.callback(sshd.stop)
        trust_host_key(sshd, workdir / "known_hosts")

        bridge_port, metrics_port = free_port(), free_port()
        bridge = RunningBridge(bridge_config(workdir / "dyzur.yaml"), bridge_port)
        stack.callback(bridge.stop)
        agent = RunningAgent(
            agent_config(workdir, bridge_port, metrics_port, sim, sshd, key), metrics_port
        )
        stack.callback(agent.stop)
        make_tickets_and_a_window(bridge)

        def agent_has_everything() -> bool:
            try:
                text = httpx.get(agent.metrics_url, timeout=2).text
            except httpx.TransportError:
                assert agent.proc.poll() is None, agent.output()
                return False
            wanted = ("dyzur_ups_on_battery{", "dyzur_storage_used_ratio{", "dyzur_check_state{")
            return all(name in text for name in wanted)

        wait_for(agent_has_everything, timeout=60, what="UPS, storage and AMMS samples")
        prom = Prometheus(workdir / "prometheus", prometheus_config(bridge_port, metrics_port))
        stack.callback(prom.stop)
        wait_for(lambda: len(prom.query("up == 1")) == 2, timeout=60, what="both targets scraped")
        yield prom


@pytest.mark.parametrize(
    ("dashboard", "panel", "target"), targets(), ids=[f"{d}:{p}" for d, p, _ in targets()]
)
def test_every_panel_query_returns_data(prometheus, dashboard, panel, target):
    query = substitute(target["expr"])
    where = f"{dashboard}: panel {panel!r}: {query}"
    try:
        result = wait_for(lambda: prometheus.query(query), timeout=60, interval=0.5, what="data")
    except AssertionError as exc:  # no data in time, or Prometheus refused the expression
        raise AssertionError(f"{where}: {exc}") from None
    for label in legend_labels(target.get("legendFormat", "")):
        missing = [r["metric"] for r in result if label not in r["metric"]]
        assert not missing, f"{where}: the legend names {label}, missing on {missing}"


@pytest.mark.parametrize(
    ("dashboard", "name", "query"),
    query_variables(),
    ids=[f"{d}:{n}" for d, n, _ in query_variables()],
)
def test_every_variable_lists_the_real_values(prometheus, dashboard, name, query):
    match = LABEL_VALUES.match(query)
    assert match, f"{dashboard}: ${name}: expected label_values(SELECTOR, LABEL), got {query}"
    selector, label = substitute(match.group(1)), match.group(2)

    def values() -> set[str]:
        return {r["metric"].get(label, "") for r in prometheus.query(selector)} - {""}

    where = f"{dashboard}: ${name}: {query}"
    try:
        wait_for(lambda: EXPECTED_VALUES[name] <= values(), timeout=60, what=where)
    except AssertionError:
        raise AssertionError(
            f"{where}: lists {values()}, expected {EXPECTED_VALUES[name]}"
        ) from None
