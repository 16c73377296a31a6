"""Rule files: YAML in, validated ``Rule`` objects out; every error names the file and the line.

A rule file is a mapping with one key, ``rules``, a list of rules::

    rules:
      - name: filesystem_usage             # unique across all loaded files, [a-z0-9_]+
        metric: dyzur_filesystem_used_ratio
        match:                             # label matchers, all must hold (PromQL semantics)
          fstype: '!~ tmpfs|devtmpfs|overlay'   # "OP VALUE", OP one of = != =~ !~
          mountpoint: '=~ /.*'             # regular expressions are anchored at both ends
          job: host                        # a bare value means "="
        when: '> 0.90'                     # fire condition: > >= < <= == != and a number
        for: 5m                            # how long `when` must hold before firing (default 0s)
        clear: '< 0.85'                    # resolve condition (hysteresis); default: not `when`
        category: usterka                  # utrzymanie | usterka | awaria
        escalate:                          # optional: upgrade the category while firing
          when: '> 0.98'                   # beyond the firing threshold, same direction
          category: awaria                 # strictly more severe than `category`
          for: 0s                          # default 0s
        labels: [asset, mountpoint]        # identity labels: one alert (one ticket) per value
                                           # set; default [asset]; asset is always added
        keep_open: false                   # on recovery leave the ticket open for an engineer
        group: power                       # optional incident group, [a-z0-9_]+: the firing
                                           # alerts of one asset in one group share one ticket
        title: {pl: "...", en: "..."}      # Jinja2 templates, see rules.templates
        description: {pl: "...", en: "..."}

      - name: agent_silent
        absent: 5m                         # absence rule: fires per asset silent for this long
        metric: dyzur_up                   # optional: watch this metric only
        match: {job: host}                 # optional, only together with `metric`
        category: awaria
        title: {pl: "...", en: "..."}
        description: {pl: "...", en: "..."}

Comparisons must be quoted in YAML (``when: '> 0.9'``): an unquoted ``>`` starts a folded
block scalar. Durations are ``30s``, ``5m``, ``1h30m``, ``2d`` or a number of seconds.

Validation: unknown keys, duplicate keys and duplicate rule names are errors; thresholds are
finite numbers; regular expressions and templates must compile; ``clear`` must be a
comparison in the opposite direction that does not overlap ``when`` (for ``> 0.9`` a clear of
``< 0.85`` or ``<= 0.9``); for ``==``/``!=`` only the exact negation is accepted. An absence
rule takes no ``when``, ``for``, ``clear``, ``escalate`` or ``labels`` (it is per asset).

``builtin:NAME`` in ``load_rule_files`` names ``rules/packs/NAME.yaml`` shipped with dyzur.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError

from collectors.durations import parse_duration
from collectors.yamlfile import YamlError, YamlMap, load_yaml, parse_yaml
from rules.conditions import (
    LABEL_NAME,
    check_clear,
    check_escalation,
    default_clear,
    parse_comparison,
    parse_matcher,
)
from rules.model import (
    RULE_CATEGORIES,
    Condition,
    Escalation,
    Matcher,
    Rule,
    Text,
)
from rules.templates import LANGUAGES, compile_template

BUILTIN_PREFIX = "builtin:"

RULE_KEYS: tuple[str, ...] = (
    "name",
    "metric",
    "match",
    "when",
    "for",
    "clear",
    "category",
    "escalate",
    "labels",
    "keep_open",
    "group",
    "absent",
    "title",
    "description",
)
ESCALATE_KEYS: tuple[str, ...] = ("when", "category", "for")
TOP_KEYS: tuple[str, ...] = ("rules",)

_NAME = re.compile(r"[a-z0-9_]+")
_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


class RuleFileError(Exception):
    """A rule file that cannot be used; ``str()`` is ``"source:line: message"``."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        self.source = source
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.source}: {self.message}"
        return f"{self.source}:{self.line}: {self.message}"


# --- YAML with line numbers: collectors.yamlfile --------------------------------------------

_Map = YamlMap


def _yaml_error(exc: YamlError) -> RuleFileError:
    message = exc.problem
    if "block scalar" in message:  # `when: > 0.9`: ">" starts a folded scalar
        message += " (quote comparisons, for example when: '> 0.9')"
    return RuleFileError(exc.source, exc.line, message)


# --- validation --------------------------------------------------------------------------


