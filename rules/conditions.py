"""Comparisons and label matchers: parsing them from rule-file text, and the checks that
keep a rule's firing, clear and escalation conditions consistent with each other."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any

from rules.model import COMPARISONS, MATCH_OPS, Condition, Matcher

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
assert set(OPERATORS) == set(COMPARISONS)
NEGATION: dict[str, str] = {">": "<=", ">=": "<", "<": ">=", "<=": ">", "==": "!=", "!=": "=="}

_UPWARD = (">", ">=")
_DOWNWARD = ("<", "<=")
_COMPARISON = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Longest operators first so "=~" is not read as "=" followed by "~...".
_MATCH_PREFIXES: tuple[str, ...] = ("=~", "!~", "!=", "=")


def predicate(cond: Condition) -> Callable[[float], bool]:
    """``cond`` as a function of the value."""
    op = OPERATORS[cond.op]
    threshold = cond.threshold
    return lambda v: op(v, threshold)


def parse_comparison(text: object) -> Condition:
    """``'> 0.9'`` -> ``Condition('>', 0.9)``; ``ValueError`` on anything else."""
    if not isinstance(text, str):
        raise ValueError(
            f"expected a quoted comparison such as '> 0.9', got {text!r}"
            + (" (quote it)" if isinstance(text, int | float) else "")
        )
    m = _COMPARISON.fullmatch(text)
    if m is None:
        raise ValueError(
            f"expected a comparison such as '> 0.9' ({' '.join(COMPARISONS)} and a number), "
            f"got {text!r}"
        )
    op, raw = m.groups()
    try:
        threshold = float(raw)
    except ValueError:
        hint = " (thresholds are plain numbers: a ratio is 0.9, not 90%)" if "%" in raw else ""
        raise ValueError(f"threshold {raw!r} is not a number{hint}") from None
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {raw!r}")
    return Condition(op, threshold)


def parse_matcher(label: object, spec: object) -> Matcher:
    """``('fstype', '!~ tmpfs|overlay')`` -> ``Matcher``; a bare value means ``=``."""
    if not isinstance(label, str) or not LABEL_NAME.fullmatch(label):
        raise ValueError(f"invalid label name {label!r}")
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = str(spec)
    if not isinstance(spec, str):
        raise ValueError(f"matcher for label {label!r} must be a string such as '=~ a|b'")
    op, value = "=", spec
    for prefix in _MATCH_PREFIXES:
        if spec.startswith(prefix):
            op, value = prefix, spec[len(prefix) :].lstrip()
            break
    assert op in MATCH_OPS
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(
                f"invalid regular expression {value!r} for label {label!r}: {exc}"
            ) from None
    return Matcher(label, op, value)


def _overlaps(fire: Condition, clear: Condition) -> bool:
    """Whether some value satisfies both ``fire`` and ``clear`` (directions already checked)."""
    if fire.op in _UPWARD:  # fire above T, clear below C
        if fire.op == ">=" and clear.op == "<=":
            return clear.threshold >= fire.threshold
        return clear.threshold > fire.threshold
    if fire.op == "<=" and clear.op == ">=":
        return clear.threshold <= fire.threshold
    return clear.threshold < fire.threshold


def check_clear(fire: Condition, clear: Condition) -> None:
    """Raise ``ValueError`` unless ``clear`` is a valid hysteresis for ``fire``."""
    if fire.op in ("==", "!="):
        if clear != Condition(NEGATION[fire.op], fire.threshold):
            raise ValueError(
                f"for a '{fire.op}' rule the clear condition can only be "
                f"'{NEGATION[fire.op]} {fire.threshold:g}'"
            )
        return
    opposite = _DOWNWARD if fire.op in _UPWARD else _UPWARD
    if clear.op not in opposite:
        raise ValueError(
            f"clear '{clear}' must compare in the opposite direction of when '{fire}' "
            f"(one of {', '.join(opposite)})"
        )
    if _overlaps(fire, clear):
        raise ValueError(
            f"clear '{clear}' overlaps when '{fire}': it must lie on the safe side of the "
            "firing threshold"
        )


def check_escalation(fire: Condition, escalation: Condition) -> None:
    """Raise ``ValueError`` unless ``escalation`` lies strictly beyond ``fire``."""
    if fire.op in _UPWARD:
        if escalation.op not in _UPWARD or escalation.threshold <= fire.threshold:
            raise ValueError(
                f"escalation '{escalation}' must be '>' or '>=' a threshold above "
                f"{fire.threshold:g} (when '{fire}')"
            )
    elif fire.op in _DOWNWARD:
        if escalation.op not in _DOWNWARD or escalation.threshold >= fire.threshold:
            raise ValueError(
                f"escalation '{escalation}' must be '<' or '<=' a threshold below "
                f"{fire.threshold:g} (when '{fire}')"
            )
    else:
        raise ValueError(f"a '{fire.op}' rule cannot escalate")


def default_clear(fire: Condition) -> Condition:
    """The negation of ``fire``: resolve as soon as the condition no longer holds."""
    return Condition(NEGATION[fire.op], fire.threshold)
