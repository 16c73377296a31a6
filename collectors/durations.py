"""Durations as rule files write them: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"2d"`` or seconds."""

from __future__ import annotations

import math
import re

_UNITS: dict[str, int] = {"d": 86400, "h": 3600, "m": 60, "s": 1}

# Units largest first, each at most once: "1d2h30m15s", "90s", "1.5h".
_DURATION = re.compile(
    r"(?:(?P<d>\d+(?:\.\d+)?)d)?"
    r"(?:(?P<h>\d+(?:\.\d+)?)h)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)m)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)s)?"
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_duration(value: object) -> float:
    """Return ``value`` in seconds.

    Accepts a non-negative number of seconds (int or float, not bool), a string holding one
    (``"300"``), or a string of units largest first, each at most once: ``d``, ``h``, ``m``, ``s``
    (``"30s"``, ``"5m"``, ``"1h30m"``, ``"2d"``). Anything else raises ``ValueError`` saying
    what is accepted.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s, 5m, 1h30m or 2d, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a duration must be a finite number >= 0, got {value!r}")
        return seconds
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return float(text)
        m = _DURATION.fullmatch(text)
        if text and m is not None:
            return float(sum(float(n) * _UNITS[u] for u, n in m.groupdict().items() if n))
    raise ValueError(f"expected a duration such as 30s, 5m, 1h30m or 2d, got {value!r}")


def format_duration(seconds: float) -> str:
    """``330`` -> ``"5m30s"``, ``7200`` -> ``"2h"``, ``0`` -> ``"0s"``; rounded to whole seconds."""
    if not math.isfinite(seconds):
        return str(seconds)
    total = round(seconds)
    sign = "-" if total < 0 else ""
    total = abs(total)
    parts = []
    for unit, size in _UNITS.items():
        n, total = divmod(total, size)
        if n:
            parts.append(f"{n}{unit}")
    return sign + ("".join(parts) or "0s")
