"""Plain-value helpers of the runner: a server answer as an :class:`~kalammodel.model.Outcome`, primary-key
values as hashable keys, the keys a write names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..client import QueryResult, SqlResponse
from ..model import Cmp, Outcome
from ..steps import Step

__all__ = [
    "as_result_row",
    "outcome_of",
    "outcome_of_result",
    "pk_key",
    "rows_summary",
    "says_duplicate_key",
    "written_keys",
]


def outcome_of(response: SqlResponse) -> Outcome:
    """The outcome of a response's first result (none: a success without rows)."""
    results = list(getattr(response, "results", ()) or ())
    if not results:
        return Outcome(ok=True, row_count=0)
    return outcome_of_result(results[0])


def outcome_of_result(result: QueryResult) -> Outcome:
    """A successful query result (``QueryResult``: columns, rows, row_count, message) as an :class:`Outcome`."""
    return Outcome(
        ok=True,
        columns=tuple(c.name for c in result.columns),
        rows=tuple(tuple(r) for r in result.rows),
        row_count=result.row_count,
        message=result.message,
    )


def as_result_row(columns: Sequence[str], row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A row given by column name (the model's, or a step's) in a result's column order: absent columns NULL,
    ``_deleted`` False."""
    return tuple(row.get(c, False if c == "_deleted" else None) for c in columns)


def says_duplicate_key(outcome: Outcome) -> bool:
    """Whether a refusal says the primary key exists already."""
    text = f"{outcome.code or ''} {outcome.message or ''}".lower()
    return "primary key" in text or "already exists" in text or "duplicate" in text


def rows_summary(outcome: Outcome, limit: int = 20) -> str:
    rows = list(outcome.rows[:limit])
    more = f" ... (+{len(outcome.rows) - limit} more)" if len(outcome.rows) > limit else ""
    return f"columns={list(outcome.columns)} rows={rows}{more}"


def pk_key(value: Any) -> Any:
    """A hashable, type-tolerant key for primary-key values (1 == 1.0 == '1' must not collide wrongly)."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    return ("s", str(value))


#: the step kinds whose written keys are read back (see written_keys)
_KEYED_KINDS = frozenset({"insert", "update", "delete"})


def written_keys(step: Step, pk: str | None) -> list[Any]:
    """Primary keys a write step names explicitly: inserted rows, and UPDATE/DELETE ``WHERE pk = v``."""
    if pk is None or step.kind not in _KEYED_KINDS:
        return []
    columns = getattr(step, "columns", None)
    rows = getattr(step, "rows", None)
    if columns is not None and rows is not None and pk in columns:
        index = list(columns).index(pk)
        seen: dict[Any, Any] = {}
        for row in rows:
            if row[index] is not None:
                seen.setdefault(pk_key(row[index]), row[index])
        return list(seen.values())
    where = getattr(step, "where", None)
    if isinstance(where, Cmp) and where.column == pk and where.op == "=" and where.value is not None:
        return [where.value]
    return []
