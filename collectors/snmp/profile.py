r"""Device profiles: which OIDs to read and how they become samples. Data, not code.

A profile is one YAML file in ``collectors/snmp/profiles/`` (or any path given in the
options). Every error is a ``ProfileError`` whose message names the file and the field, e.g.
``ups-mib.yaml: tables.0.metrics.2.value: unknown name 'volts'``. Numeric OIDs only: nothing
here loads or compiles a MIB.

Format (see README.md for the full description)::

    name: ups-mib
    description: RFC 1628 UPS-MIB
    scalars:                    # GET; names for numeric OIDs (a trailing .0 is written out)
      source: 1.3.6.1.2.1.33.1.4.1.0
    metrics:                    # one sample each from the scalars
      - metric: dyzur_ups_on_battery
        value: source           # an expression over the names: + - * / % ( ) numbers
        one_of: [5]             # optional: 1 when the value is one of these, else 0
    tables:                     # bulk walks of table columns
      - columns:                # column name -> column OID (no index)
          voltage: 1.3.6.1.2.1.33.1.3.3.1.3
        labels:                 # label -> "index" | column name | {column, names}
          line: index
        where:                  # optional: keep rows whose column value is one of these
          type: [1.3.6.1.2.1.25.2.1.4]
        exclude:                # optional: drop rows whose column value matches a regex
          name: '\.snapshot$'
        metrics:
          - metric: dyzur_ups_input_voltage_volts
            value: voltage
            scale: 1            # optional multiplier, applied after map/one_of
            range: [0, null]    # optional: a result outside is garbage and skipped

A metric may also have fixed ``labels: {line: "1"}``, ``map: {code: value}`` with
``default`` (for codes not in the map; without it an unmapped code skips the metric), and
``name_label`` + ``names`` to add a label with an enumeration's name (``source: battery``).
With ``state_set: true`` the names make a Prometheus state set instead: one sample per name,
1 for the current code's and 0 for the others (an unnamed code skips them all).
``scale`` is applied in exact decimal arithmetic: 35 % x 0.01 is 0.35, not
0.35000000000000003. Standard library and PyYAML only.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

PROFILE_DIR = Path(__file__).parent / "profiles"
METRIC_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
OID_RE = re.compile(r"^1(\.(0|[1-9][0-9]*))+$")
RESERVED_LABELS = frozenset({"asset"})

PROFILE_KEYS = ("name", "description", "scalars", "metrics", "tables")
TABLE_KEYS = ("columns", "labels", "where", "exclude", "metrics")
METRIC_KEYS = (
    "metric",
    "value",
    "scale",
    "one_of",
    "map",
    "default",
    "name_label",
    "names",
    "range",
    "labels",
    "state_set",
)

_BINOPS: dict[type, Callable[[int | float, int | float], int | float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}


class ProfileError(ValueError):
    """A profile file is wrong; the message names the file and the field."""


class NotANumber(ValueError):
    """A value the expression needs is missing or not a number: the metric is skipped."""


Value = int | float | str | None


@dataclass(frozen=True, slots=True)
class Expression:
    """``size * units`` and the like: a parsed arithmetic expression over named values."""

    source: str
    tree: ast.expr
    names: frozenset[str]

    def evaluate(self, values: Mapping[str, Value]) -> int | float:
        """The result; an int while every operand is one (exact, for ``scale``)."""
        return self._eval(self.tree, values)

    def _eval(self, node: ast.expr, values: Mapping[str, Value]) -> int | float:
        if isinstance(node, ast.Constant):
            return node.value  # type: ignore[return-value]
        if isinstance(node, ast.Name):
            value = values.get(node.id)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise NotANumber(f"{node.id} is {value!r}")
            return value
        if isinstance(node, ast.UnaryOp):
            return -self._eval(node.operand, values)
        assert isinstance(node, ast.BinOp)
        left, right = self._eval(node.left, values), self._eval(node.right, values)
        try:
            return _BINOPS[type(node.op)](left, right)
        except ZeroDivisionError:
            raise NotANumber(f"division by zero in {self.source}") from None


def parse_expression(source: object, known: Sequence[str]) -> Expression:
    """Parse ``source``; raise ValueError naming what is wrong."""
    if isinstance(source, bool) or not isinstance(source, str | int | float):
        raise ValueError(f"expected an expression such as 'size * units', got {source!r}")
    text = str(source)
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {text!r}") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in known:
                raise ValueError(f"unknown name {node.id!r} (known: {', '.join(known)})")
            names.add(node.id)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise ValueError(f"only numbers and names allowed, got {node.value!r}")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise ValueError(f"operator not allowed in {text!r} (allowed: + - * / %)")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub):
                raise ValueError(f"operator not allowed in {text!r}")
        elif not isinstance(node, ast.operator | ast.unaryop | ast.expr_context):
            raise ValueError(f"not an arithmetic expression: {text!r}")
    return Expression(text, tree, frozenset(names))


def exact_scale(scale: int | float) -> Fraction:
    """The scale as the decimal number it is written as: 0.01 is exactly 1/100."""
    return Fraction(repr(scale)) if isinstance(scale, float) else Fraction(scale)


def scaled(value: int | float, scale: Fraction) -> float:
    """``value x scale`` rounded once, so that 35 x 0.01 gives 0.35, not 0.35000000000000003.

    Float multiplication rounds 0.01 first and the product again; here the value is taken
    as the decimal it prints as, multiplied exactly and rounded to the nearest float.
    """
    if scale == 1:
        return float(value)
    if isinstance(value, int) or value.is_integer():
        # int / int is correctly rounded in Python: the common SNMP integer case, cheaply.
        return int(value) * scale.numerator / scale.denominator
    return float(Fraction(repr(value)) * scale)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    metric: str
    value: Expression
    #: Exact (a Fraction of the decimal written in the profile): see ``scaled``.
    scale: Fraction = Fraction(1)
    one_of: frozenset[int | str] | None = None
    map: Mapping[int | str, float] | None = None
    default: float | None = None
    name_label: str | None = None
    names: Mapping[int | str, str] = field(default_factory=dict)
    #: (low, high), either None: a result outside is a garbage answer and is skipped.
    range: tuple[float | None, float | None] = (None, None)
    #: Fixed labels, e.g. {line: "1"} for a single-phase UPS's scalar input voltage.
    labels: Mapping[str, str] = field(default_factory=dict)

    def compute(self, values: Mapping[str, Value]) -> tuple[float, dict[str, str]]:
        """The value and the extra labels; raise NotANumber when it cannot be computed."""
        raw = self.value.evaluate(values)
        if isinstance(raw, float) and not math.isfinite(raw):
            raise NotANumber(f"{self.value.source} is {raw}")
        code: int | float = int(raw) if isinstance(raw, float) and raw.is_integer() else raw
        labels: dict[str, str] = dict(self.labels)
        if self.name_label:
            labels[self.name_label] = self.names.get(code, str(code))  # type: ignore[arg-type]
        result: int | float
        if self.one_of is not None:
            result = 1 if code in self.one_of else 0
        elif self.map is not None:
            if code in self.map:
                result = self.map[code]  # type: ignore[index]
            elif self.default is not None:
                result = self.default
            else:
                raise NotANumber(f"{self.value.source} = {code} is not in the map")
        else:
            result = raw
        value = scaled(result, self.scale)
        low, high = self.range
        if (low is not None and value < low) or (high is not None and value > high):
            raise NotANumber(f"{self.value.source} gives {value:g}, outside {low}..{high}")
        return value, labels


def state_set(spec: MetricSpec) -> tuple[MetricSpec, ...]:
    """A state set as plain metrics: one per state name, with the state in ``name_label``.

    Each maps the codes of its state to 1 and every other named code to 0; a code with no
    name is in no map and skips them all, as garbage. (Expanded here, so that the poller
    needs nothing new: each is an ordinary ``map`` metric with a fixed label.)
    """
    assert spec.name_label is not None
    out = []
    for state in dict.fromkeys(spec.names.values()):  # in order, each name once
        mapping = {code: 1.0 if name == state else 0.0 for code, name in spec.names.items()}
        out.append(
            MetricSpec(
                metric=spec.metric,
                value=spec.value,
                map=mapping,
                labels={**spec.labels, spec.name_label: state},
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """A label from the row index (``column is None``) or from a column, optionally named."""

    column: str | None
    names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TableSpec:
    columns: Mapping[str, str]  # name -> column OID
    labels: Mapping[str, LabelSpec]
    where: Mapping[str, frozenset[str]]
    metrics: tuple[MetricSpec, ...]
    exclude: Mapping[str, re.Pattern[str]] = field(default_factory=dict)

    def keeps(self, row: Mapping[str, Value]) -> bool:
        """Whether a row passes ``where`` and ``exclude``."""
        for column, allowed in self.where.items():
            if str(row[column]) not in allowed:
                return False
        for column, pattern in self.exclude.items():
            if row[column] is not None and pattern.search(str(row[column])):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    description: str
    scalars: Mapping[str, str]  # name -> OID
    metrics: tuple[MetricSpec, ...]
    tables: tuple[TableSpec, ...]
    path: Path | None = None


def _key(value: object) -> int | str:
    """A map key from YAML: integers stay integers, OIDs and names are strings."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number or a string, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    raise ValueError(f"expected a number or a string, got {value!r}")


