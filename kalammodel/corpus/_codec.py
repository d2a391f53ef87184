"""A small declarative JSON codec for the records of a case file.

Each record lists its fields once, as :class:`Key` entries (attribute, dotted JSON path, how a JSON value is
checked and converted, how the value is written). :func:`encode` and :func:`decode` walk the same list, so
``to_data`` and ``from_data`` cannot drift apart. A value that does not fit raises :class:`DataError`, whose
``problem`` names the field, shows the value and says what to do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

#: a loader: (JSON value, the field's dotted name) -> the Python value, or DataError
Loader = Callable[[Any, str], Any]  # Any: JSON data in, record values out


class DataError(ValueError):
    """A JSON value does not fit the case format; ``problem`` reads "field 'x' must be ... (got ...); ..."."""

    def __init__(self, problem: str):
        self.problem = problem
        super().__init__(problem)


def _same(value: Any) -> Any:  # Any: passes any JSON value through
    return value


def _as_is(value: Any, where: str) -> Any:  # Any: passes any JSON value through
    return value


def _never(value: Any) -> bool:  # Any: as _same
    return False


@attrs.frozen
class Key:
    """One field of a record: attribute ``attr`` stored at the dotted ``path`` of the record's JSON object.

    ``required``: a missing key is an error (else ``default``). ``derived``: written from the attribute (or
    property) but only checked for presence when read, not passed to the constructor. ``omit``: leave the key
    out of the file when it returns true for the value.
    """

    attr: str
    path: str
    load: Loader = _as_is
    dump: Callable[[Any], Any] = _same
    required: bool = False
    default: Any = None  # Any: the attribute's own type
    derived: bool = False
    omit: Callable[[Any], bool] = _never


def encode(record: object, keys: Sequence[Key]) -> dict[str, Any]:
    """The JSON object of ``record``: every key in order, nested objects built along dotted paths."""
    data: dict[str, Any] = {}
    for key in keys:
        value = getattr(record, key.attr)
        if key.omit(value):
            continue
        *parents, leaf = key.path.split(".")
        where = data
        for parent in parents:
            where = where.setdefault(parent, {})
        where[leaf] = key.dump(value)
    return data


def decode(
    data: Mapping[str, Any], keys: Sequence[Key], prefix: str = "", objects: Sequence[str] = ()
) -> dict[str, Any]:
    """Constructor arguments read from ``data`` along ``keys``; ``objects`` are nested objects that must be
    present even where all their keys are optional. ``prefix`` is the record's own dotted name in the file."""
    for name in objects:
        if name not in data:
            raise DataError(f"is missing field '{prefix}{name}'; repair the file or delete it")
        typed(dict)(data[name], prefix + name)
    for key in keys:
        if key.required and _lookup(data, key.path, prefix) is _ABSENT:
            raise DataError(f"is missing field '{prefix}{key.path}'; repair the file or delete it")
    values: dict[str, Any] = {}
    for key in keys:
        raw = _lookup(data, key.path, prefix)
        if raw is _ABSENT:  # a fresh copy: records never share a mutable default
            value = copy.copy(key.default)
        else:
            value = key.load(raw, prefix + key.path)
        if not key.derived:
            values[key.attr] = value
    return values


_ABSENT = object()


def _lookup(data: Mapping[str, Any], path: str, prefix: str) -> Any:  # Any: JSON data
    where: Any = data
    walked = ""
    for part in path.split("."):
        if walked:
            typed(dict)(where, prefix + walked)
        if part not in where:
            return _ABSENT
        where = where[part]
        walked = f"{walked}.{part}" if walked else part
    return where


_NAMES = {"NoneType": "null", "str": "string", "dict": "object"}


def typed(*types: type) -> Loader:
    """A loader that accepts JSON values of ``types`` only (a bool is not an int unless ``bool`` is named)."""

    def load(value: Any, where: str) -> Any:
        if isinstance(value, bool) and bool not in types:
            ok = False
        else:
            ok = isinstance(value, types)
        if not ok:
            names = " or ".join(_NAMES.get(t.__name__, t.__name__) for t in types)
            raise DataError(f"field '{where}' must be {names} (got {value!r}); repair the file or delete it")
        return value

    return load


def optional(kind: type) -> Loader:
    return typed(kind, type(None))


def text(value: Any, where: str) -> str:  # Any: any JSON value, shown as text
    """Any JSON value as text (fields that earlier readers took as they came, e.g. ``created_at``)."""
    return str(value)


def optional_text(value: Any, where: str) -> str | None:  # Any: as text
    return None if value is None else str(value)


def strings(value: Any, where: str) -> tuple[str, ...]:  # Any: a JSON list
    return tuple(str(item) for item in typed(list)(value, where))


def items(value: Any, where: str) -> tuple[Any, ...]:  # Any: a JSON list of any data
    return tuple(typed(list)(value, where))


def choice(name: str, options: Sequence[str]) -> Loader:
    """A loader that accepts one of ``options``: "has <name> 'x'; expected one of a, b, c" otherwise."""

    def load(value: Any, where: str) -> Any:
        if value not in options:
            raise DataError(f"has {name} {value!r}; expected one of {', '.join(options)}")
        return value

    return load
