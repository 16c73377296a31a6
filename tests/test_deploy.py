"""deploy/: the example configurations are checked by the tools that will read them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.conftest import need_binary
from tests.promstack import alertmanager_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def promtool_check(config: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """promtool also checks that the files the config names exist: they are put into tmp_path
    in place of /etc/prometheus."""
    text = config.read_text().replace("/etc/prometheus/", f"{tmp_path}/")
    (tmp_path / "dyzur-bridge.token").write_text("dz_token\n")
    copy = tmp_path / config.name
    copy.write_text(text)
    for rules in yaml.safe_load(text).get("rule_files", []):
        shutil.copy(config.parent / rules, tmp_path / rules)
    return run(need_binary("promtool"), "check", "config", str(copy))


def test_the_prometheus_configs_pass_promtool(tmp_path):
    for config in (DEPLOY / "prometheus" / "prometheus.yml", DEPLOY / "compose" / "prometheus.yml"):
        workdir = tmp_path / config.parent.name
        workdir.mkdir()
        r = promtool_check(config, workdir)
        assert r.returncode == 0, f"{config}: {r.stdout}{r.stderr}"
    r = run(need_binary("promtool"), "check", "rules", str(DEPLOY / "prometheus" / "rules.yml"))
    assert r.returncode == 0 and "SUCCESS: 2 rules found" in r.stdout, r.stdout + r.stderr


def test_the_alertmanager_configs_pass_amtool(tmp_path):
    amtool = need_binary("amtool")
    r = run(amtool, "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))
    assert r.returncode == 0 and "1 receivers" in r.stdout, r.stdout + r.stderr
    # the receiver the tests' real Alertmanager runs with is valid the same way
    test_config = tmp_path / "am.yml"
    test_config.write_text(yaml.safe_dump(alertmanager_config("http://127.0.0.1:1/x", "t")))
    assert run(amtool, "check-config", str(test_config)).returncode == 0
    broken = tmp_path / "broken.yml"
    broken.write_text("route: {receiver: nobody}\nreceivers: []\n")
    r = run(amtool, "check-config", str(broken))
    assert r.returncode != 0  # the check can fail: it is not a rubber stamp


def test_compose_runs_two_bridges_on_postgresql_and_redis_with_existing_files():
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {
        "bridge-1", "bridge-2", "lb", "postgres", "redis", "prometheus", "grafana"
    }  # fmt: skip
    base = DEPLOY / "compose"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(".") and "secrets" not in source and "config" not in source:
                assert (base / source).resolve().exists(), source
    for name in ("bridge-1", "bridge-2"):
        bridge = services[name]
        assert (base / bridge["build"]["context"]).resolve() == DEPLOY.parent
        assert bridge["environment"]["PGPASSFILE"].startswith("/run/secrets/")  # not the config
    # Redis keeps nothing on disk: nothing acknowledged may depend on it.
    assert services["redis"]["command"] == ["redis-server", "--save", "", "--appendonly", "no"]
    assert "postgres,redis" in (base / "Dockerfile").read_text()
    nginx = (base / "nginx.conf").read_text()
    assert "bridge-1:8080" in nginx and "bridge-2:8080" in nginx and "http_503" in nginx
    scraped = yaml.safe_load((base / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scraped["static_configs"][0]["targets"] == ["bridge-1:8080", "bridge-2:8080"]


def test_the_systemd_units_run_dyzur_as_its_own_user():
    for name, command in (("dyzur-bridge", "dyzur run"), ("dyzur-agent", "dyzur agent")):
        unit = (DEPLOY / "systemd" / f"{name}.service").read_text()
        assert f"ExecStart=/opt/dyzur/bin/{command} --config" in unit
        assert "User=dyzur" in unit and "NoNewPrivileges=yes" in unit
        assert "CapabilityBoundingSet=\n" in unit


def test_the_agent_job_keeps_the_labels_the_dashboards_read():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) >= {"dyzur-bridge", "dyzur-agent"}  # the dashboards' job names
    agent = jobs["dyzur-agent"]
    assert agent["honor_labels"] is True  # a UPS sample keeps asset=<the UPS>
    for group in agent["static_configs"]:
        assert {"asset", "client"} <= set(group["labels"])
