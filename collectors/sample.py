"""The one measurement type shared by collectors, agents, rules and the bridge."""

from collections.abc import Mapping
from typing import NamedTuple


class Sample(NamedTuple):
    """One measured value of one series.

    ``timestamp`` is seconds since the Unix epoch (UTC). A NamedTuple keeps the hot path
    cheap: building and reading one costs about as much as a plain tuple.
    """

    metric: str
    labels: Mapping[str, str]
    value: float
    timestamp: float
