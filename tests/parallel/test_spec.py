"""The model as a linearizability spec: hand-made histories admitted and refused, copy-on-write states."""

from __future__ import annotations

import copy

from _build import DUPLICATE, B, count, counted, delete, get, insert, model_with, ok, op, rows, scan, update
from hypothesis import given, settings
from hypothesis import strategies as st

from kalammodel.history import Result, Status, check
from kalammodel.model import ACTOR_ROLES, Column, Model, TableKind, TableSpec
from kalammodel.parallel import ModelSpec
from kalammodel.parallel.generate import _section_step


def verdict(model, history):
    spec = ModelSpec(model, [o.op for o in history])
    return check(history, spec), spec


def test_two_inserts_of_one_key_one_refused_are_linearizable():
    """Two clients insert key 1 at the same time; one gets 'already exists': either order explains it."""
    history = [op(0, insert(1, 10), 0.0, 2.0, ok()), op(1, insert(1, 20), 0.5, 1.5, DUPLICATE),
               op(2, get(1), 3.0, 4.0, rows((1, 10)))]  # fmt: skip
    v, spec = verdict(model_with(), history)
    assert v.ok, v.message
    assert spec.replay(v.linearizations).select("user1", "t").rows == ((1, 10, None, False),)


def test_two_acknowledged_inserts_of_one_key_are_not_linearizable():
    """Both inserts of key 1 acknowledged: no order explains it; the core is the two inserts."""
    history = [op(0, insert(1, 10), 0.0, 2.0, ok()), op(1, insert(1, 20), 0.5, 1.5, ok())]
    v, _ = verdict(model_with(), history)
    assert v.result is Result.NOT_LINEARIZABLE
    assert sorted(o.client for o in v.core) == [0, 1]
    assert "insert(t, by=user1, (id, v) VALUES (1, 10))" in v.message and "client 1" in v.message


def test_a_read_of_a_value_never_written_is_not_linearizable():
    history = [op(0, update(1, 5), 0.0, 1.0, ok()), op(1, get(1), 0.2, 0.8, rows((1, 7)))]
    v, _ = verdict(model_with(rows={1: 0}), history)
    assert v.result is Result.NOT_LINEARIZABLE
    assert "(1, 7" in v.message


def test_a_read_concurrent_with_an_update_may_see_either_value():
    for seen in (0, 5):
        history = [op(0, update(1, 5), 0.0, 1.0, ok()), op(1, get(1), 0.2, 0.8, rows((1, seen)))]
        v, _ = verdict(model_with(rows={1: 0}), history)
        assert v.ok, (seen, v.message)


def test_a_stale_read_after_the_update_returned_is_not_linearizable():
    history = [op(0, update(1, 5), 0.0, 1.0, ok()), op(1, get(1), 1.5, 2.0, rows((1, 0)))]
    v, _ = verdict(model_with(rows={1: 0}), history)
    assert v.result is Result.NOT_LINEARIZABLE


def test_a_lost_update_is_not_linearizable():
    """Two updates acknowledged one after the other; a later full read shows the first one's value."""
    history = [op(0, update(1, 5), 0.0, 1.0, ok()), op(1, update(1, 6), 1.1, 2.0, ok()),
               op(2, scan(), 3.0, 4.0, rows((1, 5)))]  # fmt: skip
    v, _ = verdict(model_with(rows={1: 0}), history)
    assert v.result is Result.NOT_LINEARIZABLE


def test_the_final_read_decides_the_order_of_concurrent_writes():
    """Concurrent updates of one key: the closing read's value fixes their order, and replay follows it."""
    for last in (5, 6):
        history = [op(0, update(1, 5), 0.0, 1.0, ok()), op(1, update(1, 6), 0.1, 1.1, ok()),
                   op(2, scan(), 2.0, 3.0, rows((1, last)))]  # fmt: skip
        v, spec = verdict(model_with(rows={1: 0}), history)
        assert v.ok
        assert spec.replay(v.linearizations).select("user1", "t").rows == ((1, last, None, False),)


