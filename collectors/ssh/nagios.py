"""Nagios plugin output: exit code, status text, long output and performance data.

Follows the plugin guidelines (nagios-plugins.org/doc/guidelines.html): the first line is
``TEXT | perfdata``, further lines are long output, and everything after the first ``|`` in
the long output is more perfdata. A perfdata item is
``'label'=value[UOM];[warn];[crit];[min];[max]``, items separated by spaces.

:func:`parse` never raises: malformed perfdata items are skipped and described in
:attr:`CheckResult.problems`. Values are converted to base units (bytes, seconds); percent
stays percent (see :attr:`PerfData.ratio`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from collectors.sample import Sample

__all__ = [
    "CheckResult",
    "CheckState",
    "PerfData",
    "Range",
    "parse",
    "parse_range",
    "to_samples",
]

STATE_METRIC = "dyzur_check_state"
PERFDATA_METRIC = "dyzur_check_perfdata"
MAX_LABEL_LENGTH = 100  # perfdata labels become Prometheus label values
MAX_ITEMS = 500  # perfdata items kept from one output; the rest are a problem
MAX_PROBLEMS = 50  # problems listed one by one; the rest are counted
_SNIPPET = 60  # how much of a bad item a problem quotes


class CheckState(IntEnum):
    """A plugin's exit code. Anything but 0-3 is UNKNOWN."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @classmethod
    def from_exit_code(cls, code: object) -> CheckState:
        if isinstance(code, bool) or not isinstance(code, int):
            return cls.UNKNOWN
        try:
            return cls(code)
        except ValueError:
            return cls.UNKNOWN


# UOM as written -> (normalised unit, factor to base units)
_UOMS: dict[str, tuple[str, float]] = {
    "": ("", 1.0),
    "s": ("s", 1.0),
    "ms": ("s", 1e-3),
    "us": ("s", 1e-6),
    "%": ("%", 1.0),
    "B": ("B", 1.0),
    "KB": ("B", 1024.0),
    "kB": ("B", 1024.0),
    "MB": ("B", 1024.0**2),
    "GB": ("B", 1024.0**3),
    "TB": ("B", 1024.0**4),
    "c": ("c", 1.0),
}

# Normalised unit -> the ``unit`` label of the sample.
_UNIT_LABELS: dict[str, str] = {"B": "bytes", "s": "seconds", "%": "percent", "c": "count", "": ""}

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_VALUE = re.compile(rf"({_NUMBER})(.*)", re.DOTALL)
_PLAIN = re.compile(_NUMBER)
_RANGE = re.compile(rf"(@)?(?:(~|{_NUMBER})?:)?({_NUMBER})?")


@dataclass(frozen=True)
class Range:
    """A Nagios threshold range ``[@][start:][end]``, in base units.

    Without ``@`` it alerts when the value is outside ``start..end``; with ``@`` when inside.
    A missing start is 0, ``~`` is minus infinity, a missing end is plus infinity.
    """

    start: float
    end: float
    inside: bool = False

    def alerts(self, value: float) -> bool:
        within = self.start <= value <= self.end
        return within if self.inside else not within


def parse_range(text: str, factor: float = 1.0) -> Range | None:
    """Parse a threshold range, scaling its bounds by ``factor``; None if it is not one."""
    m = _RANGE.fullmatch(text.strip())
    if m is None or not text.strip() or text.strip() == "@":
        return None
    inside, start_text, end_text = m.groups()
    if start_text is None:  # "10", and ":10" read as 0..10
        start = 0.0
    elif start_text == "~":
        start = -math.inf
    else:
        start = float(start_text) * factor
    end = math.inf if end_text is None else float(end_text) * factor
    if math.isnan(start) or math.isnan(end) or start > end:
        return None
    if start == math.inf or end == -math.inf:
        return None
    return Range(start, end, inside is not None)


