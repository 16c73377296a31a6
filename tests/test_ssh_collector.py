"""The ssh collector against a real sshd and real Nagios plugins: host keys verified and
recorded by `dyzur ssh trust`, checks turned into samples, a changed key into an Awaria.

The checks log in as a dedicated non-root user with no shell rc (tests.sshd.dedicated_user), as
dyzur does on an AMMS host; the server's files live where that user reads them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collectors.ssh.collector import SshCollector
from rules.engine import Engine
from rules.loader import load_rule_files
from tests.conftest import free_port
from tests.processes import ROOT
from tests.sshd import Sshd, dedicated_user, keygen, shared_dir, ssh_keygen_fingerprint

PLUGINS = Path("/usr/lib/nagios/plugins")


@pytest.fixture(scope="module")
def login() -> str:
    """The checks' login: not root."""
    name = dedicated_user()
    assert name != "root"
    return name


@pytest.fixture
def sshd(tmp_path, login):
    with shared_dir(tmp_path, "dyzur-ssh-collector-") as shared:
        server = Sshd(shared / "sshd", user=login)  # admits only the login
        client_key = keygen(tmp_path / "id_ed25519")
        server.authorize(Path(f"{client_key}.pub"))
        server.start()
        server.client_key = client_key
        yield server
        server.stop()


def profile(tmp_path: Path, sshd: Sshd, closed_port: int) -> Path:
    if not (PLUGINS / "check_dummy").exists():
        import os

        if os.environ.get("CI"):
            pytest.fail("monitoring-plugins-basic is required under CI")
        pytest.skip("monitoring-plugins-basic not installed")
    path = tmp_path / "amms-test.yaml"
    path.write_text(
        f"""
checks:
  - name: amms_processes
    command: {PLUGINS}/check_dummy 0 "2 processes"
  - name: db_tablespace
    command: printf 'WARNING - tablespace USERS 91%%|USERS=91%%;85;95\\n'; exit 1
  - name: db_listener
    tcp_port: {sshd.port}
  - name: db_listener_closed
    tcp_port: {closed_port}
version_command: echo 7.3.1
"""
    )
    return path


def collector(tmp_path, sshd) -> SshCollector:
    return SshCollector.from_options(
        "amms",
        {
            "known_hosts": str(tmp_path / "known_hosts"),
            "key_file": str(sshd.client_key),
            "user": sshd.user,
            "hosts": [
                {
                    "asset": "amms-a-prod",
                    "host": "127.0.0.1",
                    "port": sshd.port,
                    "environment": "prod",
                    "profile": str(profile(tmp_path, sshd, free_port())),
                }
            ],
        },
    )


def values(samples) -> dict:
    return {
        (s.metric, s.labels.get("check", ""), s.labels.get("version", "")): s.value for s in samples
    }


def trust(tmp_path, sshd, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "ssh", "trust", f"127.0.0.1:{sshd.port}",
         "--known-hosts", str(tmp_path / "known_hosts"), *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=60, input="n\n",
    )  # fmt: skip


def test_an_unknown_host_key_refuses_the_connection(tmp_path, sshd):
    got = values(collector(tmp_path, sshd).collect(1000.0))
    assert got[("dyzur_ssh_up", "", "")] == 0.0
    assert got[("dyzur_ssh_host_key_unknown", "", "")] == 1.0
    assert ("dyzur_check_state", "amms_processes", "") not in got  # nothing ran
    assert sshd.accepted_logins() == 0


def test_trusted_host_checks_become_samples_on_one_connection(tmp_path, sshd):
    r = trust(tmp_path, sshd)  # answered "n": shown, not recorded
    assert r.returncode == 1 and ssh_keygen_fingerprint(sshd.host_key_pub) in r.stdout
    assert "not recorded" in r.stdout
    r = trust(tmp_path, sshd, "--yes")
    assert r.returncode == 0 and "recorded" in r.stdout
    ssh = collector(tmp_path, sshd)
    samples = ssh.collect(1000.0)
    got = values(samples)
    assert got[("dyzur_ssh_up", "", "")] == 1.0
    assert got[("dyzur_check_state", "amms_processes", "")] == 0.0
    assert got[("dyzur_check_state", "db_tablespace", "")] == 1.0
    [perf] = [s for s in samples if s.metric == "dyzur_check_perfdata"]
    assert (perf.labels["label"], perf.labels["unit"], perf.value) == ("USERS", "percent", 91.0)
    assert got[("dyzur_check_state", "db_listener", "")] == 0.0
    assert got[("dyzur_check_state", "db_listener_closed", "")] == 2.0
    assert got[("dyzur_amms_version_info", "", "7.3.1")] == 1.0
    assert all(s.labels["asset"] == "amms-a-prod" for s in samples)
    assert all(s.labels["environment"] == "prod" for s in samples)
    assert sshd.accepted_logins() == 1  # every command on one reused connection
    # Every command run becomes an audit event for the bridge: host, user, command, exit code.
    events = ssh.drain_events()
    assert [(e["action"], e["asset"], e["detail"]["exit_code"]) for e in events] == [
        ("ssh.command", "amms-a-prod", 0),
        ("ssh.command", "amms-a-prod", 1),
        ("ssh.command", "amms-a-prod", 0),
    ]
    assert "check_dummy 0" in events[0]["detail"]["command"]
    assert events[0]["detail"]["user"] == sshd.user
    assert ssh.drain_events() == []  # handed over once


