"""Ticket titles and descriptions rendered from a rule's templates.

Templates are Jinja2, rendered in an ``ImmutableSandboxedEnvironment`` (a rule file cannot
reach Python internals or mutate anything) without autoescaping: the output is plain text for a
ticket, not HTML. Undefined names are errors (``StrictUndefined``): a misspelt label shows up as
a fallback text instead of silently vanishing from a title.

The context of a template:

``labels``       the alert's labels (the identity labels are always present; use
                 ``labels.get('x', '')`` for a label a sample may lack)
``asset``        ``labels['asset']``
``value``        the latest value (for an absence rule: seconds since the asset last reported)
``rule``         the rule name
``category``     the alert's current category (after an escalation: the upgraded one)
``threshold``    the firing threshold (``None`` for an absence rule)
``for_seconds``  the rule's ``for`` in seconds (also available as ``for``, which Jinja2
                 cannot name directly because it is a keyword)
``absent``       an absence rule's period in seconds (``None`` for a threshold rule)

Filters: ``percent`` (0.934 -> ``93.4 %``), ``bytes`` (binary units: 1536 -> ``1.5 KiB``) and
``duration`` (330 -> ``5m30s``).

``render`` never raises: a template that fails at render time gives a plain fallback text that
names the rule, the asset and the value. ``try_render`` raises ``TemplateRenderError`` instead,
for callers that want to report the failure (and for tests).

Compiled templates are memoised per rule (``compile_templates``); the memo is a pure cache and
holds no state that changes behaviour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment

from collectors.durations import format_duration
from rules.model import Alert, Rule

LANGUAGES: tuple[str, ...] = ("pl", "en")
TITLE_MAX = 200

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def percent(value: Any, digits: int = 1) -> str:
    """A ratio as a percentage: ``0.934`` -> ``"93.4 %"``."""
    try:
        return f"{float(value) * 100:.{int(digits)}f} %"
    except (TypeError, ValueError):
        return str(value)


def human_bytes(value: Any) -> str:
    """A byte count in binary units: ``1536`` -> ``"1.5 KiB"``, ``512`` -> ``"512 B"``."""
    try:
        n = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(n):
        return str(value)
    sign = "-" if n < 0 else ""
    n = abs(n)
    unit = 0
    while n >= 1024 and unit < len(_BYTE_UNITS) - 1:
        n /= 1024
        unit += 1
    if unit == 0:
        return f"{sign}{n:.0f} B"
    return f"{sign}{n:.1f} {_BYTE_UNITS[unit]}"


def duration(value: Any) -> str:
    """Seconds as a duration: ``330`` -> ``"5m30s"``."""
    try:
        return format_duration(float(value))
    except (TypeError, ValueError, OverflowError):
        return str(value)


def _make_environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=False, undefined=StrictUndefined, keep_trailing_newline=False
    )
    env.filters["percent"] = percent
    env.filters["bytes"] = human_bytes
    env.filters["duration"] = duration
    return env


# Configured once and never changed afterwards; compiling templates does not mutate it.
_ENV = _make_environment()


def compile_template(source: str) -> Template:
    """Compile one template; raises ``jinja2.TemplateSyntaxError`` (with ``lineno``)."""
    return _ENV.from_string(source)


class TemplateRenderError(Exception):
    """A rule's template failed while rendering (undefined name, bad filter argument, ...)."""


@dataclass(frozen=True, slots=True)
class RuleTemplates:
    """The compiled title and description templates of one rule, per language."""

    rule: Rule
    titles: dict[str, Template]
    descriptions: dict[str, Template]

    def context(self, alert: Alert) -> dict[str, Any]:
        rule = self.rule
        return {
            "labels": alert.labels,
            "asset": alert.labels.get("asset", ""),
            "value": alert.value,
            "rule": rule.name,
            "category": alert.category,
            "threshold": rule.condition.threshold if rule.condition is not None else None,
            "for": rule.for_seconds,
            "for_seconds": rule.for_seconds,
            "absent": rule.absent_seconds,
            # Texts that came with the alert (Alertmanager's summary, description).
            "annotations": alert.annotations,
        }

    def try_render(self, alert: Alert, lang: str) -> tuple[str, str]:
        """Render (title, description); raise ``TemplateRenderError`` if a template fails."""
        _check_lang(lang)
        ctx = self.context(alert)
        try:
            title = self.titles[lang].render(ctx)
            description = self.descriptions[lang].render(ctx)
        except Exception as exc:  # any failure inside a template: undefined, filter, type
            raise TemplateRenderError(
                f"rule {self.rule.name!r}: {lang} template failed: {type(exc).__name__}: {exc}"
            ) from exc
        return _one_line(title), description.strip()

    def render(self, alert: Alert, lang: str) -> tuple[str, str]:
        """Render (title, description); a failing template gives a plain fallback text."""
        try:
            return self.try_render(alert, lang)
        except TemplateRenderError as exc:
            return fallback(self.rule, alert, lang, str(exc))


@lru_cache(maxsize=4096)
def compile_templates(rule: Rule) -> RuleTemplates:
    """The compiled templates of ``rule``, memoised (rules are immutable and hashable)."""
    return RuleTemplates(
        rule=rule,
        titles={lang: compile_template(getattr(rule.title, lang)) for lang in LANGUAGES},
        descriptions={
            lang: compile_template(getattr(rule.description, lang)) for lang in LANGUAGES
        },
    )


def render(rule: Rule, alert: Alert, lang: str) -> tuple[str, str]:
    """Title and description of ``alert`` in ``lang`` ("pl" or "en"); never raises on a bad
    template (a plain fallback text names the rule, the asset and the value)."""
    _check_lang(lang)
    try:
        templates = compile_templates(rule)
    except Exception as exc:  # a rule built by hand with a template that does not compile
        return fallback(rule, alert, lang, f"{type(exc).__name__}: {exc}")
    return templates.render(alert, lang)


def try_render(rule: Rule, alert: Alert, lang: str) -> tuple[str, str]:
    """Like ``render`` but raises ``TemplateRenderError`` instead of falling back."""
    _check_lang(lang)
    try:
        templates = compile_templates(rule)
    except Exception as exc:
        raise TemplateRenderError(f"rule {rule.name!r}: template does not compile: {exc}") from exc
    return templates.try_render(alert, lang)


def fallback(rule: Rule, alert: Alert, lang: str, error: str = "") -> tuple[str, str]:
    """The plain text used when a template fails: rule, asset and value, no template involved."""
    asset = alert.labels.get("asset", "?")
    value = f"{alert.value:g}" if isinstance(alert.value, int | float) else str(alert.value)
    if lang == "pl":
        title = f"Reguła {rule.name}: zasób {asset}, wartość {value}"
        description = f"Reguła {rule.name} ({alert.category}) na zasobie {asset}, wartość {value}."
        if error:
            description += f"\nSzablon reguły nie zadziałał: {error}"
    else:
        title = f"Rule {rule.name}: asset {asset}, value {value}"
        description = f"Rule {rule.name} ({alert.category}) on asset {asset}, value {value}."
        if error:
            description += f"\nThe rule's template failed: {error}"
    return _one_line(title), description


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    if len(line) > TITLE_MAX:
        line = line[: TITLE_MAX - 1].rstrip() + "…"
    return line


def _check_lang(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r} (expected one of {', '.join(LANGUAGES)})")