@dataclass(frozen=True)
class PerfData:
    """One perfdata item. ``value`` and the plain-number thresholds are in base units.

    ``unit`` is ``"B"``, ``"s"``, ``"%"``, ``"c"`` or ``""``; ``uom`` is the unit as the plugin
    wrote it (an unknown one leaves ``unit`` empty and the value unscaled). ``warn``, ``crit``,
    ``min`` and ``max`` are floats when the plugin wrote a plain number, else None; the
    ``*_raw`` fields keep the text as written (unscaled), and ``warn_range``/``crit_range``
    the thresholds as parsed ranges in base units.
    """

    label: str
    value: float
    unit: str = ""
    warn: float | None = None
    crit: float | None = None
    min: float | None = None
    max: float | None = None
    uom: str = ""
    warn_raw: str = ""
    crit_raw: str = ""
    min_raw: str = ""
    max_raw: str = ""
    warn_range: Range | None = None
    crit_range: Range | None = None

    @property
    def ratio(self) -> float | None:
        """A percent value as a ratio (50% -> 0.5); None for other units."""
        return self.value / 100.0 if self.unit == "%" else None


@dataclass(frozen=True)
class CheckResult:
    state: CheckState
    text: str
    long_output: str = ""
    perfdata: list[PerfData] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _snippet(text: str) -> str:
    return repr(text if len(text) <= _SNIPPET else text[:_SNIPPET] + "...")


def _tokens(perf: str) -> list[tuple[str | None, str, str]]:
    """Split perfdata text into (label, value text, problem) items.

    A label of None means the item is malformed and ``problem`` says why.
    """
    items: list[tuple[str | None, str, str]] = []
    i, n = 0, len(perf)
    while i < n:
        if perf[i].isspace():
            i += 1
            continue
        start = i
        if perf[i] == "'":
            # Quoted label: '' is a quote inside it.
            parts: list[str] = []
            j = i + 1
            while True:
                q = perf.find("'", j)
                if q < 0:
                    items.append((None, "", f"unterminated quote in {_snippet(perf[start:])}"))
                    return items
                parts.append(perf[j:q])
                if q + 1 < n and perf[q + 1] == "'":
                    parts.append("'")
                    j = q + 2
                    continue
                i = q + 1
                break
            label = "".join(parts)
            if i >= n or perf[i] != "=":
                end = _token_end(perf, i)
                items.append((None, "", f"no '=' after label in {_snippet(perf[start:end])}"))
                i = end
                continue
            i += 1
        else:
            end = _token_end(perf, i)
            eq = perf.find("=", i, end)
            if eq < 0:
                items.append((None, "", f"no '=' in {_snippet(perf[start:end])}"))
                i = end
                continue
            label = perf[i:eq]
            i = eq + 1
        end = _token_end(perf, i)
        items.append((label, perf[i:end], perf[start:end]))
        i = end
    return items


def _token_end(text: str, i: int) -> int:
    n = len(text)
    while i < n and not text[i].isspace():
        i += 1
    return i


def _threshold(text: str, factor: float) -> float | None:
    if not _PLAIN.fullmatch(text):
        return None
    number = float(text) * factor
    return number if math.isfinite(number) else None