class _Ctx:
    """Where we are: the file and the mapping being validated, for error lines."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, line: int | None, message: str) -> RuleFileError:
        return RuleFileError(self.source, line, message)


def _key_line(mapping: _Map, key: str) -> int:
    return mapping.key_lines.get(key, mapping.line)


def _check_keys(ctx: _Ctx, mapping: _Map, allowed: tuple[str, ...], what: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise ctx.error(
                _key_line(mapping, key),
                f"unknown key {key!r} in {what} (allowed: {', '.join(allowed)})",
            )


def _text(ctx: _Ctx, rule: _Map, key: str) -> Text:
    line = _key_line(rule, key)
    if key not in rule:
        raise ctx.error(rule.line, f"missing key {key!r} (a mapping with pl and en templates)")
    value = rule[key]
    if not isinstance(value, _Map):
        raise ctx.error(line, f"{key!r} must be a mapping with pl and en templates")
    _check_keys(ctx, value, LANGUAGES, key)
    texts: dict[str, str] = {}
    for lang in LANGUAGES:
        if lang not in value:
            raise ctx.error(line, f"{key!r} needs a {lang!r} template")
        source = value[lang]
        lang_line = _key_line(value, lang)
        if not isinstance(source, str) or not source.strip():
            raise ctx.error(lang_line, f"{key}.{lang} must be a non-empty string")
        try:
            compile_template(source)
        except TemplateSyntaxError as exc:
            raise ctx.error(
                lang_line,
                f"{key}.{lang}: template syntax error (template line {exc.lineno}): {exc.message}",
            ) from None
        texts[lang] = source
    return Text(**texts)


def _category(ctx: _Ctx, mapping: _Map, key: str) -> str:
    value = mapping.get(key)
    if value not in RULE_CATEGORIES:
        raise ctx.error(
            _key_line(mapping, key),
            f"category {value!r} is not one of {', '.join(RULE_CATEGORIES)}",
        )
    return str(value)


def _duration(ctx: _Ctx, mapping: _Map, key: str) -> float:
    try:
        return parse_duration(mapping[key])
    except ValueError as exc:
        raise ctx.error(_key_line(mapping, key), f"{key!r}: {exc}") from None


def _comparison(ctx: _Ctx, mapping: _Map, key: str) -> Condition:
    try:
        return parse_comparison(mapping[key])
    except ValueError as exc:
        raise ctx.error(_key_line(mapping, key), f"{key!r}: {exc}") from None


def _build_rule(ctx: _Ctx, raw: object, index: int, line: int) -> Rule:
    if not isinstance(raw, _Map):
        raise ctx.error(line, f"rule #{index + 1} must be a mapping, got {type(raw).__name__}")
    _check_keys(ctx, raw, RULE_KEYS, "a rule")
    at = raw.line

    name = raw.get("name")
    if name is None:
        raise ctx.error(at, "missing key 'name'")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ctx.error(_key_line(raw, "name"), f"rule name {name!r} must match [a-z0-9_]+")

    def err(key: str | None, message: str) -> RuleFileError:
        return ctx.error(_key_line(raw, key) if key else at, f"rule {name!r}: {message}")

    if "category" not in raw:
        raise err(None, "missing key 'category'")
    category = _category(ctx, raw, "category")

    metric = raw.get("metric")
    if metric is not None and (not isinstance(metric, str) or not _METRIC.fullmatch(metric)):
        raise err("metric", f"invalid metric name {metric!r}")

    matchers: list[Matcher] = []
    if "match" in raw:
        match = raw["match"]
        if not isinstance(match, _Map):
            raise err("match", "'match' must be a mapping of label: 'OP VALUE'")
        for label, spec in match.items():
            try:
                matchers.append(parse_matcher(label, spec))
            except ValueError as exc:
                raise ctx.error(_key_line(match, label), f"rule {name!r}: {exc}") from None

    keep_open = raw.get("keep_open", False)
    if not isinstance(keep_open, bool):
        raise err("keep_open", "'keep_open' must be true or false")

    group = raw.get("group")
    if group is not None and not (isinstance(group, str) and _NAME.fullmatch(group)):
        raise err("group", f"'group' must be a name of [a-z0-9_]+, got {group!r}")

    title = _text(ctx, raw, "title")
    description = _text(ctx, raw, "description")
    common: dict[str, Any] = {
        "name": name,
        "category": category,
        "title": title,
        "description": description,
        "metric": metric,
        "matchers": tuple(matchers),
        "keep_open": keep_open,
        "group": group,
        "source": f"{ctx.source}:{at}",
    }

    if "absent" in raw:
        for key in ("when", "for", "clear", "escalate", "labels"):
            if key in raw:
                raise err(key, f"an absence rule takes no {key!r} (it fires per asset)")
        if matchers and metric is None:
            raise err("match", "'match' on an absence rule needs 'metric'")
        absent = _duration(ctx, raw, "absent")
        if absent <= 0:
            raise err("absent", "'absent' must be longer than 0s")
        return Rule(**common, absent_seconds=absent)

    if "when" not in raw:
        raise err(None, "needs 'when' (a threshold rule) or 'absent' (an absence rule)")
    if metric is None:
        raise err(None, "missing key 'metric' (a threshold rule watches one metric)")
    condition = _comparison(ctx, raw, "when")
    for_seconds = _duration(ctx, raw, "for") if "for" in raw else 0.0

    if "clear" in raw:
        clear = _comparison(ctx, raw, "clear")
        try:
            check_clear(condition, clear)
        except ValueError as exc:
            raise err("clear", str(exc)) from None
    else:
        clear = default_clear(condition)

    escalation = None
    if "escalate" in raw:
        esc = raw["escalate"]
        if not isinstance(esc, _Map):
            raise err("escalate", "'escalate' must be a mapping with when, category and for")
        _check_keys(ctx, esc, ESCALATE_KEYS, "escalate")
        for key in ("when", "category"):
            if key not in esc:
                raise ctx.error(esc.line, f"rule {name!r}: escalate needs {key!r}")
        esc_condition = _comparison(ctx, esc, "when")
        try:
            check_escalation(condition, esc_condition)
        except ValueError as exc:
            raise ctx.error(_key_line(esc, "when"), f"rule {name!r}: {exc}") from None
        esc_category = _category(ctx, esc, "category")
        if RULE_CATEGORIES.index(esc_category) <= RULE_CATEGORIES.index(category):
            raise ctx.error(
                _key_line(esc, "category"),
                f"rule {name!r}: escalation category {esc_category!r} must be more severe "
                f"than {category!r} (order: {', '.join(RULE_CATEGORIES)})",
            )
        esc_for = _duration(ctx, esc, "for") if "for" in esc else 0.0
        escalation = Escalation(esc_condition, esc_category, esc_for)

    identity: list[str] = ["asset"]
    if "labels" in raw:
        labels = raw["labels"]
        if not isinstance(labels, list) or not labels:
            raise err("labels", "'labels' must be a non-empty list of label names")
        for label in labels:
            if not isinstance(label, str) or not LABEL_NAME.fullmatch(label):
                raise err("labels", f"invalid label name {label!r}")
            if label in identity and label != "asset":
                raise err("labels", f"label {label!r} listed twice")
            if label != "asset":
                identity.append(label)

    return Rule(
        **common,
        condition=condition,
        for_seconds=for_seconds,
        clear=clear,
        escalation=escalation,
        identity=tuple(identity),
    )


def load_rules_text(text: str, source: str) -> list[Rule]:
    """Parse and validate the rules in ``text``; ``source`` names it in errors."""
    try:
        doc = parse_yaml(text, source)
    except YamlError as exc:
        raise _yaml_error(exc) from None
    return _rules(doc, source)


def _rules(doc: Any, source: str) -> list[Rule]:
    ctx = _Ctx(source)
    if doc is None:
        raise ctx.error(None, "empty rule file (expected a mapping with the key 'rules')")
    if not isinstance(doc, _Map):
        raise ctx.error(1, "a rule file must be a mapping with the key 'rules'")
    _check_keys(ctx, doc, TOP_KEYS, "a rule file")
    if "rules" not in doc:
        raise ctx.error(doc.line, "missing key 'rules'")
    items = doc["rules"]
    if not isinstance(items, list):
        raise ctx.error(_key_line(doc, "rules"), "'rules' must be a list of rules")
    seen: dict[str, Rule] = {}
    return [
        _unique(_build_rule(ctx, raw, index, _key_line(doc, "rules")), seen)
        for index, raw in enumerate(items)
    ]


def load_rule_file(path: str | Path) -> list[Rule]:
    """Load the rules of one YAML file."""
    try:
        doc = load_yaml(path)
    except YamlError as exc:
        raise _yaml_error(exc) from None
    return _rules(doc, str(path))


def builtin_packs() -> list[str]:
    """Names of the rule packs shipped in ``rules/packs`` (use them as ``builtin:NAME``)."""
    packs = resources.files("rules") / "packs"
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in packs.iterdir()
        if entry.is_file() and entry.name.endswith(".yaml")
    )


def _load_builtin(name: str) -> list[Rule]:
    source = BUILTIN_PREFIX + name
    available = builtin_packs()
    if name not in available:
        raise RuleFileError(
            source,
            None,
            f"no built-in rule pack {name!r} (available: {', '.join(available) or 'none'})",
        )
    text = (resources.files("rules") / "packs" / f"{name}.yaml").read_text(encoding="utf-8")
    return load_rules_text(text, source)


def load_rule_files(specs: Iterable[str | Path]) -> list[Rule]:
    """Load several files (``builtin:NAME`` for a shipped pack); rule names must be unique
    across all of them."""
    rules: list[Rule] = []
    seen: dict[str, Rule] = {}
    for spec in specs:
        if isinstance(spec, str) and spec.startswith(BUILTIN_PREFIX):
            loaded = _load_builtin(spec.removeprefix(BUILTIN_PREFIX))
        else:
            loaded = load_rule_file(spec)
        rules += [_unique(rule, seen) for rule in loaded]
    return rules


def _unique(rule: Rule, seen: dict[str, Rule]) -> Rule:
    """``rule``, recorded in ``seen``; an error naming both places if the name is taken."""
    first = seen.setdefault(rule.name, rule)
    if first is not rule:
        source, _, line = rule.source.rpartition(":")
        raise RuleFileError(
            source,
            int(line),
            f"duplicate rule name {rule.name!r} (first defined at {first.source})",
        )
    return rule
