"""The facts a disagreement is attributed by (:class:`~kalammodel.runner.attribution.Facts`), read from the
model, the steps run so far and the outcome. Reads only; :func:`attribute` then decides."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..model import (
    ExpectCount,
    ExpectError,
    ExpectOk,
    ExpectRows,
    Model,
    Outcome,
    TableKind,
    TableState,
    row_key,
    unexpected_rows,
)
from ..steps import Step, StreamInsert
from .attribution import Expecting, Facts, role_of
from .outcomes import as_result_row, pk_key, says_duplicate_key, written_keys

__all__ = ["FactSource", "gather_facts"]


class FactSource:
    """What the facts are read from: the model, the tables flushed so far, the steps run so far."""

    def __init__(self, model: Model, flushed_tables: set[str], steps: Sequence[Step]):
        self.model = model
        self.flushed_tables = flushed_tables
        self.steps = steps


def _expecting(expectation: object) -> Expecting:
    if isinstance(expectation, ExpectOk):
        return Expecting.OK
    if isinstance(expectation, ExpectError):
        return Expecting.ERROR
    if isinstance(expectation, ExpectRows):
        return Expecting.ROWS
    if isinstance(expectation, ExpectCount):
        return Expecting.COUNT
    return Expecting.OTHER


def gather_facts(
    src: FactSource,
    step: Step | None,
    expectation: object,
    outcome: Outcome,
    *,
    full: bool,
    owner: str | None,
    read_table: str | None = None,
) -> Facts:
    """The facts of one disagreement. ``read_table``: the table read when it is not the step's."""
    role = role_of(getattr(step, "kind", None))
    base: dict[str, Any] = {"role": role, "expecting": _expecting(expectation), "outcome_ok": outcome.ok}
    base["full_read"] = full
    if isinstance(expectation, ExpectError):
        base["expects_permission_denied"] = "PERMISSION_DENIED" in expectation.codes
        base["expects_duplicate_key"] = (
            "PRIMARY_KEY" in expectation.reason.upper() or "duplicate" in expectation.reason.lower()
        )
        return Facts(**base)
    table = read_table if read_table is not None else getattr(step, "table", None)
    model = src.model
    state = model.tables.get(table) if isinstance(table, str) else None
    if state is None or not isinstance(table, str):
        return Facts(**base)
    base.update(
        table_kind=state.kind,
        ever_flushed=table in src.flushed_tables,
        flush_running=state.flush.running_job is not None,
        readded_column=state.reused_names,
        altered=bool(state.schema_changes),
        impersonated=getattr(step, "as_user", None) is not None,
    )
    if isinstance(expectation, ExpectRows):
        base["same_keys"] = _same_keys(model, table, expectation, outcome)
        if state.kind is TableKind.STREAM and outcome.ok:
            base["misses_only_impersonated_rows"] = _misses_only_impersonated_rows(
                src, table, owner, expectation, outcome
            )
    if not outcome.ok and step is not None:
        base["refused_as_duplicate"] = says_duplicate_key(outcome)
        base["reinserts_deleted_key"] = _inserts_a_deleted_key(model, table, state, step, owner)
        base["key_held_by_another_owner"] = _key_held_by_another_owner(model, table, step, owner)
    if outcome.ok and isinstance(expectation, (ExpectRows, ExpectCount)):
        base.update(_row_facts(src, table, state, expectation, outcome, owner))
    return Facts(**base)


