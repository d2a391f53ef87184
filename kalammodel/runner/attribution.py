"""Which invariant a disagreement breaks: a pure function of typed facts (``docs/invariants.md``, "How a
divergence gets its invariant").

The session gathers :class:`Facts` from the model, the step and the outcome (``runner/facts.py``);
:func:`attribute` reads only those facts: no I/O, no session, no model, no step kinds as strings. A step kind
is read through :data:`STEP_ROLES` (its role for attribution), defined here beside the rules that use it.
"""

from __future__ import annotations

import enum

import attrs

from ..errors import Invariant
from ..model import TableKind

__all__ = [
    "STEP_ROLES",
    "Expecting",
    "Facts",
    "StepRole",
    "attribute",
    "incomplete_read_invariant",
    "role_of",
]


class StepRole(enum.Enum):
    """What a step is, as far as attribution cares."""

    INSERT = "insert"  #: an INSERT of rows by key (not a STREAM insert, not a probe)
    UPDATE = "update"  #: an UPDATE of rows (by key or by predicate)
    DELETE = "delete"  #: a soft DELETE
    PROBE = "probe"  #: an RBAC probe: a statement whose answer is a role's permission
    NAMES_DROPPED_COLUMN = "names_dropped_column"  #: a statement naming a dropped column (must fail)
    OTHER = (
        "other"  #: everything else (reads, DDL, flushes, STREAM writes, actions, live steps, unknown kinds)
    )


#: the role of each step kind (``Step.kind``) with one; any other kind is :attr:`StepRole.OTHER`
STEP_ROLES: dict[str, StepRole] = {
    "insert": StepRole.INSERT,
    "update": StepRole.UPDATE,
    "delete": StepRole.DELETE,
    "insert_dropped_column": StepRole.NAMES_DROPPED_COLUMN,
    "probe_create_shared": StepRole.PROBE,
    "probe_shared_write": StepRole.PROBE,
    "probe_execute_as": StepRole.PROBE,
    "probe_system_read": StepRole.PROBE,
}

#: roles of the writes whose read-back names keys (INSERT, UPDATE, DELETE)
_KEYED_WRITES = frozenset({StepRole.INSERT, StepRole.UPDATE, StepRole.DELETE})


def role_of(kind: str | None) -> StepRole:
    """The role of a step kind; no step (a teardown check) or a kind without one: :attr:`StepRole.OTHER`."""
    return STEP_ROLES.get(kind or "", StepRole.OTHER)


class Expecting(enum.Enum):
    """What the model predicted: the expectation's type."""

    OK = "ok"  #: ExpectOk: the statement succeeds (a DML count, DDL)
    ERROR = "error"  #: ExpectError: the statement fails
    ROWS = "rows"  #: ExpectRows: a result set
    COUNT = "count"  #: ExpectCount: a COUNT(*) within bounds
    OTHER = "other"  #: a flush, or anything else