def _item(label: str, value_text: str, whole: str, problems: list[str]) -> PerfData | None:
    if not label:
        problems.append(f"empty label in {_snippet(whole)}")
        return None
    fields = value_text.split(";")
    head = fields[0]
    if head == "U":
        problems.append(f"{label!r}: value unknown (U)")
        return None
    m = _VALUE.fullmatch(head)
    if m is None:
        what = "missing value" if not head else f"non-numeric value {_snippet(head)}"
        problems.append(f"{label!r}: {what}")
        return None
    number_text, uom = m.groups()
    unit, factor = _UOMS.get(uom, ("", 1.0))
    if uom not in _UOMS:
        problems.append(f"{label!r}: unknown unit {_snippet(uom)}, value kept unscaled")
    value = float(number_text) * factor
    if not math.isfinite(value):
        problems.append(f"{label!r}: value {_snippet(head)} is not finite")
        return None
    if len(fields) > 5:
        problems.append(f"{label!r}: {len(fields) - 5} extra ';' field(s) ignored")
    raw = [f.strip() for f in fields[1:5]] + [""] * (5 - len(fields[:5]))
    warn_raw, crit_raw, min_raw, max_raw = raw
    ranges: list[Range | None] = []
    for name, text in (("warn", warn_raw), ("crit", crit_raw)):
        rng = parse_range(text, factor) if text else None
        if text and rng is None:
            problems.append(f"{label!r}: {name} threshold {_snippet(text)} is not a range")
        ranges.append(rng)
    for name, text in (("min", min_raw), ("max", max_raw)):
        if text and _threshold(text, factor) is None:
            problems.append(f"{label!r}: {name} {_snippet(text)} is not a number")
    return PerfData(
        label=label,
        value=value,
        unit=unit,
        warn=_threshold(warn_raw, factor),
        crit=_threshold(crit_raw, factor),
        min=_threshold(min_raw, factor),
        max=_threshold(max_raw, factor),
        uom=uom,
        warn_raw=warn_raw,
        crit_raw=crit_raw,
        min_raw=min_raw,
        max_raw=max_raw,
        warn_range=ranges[0],
        crit_range=ranges[1],
    )


def _perfdata(perf: str) -> tuple[list[PerfData], list[str]]:
    items: list[PerfData] = []
    problems: list[str] = []
    for label, value_text, whole in _tokens(perf):
        if label is None:
            problems.append(whole)
            continue
        if len(items) >= MAX_ITEMS:
            problems.append(f"more than {MAX_ITEMS} perfdata items: the rest are dropped")
            break
        item = _item(label, value_text, whole, problems)
        if item is not None:
            items.append(item)
    if len(problems) > MAX_PROBLEMS:
        more = len(problems) - MAX_PROBLEMS
        problems = [*problems[:MAX_PROBLEMS], f"... and {more} more problem(s)"]
    return items, problems


def parse(exit_code: int, output: str) -> CheckResult:
    """Parse a plugin's exit code and output. Never raises."""
    state = CheckState.from_exit_code(exit_code)
    if isinstance(output, bytes | bytearray):
        output = bytes(output).decode("utf-8", errors="replace")
    elif not isinstance(output, str):
        output = "" if output is None else str(output)
    output = output.replace("\r\n", "\n").replace("\r", "\n")
    first, _, rest = output.partition("\n")
    text, _, perf = first.partition("|")
    long_output, bar, more_perf = rest.partition("|")
    if bar:
        perf = perf + " " + more_perf
    items, problems = _perfdata(perf)
    return CheckResult(
        state=state,
        text=text.strip(),
        long_output=long_output.strip("\n").rstrip(),
        perfdata=items,
        problems=problems,
    )


def to_samples(
    result: CheckResult,
    check: str,
    now: float,
    labels: Mapping[str, str] | None = None,
) -> list[Sample]:
    """The check's state and perfdata as samples.

    ``dyzur_check_state{check}`` is the state (0-3); ``dyzur_check_perfdata{check,label,unit}``
    is each perfdata value in base units, ``unit`` being ``bytes``, ``seconds``, ``percent``,
    ``count`` or empty. ``labels`` are merged in; ``check``, ``label`` and ``unit`` win.
    """
    base = dict(labels or {})
    base["check"] = check
    samples = [Sample(STATE_METRIC, base, float(int(result.state)), now)]
    for item in result.perfdata:
        if not math.isfinite(item.value):
            continue
        item_labels = dict(base)
        item_labels["label"] = item.label[:MAX_LABEL_LENGTH]
        item_labels["unit"] = _UNIT_LABELS.get(item.unit, "")
        samples.append(Sample(PERFDATA_METRIC, item_labels, item.value, now))
    return samples
