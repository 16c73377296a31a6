"""Ticket titles and descriptions from rule templates."""

from __future__ import annotations

import dataclasses

import pytest

from rules.loader import load_rule_files
from rules.model import Alert, AlertState, Condition, Rule, Text
from rules.templates import (
    TemplateRenderError,
    compile_templates,
    duration,
    format_number,
    human_bytes,
    percent,
    render,
    try_render,
    uses_category,
)

NBSP = "\u00a0"  # Polish thousands separator: a space that never breaks a number

RULE = Rule(
    name="filesystem_usage",
    category="usterka",
    title=Text(
        pl="Zajętość {{ labels.mountpoint }} na {{ labels.asset }}: {{ value | percent }}",
        en="Filesystem {{ labels.mountpoint }} on {{ labels.asset }}: {{ value | percent }}",
    ),
    description=Text(
        pl="Próg {{ threshold | percent }} przez {{ for_seconds | duration }} ({{ category }}).",
        en="Threshold {{ threshold | percent }} for {{ for_seconds | duration }} ({{ category }}).",
    ),
    metric="dyzur_filesystem_used_ratio",
    condition=Condition(">", 0.9),
    for_seconds=300,
    identity=("asset", "mountpoint"),
)


def alert(value: float = 0.934, category: str = "usterka", **labels: str) -> Alert:
    labels = {"asset": "srv-amms-01", "mountpoint": "/var", **labels}
    return Alert(
        rule=RULE.name,
        fingerprint="f" * 16,
        labels=labels,
        state=AlertState.FIRING,
        category=category,
        value=value,
        active_since=0,
        fired_at=300,
    )


def with_title(pl: str, en: str = "x") -> Rule:
    return dataclasses.replace(RULE, title=Text(pl=pl, en=en))


def test_renders_both_languages():
    assert render(RULE, alert(), "pl") == (
        "Zajętość /var na srv-amms-01: 93,4 %",
        "Próg 90,0 % przez 5m (usterka).",
    )
    assert render(RULE, alert(category="awaria"), "en") == (
        "Filesystem /var on srv-amms-01: 93.4 %",
        "Threshold 90.0 % for 5m (awaria).",
    )


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="unknown language 'de'"):
        render(RULE, alert(), "de")


def test_filters():
    assert percent(0.934) == "93.4 %"
    assert percent(1) == "100.0 %"
    assert percent("n/a") == "n/a"
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(5 * 1024**3) == "5.0 GiB"
    assert human_bytes(3.2 * 1024**4) == "3.2 TiB"
    assert duration(330) == "5m30s"
    assert duration(86400 + 3600) == "1d1h"


def test_filters_write_numbers_as_the_language_does():
    assert percent(0.2, lang="pl") == "20,0 %"
    assert percent(0.2, lang="en") == "20.0 %"
    assert percent(12.345, 2, lang="pl") == f"1{NBSP}234,50 %"
    assert percent(12.345, 2, lang="en") == "1,234.50 %"
    assert human_bytes(1536, lang="pl") == "1,5 KiB"
    assert human_bytes(1023.9 * 1024, lang="pl") == f"1{NBSP}023,9 KiB"
    assert human_bytes(1023.9 * 1024, lang="en") == "1,023.9 KiB"
    # A value that is not there is a dash, never "nan".
    for missing in (float("nan"), None):
        assert percent(missing, lang="pl") == "—"
        assert human_bytes(missing, lang="pl") == "—"
        assert duration(missing) == "—"


@pytest.mark.parametrize(
    ("value", "pl", "en"),
    [
        (1234.5, f"1{NBSP}234,5", "1,234.5"),
        (1234567.0, f"1{NBSP}234{NBSP}567", "1,234,567"),
        (0.934, "0,934", "0.934"),
        (20.0, "20", "20"),
        (-1234.5678, f"-1{NBSP}234,57", "-1,234.57"),
        (0.0001234567, "0,000123457", "0.000123457"),
        (2.5e18, "2,5e+18", "2.5e+18"),
        (0, "0", "0"),
        (float("nan"), "—", "—"),
        (None, "—", "—"),
    ],
)
def test_format_number(value, pl, en):
    assert format_number(value, "pl") == pl
    assert format_number(value, "en") == en


def test_filters_inside_templates():
    rule = with_title(
        "{{ 1610612736 | bytes }} / {{ 3700 | duration }} / {{ 0.5 | percent }}",
        en="{{ 1610612736 | bytes }} / {{ 3700 | duration }} / {{ 0.5 | percent }}",
    )
    assert render(rule, alert(), "pl")[0] == "1,5 GiB / 1h1m40s / 50,0 %"
    assert render(rule, alert(), "en")[0] == "1.5 GiB / 1h1m40s / 50.0 %"


def test_a_bare_number_and_the_number_filter_follow_the_language():
    rule = with_title(
        "{{ value }} V / {{ value | number(2) }} / {{ 1234.5 }} / {{ 12 }}",
        en="{{ value }} V / {{ value | number(2) }} / {{ 1234.5 }} / {{ 12 }}",
    )
    # The title stays one line without breaking "1 234,5" apart.
    assert render(rule, alert(value=207.5), "pl")[0] == f"207,5 V / 207,50 / 1{NBSP}234,5 / 12"
    assert render(rule, alert(value=207.5), "en")[0] == "207.5 V / 207.50 / 1,234.5 / 12"