class _Loader:
    def __init__(self, where: str) -> None:
        self.where = where

    def error(self, path: str, message: str) -> ProfileError:
        return ProfileError(
            f"{self.where}: {path}: {message}" if path else f"{self.where}: {message}"
        )

    def mapping(self, path: str, raw: object, allowed: Sequence[str] | None = None) -> Mapping:
        if not isinstance(raw, Mapping):
            raise self.error(path, f"expected a mapping, got {raw!r}")
        if allowed is not None:
            unknown = sorted(str(k) for k in raw if k not in allowed)
            if unknown:
                prefix = f"{path}." if path else ""
                raise self.error(
                    f"{prefix}{unknown[0]}", f"unknown field (allowed: {', '.join(allowed)})"
                )
        return raw

    def sequence(self, path: str, raw: object) -> Sequence:
        if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
            raise self.error(path, f"expected a list, got {raw!r}")
        return raw

    def oid(self, path: str, raw: object) -> str:
        text = str(raw).strip().lstrip(".") if isinstance(raw, str | int) else None
        if text is None or not OID_RE.match(text):
            raise self.error(
                path, f"expected a numeric OID such as 1.3.6.1.2.1.33.1.4.1.0, got {raw!r}"
            )
        return text

    def names(self, path: str, raw: object) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, oid in self.mapping(path, raw).items():
            if not isinstance(name, str) or not NAME_RE.match(name):
                raise self.error(f"{path}.{name}", "a name must be an identifier such as 'size'")
            out[name] = self.oid(f"{path}.{name}", oid)
        if not out:
            raise self.error(path, "must name at least one OID")
        return out

    def metrics(self, path: str, raw: object, known: Sequence[str]) -> tuple[MetricSpec, ...]:
        """A list of metrics; a state set becomes one metric per state."""
        out: list[MetricSpec] = []
        for i, m in enumerate(self.sequence(path, raw)):
            out.extend(self.metric(f"{path}.{i}", m, known))
        return tuple(out)

    def metric(self, path: str, raw: object, known: Sequence[str]) -> tuple[MetricSpec, ...]:
        m = self.mapping(path, raw, METRIC_KEYS)
        name = m.get("metric")
        if not isinstance(name, str) or not METRIC_RE.match(name):
            raise self.error(f"{path}.metric", f"expected a metric name, got {name!r}")
        if "value" not in m:
            raise self.error(f"{path}.value", "missing")
        try:
            value = parse_expression(m["value"], known)
        except ValueError as exc:
            raise self.error(f"{path}.value", str(exc)) from None
        scale = m.get("scale", 1)
        if (
            isinstance(scale, bool)
            or not isinstance(scale, int | float)
            or not math.isfinite(scale)
        ):
            raise self.error(f"{path}.scale", f"expected a number, got {scale!r}")
        one_of = None
        if "one_of" in m:
            try:
                one_of = frozenset(_key(v) for v in self.sequence(f"{path}.one_of", m["one_of"]))
            except ValueError as exc:
                raise self.error(f"{path}.one_of", str(exc)) from None
        mapped = None
        if "map" in m:
            if one_of is not None:
                raise self.error(f"{path}.map", "use either one_of or map, not both")
            mapped = {}
            for k, v in self.mapping(f"{path}.map", m["map"]).items():
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise self.error(f"{path}.map.{k}", f"expected a number, got {v!r}")
                try:
                    mapped[_key(k)] = float(v)
                except ValueError as exc:
                    raise self.error(f"{path}.map.{k}", str(exc)) from None
        default = m.get("default")
        if default is not None:
            if mapped is None:
                raise self.error(f"{path}.default", "only with map")
            if isinstance(default, bool) or not isinstance(default, int | float):
                raise self.error(f"{path}.default", f"expected a number, got {default!r}")
        name_label = m.get("name_label")
        names: dict[int | str, str] = {}
        if name_label is not None:
            if not isinstance(name_label, str) or not LABEL_RE.match(name_label):
                raise self.error(f"{path}.name_label", f"expected a label name, got {name_label!r}")
            if name_label in RESERVED_LABELS:
                raise self.error(f"{path}.name_label", f"{name_label!r} is set by the collector")
            for k, v in self.mapping(f"{path}.names", m.get("names")).items():
                if not isinstance(v, str):
                    raise self.error(f"{path}.names.{k}", f"expected a string, got {v!r}")
                try:
                    names[_key(k)] = v
                except ValueError as exc:
                    raise self.error(f"{path}.names.{k}", str(exc)) from None
        elif "names" in m:
            raise self.error(f"{path}.names", "only with name_label")
        bounds: tuple[float | None, float | None] = (None, None)
        if "range" in m:
            r = self.sequence(f"{path}.range", m["range"])
            if len(r) != 2 or any(
                v is not None and (isinstance(v, bool) or not isinstance(v, int | float)) for v in r
            ):
                raise self.error(
                    f"{path}.range", f"expected [low, high] (numbers or null), got {r!r}"
                )
            bounds = (None if r[0] is None else float(r[0]), None if r[1] is None else float(r[1]))
        fixed: dict[str, str] = {}
        for label, text in self.mapping(f"{path}.labels", m.get("labels", {})).items():
            if not isinstance(label, str) or not LABEL_RE.match(label):
                raise self.error(f"{path}.labels.{label}", "expected a label name")
            if label in RESERVED_LABELS:
                raise self.error(f"{path}.labels.{label}", f"{label!r} is set by the collector")
            if isinstance(text, bool) or not isinstance(text, str | int):
                raise self.error(f"{path}.labels.{label}", f"expected a string, got {text!r}")
            fixed[label] = str(text)
        spec = MetricSpec(
            labels=fixed,
            range=bounds,
            metric=name,
            value=value,
            scale=exact_scale(scale),
            one_of=one_of,
            map=mapped,
            default=None if default is None else float(default),
            name_label=name_label,
            names=names,
        )
        is_set = m.get("state_set", False)
        if not isinstance(is_set, bool):
            raise self.error(f"{path}.state_set", f"expected true or false, got {is_set!r}")
        if not is_set:
            return (spec,)
        if name_label is None:
            raise self.error(f"{path}.state_set", "needs name_label and names (the states)")
        if not names:
            raise self.error(f"{path}.names", "a state set needs at least one state")
        for key in ("scale", "one_of", "map", "range"):
            if key in m:
                raise self.error(f"{path}.{key}", "not with state_set (each state reads 0 or 1)")
        if name_label in fixed:
            raise self.error(f"{path}.labels.{name_label}", "is the state set's name_label")
        return state_set(spec)

    def table(self, path: str, raw: object) -> TableSpec:
        t = self.mapping(path, raw, TABLE_KEYS)
        columns = self.names(f"{path}.columns", t.get("columns"))
        known = list(columns)
        labels: dict[str, LabelSpec] = {}
        for label, spec in self.mapping(f"{path}.labels", t.get("labels", {})).items():
            lpath = f"{path}.labels.{label}"
            if not isinstance(label, str) or not LABEL_RE.match(label):
                raise self.error(lpath, "expected a label name")
            if label in RESERVED_LABELS:
                raise self.error(lpath, f"{label!r} is set by the collector")
            if spec == "index":
                labels[label] = LabelSpec(None)
                continue
            short = isinstance(spec, str)
            s = self.mapping(lpath, {"column": spec} if short else spec, ("column", "names"))
            column = s.get("column")
            if column not in columns:
                raise self.error(
                    lpath if short else f"{lpath}.column",
                    f"expected 'index' or a column ({', '.join(known)}), got {column!r}",
                )
            names = {
                str(k).lstrip("."): str(v)
                for k, v in self.mapping(f"{lpath}.names", s.get("names", {})).items()
            }
            labels[label] = LabelSpec(column, names)
        where: dict[str, frozenset[str]] = {}
        for column, allowed in self.mapping(f"{path}.where", t.get("where", {})).items():
            if column not in columns:
                raise self.error(f"{path}.where.{column}", f"not a column ({', '.join(known)})")
            values = self.sequence(f"{path}.where.{column}", allowed)
            where[column] = frozenset(str(v).lstrip(".") for v in values)
        exclude: dict[str, re.Pattern[str]] = {}
        for column, regex in self.mapping(f"{path}.exclude", t.get("exclude", {})).items():
            if column not in columns:
                raise self.error(f"{path}.exclude.{column}", f"not a column ({', '.join(known)})")
            try:
                exclude[column] = re.compile(str(regex))
            except re.error as exc:
                raise self.error(f"{path}.exclude.{column}", f"invalid regex: {exc}") from None
        metrics = self.metrics(f"{path}.metrics", t.get("metrics"), known)
        if not metrics:
            raise self.error(f"{path}.metrics", "must list at least one metric")
        return TableSpec(columns, labels, where, metrics, exclude)

    def profile(self, raw: object, path: Path | None) -> Profile:
        p = self.mapping("", raw, PROFILE_KEYS)
        name = p.get("name")
        if not isinstance(name, str) or not name.strip():
            raise self.error("name", f"expected a non-empty string, got {name!r}")
        description = p.get("description", "")
        if not isinstance(description, str):
            raise self.error("description", f"expected a string, got {description!r}")
        scalars = self.names("scalars", p["scalars"]) if "scalars" in p else {}
        metrics = self.metrics("metrics", p.get("metrics", []), list(scalars))
        if scalars and not metrics:
            raise self.error("metrics", "scalars are named but no metric uses them")
        tables = tuple(
            self.table(f"tables.{i}", t)
            for i, t in enumerate(self.sequence("tables", p.get("tables", [])))
        )
        if not metrics and not tables:
            raise self.error("", "a profile needs metrics or tables")
        return Profile(name, description, scalars, metrics, tables, path)


