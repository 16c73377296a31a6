"""Rule files: what loads, and errors that name the file and the line."""

from __future__ import annotations

import math

import pytest

from collectors.durations import format_duration, parse_duration
from rules.engine import Engine
from rules.loader import (
    RuleFileError,
    builtin_packs,
    load_rule_file,
    load_rule_files,
    load_rules_text,
)
from rules.model import Condition, Escalation, Matcher

TEXTS = """\
    title: {pl: "Dysk {{ labels.asset }}", en: "Disk {{ labels.asset }}"}
    description: {pl: "Opis", en: "Description"}
"""


def rules_yaml(*rules: str) -> str:
    """A rule file whose rules each get valid title and description lines appended."""
    return "rules:\n" + "".join(r + TEXTS for r in rules)


DISK = """\
  - name: disk
    metric: dyzur_filesystem_used_ratio
    when: '> 0.9'
    category: usterka
"""


def error(text: str, source: str = "site.yaml") -> RuleFileError:
    with pytest.raises(RuleFileError) as info:
        load_rules_text(text, source)
    return info.value


# --- what loads ------------------------------------------------------------------------------


def test_full_threshold_rule_loads_with_every_field():
    text = """\
rules:
  - name: filesystem_usage
    metric: dyzur_filesystem_used_ratio
    match: {fstype: '!~ tmpfs|overlay', mountpoint: '=~ /.*', job: host, env: '!= test'}
    when: '> 0.90'
    for: 5m
    clear: '< 0.85'
    category: usterka
    escalate: {when: '>= 0.98', category: awaria, for: 1m30s}
    labels: [mountpoint]
    keep_open: true
    title: {pl: "Zajętość {{ labels.mountpoint }}", en: "Usage {{ labels.mountpoint }}"}
    description:
      pl: |
        Wielowierszowy
        opis
      en: Description
"""
    [rule] = load_rules_text(text, "site.yaml")
    assert rule.name == "filesystem_usage"
    assert rule.metric == "dyzur_filesystem_used_ratio"
    assert rule.matchers == (
        Matcher("fstype", "!~", "tmpfs|overlay"),
        Matcher("mountpoint", "=~", "/.*"),
        Matcher("job", "=", "host"),
        Matcher("env", "!=", "test"),
    )
    assert rule.condition == Condition(">", 0.9)
    assert rule.for_seconds == 300
    assert rule.clear == Condition("<", 0.85)
    assert rule.escalation == Escalation(Condition(">=", 0.98), "awaria", 90)
    assert rule.identity == ("asset", "mountpoint")  # asset added
    assert rule.keep_open is True
    assert rule.title.pl == "Zajętość {{ labels.mountpoint }}"
    assert rule.description.pl == "Wielowierszowy\nopis\n"
    assert rule.source == "site.yaml:2"
    assert rule.absent_seconds is None


def test_defaults_of_a_minimal_rule():
    [rule] = load_rules_text(rules_yaml(DISK), "x.yaml")
    assert rule.for_seconds == 0
    assert rule.clear == Condition("<=", 0.9)  # the negation of `when`
    assert rule.escalation is None
    assert rule.identity == ("asset",)
    assert rule.keep_open is False
    assert rule.matchers == ()


def test_absence_rule_loads():
    text = rules_yaml(
        """\
  - name: ups_silent
    absent: 10m
    metric: dyzur_ups_battery_ratio
    match: {job: snmp}
    category: awaria
"""
    )
    [rule] = load_rules_text(text, "x.yaml")
    assert rule.absent_seconds == 600
    assert rule.condition is None
    assert rule.metric == "dyzur_ups_battery_ratio"
    assert rule.identity == ("asset",)


def test_empty_rule_list_is_fine():
    assert load_rules_text("rules: []\n", "x.yaml") == []


