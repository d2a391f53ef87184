"""Attribution as a pure function: Facts built by hand, the invariant docs/invariants.md names for them."""

from __future__ import annotations

import pytest

from kalammodel.errors import Invariant
from kalammodel.model import TableKind
from kalammodel.runner.attribution import (
    STEP_ROLES,
    Expecting,
    Facts,
    StepRole,
    attribute,
    incomplete_read_invariant,
    role_of,
)


def rows(**facts: object) -> Facts:
    """The facts of a SELECT whose rows disagree (a USER table unless told)."""
    base: dict[str, object] = {
        "role": StepRole.OTHER,
        "expecting": Expecting.ROWS,
        "outcome_ok": True,
        "table_kind": TableKind.USER,
    }
    base.update(facts)
    return Facts(**base)  # type: ignore[arg-type]


def test_every_probe_kind_is_a_probe_and_unknown_kinds_are_other():
    """Step kinds are read through the table, never by their spelling."""
    assert {k for k, r in STEP_ROLES.items() if r is StepRole.PROBE} == {
        "probe_create_shared",
        "probe_shared_write",
        "probe_execute_as",
        "probe_system_read",
    }
    assert role_of("probe_something_new") is StepRole.OTHER
    assert role_of(None) is StepRole.OTHER
    assert role_of("stream_insert") is StepRole.OTHER


@pytest.mark.parametrize(
    ("facts", "invariant"),
    [
        ({"expects_permission_denied": True}, Invariant.RBAC),
        ({"role": StepRole.PROBE}, Invariant.RBAC),
        ({"role": StepRole.NAMES_DROPPED_COLUMN}, Invariant.SCHEMA_EVOLUTION),
        ({"expects_duplicate_key": True}, Invariant.UNIQUENESS),
        ({}, Invariant.OUTCOME),
    ],
)
def test_an_expected_error_is_named_by_what_was_expected(facts, invariant):
    """A statement that had to fail: rbac before schema_evolution before uniqueness, else outcome."""
    base = {"role": StepRole.OTHER, "expecting": Expecting.ERROR, "outcome_ok": True, **facts}
    assert attribute(Facts(**base)) is invariant


def test_a_failed_probe_is_rbac():
    """A probe the server refused although the model allows it."""
    assert attribute(Facts(role=StepRole.PROBE, expecting=Expecting.OK, outcome_ok=False)) is Invariant.RBAC


def test_an_impersonated_write_whose_read_back_has_other_keys_is_isolation():
    """The EXECUTE AS read-back misses a key: the write went to another partition; right keys are not."""
    write = {"role": StepRole.UPDATE, "impersonated": True}
    assert attribute(rows(**write)) is Invariant.ISOLATION
    assert attribute(rows(**write, same_keys=True)) is Invariant.OUTCOME
    assert attribute(rows(**write, flush_running=True)) is Invariant.HOT_COLD_CONSISTENCY
    assert attribute(rows(**write, full_read=True)) is Invariant.OUTCOME


def test_a_refused_reinsert_of_a_deleted_key_is_soft_delete_before_isolation():
    """A tombstone that does not free its key, whoever else holds it."""
    refused = Facts(
        role=StepRole.INSERT,
        expecting=Expecting.OK,
        outcome_ok=False,
        table_kind=TableKind.USER,
        refused_as_duplicate=True,
        key_held_by_another_owner=True,
    )
    assert attribute(refused) is Invariant.ISOLATION
    assert attribute(attrs_evolve(refused, reinserts_deleted_key=True)) is Invariant.SOFT_DELETE
    assert attribute(attrs_evolve(refused, table_kind=TableKind.SHARED)) is Invariant.OUTCOME


def test_rows_of_other_owners_are_isolation_and_own_expired_rows_stream_ttl():
    """Whole-row leaks first, then an expired STREAM row before the duplicate-key rule."""
    assert attribute(rows(rows_of_other_owners=True, duplicate_key_in_result=True)) is Invariant.ISOLATION
    assert attribute(rows(expecting=Expecting.COUNT, count_includes_other_owners=True)) is Invariant.ISOLATION
    stream = {"table_kind": TableKind.STREAM}
    assert attribute(rows(**stream, returns_own_expired_rows=True, duplicate_key_in_result=True)) is (
        Invariant.STREAM_TTL
    )
    assert attribute(rows(duplicate_key_in_result=True)) is Invariant.UNIQUENESS


def test_extra_keys_name_isolation_unless_deleted():
    """An unexpected key another owner holds is isolation; a deleted one soft_delete (SHARED: soft_delete only)."""
    assert attribute(rows(extra_keys_of_other_owners=True)) is Invariant.ISOLATION
    assert attribute(rows(extra_keys_of_other_owners=True, extra_keys_deleted=True)) is Invariant.SOFT_DELETE
    assert attribute(rows(table_kind=TableKind.SHARED, extra_keys_deleted=True)) is Invariant.SOFT_DELETE
    assert attribute(rows(table_kind=TableKind.SHARED, extra_keys_of_other_owners=True)) is Invariant.OUTCOME


def test_a_readded_column_is_schema_evolution_unless_a_flush_explains_the_difference():
    """Re-added names: schema_evolution; flushed with a difference elsewhere: hot_cold_consistency."""
    assert attribute(rows(readded_column=True)) is Invariant.SCHEMA_EVOLUTION
    assert attribute(rows(readded_column=True, ever_flushed=True)) is Invariant.HOT_COLD_CONSISTENCY
    assert attribute(rows(readded_column=True, ever_flushed=True, only_readded_columns_differ=True)) is (
        Invariant.SCHEMA_EVOLUTION
    )
    stream = {"table_kind": TableKind.STREAM, "readded_column": True}
    assert attribute(rows(**stream)) is Invariant.STREAM_TTL
    assert attribute(rows(**stream, only_readded_columns_differ=True)) is Invariant.SCHEMA_EVOLUTION


def test_the_tail_rules_in_order():
    """flushed or flushing: hot_cold_consistency; altered: schema_evolution; STREAM failures; else outcome."""
    assert attribute(rows(flush_running=True, altered=True)) is Invariant.HOT_COLD_CONSISTENCY
    assert attribute(rows(altered=True)) is Invariant.SCHEMA_EVOLUTION
    assert attribute(rows()) is Invariant.OUTCOME
    ok = Facts(role=StepRole.DELETE, expecting=Expecting.OK, outcome_ok=True, table_kind=TableKind.USER)
    assert attribute(attrs_evolve(ok, ever_flushed=True)) is Invariant.HOT_COLD_CONSISTENCY
    failed_stream = attrs_evolve(ok, outcome_ok=False, table_kind=TableKind.STREAM)
    assert attribute(failed_stream) is Invariant.OUTCOME
    assert attribute(attrs_evolve(failed_stream, altered=True)) is Invariant.SCHEMA_EVOLUTION
    assert attribute(attrs_evolve(ok, table_kind=TableKind.STREAM)) is Invariant.STREAM_TTL
    assert attribute(attrs_evolve(ok, table_kind=None, ever_flushed=True)) is Invariant.OUTCOME


def test_a_count_mismatch_is_read_all_complete_unless_a_flush_runs():
    """A paged read and its COUNT(*) disagreeing during a flush saw the moving rows: hot_cold_consistency."""
    assert incomplete_read_invariant(False) is Invariant.READ_ALL_COMPLETE
    assert incomplete_read_invariant(True) is Invariant.HOT_COLD_CONSISTENCY


def attrs_evolve(facts: Facts, **changes: object) -> Facts:
    import attrs

    return attrs.evolve(facts, **changes)  # type: ignore[arg-type]