def parse_profile(raw: object, where: str = "<profile>", path: Path | None = None) -> Profile:
    """Validate an already parsed YAML document."""
    return _Loader(where).profile(raw, path)


def load_profile(path: Path) -> Profile:
    """Load one profile file; raise ProfileError naming the file and field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path.name}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ProfileError(
            f"{path.name}:{line}: invalid YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    return parse_profile(raw, path.name, path)


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped in collectors/snmp/profiles/."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def resolve_profile(ref: str) -> Profile:
    """A built-in profile by name (``ups-mib``) or a profile file by path (ends in .yaml)."""
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        return load_profile(Path(ref))
    path = PROFILE_DIR / f"{ref}.yaml"
    if not path.is_file():
        raise ProfileError(
            f"unknown profile {ref!r} (built in: {', '.join(builtin_profiles())}; "
            "or give the path of a .yaml file)"
        )
    return load_profile(path)


def _all_oids(profile: Profile) -> list[str]:  # pragma: no cover - debugging aid
    return [*profile.scalars.values(), *(o for t in profile.tables for o in t.columns.values())]


def describe(profile: Profile) -> dict[str, Any]:
    """The metric names a profile can yield (for README tables and tests)."""
    names = [m.metric for m in profile.metrics] + [
        m.metric for t in profile.tables for m in t.metrics
    ]
    return {"name": profile.name, "metrics": sorted(set(names))}