def test_load_rule_file_names_the_path(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(rules_yaml(DISK), encoding="utf-8")
    [rule] = load_rule_file(path)
    assert rule.source == f"{path}:2"


# --- errors name the file and the line -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param(
            rules_yaml(DISK + "    thresold: 0.9\n"),
            6,
            "unknown key 'thresold' in a rule (allowed: name, metric, match,",
            id="unknown-key",
        ),
        pytest.param(
            rules_yaml(DISK.replace("category: usterka", "category: pilne")),
            5,
            "category 'pilne' is not one of utrzymanie, usterka, awaria",
            id="category",
        ),
        pytest.param(
            rules_yaml(DISK.replace("    category: usterka\n", "")),
            2,
            "rule 'disk': missing key 'category'",
            id="missing-category",
        ),
        pytest.param(
            rules_yaml(DISK.replace("'> 0.9'", "'more than 0.9'")),
            4,
            "'when': expected a comparison such as '> 0.9'",
            id="comparison",
        ),
        pytest.param(
            rules_yaml(DISK.replace("'> 0.9'", "0.9")),
            4,
            "(quote it)",
            id="comparison-not-a-string",
        ),
        pytest.param(
            rules_yaml(DISK.replace("'> 0.9'", "'> 90%'")),
            4,
            "a ratio is 0.9, not 90%",
            id="percent-threshold",
        ),
        pytest.param(
            rules_yaml(DISK.replace("'> 0.9'", "'> nan'")),
            4,
            "threshold must be a finite number, got 'nan'",
            id="nan-threshold",
        ),
        pytest.param(
            rules_yaml(DISK.replace("'> 0.9'", "'> inf'")),
            4,
            "threshold must be a finite number",
            id="inf-threshold",
        ),
        pytest.param(
            rules_yaml(DISK + "    match:\n      job: host\n      mountpoint: '=~ /var(.*'\n"),
            8,
            "invalid regular expression '/var(.*' for label 'mountpoint'",
            id="bad-regex",
        ),
        pytest.param(
            rules_yaml(DISK + "    match: {'bad-label': x}\n"),
            6,
            "invalid label name 'bad-label'",
            id="bad-label",
        ),
        pytest.param(
            rules_yaml(DISK + "    for: 5 minutes\n"),
            6,
            "'for': expected a duration such as 30s, 5m, 1h30m or 2d",
            id="duration",
        ),
        pytest.param(
            rules_yaml(DISK + "    clear: '> 0.8'\n"),
            6,
            "clear '> 0.8' must compare in the opposite direction of when '> 0.9'",
            id="clear-direction",
        ),
        pytest.param(
            rules_yaml(DISK + "    clear: '< 0.95'\n"),
            6,
            "clear '< 0.95' overlaps when '> 0.9'",
            id="clear-unsafe-side",
        ),
        pytest.param(
            rules_yaml(DISK.replace("'> 0.9'", "'>= 0.9'") + "    clear: '<= 0.9'\n"),
            6,
            "overlaps",
            id="clear-touching",
        ),
        pytest.param(
            rules_yaml(DISK + "    escalate: {when: '> 0.98', category: usterka}\n"),
            6,
            "escalation category 'usterka' must be more severe than 'usterka'",
            id="escalation-category",
        ),
        pytest.param(
            rules_yaml(DISK + "    escalate:\n      category: awaria\n      when: '> 0.8'\n"),
            8,
            "escalation '> 0.8' must be '>' or '>=' a threshold above 0.9",
            id="escalation-threshold",
        ),
        pytest.param(
            rules_yaml(DISK + "    escalate: {when: '> 0.98', category: awaria, fr: 1m}\n"),
            6,
            "unknown key 'fr' in escalate (allowed: when, category, for)",
            id="escalation-unknown-key",
        ),
        pytest.param(
            rules_yaml(DISK.replace("name: disk", "name: Disk-Usage")),
            2,
            "rule name 'Disk-Usage' must match [a-z0-9_]+",
            id="rule-name",
        ),
        pytest.param(
            rules_yaml(DISK.replace("    metric: dyzur_filesystem_used_ratio\n", "")),
            2,
            "missing key 'metric'",
            id="missing-metric",
        ),
        pytest.param(
            rules_yaml(DISK.replace("    when: '> 0.9'\n", "")),
            2,
            "needs 'when' (a threshold rule) or 'absent' (an absence rule)",
            id="neither-when-nor-absent",
        ),
        pytest.param(
            rules_yaml(DISK + "    absent: 5m\n"),
            4,
            "an absence rule takes no 'when'",
            id="absent-with-when",
        ),
        pytest.param(
            rules_yaml(DISK + "    labels: [mountpoint, mountpoint]\n"),
            6,
            "label 'mountpoint' listed twice",
            id="labels-twice",
        ),
        pytest.param(
            rules_yaml(DISK + "    when: '> 0.8'\n"),
            6,
            "duplicate key 'when' (first at line 4)",
            id="duplicate-key",
        ),
        pytest.param(
            rules_yaml(DISK, DISK),
            8,
            "duplicate rule name 'disk' (first defined at site.yaml:2)",
            id="duplicate-name",
        ),
        pytest.param(
            "rules:\n  - name: disk\n    metric: m\n    when: > 0.9\n",
            4,
            "quote comparisons",
            id="unquoted-comparison",
        ),
        pytest.param(
            rules_yaml(DISK) + "  - name: [unclosed\n",
            8,
            "invalid YAML",
            id="yaml-syntax",
        ),
        pytest.param(
            rules_yaml(DISK + "    keep_open: 1\n"),
            6,
            "'keep_open' must be true or false",
            id="keep-open",
        ),
        pytest.param(
            rules_yaml(DISK + "    escalate:\n      when: '> 0.98'\n"),
            7,
            "escalate needs 'category'",
            id="escalation-category-missing",
        ),
        pytest.param(
            "rules:\n  - name: disk\n    metric: m\n    when: '> 1'\n    category: awaria\n",
            2,
            "missing key 'title'",
            id="missing-title",
        ),
        pytest.param(
            rules_yaml("  - name: silent\n    category: awaria\n    absent: 5m\n    for: 1m\n"),
            5,
            "an absence rule takes no 'for'",
            id="absent-with-for",
        ),
        pytest.param(
            rules_yaml("  - name: silent\n    category: awaria\n    absent: soon\n"),
            4,
            "'absent': expected a duration",
            id="absent-duration",
        ),
        pytest.param(
            rules_yaml(
                "  - name: silent\n    category: awaria\n    absent: 5m\n    match: {a: b}\n"
            ),
            5,
            "'match' on an absence rule needs 'metric'",
            id="absent-match-without-metric",
        ),
        pytest.param("rule:\n  - name: x\n", 1, "unknown key 'rule' in a rule file", id="top-key"),
        pytest.param("- name: x\n", 1, "a rule file must be a mapping", id="top-list"),
        pytest.param("rules:\n  - just a string\n", 1, "rule #1 must be a mapping", id="rule-str"),
    ],
)
def test_errors_name_the_file_and_the_line(text, line, message):
    err = error(text)
    assert err.source == "site.yaml"
    assert err.line == line
    assert message in err.message
    assert str(err) == f"site.yaml:{line}: {err.message}"


