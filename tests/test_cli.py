"""The `dyzur` command as a user runs it: exit codes and messages."""

from __future__ import annotations

import subprocess
import sys

import yaml

from bridge.auth import hash_token
from tests.conftest import DATA


def dyzur(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "bridge", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def test_init_writes_a_config_that_check_config_accepts(tmp_path):
    path = tmp_path / "dyzur.yaml"
    r = dyzur("init", path)
    assert r.returncode == 0, r.stderr
    tokens = (tmp_path / "dyzur.yaml.tokens").read_text().split("\n")
    assert (tmp_path / "dyzur.yaml.tokens").stat().st_mode & 0o077 == 0
    name, role, token = tokens[0].split("\t")
    config = yaml.safe_load(path.read_text())
    assert {"name": name, "sha256": hash_token(token), "role": role} in config["tokens"]
    assert token not in path.read_text()  # the config holds only hashes
    r = dyzur("check-config", path)
    assert r.returncode == 0 and "OK" in r.stdout
    assert dyzur("init", path).returncode != 0  # never overwrites silently


def test_check_config_names_the_field(tmp_path):
    path = tmp_path / "dyzur.yaml"
    path.write_text("clients:\n  - {id: a, name: A}\nassets:\n  - {id: s, client: b}\n")
    r = dyzur("check-config", path)
    assert r.returncode != 0
    assert "assets.0.client: unknown client 'b'" in r.stderr


def test_rules_check(tmp_path):
    r = dyzur("rules", "check", DATA / "test_rules.yaml")
    assert r.returncode == 0 and "OK: 2 rules" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n  - name: a\n    metric: m\n    when: '> 1'\n    category: usterka\n    title: {pl: x, en: y}\n    description: {pl: x, en: y}\n    thresold: 3\n"
    )
    r = dyzur("rules", "check", bad)
    assert r.returncode != 0
    assert f"{bad}:8:" in r.stderr and "thresold" in r.stderr


def test_token_new_prints_a_token_whose_hash_is_in_the_entry():
    r = dyzur("token", "new", "--name", "agent-x", "--role", "agent")
    assert r.returncode == 0
    token = r.stdout.split("give it to its user): ")[1].split()[0]
    [entry] = yaml.safe_load(r.stdout.split("in dyzur.yaml:\n")[1])
    assert entry == {"name": "agent-x", "sha256": hash_token(token), "role": "agent"}
    r = dyzur("token", "new", "--name", "x", "--role", "root")
    assert r.returncode != 0 and "unknown role 'root'" in r.stderr
