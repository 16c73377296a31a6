"""dyzur.yaml validation: every problem names its field."""

from __future__ import annotations

import copy

import pytest

from bridge.config import EXAMPLE_CONFIG, ConfigError, load_config, parse_config
from tests.conftest import config_data


def problems(data, tmp_path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "dyzur.yaml", tmp_path)
    return info.value.problems


def test_the_test_config_is_valid(loaded):
    assert set(loaded.clients) == {"szpital-a", "klinika-b"}
    assert {"disk_usage", "service_down", "agent_silent"} <= {r.name for r in loaded.rules}
    assert loaded.config.reopen_period == 3600


def test_the_shipped_example_is_valid():
    loaded = load_config(EXAMPLE_CONFIG)
    assert loaded.config.store == "sqlite:///var/dyzur.db"
    assert loaded.rules


def edit(path: str, value):
    data = copy.deepcopy(config_data())
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("listen", {"port": 70000}, "listen.port: Input should be less than or equal to 65535"),
        ("listen", {"tls_cert": "cert.pem"}, "listen: tls_cert and tls_key go together"),
        ("listen", {"tls_cert": "c.pem", "tls_key": "k.pem"}, "listen.tls_cert: no such file"),
        ("reopen_period", "soon", "reopen_period: Value error"),
        ("clients.0.contract.hours", "sometimes", "clients.0.contract.hours"),
        ("clients.0.contract.colour", "red", "clients.0.contract.colour: Extra inputs"),
        ("assets.1.client", "szpital-x", "assets.1.client: unknown client 'szpital-x'"),
        ("assets.1.depends_on", "ups-x", "assets.1.depends_on: unknown asset 'ups-x'"),
        (
            "assets.1.depends_on",
            "ups-b1",
            "assets.1.depends_on: asset 'ups-b1' belongs to client 'klinika-b', not 'szpital-a'",
        ),
        ("assets.2.depends_on", "ups-b1", None),  # within one hospital
        ("assets.1.id", "srv-a1", "assets.1.id: duplicate asset id 'srv-a1'"),
        ("assets.1.environment", "staging", "assets.1.environment"),
        ("tokens.0.role", "root", "tokens.0.role: unknown role 'root'"),
        ("tokens.0.role", "client:nowhere", "tokens.0.role: unknown client 'nowhere'"),
        ("tokens.0.sha256", "secret", "tokens.0.sha256: String should match pattern"),
        ("tokens.4.client", "klinika-b", "tokens.4.client: only agent tokens are scoped"),
        ("store", KeyError, None),
    ],
)
def test_each_problem_names_its_field(tmp_path, path, value, expected):
    data = edit(path, value)
    if expected is None:
        parse_config(data, "dyzur.yaml", tmp_path)  # a missing setting takes its default
        return
    assert any(p.startswith(expected) for p in problems(data, tmp_path)), problems(data, tmp_path)


def test_a_broken_rule_file_is_named_with_its_line(tmp_path):
    rules = tmp_path / "broken.yaml"
    rules.write_text("rules:\n  - name: x\n    metric: m\n    when: '> 1'\n    category: pilne\n")
    data = config_data()
    data["rule_files"] = ["broken.yaml"]  # relative to the config's directory
    [problem] = problems(data, tmp_path)
    assert problem.startswith(f"rule_files: {rules}:")
    assert "pilne" in problem


def test_yaml_errors_give_the_line(tmp_path):
    path = tmp_path / "dyzur.yaml"
    path.write_text("store: sqlite:///x.db\nclients:\n  - id: a\n   name: broken indent\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "line 4" in str(info.value) and str(path) in str(info.value)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("tick_interval", "0s", "tick_interval: Value error, must be from 0.1s to 10m, got 0s"),
        ("tick_interval", 0, "tick_interval: Value error, must be from 0.1s to 10m, got 0s"),
        ("tick_interval", "0.05s", "tick_interval: Value error, must be from 0.1s to 10m"),
        ("tick_interval", "1h", "tick_interval: Value error, must be from 0.1s to 10m, got 1h"),
        ("reopen_period", "31d", "reopen_period: Value error, must be from 0s to 30d, got 31d"),
        ("max_clock_skew", "0s", "max_clock_skew: Value error, must be from 1s to 1d, got 0s"),
        (
            "max_clock_skew",
            1e300,
            "max_clock_skew: Value error, must be from 1s to 1d, got 1e+300s",
        ),
        ("updates", {"soak": "15d"}, "updates.soak: Value error, must be from 0s to 14d"),
        (
            "ssh",
            {"known_hosts": "kh", "use_agent": True, "connect_timeout": "0s"},
            "ssh.connect_timeout: Value error, must be from 1s to 5m",
        ),
        (
            "clients.0.contract.reaction",
            {"awaria": "0s"},
            "clients.0.contract.reaction.awaria: Value error, must be from 1s to 30d",
        ),
        (
            "clients.0.contract.reaction",
            {"usterka": "99999999999d"},
            "clients.0.contract.reaction.usterka: Value error, must be from 1s to 30d",
        ),
        # The bounds themselves are taken.
        ("tick_interval", "0.1s", None),
        ("tick_interval", "10m", None),
        ("reopen_period", "0s", None),
        ("updates", {"soak": "0s"}, None),
        ("max_clock_skew", "1d", None),
        ("clients.0.contract.reaction", {"awaria": "30d", "usterka": "1s"}, None),
    ],
)
def test_durations_out_of_their_range_are_refused_naming_the_field(tmp_path, path, value, expected):
    data = edit(path, value)
    if expected is None:
        parse_config(data, "dyzur.yaml", tmp_path)
        return
    found = problems(data, tmp_path)
    assert any(p.startswith(expected) for p in found), found