@pytest.mark.parametrize(
    "group", ["Power", "power supply", "'zasilanie-ups'", "''", "7", "[power]"]
)
def test_a_bad_incident_group_names_the_file_and_the_line(tmp_path, group):
    path = tmp_path / "site.yaml"
    path.write_text(rules_yaml(DISK + f"    group: {group}\n"), encoding="utf-8")
    with pytest.raises(RuleFileError) as info:
        load_rule_file(path)
    err = info.value
    assert (err.source, err.line) == (str(path), 6)
    assert str(err).startswith(f"{path}:6: rule 'disk': 'group' must be a name of [a-z0-9_]+")
    # a good one loads
    path.write_text(rules_yaml(DISK + "    group: power_2\n"), encoding="utf-8")
    assert [r.group for r in load_rule_file(path)] == ["power_2"]


def test_template_syntax_error_names_the_line_of_the_template():
    text = """\
rules:
  - name: disk
    metric: dyzur_filesystem_used_ratio
    when: '> 0.9'
    category: usterka
    title:
      pl: "Dysk {{ labels.asset }"
      en: "Disk {{ labels.asset }}"
    description: {pl: "Opis", en: "Description"}
"""
    err = error(text)
    assert err.line == 7
    assert "title.pl: template syntax error" in err.message


