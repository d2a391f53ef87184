"""The live-query contract after ALTER TABLE, being told, and refusal families (pure model, no server).

Every rule of docs/invariants.md "Live queries / After ALTER TABLE" and "Being told" has a test here: the model
keeps predicting a subscription, accepts each documented choice of the server, and nothing else.
"""

from __future__ import annotations

import pytest

from kalammodel.model import (
    REFUSALS,
    And,
    Cmp,
    Column,
    ColumnType,
    In,
    IsNull,
    LiveModel,
    LiveOptions,
    Model,
    Or,
    Role,
    TableSpec,
)

B, T = ColumnType.BIGINT, ColumnType.TEXT
COLS = (Column("id", B, nullable=False, primary_key=True), Column("n", B, nullable=False), Column("s", T))


def _world(columns=None, where=None, kind="USER", snapshot=False):
    model = Model(actors={"root": Role.SYSTEM, "u1": Role.USER, "svc": Role.SERVICE, "dba": Role.DBA})
    owner = "svc" if kind == "SHARED" else "u1"
    model.create_table(owner, TableSpec("t", kind, COLS, access_level="PUBLIC" if kind == "SHARED" else None))
    live = LiveModel()
    step = [0]

    def run(fn):
        mark = live.begin_step(model)
        fn()
        live.end_step(model, mark, step[0])
        step[0] += 1

    run(lambda: model.insert(owner, "t", ["id", "n", "s"], [B, B, T], [(1, 1, "old")]))
    sub, refusal = live.subscribe(model, "s1", "u1", "t", columns, where, LiveOptions(snapshot=snapshot))
    assert refusal is None and sub is not None
    return model, live, sub, run


def _add(model, name="a", col_type=B):
    assert model.alter_add_column("dba", "t", Column(name, col_type)).__class__.__name__ == "ExpectOk"


def _drop(model, name):
    assert model.alter_drop_column("dba", "t", name).__class__.__name__ == "ExpectOk"


def _upd(model, column, col_type, value, key=1):
    return lambda: model.update("u1", "t", [(column, col_type, value)], Cmp("id", B, "=", key))


def _ins(model, columns, types, row):
    return lambda: model.insert("u1", "t", columns, types, [row])


# ------------------------------------------------------------------ ADD COLUMN


def test_after_add_column_changes_keep_coming_with_or_without_the_new_column():
    """After ADD COLUMN every admitted change is still required (finding 11's shape); the new column may be
    absent from the payload or present with its right value: NULL for an old row, the written value for a
    new write; a wrong value is a divergence."""
    model, live, sub, run = _world(where=Cmp("n", B, ">", 0))
    _add(model)
    run(_upd(model, "n", B, 5))
    assert [(c.kind, c.key, c.tell) for c in sub.expected] == [("update", 1, False)]
    assert live.end("s1", "error X") is not None  # the server may not give up on it
    new, old = {"id": 1, "n": 5, "s": "old", "_seq": 20}, [{"id": 1, "n": 1, "_seq": 10}]
    bad = live.check_change(model, sub, "update", [{**new, "a": 7}], old)
    assert bad[0] is None and "'a'" in bad[1]
    assert live.check_change(model, sub, "update", [new], old)[1] is None  # absent: fine
    run(_ins(model, ["id", "n", "s", "a"], [B, B, T, B], (2, 3, "x", 42)))
    insert = {"id": 2, "n": 3, "s": "x", "_seq": 21, "_deleted": False}
    assert "'a'" in live.check_change(model, sub, "insert", [{**insert, "a": None}], None)[1]
    assert live.check_change(model, sub, "insert", [{**insert, "a": 42}], None)[1] is None
    run(_ins(model, ["id", "n", "s"], [B, B, T], (3, 3, "y")))
    assert (
        live.check_change(model, sub, "insert", [{**insert, "id": 3, "s": "y", "a": None}], None)[1] is None
    )


# ------------------------------------------------------------------ DROP COLUMN


def test_after_drop_of_an_unused_column_changes_keep_coming_and_it_is_absent_or_null():
    """Dropping a column a ``*`` subscription neither filters on nor names: changes keep coming, the column
    absent or NULL (a server filling rows from the stale ack schema), never its old value; and the server
    may not end the subscription."""
    model, live, sub, run = _world(where=Cmp("n", B, ">", 0))
    _drop(model, "s")
    run(_upd(model, "n", B, 6))
    assert live.end("s1", "the connection closed") is not None
    new, old = {"id": 1, "n": 6, "_seq": 20}, [{"id": 1, "n": 1, "_seq": 10}]
    assert "'s'" in live.check_change(model, sub, "update", [{**new, "s": "old"}], old)[1]
    assert live.check_change(model, sub, "update", [new], old)[1] is None
    run(lambda: model.delete("u1", "t", Cmp("id", B, "=", 1)))
    tomb = {"id": 1, "n": 6, "_seq": 21, "_deleted": True}
    assert "'s'" in live.check_change(model, sub, "delete", None, [{**tomb, "s": "old"}])[1]
    assert live.check_change(model, sub, "delete", None, [{**tomb, "s": None}])[1] is None


