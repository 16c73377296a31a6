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

Numbers are written the way the ticket's language writes them: Polish with a decimal comma and a
non-breaking space between thousands (``1 234,5``), English with a decimal point and commas
(``1,234.5``). That holds for the filters and for a bare float (``{{ value }}``: up to six
significant digits). A missing value (NaN, ``None``) shows as ``—``.

Filters: ``percent`` (0.934 -> ``93,4 %`` / ``93.4 %``), ``bytes`` (binary units: 1536 ->
``1,5 KiB`` / ``1.5 KiB``), ``duration`` (330 -> ``5m30s``) and ``number`` (fixed decimals:
``value | number(2)`` -> ``3,52`` / ``3.52``).

``render`` never raises: a template that fails at render time gives a plain fallback text that
names the rule, the asset and the value. ``try_render`` raises ``TemplateRenderError`` instead,
for callers that want to report the failure (and for tests).

Compiled templates are memoised per rule (``compile_templates``); the memo is a pure cache and
holds no state that changes behaviour.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from jinja2 import StrictUndefined, Template, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from collectors.durations import format_duration
from rules.model import Alert, Rule

LANGUAGES: tuple[str, ...] = ("pl", "en")
TITLE_MAX = 200

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
MISSING = "—"  # a value that is not there (NaN, None)
# Per language: (decimal mark, thousands separator). Polish separates thousands with a
# non-breaking space, so "1 234,5" never breaks across lines.
_SEPARATORS = {"pl": (",", "\u00a0"), "en": (".", ",")}


def _number(value: Any) -> float | None:
    """``value`` as a float; None when it is not a number."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _localise(text: str, lang: str) -> str:
    """Python's ``1,234.5`` as ``lang`` writes it."""
    mark, thousands = _SEPARATORS[lang]
    return text.translate({ord(","): thousands, ord("."): mark})


def format_number(value: Any, lang: str = "en", decimals: int | None = None) -> str:
    """A number as ``lang`` writes it: ``1234.5`` -> ``"1 234,5"`` (pl, with a non-breaking
    space) or ``"1,234.5"`` (en). ``decimals``: that many decimals; None: up to six significant
    digits without trailing zeros. NaN and None give ``"—"``; a non-number is shown as is."""
    _check_lang(lang)
    if value is None:
        return MISSING
    x = _number(value)
    if x is None:
        return str(value)
    if math.isnan(x):
        return MISSING
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if decimals is not None:
        return _localise(f"{x:,.{max(0, int(decimals))}f}", lang)
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if not -5 <= magnitude < 15:
        return _localise(f"{x:.6g}", lang)  # 1.5e-07, 2.3e+18: no grouping
    text = f"{x:,.{max(0, 5 - magnitude)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return _localise(text, lang)


def percent(value: Any, digits: int = 1, lang: str = "en") -> str:
    """A ratio as a percentage: ``0.934`` -> ``"93.4 %"`` (en), ``"93,4 %"`` (pl)."""
    x = _number(value)
    if x is None:
        return MISSING if value is None else str(value)
    if math.isnan(x):
        return MISSING
    return f"{format_number(x * 100, lang, digits)} %"


def human_bytes(value: Any, lang: str = "en") -> str:
    """A byte count in binary units: ``1536`` -> ``"1.5 KiB"`` (en), ``"1,5 KiB"`` (pl),
    ``512`` -> ``"512 B"``."""
    n = _number(value)
    if n is None or not math.isfinite(n):
        return format_number(value, lang)
    sign = "-" if n < 0 else ""
    n = abs(n)
    unit = 0
    while n >= 1024 and unit < len(_BYTE_UNITS) - 1:
        n /= 1024
        unit += 1
    if unit == 0:
        return f"{sign}{format_number(n, lang, 0)} B"
    return f"{sign}{format_number(n, lang, 1)} {_BYTE_UNITS[unit]}"


def duration(value: Any) -> str:
    """Seconds as a duration: ``330`` -> ``"5m30s"`` (whole seconds: the same in both
    languages); a missing value gives ``"—"``."""
    n = _number(value)
    if n is None:
        return MISSING if value is None else str(value)
    if math.isnan(n):
        return MISSING
    try:
        return format_duration(n)
    except OverflowError:
        return str(value)


def _finalize(lang: str, value: Any) -> Any:
    """What ``{{ ... }}`` prints: a float as the language writes it, the rest unchanged."""
    return format_number(value, lang) if isinstance(value, float) else value


def _make_environment(lang: str) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=False,
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        finalize=partial(_finalize, lang),
    )
    env.filters["percent"] = partial(percent, lang=lang)
    env.filters["bytes"] = partial(human_bytes, lang=lang)
    env.filters["duration"] = duration
    env.filters["number"] = partial(_fixed, lang=lang)
    return env


def _fixed(value: Any, decimals: int = 2, lang: str = "en") -> str:
    return format_number(value, lang, decimals)


# One environment per language (the filters write numbers its way). Configured once and never
# changed afterwards; compiling templates does not mutate them.
_ENVS = {lang: _make_environment(lang) for lang in LANGUAGES}


def compile_template(source: str, lang: str = "en") -> Template:
    """Compile one template for ``lang``; raises ``jinja2.TemplateSyntaxError`` (with
    ``lineno``)."""
    _check_lang(lang)
    return _ENVS[lang].from_string(source)


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
        titles={lang: compile_template(getattr(rule.title, lang), lang) for lang in LANGUAGES},
        descriptions={
            lang: compile_template(getattr(rule.description, lang), lang) for lang in LANGUAGES
        },
    )


@lru_cache(maxsize=4096)
def uses_category(rule: Rule) -> bool:
    """Whether any of the rule's templates reads ``category`` (when none does, its texts are
    the same whatever the ticket's category). True for templates that do not compile."""
    try:
        for text in (rule.title, rule.description):
            for lang in LANGUAGES:
                env = _ENVS[lang]
                parsed = env.parse(getattr(text, lang))
                if "category" in meta.find_undeclared_variables(parsed):
                    return True
    except Exception:
        return True
    return False


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
    value = format_number(alert.value, lang)
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


# Whitespace a title collapses to one space: every kind but the non-breaking spaces that hold
# a number together ("1 234,5").
_BREAKING_SPACE = re.compile(r"[^\S\u00a0\u202f]+")


def _one_line(text: str) -> str:
    line = _BREAKING_SPACE.sub(" ", text).strip()
    if len(line) > TITLE_MAX:
        line = line[: TITLE_MAX - 1].rstrip() + "…"
    return line


def _check_lang(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r} (expected one of {', '.join(LANGUAGES)})")