def test_missing_language_is_an_error():
    text = rules_yaml(DISK).replace('en: "Disk {{ labels.asset }}"', 'de: "Platte"')
    err = error(text)
    assert err.line == 6
    assert "unknown key 'de' in title (allowed: pl, en)" in err.message


@pytest.mark.parametrize(
    ("text", "line", "noticed"),
    [
        ("rules:\n  - name: disk\n    metric: [a, b\n    when: '> 1'\n", 3, 4),
        ('rules:\n  - name: "disk\n    metric: m\n', 2, 4),
        ("rules:\n  - name: disk\n   metric: m\n", 3, None),
    ],
)
def test_yaml_syntax_error_blames_the_line_to_fix(text, line, noticed):
    err = error(text)
    assert err.line == line
    assert str(err).startswith(f"site.yaml:{line}: invalid YAML")
    if noticed:
        assert f"(noticed at line {noticed})" in err.message


def test_empty_file_is_an_error_without_a_line():
    err = error("")
    assert err.line is None
    assert str(err) == "site.yaml: empty rule file (expected a mapping with the key 'rules')"


def test_missing_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(RuleFileError) as info:
        load_rule_file(path)
    assert info.value.source == str(path)
    assert info.value.line is None
    assert "cannot read the file" in str(info.value)


def test_duplicate_names_across_files_name_both_places(tmp_path):
    first = tmp_path / "a.yaml"
    second = tmp_path / "b.yaml"
    first.write_text(rules_yaml(DISK), encoding="utf-8")
    other = DISK.replace("name: disk", "name: other")
    second.write_text(rules_yaml(other, DISK), encoding="utf-8")
    with pytest.raises(RuleFileError) as info:
        load_rule_files([first, str(second)])
    err = info.value
    assert (err.source, err.line) == (str(second), 8)
    assert f"duplicate rule name 'disk' (first defined at {first}:2)" in err.message


def test_duplicate_of_a_builtin_rule_is_an_error(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(rules_yaml(DISK.replace("name: disk", "name: memory_usage")), "utf-8")
    with pytest.raises(RuleFileError, match=r"first defined at builtin:hosts:\d+"):
        load_rule_files(["builtin:hosts", path])


def test_unknown_builtin_pack():
    with pytest.raises(RuleFileError) as info:
        load_rule_files(["builtin:routers"])
    assert str(info.value) == (
        "builtin:routers: no built-in rule pack 'routers' (available: amms, hosts, storage, ups)"
    )


# --- the shipped packs -----------------------------------------------------------------------


def test_builtin_host_pack_loads_with_the_documented_rules():
    assert "hosts" in builtin_packs()
    rules = {r.name: r for r in load_rule_files(["builtin:hosts"])}
    assert set(rules) == {
        "filesystem_usage",
        "filesystem_inodes",
        "memory_usage",
        "swap_usage",
        "load_high",
        "agent_silent",
    }
    fs = rules["filesystem_usage"]
    assert (fs.metric, fs.condition, fs.clear, fs.for_seconds) == (
        "dyzur_filesystem_used_ratio",
        Condition(">", 0.9),
        Condition("<", 0.85),
        300,
    )
    assert fs.identity == ("asset", "mountpoint")
    assert fs.escalation == Escalation(Condition(">", 0.98), "awaria", 0)
    assert rules["memory_usage"].condition == Condition(">", 0.95)
    assert rules["memory_usage"].for_seconds == 600
    assert rules["load_high"].metric == "dyzur_load1_per_cpu"
    assert (rules["load_high"].condition, rules["load_high"].clear) == (
        Condition(">", 2),
        Condition("<", 1.5),
    )
    assert rules["agent_silent"].absent_seconds == 300
    assert rules["agent_silent"].metric is None
    Engine(list(rules.values()))  # compiles


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1d2h3m4s", 93784),
        ("1.5h", 5400),
        ("0s", 0),
        ("300", 300),
        (90, 90),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5x", "m5", "5m1h", "-5s", "1h 30m", True, None, -1, math.nan])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_format_duration():
    assert [format_duration(s) for s in (0, 59, 330, 7200, 93784)] == [
        "0s",
        "59s",
        "5m30s",
        "2h",
        "1d2h3m4s",
    ]