def test_after_drop_of_a_projected_column_the_server_may_deliver_or_tell():
    """A projected column dropped: changes keep their obligations (the column absent or NULL) unless the
    server tells the client, which it may: then the subscription's obligations end."""
    model, live, sub, run = _world(columns=("id", "s"))
    _drop(model, "s")
    run(_ins(model, ["id", "n"], [B, B], (2, 2)))
    assert [c.kind for c in sub.expected] == ["insert"]
    insert = {"id": 2, "_seq": 21}
    assert "'s'" in live.check_change(model, sub, "insert", [{**insert, "s": "x"}], None)[1]
    assert live.check_change(model, sub, "insert", [insert], None)[1] is None
    run(_ins(model, ["id", "n"], [B, B], (3, 3)))
    assert live.end("s1", "error SUBSCRIPTION_FAILED: column s") is None
    assert sub.status == "ended" and not sub.expected and not live.open_subs()


def test_after_drop_of_a_filtered_column_the_filter_is_judged_by_three_valued_logic():
    """The filter names a dropped column: a comparison on it is UNKNOWN. ``n > 2 OR s = 'x'`` still admits
    n = 5 (required, with its payload), excludes nothing else silently: n = 1 is UNKNOWN, so the server must
    tell the client — delivering that change is a divergence, and so is silence (it stays required)."""
    where = Or((Cmp("n", B, ">", 2), Cmp("s", T, "=", "x")))
    model, live, sub, run = _world(where=where)
    _drop(model, "s")
    run(_ins(model, ["id", "n"], [B, B], (2, 5)))
    run(_ins(model, ["id", "n"], [B, B], (3, 1)))
    assert [(c.key, c.tell) for c in sub.expected] == [(2, False), (3, True)]
    assert sub.required_pending() == 2  # the UNKNOWN one must be told about: silence is a divergence
    assert live.check_change(model, sub, "insert", [{"id": 2, "n": 5, "_seq": 20}], None)[1] is None
    problem = live.check_change(model, sub, "insert", [{"id": 3, "n": 1, "_seq": 21}], None)[1]
    assert "must tell the client" in problem
    assert live.end("s1", "error SUBSCRIPTION_FAILED") is None


def test_a_false_verdict_on_a_dropped_filter_column_needs_nothing():
    """``n > 2 AND s = 'x'`` with n = 1 is FALSE whatever s was: no change, nothing to tell."""
    model, live, sub, run = _world(where=And((Cmp("n", B, ">", 2), Cmp("s", T, "=", "x"))))
    _drop(model, "s")
    run(_ins(model, ["id", "n"], [B, B], (2, 1)))
    assert not sub.expected


def test_a_snapshot_may_not_leave_out_rows_its_filter_cannot_decide():
    """A snapshot still being pulled when its filter column is dropped: a last batch that leaves out a row
    whose verdict is UNKNOWN is a silent drop; the server must tell the client instead."""
    model = Model(actors={"u1": Role.USER, "dba": Role.DBA})
    model.create_table("u1", TableSpec("t", "USER", COLS))
    model.insert("u1", "t", ["id", "n", "s"], [B, B, T], [(1, 1, "x"), (2, 2, "x")])
    live = LiveModel()
    sub, _ = live.subscribe(model, "s1", "u1", "t", None, Cmp("s", T, "=", "x"), LiveOptions(batch_size=1))
    assert sub is not None
    control = {"batch_num": 0, "has_more": True, "status": "loading", "last_seq_id": 10}
    assert live.check_batch(model, sub, [{"id": 1, "n": 1, "s": "x", "_seq": 10}], control) is None
    mark = live.begin_step(model)
    _drop(model, "s")
    live.end_step(model, mark, 1)
    last = {"batch_num": 1, "has_more": False, "status": "ready", "last_seq_id": None}
    assert "without telling the client" in live.check_batch(model, sub, [], last)
    assert live.end("s1", "error BATCH_FETCH_FAILED") is None


# ------------------------------------------------------------------ a dropped name added again


def test_a_re_added_column_never_shows_the_old_values():
    """Drop then add ``s`` again (finding 4's shape): the name now binds to the new column, NULL for the old
    row; the old value in a payload is a divergence, both in ``*`` and in a projection naming ``s``."""
    for columns in (None, ("id", "s")):
        model, live, sub, run = _world(columns=columns)
        _drop(model, "s")
        _add(model, "s", T)
        run(_upd(model, "n", B, 9))
        run(lambda m=model: m.delete("u1", "t", Cmp("id", B, "=", 1)))
        deletes = [c for c in sub.expected if c.kind == "delete"]
        assert deletes, sub.expected
        tomb = {"id": 1, "n": 9, "_seq": 22, "_deleted": True} if columns is None else {"id": 1, "_seq": 22}
        sub.expected.clear()
        sub.expected.extend(deletes)
        assert "'s'" in live.check_change(model, sub, "delete", None, [{**tomb, "s": "old"}])[1]
        assert live.check_change(model, sub, "delete", None, [{**tomb, "s": None}])[1] is None