def test_title_is_one_line_of_at_most_200_characters():
    rule = with_title("Pierwsza\n  druga\tlinia {{ 'x' * 500 }}")
    title, _ = try_render(rule, alert(), "pl")
    assert "\n" not in title
    assert title.startswith("Pierwsza druga linia xxx")
    assert len(title) == 200
    assert title.endswith("…")


def test_output_is_plain_text_not_html_escaped():
    rule = with_title("{{ labels.mountpoint }} & <b>", en="x")
    assert render(rule, alert(mountpoint="/srv/<dane>"), "pl")[0] == "/srv/<dane> & <b>"


@pytest.mark.parametrize(
    "template",
    [
        "{{ labels.serial_no }}",  # a label the alert does not have
        "{{ value / 0 }}",
        "{{ labels.asset + 1 }}",
        "{{ nope() }}",
    ],
)
def test_failing_template_falls_back_to_plain_text(template):
    rule = with_title(template, en=template)
    title, description = render(rule, alert(), "pl")
    assert title == "Reguła filesystem_usage: zasób srv-amms-01, wartość 0,934"
    assert "Szablon reguły nie zadziałał" in description
    title, description = render(rule, alert(), "en")
    assert title == "Rule filesystem_usage: asset srv-amms-01, value 0.934"
    assert "template failed" in description
    with pytest.raises(TemplateRenderError, match="filesystem_usage"):
        try_render(rule, alert(), "pl")


def test_missing_label_can_be_defaulted():
    rule = with_title("[{{ labels.get('device', '-') }}]")
    assert render(rule, alert(), "pl")[0] == "[-]"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ labels.update({'asset': 'pwned'}) }}",
        "{{ labels.__class__.__init__.__globals__ }}",
    ],
)
def test_templates_are_sandboxed(template):
    a = alert()
    title, _ = render(with_title(template), a, "pl")
    assert title.startswith("Reguła filesystem_usage")  # refused, fell back
    assert a.labels["asset"] == "srv-amms-01"


def test_a_rule_whose_template_does_not_compile_still_renders():
    rule = with_title("{{ broken")
    assert render(rule, alert(), "pl")[0].startswith("Reguła filesystem_usage")


def test_templates_are_compiled_once_per_rule():
    assert compile_templates(RULE) is compile_templates(RULE)
    assert compile_templates(RULE) is not compile_templates(with_title("inny"))


# --- every default rule renders in both languages --------------------------------------------

PACK_VALUES = {
    "filesystem_usage": 0.934,
    "filesystem_inodes": 0.951,
    "memory_usage": 0.97,
    "swap_usage": 0.85,
    "load_high": 2.75,
    "agent_silent": 420.0,
}


@pytest.mark.parametrize("lang", ["pl", "en"])
def test_every_builtin_rule_renders_without_falling_back(lang):
    rules = load_rule_files(["builtin:hosts"])
    assert {r.name for r in rules} == set(PACK_VALUES)
    for rule in rules:
        labels = {k: "x" for k in rule.identity} | {"asset": "srv-amms-01"}
        if "mountpoint" in labels:
            labels["mountpoint"] = "/var/lib/pgsql"
        a = dataclasses.replace(alert(value=PACK_VALUES[rule.name]), rule=rule.name, labels=labels)
        for category in (rule.category, "awaria"):
            a.category = category
            title, description = try_render(rule, a, lang)
            assert "srv-amms-01" in title, rule.name
            assert "\n" not in title and len(title) <= 200
            assert len(description) > len(title), rule.name
            if "mountpoint" in labels:
                assert "/var/lib/pgsql" in title
    fs = next(r for r in rules if r.name == "filesystem_usage")
    a = alert(value=0.934, mountpoint="/var/lib/pgsql")
    expected = {
        "pl": "Zajętość systemu plików /var/lib/pgsql na srv-amms-01: 93,4 %",
        "en": "Filesystem /var/lib/pgsql on srv-amms-01 is 93.4 % full",
    }
    assert try_render(fs, a, lang)[0] == expected[lang]


@pytest.mark.parametrize("lang", ["pl", "en"])
@pytest.mark.parametrize("pack", ["ups", "storage", "amms"])
def test_every_ups_storage_and_amms_rule_renders_without_falling_back(pack, lang):
    for rule in load_rule_files([f"builtin:{pack}"]):
        labels = {
            "asset": "ups-sw-01",
            "line": "1",
            "storage": "/vol/amms",
            "device": "disk 3",
            "check": "amms_service",
        }
        value = rule.condition.threshold if rule.condition else 0.0
        a = dataclasses.replace(alert(value=value), rule=rule.name, labels=labels)
        title, description = try_render(rule, a, lang)  # raises instead of falling back
        assert "ups-sw-01" in title and "\n" not in title, rule.name
        assert len(description) > len(title), rule.name


def test_polish_texts_use_diacritics():
    rules = load_rule_files(["builtin:hosts"])
    polish = " ".join(r.title.pl + r.description.pl for r in rules)
    assert set("ąęółśżźćń") <= set(polish.lower())


def test_whether_a_rule_reads_its_category_is_known_from_its_templates():
    """The lifecycle renders a rule once for every category when no template reads it."""
    assert uses_category(RULE)  # the description says ({{ category }})
    plain = dataclasses.replace(RULE, description=Text(pl="Opis.", en="Description."))
    assert not uses_category(plain)
    broken = dataclasses.replace(RULE, title=Text(pl="{{ unclosed", en="x"))
    assert uses_category(broken)  # cannot tell: render per category
