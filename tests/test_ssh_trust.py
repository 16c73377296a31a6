"""`dyzur ssh trust` as the bridge's hint prints it: the bridge's config names dyzur's
known_hosts (ssh.known_hosts, relative to the config), against a real sshd."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from collectors.ssh.known_hosts import KnownHosts
from tests.conftest import config_data, need_binary
from tests.processes import ROOT
from tests.sshd import Sshd, ssh_keygen_fingerprint


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path / "sshd").start()
    yield server
    server.stop()


def bridge_config(tmp_path: Path, ssh: dict | None) -> Path:
    data = config_data("sqlite:///var/dyzur.db")
    if ssh is not None:
        data["ssh"] = ssh
    path = tmp_path / "etc" / "dyzur.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def dyzur(*args) -> subprocess.CompletedProcess:
    """The command as a user types it, from another directory than the config's."""
    return subprocess.run(
        [sys.executable, "-m", "bridge", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        input="n\n",
    )


def test_trust_records_the_key_in_the_known_hosts_of_the_bridges_config(tmp_path, sshd):
    config = bridge_config(tmp_path, {"known_hosts": "keys/known_hosts", "use_agent": True})
    known_hosts = config.parent / "keys" / "known_hosts"
    host = f"127.0.0.1:{sshd.port}"
    r = dyzur("ssh", "trust", host, "--config", config)  # answered "n": shown, not recorded
    assert r.returncode == 1, r.stderr
    assert ssh_keygen_fingerprint(sshd.host_key_pub) in r.stdout
    assert not known_hosts.exists()
    r = dyzur("ssh", "trust", host, "--config", config, "--yes")
    assert r.returncode == 0, r.stderr
    assert f"recorded in {known_hosts}" in r.stdout
    # OpenSSH finds it there, and so does the bridge's runner (the same file).
    found = subprocess.run(
        [need_binary("ssh-keygen"), "-F", f"[127.0.0.1]:{sshd.port}", "-f", str(known_hosts)],
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0 and found.stdout.strip()
    [key] = KnownHosts(known_hosts).lookup("127.0.0.1", sshd.port)
    assert key.get_base64() == sshd.host_key_pub.read_text().split()[1]
    r = dyzur("ssh", "trust", host, "-c", config)
    assert r.returncode == 0 and "already trusted" in r.stdout


def test_trust_needs_to_know_where_to_record(tmp_path, sshd):
    r = dyzur("ssh", "trust", f"127.0.0.1:{sshd.port}")
    assert r.returncode == 2
    assert "--config dyzur.yaml" in r.stderr and "--known-hosts FILE" in r.stderr


def test_a_bridge_config_without_an_ssh_section_is_a_clear_message(tmp_path, sshd):
    config = bridge_config(tmp_path, None)
    r = dyzur("ssh", "trust", f"127.0.0.1:{sshd.port}", "--config", config, "--yes")
    assert r.returncode == 2
    assert f"{config}: no ssh section" in r.stderr and "Traceback" not in r.stderr
    assert list(config.parent.iterdir()) == [config]  # nothing written
    r = dyzur("ssh", "trust", f"127.0.0.1:{sshd.port}", "--config", tmp_path / "missing.yaml")
    assert r.returncode == 2 and "missing.yaml: cannot read the file" in r.stderr


def test_the_agents_known_hosts_still_works(tmp_path, sshd):
    known_hosts = tmp_path / "agent" / "known_hosts"
    r = dyzur("ssh", "trust", f"127.0.0.1:{sshd.port}", "--known-hosts", known_hosts, "--yes")
    assert r.returncode == 0, r.stderr
    assert KnownHosts(known_hosts).lookup("127.0.0.1", sshd.port)


def test_dyzur_help_lists_ssh():
    r = dyzur("--help")
    assert r.returncode == 0
    assert re.search(r"^\W*ssh +Record a host key: dyzur ssh trust HOST:PORT", r.stdout, re.M)
    r = dyzur("ssh", "--help")
    assert r.returncode == 0 and "trust" in r.stdout