def _row_facts(
    src: FactSource,
    table: str,
    state: TableState,
    expectation: ExpectRows | ExpectCount,
    outcome: Outcome,
    owner: str | None,
) -> dict[str, bool]:
    model = src.model
    facts: dict[str, bool] = {}
    rows = expectation if isinstance(expectation, ExpectRows) else None
    if isinstance(expectation, ExpectCount):
        current = src.steps[-1] if src.steps else None
        facts["count_includes_other_owners"] = _count_includes_other_owners(
            model, table, state, expectation, outcome, owner, current
        )
    pk = model.primary_key(table)
    if rows is not None:
        facts["rows_of_other_owners"] = _rows_of_other_owners(model, table, state, rows, outcome, owner)
        if state.kind is TableKind.STREAM:
            facts["returns_own_expired_rows"] = _returns_own_expired_rows(model, table, owner, rows, outcome)
        facts["only_readded_columns_differ"] = state.reused_names and _only_readded_columns_differ(
            state, rows, outcome, pk
        )
    cols = list(outcome.columns)
    if pk is None or pk not in cols:
        return facts
    keys = [pk_key(r[cols.index(pk)]) for r in outcome.rows]
    if len(keys) != len(set(keys)) and not getattr(expectation, "maybe_rows", ()):
        dup_expected = (
            rows is not None
            and pk in rows.columns
            and len({pk_key(r[list(rows.columns).index(pk)]) for r in rows.rows}) != len(rows.rows)
        )
        facts["duplicate_key_in_result"] = not dup_expected
    if rows is None:
        return facts
    expected_keys = (
        {pk_key(r[list(rows.columns).index(pk)]) for r in rows.rows + rows.maybe_rows}
        if pk in rows.columns
        else None
    )
    if state.kind is not TableKind.SHARED:
        extra = [k for k in keys if k not in (expected_keys or set())]
        if extra:
            deleted = set()
            others = set()
            for other in model.scopes(table):
                deleted |= {pk_key(x) for x in model.deleted_pks(table, other)}
                others |= {pk_key(x) for x in model.known_pks(table, other)}
            facts["extra_keys_deleted"] = any(k in deleted for k in extra)
            facts["extra_keys_of_other_owners"] = any(k in others for k in extra)
    elif expected_keys is not None:
        extra = [k for k in keys if k not in expected_keys]
        deleted = {pk_key(x) for x in model.deleted_pks(table, None)}
        facts["extra_keys_deleted"] = bool(extra) and all(k in deleted for k in extra)
    return facts


def _same_keys(model: Model, table: str, expectation: ExpectRows, outcome: Outcome) -> bool:
    """Whether a read returned rows with exactly the expected primary keys (values aside)."""
    pk = model.primary_key(table)
    if pk is None or pk not in expectation.columns or pk not in outcome.columns:
        return False
    want = sorted(repr(pk_key(r[list(expectation.columns).index(pk)])) for r in expectation.rows)
    got = sorted(repr(pk_key(r[list(outcome.columns).index(pk)])) for r in outcome.rows)
    return want == got and not expectation.maybe_rows


def _misses_only_impersonated_rows(
    src: FactSource, table: str, owner: str | None, expectation: ExpectRows, outcome: Outcome
) -> bool:
    """Whether ``outcome`` is ``expectation`` less some rows that ``EXECUTE AS USER`` inserts of this session
    wrote into ``owner``'s scope of ``table``: no row too many, at least one missing, every missing row one of
    theirs."""
    if owner is None or tuple(outcome.columns) != tuple(expectation.columns):
        return False
    if unexpected_rows(expectation, outcome.columns, outcome.rows):
        return False
    key = row_key(expectation)
    missing = Counter(key(r) for r in expectation.rows) - Counter(key(r) for r in outcome.rows)
    if not missing:
        return False
    written: Counter[tuple[Any, ...]] = Counter()
    for step in src.steps:
        as_user = getattr(step, "as_user", None)
        if not isinstance(step, StreamInsert) or as_user is None or step.table != table:
            continue
        if src.model.effective_user(step.actor, as_user) != owner:
            continue
        columns = list(step.columns)
        for row in step.rows:
            written[key(as_result_row(expectation.columns, dict(zip(columns, row))))] += 1
    return bool(written) and not missing - written


def _key_held_by_another_owner(model: Model, table: str, step: Step, owner: str | None) -> bool:
    """Whether a key ``step`` inserts lives, by the model, in another owner's scope of ``table``."""
    keys = {pk_key(k) for k in written_keys(step, model.primary_key(table))}
    return any(
        keys & {pk_key(k) for k in model.known_pks(table, other)}
        for other in model.scopes(table)
        if other != owner
    )


def _inserts_a_deleted_key(
    model: Model, table: str, state: TableState, step: Step, owner: str | None
) -> bool:
    """Whether ``step`` (an INSERT the model accepted, so applied: each key's newest version is the step's)
    inserted a key whose version before it, in the writer's own scope, is a tombstone."""
    scope = None if state.kind is TableKind.SHARED else owner
    for key in written_keys(step, model.primary_key(table)):
        versions = model.known_versions(table, scope, key)
        if len(versions) >= 2 and versions[-2].get("_deleted"):
            return True
    return False