def test_a_changed_host_key_is_refused_and_opens_an_awaria(tmp_path, sshd):
    assert trust(tmp_path, sshd, "--yes").returncode == 0
    sshd.restart(new_host_key_type="ed25519")
    ssh = collector(tmp_path, sshd)
    samples = ssh.collect(1000.0)
    events = ssh.drain_events()
    [event] = [e for e in events if e["action"] == "ssh.host_key_mismatch"]
    assert event["outcome"] == "failure"
    # The command that could not run is on the record too, as a failure.
    assert {e["outcome"] for e in events if e["action"] == "ssh.command"} == {"failure"}
    assert event["detail"]["presented"] == ssh_keygen_fingerprint(sshd.host_key_pub)
    got = values(samples)
    assert got[("dyzur_ssh_host_key_mismatch", "", "")] == 1.0
    assert got[("dyzur_ssh_up", "", "")] == 0.0
    assert sshd.accepted_logins() == 0  # refused before authenticating
    engine = Engine(load_rule_files(["builtin:amms"]))
    fired = [t for t in engine.evaluate(samples, 1000.0) if t.alert.rule == "ssh_host_key_changed"]
    assert [(t.state.value, t.alert.category) for t in fired] == [("firing", "awaria")]
    r = trust(tmp_path, sshd)
    assert "WARNING: this differs from the key recorded" in r.stderr


def test_options_errors_name_the_field(tmp_path):
    from collectors import CollectorConfigError

    with pytest.raises(CollectorConfigError, match=r"hosts\.0\.environment: test or prod"):
        SshCollector.from_options(
            "amms",
            {
                "known_hosts": str(tmp_path / "kh"),
                "key_file": str(tmp_path / "none"),
                "hosts": [{"asset": "a", "host": "h", "environment": "staging"}],
            },
        )
    with pytest.raises(CollectorConfigError, match="key_file: a key file, or use_agent"):
        SshCollector.from_options("amms", {"known_hosts": "kh", "hosts": []})
    for options in ({"use_agent": True, "hosts": []}, {"known_hosts": 5, "use_agent": True}):
        with pytest.raises(
            CollectorConfigError, match=r"^known_hosts: the path of dyzur's known_hosts$"
        ):
            SshCollector.from_options("amms", options)


def test_the_agent_runs_the_checks_and_the_bridge_records_every_command(tmp_path, sshd):
    import yaml

    from bridge.store.sqlite import SQLiteStore
    from tests.conftest import TOKENS, config_data
    from tests.processes import RunningBridge

    assert trust(tmp_path, sshd, "--yes").returncode == 0
    data = config_data("sqlite:///var/dyzur.db")
    data["rule_files"] = ["builtin:amms"]
    data["assets"].append({"id": "amms-a-prod", "client": "szpital-a", "kind": "amms"})
    (tmp_path / "dyzur.yaml").write_text(yaml.safe_dump(data))
    port = free_port()
    (tmp_path / "agent.token").write_text(TOKENS["agent-a"])
    options = {
        "known_hosts": str(tmp_path / "known_hosts"),
        "key_file": str(sshd.client_key),
        "user": sshd.user,
        "hosts": [
            {
                "asset": "amms-a-prod",
                "host": "127.0.0.1",
                "port": sshd.port,
                "environment": "prod",
                "profile": str(profile(tmp_path, sshd, free_port())),
            }
        ],
    }
    (tmp_path / "agent.yaml").write_text(
        yaml.safe_dump(
            {
                "asset": "srv-a1",
                "bridge": {"url": f"http://127.0.0.1:{port}", "token_file": "agent.token"},
                "spool": {"path": "spool.db"},
                "metrics": {"listen": "off"},
                "collectors": [{"name": "amms", "kind": "ssh", "options": options}],
            }
        )
    )
    bridge = RunningBridge(tmp_path / "dyzur.yaml", port)
    try:
        r = subprocess.run(
            [sys.executable, "-m", "agents", "--config", str(tmp_path / "agent.yaml"), "--once"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
    finally:
        bridge.stop()
    store = SQLiteStore(tmp_path / "var/dyzur.db")
    commands = [e for e in store.audit_events() if e.action == "ssh.command"]
    store.close()
    assert [(e.actor, e.client, e.asset, e.detail["exit_code"]) for e in commands] == [
        ("agent:agent-a", "szpital-a", "amms-a-prod", 0),
        ("agent:agent-a", "szpital-a", "amms-a-prod", 1),
        ("agent:agent-a", "szpital-a", "amms-a-prod", 0),
    ]
    secret = Path(sshd.client_key).read_text().splitlines()[1]  # a line of the private key
    assert secret not in r.stderr and secret not in bridge.output()