@attrs.frozen(kw_only=True)
class Facts:
    """What is known about one disagreement, each fact computed by the session (``runner/facts.py``).

    Facts about rows (``*_rows``, ``*_keys``) are False when they do not apply (e.g. no result rows, a
    SHARED table where a fact is about owners).
    """

    role: StepRole  #: the step's role (:data:`STEP_ROLES`)
    expecting: Expecting  #: the expectation's type
    outcome_ok: bool  #: the server answered success
    full_read: bool = False  #: a full scope read (not the step's own statement or its read-back)
    #: the table that was read or written (the step's, or the scope's for a full read); None: no such table
    table_kind: TableKind | None = None
    # ---- the expectation
    expects_permission_denied: bool = False  #: an expected error with PERMISSION_DENIED among its codes
    expects_duplicate_key: bool = False  #: an expected error because of a duplicate primary key
    # ---- the table's history
    ever_flushed: bool = False  #: a flush of the table completed in this example
    flush_running: bool = False  #: a flush of the table was started and not awaited
    readded_column: bool = False  #: a dropped column name was added again
    altered: bool = False  #: the table's schema changed (ADD/DROP COLUMN)
    # ---- the step
    impersonated: bool = False  #: the step ran EXECUTE AS USER
    # ---- the answer
    same_keys: bool = False  #: a read returned exactly the expected primary keys (values aside)
    refused_as_duplicate: bool = False  #: the server's error says "duplicate key" / "already exists"
    reinserts_deleted_key: bool = (
        False  #: an INSERT of a key whose previous version in the scope is a tombstone
    )
    key_held_by_another_owner: bool = False  #: an INSERT of a key another owner's scope holds
    misses_only_impersonated_rows: bool = False  #: a STREAM read short of rows EXECUTE AS inserts wrote only
    rows_of_other_owners: bool = False  #: an unexpected row equals, column for column, another owner's row
    count_includes_other_owners: bool = False  #: a COUNT(*) too high by at most the other owners' matches
    returns_own_expired_rows: bool = False  #: an unexpected STREAM row of the reader's own, past its TTL
    duplicate_key_in_result: bool = False  #: a primary key twice in a result the model has it once in
    extra_keys_of_other_owners: bool = False  #: (USER/STREAM) an unexpected key another scope holds
    extra_keys_deleted: bool = (
        False  #: an unexpected key is deleted (USER/STREAM: in some scope; SHARED: all)
    )
    only_readded_columns_differ: bool = False  #: every row came back; differences only in re-added columns

    @property
    def flushed(self) -> bool:
        """The table has cold rows, or rows on their way there."""
        return self.ever_flushed or self.flush_running


def attribute(facts: Facts) -> Invariant:
    """The invariant a KalamDB developer would start from; the rules of ``docs/invariants.md`` in order."""
    if facts.expecting is Expecting.ERROR:
        return _attribute_expected_error(facts)
    if facts.role is StepRole.PROBE and not facts.outcome_ok:
        return Invariant.RBAC
    verdict = _attribute_partition(facts)
    if verdict is not None:
        return verdict
    if (
        facts.expecting in (Expecting.ROWS, Expecting.COUNT)
        and facts.outcome_ok
        and facts.table_kind is not None
    ):
        verdict = _attribute_rows(facts)
        if verdict is not None:
            return verdict
    if facts.table_kind is TableKind.STREAM:
        if not facts.outcome_ok:  # an expiry hides rows; it never fails a statement
            return Invariant.SCHEMA_EVOLUTION if facts.altered else Invariant.OUTCOME
        return Invariant.STREAM_TTL
    if facts.expecting is Expecting.OK and facts.table_kind is not None and facts.flushed:
        # e.g. an UPDATE or DELETE by predicate that misses rows in cold storage or in a running flush
        return Invariant.HOT_COLD_CONSISTENCY
    if facts.table_kind is not None and facts.altered:
        return Invariant.SCHEMA_EVOLUTION
    return Invariant.OUTCOME


def _attribute_expected_error(facts: Facts) -> Invariant:
    if facts.expects_permission_denied or facts.role is StepRole.PROBE:
        return Invariant.RBAC
    if facts.role is StepRole.NAMES_DROPPED_COLUMN:
        return Invariant.SCHEMA_EVOLUTION
    if facts.expects_duplicate_key:
        return Invariant.UNIQUENESS
    return Invariant.OUTCOME


