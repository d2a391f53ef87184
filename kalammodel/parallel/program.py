"""Parallel programs as data: a sequential prefix, a parallel section of K clients, a sequential suffix.

A :class:`ParallelProgram` is what one parallel example runs (docs/concurrency.md, "Parallel programs"): the
``prefix`` runs on a session as any program does (it creates the tables and the rows the clients fight over),
then the ``clients`` (2 to 8 lists of steps) run at the same time, one thread and one HTTP client each, and
the history of the section is checked for linearizability against the model; the ``suffix`` runs after
it, sequentially, with the usual checks.

Inside the section only the steps whose outcomes the model predicts without server-assigned values are
allowed (:data:`SECTION_KINDS`): a single-row INSERT, an UPDATE or DELETE ``WHERE <col> = <literal>``, a
SELECT with no WHERE or ``WHERE <col> = <literal>`` (no LIMIT/OFFSET), and ``COUNT(*)`` of a whole table.
That the column is the table's primary key is checked when the section runs (it needs the model). Live
queries, DDL, flushes and restarts inside a section are the next slices of issue 15.

``to_data`` / ``from_data`` write and read a program beside the step codec (``step_to_data`` /
``step_from_data``); bad data raises a :class:`~kalammodel.errors.UsageError` naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from ..errors import UsageError
from ..model import Cmp
from ..steps import Step, step_from_data, step_to_data

__all__ = [
    "MAX_CLIENTS",
    "MIN_CLIENTS",
    "SECTION_KINDS",
    "ParallelProgram",
    "section_step_problem",
    "step_table",
]

#: how many clients a parallel section has, at least and at most
MIN_CLIENTS, MAX_CLIENTS = 2, 8
#: the step kinds allowed in a parallel section (first slice: no server-assigned values in their outcomes)
SECTION_KINDS = frozenset({"insert", "update", "delete", "select", "count"})


def step_table(step: Step) -> str:
    """The table a section step names (every kind of :data:`SECTION_KINDS` names one)."""
    table = getattr(step, "table", None)
    if not isinstance(table, str):
        raise UsageError(f"{step.describe()} names no table: it cannot run inside a parallel section")
    return table


def section_step_problem(step: Step) -> str | None:
    """Why ``step`` may not run inside a parallel section (None: it may). Shape only: that an ``=`` names
    the table's primary key is checked against the model when the section runs."""
    if step.kind not in SECTION_KINDS:
        return (
            f"a {step.kind!r} step may not run inside a parallel section (allowed: {', '.join(sorted(SECTION_KINDS))}; "
            "live queries, DDL, flushes and restarts are not supported there yet)"
        )
    where = getattr(step, "where", None)
    by_key = isinstance(where, Cmp) and where.op == "=" and where.value is not None
    if step.kind == "insert" and len(getattr(step, "rows", ())) != 1:
        return "an INSERT inside a parallel section must insert exactly one row"
    if step.kind in ("update", "delete") and not by_key:
        return f"an {step.kind.upper()} inside a parallel section must say WHERE <primary key> = <value>"
    if step.kind == "select":
        if where is not None and not by_key:
            return "a SELECT inside a parallel section reads one key (WHERE <primary key> = <value>) or everything"
        if getattr(step, "limit", None) is not None or getattr(step, "offset", None) is not None:
            return "a SELECT inside a parallel section has no LIMIT or OFFSET"
    if step.kind == "count" and where is not None:
        return "a COUNT inside a parallel section counts the whole table (no WHERE)"
    return None


def _steps(value: Any, field: str) -> tuple[Step, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise UsageError(f"parallel program: field {field!r} must be a list of steps (got {value!r})")
    out: list[Step] = []
    for i, item in enumerate(value):
        if isinstance(item, Step):
            out.append(item)
            continue
        try:
            out.append(step_from_data(item))
        except UsageError as exc:
            raise UsageError(f"parallel program: field {field!r}[{i}]: {exc}") from None
    return tuple(out)


def _prefix(value: Any) -> tuple[Step, ...]:
    return _steps(value, "prefix")


def _suffix(value: Any) -> tuple[Step, ...]:
    return _steps(value, "suffix")


def _clients(value: Any) -> tuple[tuple[Step, ...], ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise UsageError(f"parallel program: field 'clients' must be a list of step lists (got {value!r})")
    if not MIN_CLIENTS <= len(value) <= MAX_CLIENTS:
        raise UsageError(
            f"parallel program: field 'clients' must hold {MIN_CLIENTS} to {MAX_CLIENTS} clients (got {len(value)})"
        )
    clients: list[tuple[Step, ...]] = []
    for c, steps in enumerate(value):
        field = f"clients[{c}]"
        one = _steps(steps, field)
        if not one:
            raise UsageError(f"parallel program: field {field!r} must hold at least one step")
        for i, step in enumerate(one):
            problem = section_step_problem(step)
            if problem is not None:
                raise UsageError(f"parallel program: field '{field}[{i}]' ({step.describe()}): {problem}")
        clients.append(one)
    return tuple(clients)


@attrs.frozen
class ParallelProgram:
    """A sequential ``prefix``, a parallel section of ``clients`` (one step list each), a sequential ``suffix``."""

    prefix: tuple[Step, ...] = attrs.field(converter=_prefix)
    clients: tuple[tuple[Step, ...], ...] = attrs.field(converter=_clients)
    suffix: tuple[Step, ...] = attrs.field(default=(), converter=_suffix)

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every step, flattened: the prefix, each client's steps in client order, the suffix (a case file's
        ``steps``; the order of the section is the checker's, not this one)."""
        return self.prefix + tuple(s for c in self.clients for s in c) + self.suffix

    @property
    def section_steps(self) -> int:
        """How many steps the parallel section runs, all clients together."""
        return sum(len(c) for c in self.clients)

    def describe(self) -> str:
        """The program in words, one step a line: what a failure report prints."""
        lines = ["prefix:"] + [f"  {s.describe()}" for s in self.prefix]
        lines.append(f"parallel section ({len(self.clients)} clients at the same time):")
        for c, steps in enumerate(self.clients):
            lines += [f"  client {c}: {s.describe()}" for s in steps]
        lines.append("suffix:")
        lines += [f"  {s.describe()}" for s in self.suffix]
        return "\n".join(lines)

    def to_data(self) -> dict[str, Any]:
        """A JSON-able dict: ``{"prefix": [step...], "clients": [[step...]...], "suffix": [step...]}``."""
        return {
            "prefix": [step_to_data(s) for s in self.prefix],
            "clients": [[step_to_data(s) for s in c] for c in self.clients],
            "suffix": [step_to_data(s) for s in self.suffix],
        }

    @classmethod
    def from_data(cls, data: Any) -> ParallelProgram:
        """The program :meth:`to_data` wrote; UsageError naming the field on bad data."""
        if not isinstance(data, dict):
            raise UsageError(f"a parallel program must be a dict with prefix, clients, suffix (got {data!r})")
        unknown = sorted(set(data) - {"prefix", "clients", "suffix"})
        if unknown:
            raise UsageError(
                f"parallel program: unknown field(s) {unknown}; fields are prefix, clients, suffix"
            )
        missing = [f for f in ("prefix", "clients") if f not in data]
        if missing:
            raise UsageError(f"parallel program: missing field(s) {missing}")
        return cls(data["prefix"], data["clients"], data.get("suffix", []))
