"""What the corpus reads from a step list: a step's kind and description, the failing step, its table's kind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kalammodel.errors import Divergence

if TYPE_CHECKING:
    from kalammodel.steps import Step

    from .format import DivergenceRecord

_TABLE_KIND_ATTRS = ("table_kind", "table_type")


def step_kind(step: Step) -> str:
    kind = getattr(step, "kind", None)
    return str(kind) if kind else type(step).__name__


def describe(step: Step) -> str:
    try:
        return str(step.describe())
    except Exception as exc:  # a describe() bug must not hide the failure being reported
        return f"{step_kind(step)}(<describe() failed: {exc!r}>)"


def failing_step(
    steps: Sequence[Step], record: DivergenceRecord, divergence: Divergence | DivergenceRecord | None = None
) -> Step | None:
    """The step the divergence happened at: the divergence's own step record, else the step at its index,
    else the last step."""
    step = divergence.step if isinstance(divergence, Divergence) else None  # a record keeps no step
    if step is not None and hasattr(step, "requests"):  # Divergence.step may be a description string
        return step
    if record.step_index is not None and 0 <= record.step_index < len(steps):
        return steps[record.step_index]
    return steps[-1] if steps else None


def _declared_kind(step: Step) -> tuple[str | None, Any]:  # Any: a TableKind, a str or None
    """(table name, table kind) a step declares: a ``spec`` record (CREATE TABLE) or ``table_kind`` fields.
    Step families carry their table differently, so the fields are looked up by name."""
    spec = getattr(step, "spec", None)
    if spec is not None and getattr(spec, "name", None):
        return spec.name, getattr(spec, "kind", None)
    for name in _TABLE_KIND_ATTRS:
        value = getattr(step, name, None)
        if value:
            table = getattr(step, "table", None)
            return getattr(table, "name", table), value
    return None, None


def table_kind(steps: Sequence[Step], failing: Step | None) -> str | None:
    """The kind (USER, SHARED, STREAM) of the failing step's table, read from the step itself or from the last
    earlier step that declares that table (its CREATE TABLE); None when the steps do not say."""
    if failing is None:
        return None
    _, kind = _declared_kind(failing)
    if kind:
        return _kind_text(kind)
    table = getattr(failing, "table", None)
    if table is None:
        return None
    if not isinstance(table, str):  # a table record carried by the step
        for name in (*_TABLE_KIND_ATTRS, "kind"):
            value = getattr(table, name, None)
            if value:
                return _kind_text(value)
        table = getattr(table, "name", None)
    found = None
    for step in steps:
        if step is failing:
            break
        declared, kind = _declared_kind(step)
        if declared == table and kind:
            found = kind
    return None if found is None else _kind_text(found)


def _kind_text(value: Any) -> str:  # Any: a TableKind enum or its name
    value = getattr(value, "value", value)
    return str(value).upper()