def _attribute_partition(facts: Facts) -> Invariant | None:
    """Writes and reads that landed in, or came from, the wrong owner's partition (or a tombstone's key)."""
    has_table = facts.table_kind is not None
    if (
        not facts.full_read
        and facts.outcome_ok
        and facts.expecting is Expecting.ROWS
        and facts.role in _KEYED_WRITES
        and facts.impersonated
        and has_table
        and not facts.flush_running  # rows a running flush moves are its own question
        and not facts.same_keys
    ):
        # The read-back of an EXECUTE AS USER write by its target user misses a written row or holds another:
        # the write went to (or came from) another user's partition. (Right keys with wrong values are the
        # values' problem: classified below.)
        return Invariant.ISOLATION
    if (
        facts.table_kind is TableKind.STREAM
        and facts.outcome_ok
        and facts.expecting is Expecting.ROWS
        and facts.misses_only_impersonated_rows
    ):
        # Only rows that EXECUTE AS USER inserts wrote for this owner are missing (the owner's own rows are all
        # there, nothing else differs): written to another partition, not expired early.
        return Invariant.ISOLATION
    refused_insert = (
        facts.expecting is Expecting.OK
        and not facts.outcome_ok
        and facts.role is StepRole.INSERT
        and has_table
        and facts.refused_as_duplicate
    )
    if refused_insert and facts.reinserts_deleted_key:
        # The key's newest version in the writer's own scope is a tombstone, and a deleted key is free again
        # (§5.3): KalamDB 0.4.3's cold PK check ignores a newer hot tombstone (docs/kalamdb-findings.md #2).
        # Not isolation, even when another owner holds the key too.
        return Invariant.SOFT_DELETE
    if refused_insert and facts.table_kind is not TableKind.SHARED and facts.key_held_by_another_owner:
        # A key the writer's partition does not hold is "already there": a write of another owner's partition
        # landed in this one (or this one's in another), e.g. an EXECUTE AS USER write in the caller's partition.
        return Invariant.ISOLATION
    return None


def _attribute_rows(facts: Facts) -> Invariant | None:
    """A result set (or count) that disagrees; None: no rule about rows applies."""
    if facts.rows_of_other_owners or facts.count_includes_other_owners:
        return Invariant.ISOLATION
    if facts.table_kind is TableKind.STREAM and facts.returns_own_expired_rows:
        # before the duplicate-key rule: an expired row next to a newer one with its key is a TTL failure
        return Invariant.STREAM_TTL
    if facts.duplicate_key_in_result:
        return Invariant.UNIQUENESS
    if facts.table_kind is not TableKind.SHARED and facts.expecting is Expecting.ROWS:
        # Rows of another owner's scope showing up: isolation (a key deleted somewhere: soft_delete).
        if facts.extra_keys_of_other_owners and not facts.extra_keys_deleted:
            return Invariant.ISOLATION
        if facts.extra_keys_deleted:
            return Invariant.SOFT_DELETE
    elif facts.extra_keys_deleted:
        return Invariant.SOFT_DELETE
    if facts.table_kind is TableKind.STREAM:
        # A STREAM row differs by TTL, unless only the values of re-added column names differ.
        if facts.readded_column and facts.only_readded_columns_differ:
            return Invariant.SCHEMA_EVOLUTION
        return Invariant.STREAM_TTL
    if facts.readded_column:  # a dropped column name was added again: old values?
        # ... unless the table was flushed and the difference is not in values of re-added columns: a missing
        # row, or a wrong value in a column that was never dropped, is the flush's.
        if not facts.flushed or facts.only_readded_columns_differ:
            return Invariant.SCHEMA_EVOLUTION
        return Invariant.HOT_COLD_CONSISTENCY
    if facts.flushed:
        return Invariant.HOT_COLD_CONSISTENCY
    if facts.altered:
        return Invariant.SCHEMA_EVOLUTION
    return None


def incomplete_read_invariant(flush_running: bool) -> Invariant:
    """A paged full read that disagrees with its ``COUNT(*)``: ``read_all_complete``, or while a flush of the
    table runs ``hot_cold_consistency`` (the two reads saw the rows the flush moves differently, e.g. a deleted
    row back in cold storage for one of them, docs/kalamdb-findings.md #1: not a paging bug)."""
    return Invariant.HOT_COLD_CONSISTENCY if flush_running else Invariant.READ_ALL_COMPLETE