def _rows_of_other_owners(
    model: Model, table: str, state: TableState, expectation: ExpectRows, outcome: Outcome, owner: str | None
) -> bool:
    """Whether a read of ``owner``'s USER/STREAM rows returned a row it should not that is, column for column, a
    row of another owner (and none of ``owner``'s own past versions): a partition leak.

    Compares whole rows, not primary keys, because owners often share keys (each user's id=0): a leaked row then
    looks like a duplicate key, and key-based attribution would call it a uniqueness failure.
    """
    if state.kind is TableKind.SHARED or owner is None:
        return False
    extra = unexpected_rows(expectation, outcome.columns, outcome.rows)
    if not extra:
        return False
    key = row_key(expectation)

    def keys_of(rows: Iterable[Mapping[str, Any]]) -> set[tuple[Any, ...]]:
        # visible rows carry no _deleted (False); known versions carry theirs
        return {key(as_result_row(expectation.columns, r)) for r in rows}

    theirs: set[tuple[Any, ...]] = set()
    for other in model.scopes(table):
        if other != owner:
            theirs |= keys_of(model.visible_rows(table, other) + model.maybe_rows(table, other))
    if not theirs:
        return False
    mine = set()
    if owner in model.scopes(table):
        for pk in model.known_pks(table, owner) | model.deleted_pks(table, owner):
            mine |= keys_of(model.known_versions(table, owner, pk))
        # a STREAM row of the reader's own that outlived its TTL is an expiry failure, even when another owner
        # now holds an equal row (PK-less STREAM rows often look alike)
        mine |= keys_of(model.stream_rows_ever(table, owner))
    return any(key(row) in theirs and key(row) not in mine for row in extra)


def _returns_own_expired_rows(
    model: Model, table: str, owner: str | None, expectation: ExpectRows, outcome: Outcome
) -> bool:
    """Whether a STREAM read returned, beyond what the model allows, a row the reader's scope held and the model
    knows is past its TTL."""
    if owner not in model.scopes(table):
        return False
    extra = unexpected_rows(expectation, outcome.columns, outcome.rows)
    if not extra:
        return False
    key = row_key(expectation)
    expired = {
        key(as_result_row(expectation.columns, r))
        for r in model.stream_rows_ever(table, owner, expired_only=True)
    }
    return any(key(row) in expired for row in extra)


def _only_readded_columns_differ(
    state: TableState, expectation: ExpectRows, outcome: Outcome, pk: str | None
) -> bool:
    """Whether every row the read should return came back (by primary key) and the rows that differ do so only
    in columns whose name was dropped and added again."""
    if list(outcome.columns) != list(expectation.columns):
        return False
    cols = list(expectation.columns)
    readded = {d.column.name for d in state.dropped} & set(cols)
    if pk is None or pk not in cols:  # (a STREAM table without PRIMARY KEY) rows compared without them
        kept = [i for i, c in enumerate(cols) if c not in readded and c not in expectation.unchecked]
        if len(kept) == len(cols):
            return False

        def project(rows: Iterable[Sequence[Any]]) -> Counter[str]:
            return Counter(repr(tuple(r[i] for i in kept)) for r in rows)

        sure, returned = project(expectation.rows), project(outcome.rows)
        # without the re-added columns: every sure row came back, nothing beyond the rows that may expire
        return not sure - returned and not returned - (sure + project(expectation.maybe_rows))
    at = cols.index(pk)
    got = {pk_key(r[at]): r for r in outcome.rows}
    key = row_key(expectation)
    differing: set[str] = set()
    for want in expectation.rows:
        have = got.get(pk_key(want[at]))
        if have is None:
            return False
        if key(want) != key(have):
            differing |= {
                c for i, c in enumerate(cols) if c not in expectation.unchecked and want[i] != have[i]
            }
    return bool(differing) and differing <= readded


def _count_includes_other_owners(
    model: Model,
    table: str,
    state: TableState,
    expectation: ExpectCount,
    outcome: Outcome,
    owner: str | None,
    step: Step | None,
) -> bool:
    """Whether a COUNT(*) over ``owner``'s USER/STREAM rows came out too high by no more than the rows of other
    owners that match the same WHERE: their rows were counted too (a partition leak)."""
    if state.kind is TableKind.SHARED or owner is None:
        return False
    if len(outcome.rows) != 1 or len(outcome.rows[0]) != 1 or not isinstance(outcome.rows[0][0], int):
        return False
    surplus = outcome.rows[0][0] - expectation.high
    if surplus <= 0:
        return False
    where = getattr(step, "where", None)
    others = sum(model.matching_count(table, o, where)[1] for o in model.scopes(table) if o != owner)
    return surplus <= others