def test_an_indeterminate_insert_may_or_may_not_have_happened():
    for final in ((), ((1, 10),)):
        history = [op(0, insert(1, 10), 0.0, None, None), op(1, scan(), 1.0, 2.0, rows(*final))]
        v, spec = verdict(model_with(), history)
        assert v.ok, v.message
        assert len(spec.replay(v.linearizations).select("user1", "t").rows) == len(final)


def test_counts_and_deletes():
    history = [op(0, delete(1), 0.0, 1.0, ok(1)), op(1, count(), 0.5, 0.7, counted(2)),
               op(2, count(), 1.5, 1.7, counted(1))]  # fmt: skip
    assert verdict(model_with(rows={1: 0, 2: 0}), history)[0].ok
    bad = history[:2] + [op(2, count(), 1.5, 1.7, counted(2))]
    assert verdict(model_with(rows={1: 0, 2: 0}), bad)[0].result is Result.NOT_LINEARIZABLE


def test_scopes_are_independent_parts():
    """user1's and user2's rows of a USER table are two parts; a SHARED table is one scope for all."""
    history = [op(0, insert(1, 1, "user1"), 0.0, 1.0, ok()), op(1, insert(1, 2, "user2"), 0.0, 1.0, ok()),
               op(2, get(1, "user1"), 2.0, 3.0, rows((1, 1)))]  # fmt: skip
    v, spec = verdict(model_with(), history)
    assert v.ok and v.partitions == 2
    shared = [op(0, insert(1, 1, "root"), 0.0, 1.0, ok()), op(1, insert(2, 2, "svc"), 0.0, 1.0, ok())]
    v, _ = verdict(model_with("SHARED"), shared)
    assert v.ok and v.partitions == 1


def test_commuting_writes_reach_equal_keys():
    """Two orders of writes to different keys give the same fingerprint (the search's memo merges them)."""
    spec = ModelSpec(model_with(), [insert(1, 1), insert(2, 2)])
    s0 = spec.initial()
    a = spec.step(spec.step(s0, insert(1, 1), ok(), Status.OK), insert(2, 2), ok(), Status.OK)
    b = spec.step(spec.step(s0, insert(2, 2), ok(), Status.OK), insert(1, 1), ok(), Status.OK)
    assert a is not None and b is not None and a.write_no == b.write_no == s0.write_no + 2
    assert spec.key(a) == spec.key(b) != spec.key(s0)


def dump(model: Model) -> object:
    """Everything a section step can change in a model, as plain values (Version compares by identity)."""
    return (
        model.write_no,
        {
            name: (
                (t.flush.any_write, t.flush.unflushed, t.flush.maybe_unflushed),
                {
                    owner: {
                        pk: [(v.write_no, dict(v.values), v.deleted) for v in vs]
                        for pk, vs in s.versions.items()
                    }
                    for owner, s in t.scopes.items()
                },
            )
            for name, t in model.tables.items()
        },
    )


TABLES = (("t1", TableKind.USER), ("t2", TableKind.SHARED))


def two_tables() -> Model:
    """t1 (USER) with user1's rows 1 and 2, t2 (SHARED) with rows 1 and 2."""
    model = Model(actors=dict(ACTOR_ROLES))
    columns = [Column("id", B, primary_key=True), Column("v", B)]
    for (name, kind), actor in zip(TABLES, ("user1", "root")):
        model.create_table("root", TableSpec(name, kind, columns))
        model.insert(actor, name, ["id", "v"], [B, B], [(1, 1), (2, 2)])
    return model


@settings(max_examples=150, deadline=None)
@given(st.lists(_section_step(TABLES), min_size=1, max_size=12), st.data())
def test_copy_on_write_states_behave_as_deep_copies(steps, data):
    """Each spec step leaves its input state exactly as it was, and reaches the state a deep copy reaches."""
    spec = ModelSpec(two_tables(), steps)
    state = spec.initial()
    mirror = copy.deepcopy(state)
    for step in steps:
        before = dump(state)
        after = spec.step_unknown(state, step)
        assert dump(state) == before  # the input state is unchanged
        step.apply(mirror)
        assert dump(after) == dump(mirror)  # the copy reached what a deep copy reaches
        state = after
