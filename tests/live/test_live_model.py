"""The pure live-query model: filters by three-valued logic, options on the wire, change matching."""

from __future__ import annotations

from kalammodel.model import (
    Between,
    Cmp,
    Column,
    ColumnType,
    In,
    IsNull,
    LiveModel,
    LiveOptions,
    Model,
    Not,
    Or,
    Role,
    TableSpec,
)

B, T = ColumnType.BIGINT, ColumnType.TEXT


def test_filters_on_nullable_columns_admit_by_three_valued_logic():
    """Any predicate of the query grammar is a live filter, on nullable columns too (no subset): a change is
    expected exactly when the filter is TRUE on the new row, never when it is UNKNOWN."""
    model = Model(actors={"root": Role.SYSTEM, "u1": Role.USER})
    cols = (Column("id", B, nullable=False, primary_key=True), Column("n", B, nullable=True))
    model.create_table("u1", TableSpec("t", "USER", cols))
    live = LiveModel()
    filters = {
        "s1": Or([IsNull("n", B), In("n", B, (1, 2))]),
        "s2": Not(In("n", B, (1, 2))),
        "s3": Not(Between("n", B, 0, 3)),
    }
    subs = {}
    for sub_id, where in filters.items():
        sub, refusal = live.subscribe(model, sub_id, "u1", "t", None, where, LiveOptions(snapshot=False))
        assert refusal is None and sub is not None
        subs[sub_id] = sub
    mark = live.begin_step(model)
    model.insert("u1", "t", ["id", "n"], [B, B], [(1, None), (2, 1), (3, 5)])
    live.end_step(model, mark, 0)
    expected = {sub_id: sorted(c.key for c in sub.expected) for sub_id, sub in subs.items()}
    assert expected == {"s1": [1, 2], "s2": [3], "s3": [3]}


def test_options_on_the_wire():
    """No snapshot omits options; from_seq_id takes precedence over last_rows."""
    assert LiveOptions(snapshot=False).wire() is None
    assert LiveOptions(batch_size=2, last_rows=1).wire() == {"batch_size": 2, "last_rows": 1}
    assert LiveOptions(batch_size=2, last_rows=1).wire(from_seq=7) == {"batch_size": 2, "from_seq_id": 7}


def _setup():
    model = Model(actors={"root": Role.SYSTEM, "u1": Role.USER, "u2": Role.USER})
    cols = (Column("id", B, nullable=False, primary_key=True), Column("n", B, nullable=False))
    model.create_table("u1", TableSpec("t", "USER", cols))
    live = LiveModel()
    sub, refusal = live.subscribe(
        model, "s1", "u1", "t", None, Cmp("n", B, ">", 0), LiveOptions(snapshot=False)
    )
    assert refusal is None and sub is not None
    return model, live, sub


def test_changes_follow_scope_and_filter():
    """Only the subscriber's rows admitted by the filter (on the new row) are queued."""
    model, live, sub = _setup()
    mark = live.begin_step(model)
    model.insert("u1", "t", ["id", "n"], [B, B], [(1, 5), (2, 0)])
    model.insert("u2", "t", ["id", "n"], [B, B], [(3, 5)])
    live.end_step(model, mark, 0)
    assert [(c.kind, c.key) for c in sub.expected] == [("insert", 1)]
    change, problem = live.check_change(model, sub, "insert", [{"id": 3, "n": 5, "_seq": 9}], None)
    assert change is None and "primary key" in problem
    change, problem = live.check_change(model, sub, "insert", [{"id": 1, "n": 5, "_seq": 9}], None)
    assert problem is None and not sub.expected


def test_update_delta_shape():
    """An update must carry only the changed columns' old values."""
    model, live, sub = _setup()
    mark = live.begin_step(model)
    model.insert("u1", "t", ["id", "n"], [B, B], [(1, 5)])
    live.end_step(model, mark, 0)
    live.check_change(model, sub, "insert", [{"id": 1, "n": 5, "_seq": 9}], None)
    mark = live.begin_step(model)
    model.update("u1", "t", [("n", B, 6)], Cmp("id", B, "=", 1))
    live.end_step(model, mark, 1)
    bad = live.check_change(model, sub, "update", [{"id": 1, "n": 6, "_seq": 10}], [{"id": 1, "_seq": 9}])
    assert bad[0] is None and "misses changed" in bad[1]
    good = live.check_change(
        model, sub, "update", [{"id": 1, "n": 6, "_seq": 10}], [{"id": 1, "n": 5, "_seq": 9}]
    )
    assert good[1] is None


