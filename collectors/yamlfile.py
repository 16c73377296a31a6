"""YAML files as people write them: the one loader of dyzur's configuration, rule and plan files.

Read as bytes and decoded as UTF-8 (a bad byte names its line), parsed with PyYAML's safe
loader (no Python objects), refusing what would be silently wrong: a key given twice in one
mapping (the second would win unseen) and a key that is not a plain value. Nesting too deep to
parse is an error, not a crash. Every problem is a :class:`YamlError` with the file and the line
to fix; mappings remember their lines (:class:`YamlMap`) for the errors their readers find
later.

The standard library and PyYAML only (the core install's one dependency): the agent, the bridge
and the rule loader all use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlError(Exception):
    """A YAML file that cannot be used: ``source`` (its path or name), ``line`` (1-based, or
    None when the problem is not on one line) and ``problem``."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source = source
        self.line = line
        self.problem = problem
        super().__init__(str(self))

    @property
    def located(self) -> str:
        """The problem with its line: ``line 4: invalid YAML: ...``."""
        return self.problem if self.line is None else f"line {self.line}: {self.problem}"

    def __str__(self) -> str:
        return f"{self.source}: {self.located}"


class YamlMap(dict[Any, Any]):
    """A mapping that remembers where it and each of its keys stand (1-based lines)."""

    line: int
    key_lines: dict[Any, int]

    def key_line(self, key: Any) -> int:
        """The line of ``key``, or of the mapping when it has no such key."""
        return self.key_lines.get(key, self.line)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings are YamlMaps and that refuses duplicate keys."""


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> YamlMap:
    loader.flatten_mapping(node)
    result = YamlMap()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if key in result:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {result.key_lines[key]})",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)


def decode(data: bytes, source: str) -> str:
    """UTF-8 text; a byte that is not UTF-8 is named with its line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problem = f"not UTF-8 text (byte {data[exc.start]:#04x}); save it as UTF-8"
        raise YamlError(source, line, problem) from None


def parse_yaml(text: str, source: str) -> Any:
    """The document in ``text``, its mappings YamlMaps; ``source`` names it in errors."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise YamlError(source, None, "invalid YAML: nested too deeply") from None
    except yaml.MarkedYAMLError as exc:
        line, problem = _blame(exc, text)
        raise YamlError(source, line, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(source, None, f"invalid YAML: {exc}") from None


def load_yaml(path: Path | str) -> Any:
    """The document of the file at ``path`` (see :func:`parse_yaml`)."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise YamlError(source, None, f"cannot read the file: {exc.strerror or exc}") from None
    return parse_yaml(decode(data, source), source)


def _blame(exc: yaml.MarkedYAMLError, text: str) -> tuple[int | None, str]:
    """The line to blame and the message for a YAML error.

    PyYAML marks where it noticed the problem; for an unclosed bracket or quote that is the
    next line or the end of the file, so then the line where the bracket or quote opened is
    the one to fix."""
    problem = ": ".join(p for p in (exc.context, exc.problem) if p) or "not YAML"
    mark, context = exc.problem_mark, exc.context_mark
    unclosed = (exc.context or "").startswith(("while parsing a flow", "while scanning a quoted"))
    at_end = mark is not None and not text[mark.index :].strip()
    if context is not None and (mark is None or unclosed or at_end):
        if mark is not None and mark.line != context.line:
            problem += f" (noticed at line {mark.line + 1})"
        mark = context
    return (mark.line + 1 if mark is not None else None), problem
