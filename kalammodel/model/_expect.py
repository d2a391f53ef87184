"""What the model predicts for one request, and how an actual outcome is compared with it.

Expectations are pure data. The runner turns whatever the wire client returned into an :class:`Outcome`
(plain Python values) and calls :func:`compare_outcome`; a returned string describes the first difference and
becomes a ``Divergence``. ``None`` means the outcome agrees.

Two expectations are *runner actions* rather than answers to a request (their step sends no SQL):
:class:`ExpectFlushDone` (wait for the flush job a ``StartFlush`` began) and :class:`ExpectPause` (let time pass).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from ._types import ColumnType

__all__ = [
    "ExpectCount",
    "ExpectError",
    "ExpectFlush",
    "ExpectFlushDone",
    "ExpectOk",
    "ExpectPause",
    "ExpectRows",
    "Expectation",
    "Outcome",
    "compare_outcome",
    "compare_rows",
    "flush_job_id",
    "flush_message_kind",
]


@attrs.frozen
class Outcome:
    """What came back for one request, as plain values.

    ``ok`` False means an error envelope (``status``, ``code``, ``message``). For a success, ``columns`` and
    ``rows`` are the first result's schema names and decoded rows (tuples in column order), ``row_count`` and
    ``message`` its fields.
    """

    ok: bool
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    row_count: int | None = None
    message: str | None = None
    status: int | None = None
    code: str | None = None

    def brief(self) -> str:
        if not self.ok:
            return f"error HTTP {self.status} {self.code}: {self.message}"
        if self.columns:
            return f"{len(self.rows)} row(s) {list(self.columns)}"
        return f"ok row_count={self.row_count} message={self.message!r}"


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(value)


def _table_rows(value: Any) -> tuple[tuple[Any, ...], ...]:
    return tuple(tuple(r) for r in value)


@attrs.frozen
class ExpectOk:
    """The statement succeeds; for DML ``row_count`` is ``affected`` (or within ``[affected, affected_max]``)."""

    affected: int | None = None
    affected_max: int | None = None

    def __repr__(self) -> str:
        if self.affected is None:
            return "ExpectOk()"
        if self.affected_max is not None and self.affected_max != self.affected:
            return f"ExpectOk(affected in [{self.affected}, {self.affected_max}])"
        return f"ExpectOk(affected={self.affected})"


@attrs.frozen
class ExpectError:
    """The request fails with one of ``codes`` (and HTTP ``status`` when given)."""

    codes: tuple[str, ...] = attrs.field(converter=_strings)
    status: int | None = None
    reason: str = ""

    def __repr__(self) -> str:
        status = f" HTTP {self.status}" if self.status is not None else ""
        why = f" ({self.reason})" if self.reason else ""
        return f"ExpectError({'|'.join(self.codes)}{status}){why}"


@attrs.frozen
class ExpectRows:
    """A SELECT result.

    * ``columns``: the result's column names, in order; ``types`` their types (None: compare as is).
    * ``rows`` must all appear (as a multiset); every actual row must be in ``rows`` or ``maybe_rows``.
    * ``exact_size`` / ``size_range``: how many rows come back when that is known but not which ones
      (LIMIT over an unordered or tied set, STREAM rows near their TTL).
    * ``ordered``: the actual rows equal ``rows`` in this order (only when the order is fully determined).
    * ``sort_keys``: ``(column index, descending)``: actual rows must be sorted by these keys (ties in any order;
      NULLs last ascending, first descending, as DataFusion does).
    * ``unchecked``: column names whose values are not predicted (``_seq``).
    """

    columns: tuple[str, ...] = attrs.field(converter=_strings)
    rows: tuple[tuple[Any, ...], ...] = attrs.field(converter=_table_rows)
    ordered: bool = False
    maybe_rows: tuple[tuple[Any, ...], ...] = attrs.field(default=(), converter=_table_rows)
    exact_size: int | None = None
    size_range: tuple[int, int] | None = None
    sort_keys: tuple[tuple[int, bool], ...] = ()
    types: tuple[ColumnType | None, ...] | None = None
    unchecked: tuple[str, ...] = ("_seq",)

    def __repr__(self) -> str:
        parts = [f"columns={list(self.columns)}", f"rows={list(self.rows)}"]
        if self.maybe_rows:
            parts.append(f"maybe_rows={list(self.maybe_rows)}")
        if self.exact_size is not None:
            parts.append(f"exact_size={self.exact_size}")
        if self.size_range is not None:
            parts.append(f"size_range={self.size_range}")
        if self.ordered:
            parts.append("ordered")
        if self.sort_keys:
            keys = ", ".join(f"{self.columns[i]}{' DESC' if d else ''}" for i, d in self.sort_keys)
            parts.append(f"sorted by {keys}")
        return f"ExpectRows({', '.join(parts)})"


@attrs.frozen
class ExpectCount:
    """``SELECT COUNT(*) AS <column>``: one row, one cell, an int in ``[low, high]``."""

    low: int
    high: int
    column: str = "n"

    def __repr__(self) -> str:
        if self.low == self.high:
            return f"ExpectCount({self.column}={self.low})"
        return f"ExpectCount({self.column} in [{self.low}, {self.high}])"


@attrs.frozen
class ExpectFlush:
    """``STORAGE FLUSH TABLE`` is accepted.

    ``expect_job``: True — a job must start (the model knows of unflushed writes and no flush is running);
    False — it must be skipped; None — either. ``wait``: the runner waits for the job, then calls
    ``model.flush_completed(table)``; otherwise it calls ``model.flush_started(table, job_id)`` and a later
    :class:`ExpectFlushDone` waits.
    """

    table: str
    wait: bool = True
    expect_job: bool | None = None

    def __repr__(self) -> str:
        job = {True: "job", False: "skipped", None: "job or skipped"}[self.expect_job]
        return f"ExpectFlush({self.table}, {job}{'' if self.wait else ', no wait'})"


@attrs.frozen
class ExpectFlushDone:
    """Runner action: wait for job ``job_id`` (None: nothing to wait for), then ``model.flush_completed(table)``."""

    table: str
    job_id: str | None = None


@attrs.frozen
class ExpectPause:
    """Runner action: let ``seconds`` pass (STREAM TTL), then set ``model.clock``."""

    seconds: float


Expectation = ExpectOk | ExpectError | ExpectRows | ExpectCount | ExpectFlush | ExpectFlushDone | ExpectPause

_JOB_ID = re.compile(r"Job ID: ([A-Za-z]+-[0-9A-Za-z]+)")


def flush_job_id(message: str | None) -> str | None:
    """The job id in a ``Storage flush started ... Job ID: FL-...`` message, else None."""
    if not message:
        return None
    match = _JOB_ID.search(message)
    return match.group(1) if match else None


def flush_message_kind(message: str | None) -> str:
    """``started``, ``skipped_no_writes``, ``skipped_running`` or ``unknown`` for a flush reply (PROTOCOL §7.1)."""
    text = (message or "").lower()
    if "flush started" in text:
        return "started"
    if "no pending writes" in text:
        return "skipped_no_writes"
    if "already queued or running" in text:
        return "skipped_running"
    return "unknown"


def _norm(value: Any, col_type: ColumnType | None) -> Any:
    if col_type is not None:
        return col_type.normalise(value)
    if isinstance(value, float) and value == 0.0:
        return 0.0
    return value


def _identity(value: Any) -> Any:
    return value


def _int_like(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _untyped(value: Any) -> Any:
    return _norm(value, None)


_INT_LIKE = (ColumnType.BIGINT, ColumnType.INT, ColumnType.SMALLINT, ColumnType.TIMESTAMP)


def _normaliser(col_type: ColumnType | None) -> Callable[[Any], Any]:
    """A one-argument function equal to ``_norm(value, col_type)``, chosen once per column (hot in full reads)."""
    if col_type is None:
        return _untyped
    if col_type is ColumnType.TEXT or col_type is ColumnType.BOOLEAN:
        return _identity
    if col_type in _INT_LIKE:
        return _int_like
    return col_type.normalise


def _show(row: Sequence[Any]) -> str:
    return "(" + ", ".join(repr(v) for v in row) + ")"


def _sort_value(value: Any, descending: bool) -> tuple[int, Any]:
    # NULLS LAST ascending, NULLS FIRST descending: in both cases NULL is "greater" in ascending terms.
    return (1, 0) if value is None else (0, value)


def _in_order(prev: Sequence[Any], cur: Sequence[Any], keys: Sequence[tuple[int, bool]]) -> bool:
    for index, descending in keys:
        a = _sort_value(prev[index], descending)
        b = _sort_value(cur[index], descending)
        if a == b:
            continue
        try:
            less = a < b
        except TypeError:
            return True  # incomparable values: nothing to check
        return less != descending
    return True


def row_key(expected: ExpectRows) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """The function compare_rows uses to tell rows in ``expected.columns`` apart (checked columns, normalised)."""
    types = expected.types or (None,) * len(expected.columns)
    checked = [
        (i, _normaliser(types[i])) for i, name in enumerate(expected.columns) if name not in expected.unchecked
    ]

    def key(row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple([norm(row[i]) for i, norm in checked])

    return key


def unexpected_rows(
    expected: ExpectRows, actual_columns: Sequence[str], actual_rows: Sequence[Sequence[Any]]
) -> list[tuple[Any, ...]]:
    """The actual rows beyond what ``expected`` allows (as a multiset), when the columns agree; else []."""
    if tuple(actual_columns) != tuple(expected.columns) or any(len(r) != len(expected.columns) for r in actual_rows):
        return []
    key = row_key(expected)
    allowed = Counter(key(r) for r in expected.rows) + Counter(key(r) for r in expected.maybe_rows)
    extra = []
    for row in actual_rows:
        k = key(row)
        if allowed.get(k, 0) > 0:
            allowed[k] -= 1
        else:
            extra.append(tuple(row))
    return extra


def compare_rows(
    expected: ExpectRows, actual_columns: Sequence[str], actual_rows: Sequence[Sequence[Any]]
) -> str | None:
    """Compare a SELECT result with ``expected``; a string describing the first difference, or None."""
    if not actual_columns and not actual_rows:
        actual_columns = expected.columns  # an empty result may come without a schema (PROTOCOL §2.3)
    if tuple(actual_columns) != tuple(expected.columns):
        return f"columns differ: expected {list(expected.columns)}, got {list(actual_columns)}"
    width = len(expected.columns)
    for i, row in enumerate(actual_rows):
        if len(row) != width:
            return f"row #{i} has {len(row)} cells, expected {width}: {_show(row)}"
    types = expected.types or (None,) * width
    checked = [
        (i, _normaliser(types[i]))
        for i, name in enumerate(expected.columns)
        if name not in expected.unchecked
    ]

    def key(row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple([norm(row[i]) for i, norm in checked])

    if expected.exact_size is not None and len(actual_rows) != expected.exact_size:
        return f"expected exactly {expected.exact_size} row(s), got {len(actual_rows)}"
    if expected.size_range is not None:
        low, high = expected.size_range
        if not low <= len(actual_rows) <= high:
            return f"expected between {low} and {high} row(s), got {len(actual_rows)}"

    want = Counter(key(r) for r in expected.rows)
    allowed = want + Counter(key(r) for r in expected.maybe_rows)
    actual_keys = [key(r) for r in actual_rows]
    got = Counter(actual_keys)
    shown = dict(zip(actual_keys, actual_rows))
    for k, n in got.items():
        if n > allowed.get(k, 0):
            extra = "duplicated " if allowed.get(k, 0) else "unexpected "
            return f"{extra}row {_show(shown[k])} (appears {n}x, model allows {allowed.get(k, 0)}x)"
    for row in expected.rows:
        k = key(row)
        if got.get(k, 0) < want[k]:
            return f"missing row {_show(row)} (model expects it {want[k]}x, got {got.get(k, 0)}x)"

    if expected.ordered:
        for i, (want_row, got_row) in enumerate(zip(expected.rows, actual_rows)):
            if key(want_row) != key(got_row):
                return f"row order differs at #{i}: expected {_show(want_row)}, got {_show(got_row)}"
    if expected.sort_keys:
        # only the sort-key columns are normalised; ``local`` indexes them in that reduced row
        sort_cols = [(c, _normaliser(types[c])) for c, _ in expected.sort_keys]
        local = [(j, descending) for j, (_, descending) in enumerate(expected.sort_keys)]
        normalised = [tuple([norm(r[c]) for c, norm in sort_cols]) for r in actual_rows]
        for i in range(1, len(normalised)):
            if not _in_order(normalised[i - 1], normalised[i], local):
                keys = ", ".join(
                    f"{expected.columns[c]}{' DESC' if d else ''}" for c, d in expected.sort_keys
                )
                return f"rows not sorted by {keys}: #{i - 1} {_show(actual_rows[i - 1])} before #{i} {_show(actual_rows[i])}"
    return None


def _error_differs(expected: ExpectError, outcome: Outcome) -> str | None:
    if outcome.ok:
        return f"expected an error {expected!r}, but the request succeeded: {outcome.brief()}"
    if outcome.code not in expected.codes:
        return f"expected error code {'|'.join(expected.codes)}, got {outcome.code} (HTTP {outcome.status}): {outcome.message}"
    if expected.status is not None and outcome.status != expected.status:
        return f"expected HTTP {expected.status} for {outcome.code}, got HTTP {outcome.status}"
    return None


def compare_outcome(expected: Expectation, outcome: Outcome) -> str | None:
    """Compare one request's outcome with its expectation; a string naming the first difference, or None."""
    if isinstance(expected, ExpectError):
        return _error_differs(expected, outcome)
    if not outcome.ok:
        return f"expected success ({expected!r}), got {outcome.brief()}"
    if isinstance(expected, ExpectOk):
        if expected.affected is None:
            return None
        high = expected.affected if expected.affected_max is None else expected.affected_max
        if outcome.row_count is None or not expected.affected <= outcome.row_count <= high:
            want = expected.affected if high == expected.affected else f"{expected.affected}..{high}"
            return f"expected {want} affected row(s), got row_count={outcome.row_count} ({outcome.message!r})"
        return None
    if isinstance(expected, ExpectRows):
        return compare_rows(expected, outcome.columns, outcome.rows)
    if isinstance(expected, ExpectCount):
        if tuple(outcome.columns) != (expected.column,) or len(outcome.rows) != 1:
            return f"expected one row with column {expected.column!r}, got {outcome.brief()}"
        value = ColumnType.BIGINT.normalise(outcome.rows[0][0])
        if not isinstance(value, int) or not expected.low <= value <= expected.high:
            return f"{expected!r} but got {outcome.rows[0][0]!r}"
        return None
    if isinstance(expected, ExpectFlush):
        kind = flush_message_kind(outcome.message)
        if kind == "unknown":
            return f"flush reply not understood: {outcome.message!r}"
        if expected.expect_job is True and kind != "started":
            return f"expected a flush job (the model knows of unflushed writes), got {outcome.message!r}"
        if expected.expect_job is False and kind == "started":
            return f"expected the flush to be skipped (nothing to flush), got {outcome.message!r}"
        return None
    raise TypeError(f"{expected!r} is a runner action, not an answer to a request")