def test_pk_less_stream_snapshot_with_equal_rows_near_their_ttl():
    """Equal rows of a STREAM table without PRIMARY KEY are interchangeable: the server's snapshot (older rows
    already expired) matches the sure rows, not older equal rows near their TTL, and needs no write order
    beyond _seq (found by a fuzz run: 'snapshot rows out of write order')."""
    model = Model(actors={"root": Role.SYSTEM, "u1": Role.USER})
    model.stream_slack = 1.5
    model.clock = 100.0
    model.create_table("u1", TableSpec("s", "STREAM", (Column("v", T),), ttl_seconds=2))
    model.insert("u1", "s", ["v"], [T], [("x",), ("x",)])  # A: near the TTL at the snapshot
    model.clock = 101.0
    model.insert("u1", "s", ["v"], [T], [("x",), ("y",), ("x",)])  # B: sure
    live = LiveModel()
    sub, refusal = live.subscribe(model, "s1", "u1", "s", None, None, LiveOptions(snapshot=True))
    assert refusal is None and sub is not None
    rows = [{"v": "x", "_seq": 10}, {"v": "y", "_seq": 11}, {"v": "x", "_seq": 12}]  # A expired on the server
    control = {"batch_num": 0, "has_more": False, "status": "ready", "last_seq_id": 12}
    assert live.check_batch(model, sub, rows, control) is None


def test_stream_snapshot_with_a_row_written_again_after_its_twin_expired():
    """A STREAM table keeps every write of a key: when a key is written again with the values of an older
    write near its TTL, the snapshot row is the newer write, in write order (found by a 17-minute fuzz run:
    'snapshot rows out of write order' after a restart, shared/cases/live_query-20d8bab55aed.json)."""
    model = Model(actors={"root": Role.SYSTEM, "u1": Role.USER})
    model.stream_slack = 1.5
    model.clock = 100.0
    cols = (Column("id", B, nullable=False, primary_key=True), Column("c0", B, nullable=False))
    model.create_table("u1", TableSpec("s", "STREAM", cols, ttl_seconds=2))
    live = LiveModel()
    mark = live.begin_step(model)
    model.insert("u1", "s", ["id", "c0"], [B, B], [(6, 6)])  # step 0: near its TTL at the snapshot
    live.end_step(model, mark, 0)
    model.clock = 101.0
    mark = live.begin_step(model)
    model.insert("u1", "s", ["id", "c0"], [B, B], [(10, 10), (6, 6)])  # step 1: sure
    live.end_step(model, mark, 1)
    sub, refusal = live.subscribe(model, "s1", "u1", "s", None, None, LiveOptions(snapshot=True))
    assert refusal is None and sub is not None
    rows = [{"id": 10, "c0": 10, "_seq": 20}, {"id": 6, "c0": 6, "_seq": 21}]  # step 0's row expired
    control = {"batch_num": 0, "has_more": False, "status": "ready", "last_seq_id": 21}
    assert live.check_batch(model, sub, rows, control) is None
    assert sub.status == "ready"


def test_stream_snapshot_out_of_write_order_is_still_found():
    """Rows of a STREAM table whose write order cannot be explained by any choice among equal writes are a
    divergence: step 1's row sent before step 0's, with no equal later write to stand for it."""
    model = Model(actors={"root": Role.SYSTEM, "u1": Role.USER})
    model.clock = 100.0
    cols = (Column("id", B, nullable=False, primary_key=True), Column("c0", B, nullable=False))
    model.create_table("u1", TableSpec("s", "STREAM", cols, ttl_seconds=60))
    live = LiveModel()
    for step, rows in enumerate([[(6, 6)], [(10, 10)], [(6, 6)]]):
        mark = live.begin_step(model)
        model.insert("u1", "s", ["id", "c0"], [B, B], rows)
        live.end_step(model, mark, step)
    sub, _ = live.subscribe(model, "s1", "u1", "s", None, None, LiveOptions(snapshot=True))
    assert sub is not None
    got = [{"id": 10, "c0": 10, "_seq": 20}, {"id": 6, "c0": 6, "_seq": 21}, {"id": 6, "c0": 6, "_seq": 22}]
    control = {"batch_num": 0, "has_more": False, "status": "ready", "last_seq_id": 22}
    assert "out of write order" in (live.check_batch(model, sub, got, control) or "")