def test_a_re_added_filter_column_is_the_new_column():
    """``WHERE s = 'x'`` after s was dropped and added again: a new write with s = 'x' is admitted (the name
    binds to the current table); the old row (s NULL now) is not; the server may also give up (the column
    it planned against was dropped)."""
    model, live, sub, run = _world(where=Cmp("s", T, "=", "x"))
    _drop(model, "s")
    _add(model, "s", T)
    run(_ins(model, ["id", "n", "s"], [B, B, T], (2, 2, "x")))
    run(_upd(model, "n", B, 7))
    assert [(c.key, c.tell) for c in sub.expected] == [(2, False)]
    assert live.check_change(model, sub, "insert", [{"id": 2, "n": 2, "s": "x", "_seq": 20}], None)[1] is None
    assert sub.may_end is not None


def test_a_filter_column_re_added_with_another_type_cannot_be_evaluated():
    """Re-added as BIGINT under a TEXT comparison: the comparison cannot be evaluated, so the change must be
    told about, not delivered."""
    model, live, sub, run = _world(where=Cmp("s", T, "=", "x"))
    _drop(model, "s")
    _add(model, "s", B)
    run(_ins(model, ["id", "n", "s"], [B, B, B], (2, 2, 5)))
    assert [(c.key, c.tell) for c in sub.expected] == [(2, True)]


# ------------------------------------------------------------------ DROP TABLE, grammar, buffers


def test_after_drop_table_nothing_more_arrives_and_the_server_may_tell():
    model, live, sub, run = _world()
    model.tables.pop("t")  # (the model has no DROP TABLE step yet: its effect on the model)
    run(lambda: None)
    assert sub.table_dropped and sub.may_end == "its table was dropped"
    assert "dropped" in live.check_change(model, sub, "insert", [{"id": 9, "_seq": 30}], None)[1]
    assert live.end("s1", "the connection closed") is None


def test_a_filter_beyond_the_live_grammar_may_be_given_up():
    """IN and IS NULL are beyond §10.5's live grammar: the server may evaluate them (by SQL 3VL) or tell."""
    for where in (In("n", B, (1, 2)), IsNull("s", T)):
        _, live, sub, _ = _world(where=where)
        assert sub.may_end is not None and live.end("s1", "error UNSUPPORTED") is None
    _, live, sub, _ = _world(where=Cmp("n", B, "!=", 1))
    assert sub.may_end is None and live.end("s1", "error X") is not None


def test_changes_buffered_during_a_snapshot_allow_a_buffer_limit():
    model = Model(actors={"u1": Role.USER})
    model.create_table("u1", TableSpec("t", "USER", COLS))
    live = LiveModel()
    sub, _ = live.subscribe(model, "s1", "u1", "t", None, None, LiveOptions(batch_size=1))
    assert sub is not None and sub.may_end is None
    mark = live.begin_step(model)
    model.insert("u1", "t", ["id", "n", "s"], [B, B, T], [(1, 1, "a")])
    live.end_step(model, mark, 0)
    assert sub.buffered and sub.may_end is not None


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("case", "codes"),
    [
        ("last_rows", ("UNSUPPORTED",)),
        ("table", ("NOT_FOUND", "INVALID_SQL", "SUBSCRIPTION_FAILED")),
        ("access", ("UNAUTHORIZED",)),
        ("column", ("INVALID_SQL", "SUBSCRIPTION_FAILED", "NOT_FOUND")),
    ],
)
def test_each_refusal_returns_its_family_of_codes(case, codes):
    """One code where the contract fixes it; the planning failures' family otherwise (an unknown column of
    a SHARED table answers SUBSCRIPTION_FAILED on the real server: not a divergence)."""
    model = Model(actors={"u1": Role.USER, "svc": Role.SERVICE})
    model.create_table("svc", TableSpec("p", "SHARED", COLS, access_level="PRIVATE"))
    model.create_table("svc", TableSpec("q", "SHARED", COLS, access_level="PUBLIC"))
    live = LiveModel()
    args = {
        "last_rows": ("q", None, LiveOptions(batch_size=1, last_rows=2)),
        "table": ("nope", None, LiveOptions()),
        "access": ("p", None, LiveOptions()),
        "column": ("q", ("id", "zz"), LiveOptions()),
    }[case]
    sub, refusal = live.subscribe(model, "s1", "u1", args[0], args[1], None, args[2])
    assert sub is None and refusal == codes == REFUSALS[case]
    assert "SUBSCRIPTION_FAILED" in REFUSALS["column"]