def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "dyzur.yaml"
    path.write_bytes("clients:\n  - {id: a, name: Szpital w \u0141odzi}\n".encode("cp1250"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == ["line 2: not UTF-8 text (byte 0xa3); save it as UTF-8"]


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_deeply_nested_yaml_is_a_clear_error(tmp_path, opening):
    path = tmp_path / "dyzur.yaml"
    path.write_text("clients: " + opening * 10_000 + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == ["invalid YAML: nested too deeply"]


def test_a_deeply_nested_rule_file_is_named(tmp_path):
    (tmp_path / "deep.yaml").write_text("rules: " + "[" * 10_000 + "\n")
    data = config_data()
    data["rule_files"] = ["deep.yaml"]
    assert problems(data, tmp_path) == [
        f"rule_files: {tmp_path / 'deep.yaml'}: invalid YAML: nested too deeply"
    ]


@pytest.mark.parametrize("value", ["0s", "400d"])
def test_agent_events_max_age_has_a_range(tmp_path, value):
    found = problems(edit("agent_events_max_age", value), tmp_path)
    assert any(
        p.startswith("agent_events_max_age: Value error, must be from 1m to 365d") for p in found
    )


# --- one YAML loader (collectors.yamlfile) for the bridge's and the agent's configs and rules -


def test_a_setting_given_twice_is_refused_naming_both_lines(tmp_path):
    """The second reopen_period would silently win: the file is refused instead."""
    import yaml

    path = tmp_path / "dyzur.yaml"
    text = yaml.safe_dump(config_data(), sort_keys=False)
    first = text.splitlines().index("reopen_period: 1h") + 1
    path.write_text(text + "reopen_period: 2h\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    last = len(text.splitlines()) + 1
    assert info.value.problems == [
        f"line {last}: invalid YAML: duplicate key 'reopen_period' (first at line {first})"
    ]


def test_an_agent_setting_given_twice_is_refused_naming_both_lines(tmp_path):
    from agents.config import AgentConfigError, load_agent_config

    path = tmp_path / "agent.yaml"
    path.write_text(
        "asset: srv-a1\nbridge: {url: 'http://127.0.0.1:9'}\n"
        "collectors: [{name: host}]\nasset: srv-a2\n"
    )
    with pytest.raises(AgentConfigError) as info:
        load_agent_config(path)
    assert info.value.problems == ["line 4: invalid YAML: duplicate key 'asset' (first at line 1)"]


def test_a_rule_file_that_is_not_utf8_names_the_line(tmp_path):
    from rules.loader import RuleFileError, load_rule_file

    path = tmp_path / "site.yaml"
    path.write_bytes("rules:\n  - name: dysk\n    # \u0141\u00f3d\u017a\n".encode("cp1250"))
    with pytest.raises(RuleFileError) as info:
        load_rule_file(path)
    assert str(info.value) == f"{path}:3: not UTF-8 text (byte 0xa3); save it as UTF-8"


def test_several_bridges_share_a_postgresql_store_and_redis(tmp_path):
    data = config_data("sqlite:///dyzur.db")
    data["coordination"] = "redis://127.0.0.1:6379/0"
    assert any(
        p.startswith("coordination: several bridges share a PostgreSQL store")
        for p in problems(data, tmp_path)
    )
    data["store"] = "postgresql://dyzur@db.example.pl/dyzur"
    data["cluster"] = {"lease": "20s", "prefix": "szpitale"}
    config = parse_config(data, "dyzur.yaml", tmp_path).config
    assert config.cluster.lease == 20.0 and config.cluster.handover_timeout == 10.0
    data["coordination"] = "http://redis:6379"
    assert any(p.startswith("coordination:") for p in problems(data, tmp_path))
    data["coordination"] = "redis://127.0.0.1:6379/0"
    data["cluster"] = {"lease": "1s", "prefix": "Zły prefiks"}
    found = problems(data, tmp_path)
    assert any(p.startswith("cluster.lease:") for p in found)
    assert any(p.startswith("cluster.prefix:") for p in found)
