"""ALTER TABLE under open subscriptions, and being told, through the runner against the embedded server.

The live extension keeps checking every subscription across ALTER TABLE (docs/invariants.md "After ALTER
TABLE"); an error message or a close ends a subscription's obligations only where the contract lets the server
give up, and nothing may arrive after it.
"""

from __future__ import annotations

import pytest

from kalammodel.checks.live import live_extension
from kalammodel.client import _ws
from kalammodel.errors import Invariant
from kalammodel.model import Cmp, Column, ColumnType, Or, TableSpec
from kalammodel.runner import Runner
from kalammodel.steps import (
    AlterAddColumn,
    AlterDropColumn,
    CreateTable,
    Delete,
    Flush,
    Insert,
    NextBatch,
    Subscribe,
    Update,
)

B = ColumnType.BIGINT
T = ColumnType.TEXT
COLS = (Column("id", B, nullable=False, primary_key=True), Column("n", B, nullable=False), Column("s", T))


@pytest.fixture()
def runner(kalamdb_target, actor_pool):
    return Runner(kalamdb_target, actor_pool, extensions=[live_extension])


def _table(kind: str = "USER") -> CreateTable:
    actor = "svc" if kind == "SHARED" else "user1"
    return CreateTable(actor, TableSpec("t", kind, COLS, access_level="PUBLIC" if kind == "SHARED" else None))


def _insert(actor: str, *rows: tuple) -> Insert:
    return Insert(actor, "t", ("id", "n", "s"), (B, B, T), rows)


def _run(runner, steps):
    """Run ``steps`` and the final check; returns the live extension (its model and stats)."""
    session = runner.session()
    try:
        for step in steps:
            session.run(step)
        session.check_all()
        return session.extensions[0]
    finally:
        session.close()


def test_updates_keep_coming_after_add_column(runner):
    """Finding 11's shape: after ADD COLUMN, an open subscription gets every UPDATE its filter admits (and the
    new column with its value, or not at all), hot and after a flush."""
    live = _run(
        runner,
        [
            _table(),
            _insert("user1", (1, 1, "a"), (2, 2, "b")),
            Subscribe("user1", "t", "s1", where=Cmp("n", B, ">=", -2)),
            Subscribe("user1", "t", "s2", columns=("id", "s"), snapshot=False),
            AlterAddColumn("dba", "t", Column("a5", ColumnType.DOUBLE)),
            Update("user1", "t", (("s", T, "z"),), Cmp("id", B, "=", 1)),
            Insert("user1", "t", ("id", "n", "s", "a5"), (B, B, T, ColumnType.DOUBLE), ((3, 3, "c", 1.5),)),
            Flush("user1", "t"),
            Update("user1", "t", (("a5", ColumnType.DOUBLE, 2.5),), Cmp("id", B, "=", 2)),
            Delete("user1", "t", Cmp("id", B, "=", 3)),
        ],
    )
    subs = live.live.subs
    assert subs["s1"].status == subs["s2"].status == "ready" and live.stats["told"] == 0
    assert live.stats["changes"] >= 5


def test_drop_of_a_filtered_column_ends_in_an_error_not_in_silence(runner):
    """The filter names a dropped column: the embedded server tells the client (an error message) at the
    first change it cannot evaluate; the subscription's obligations end there, recorded, no divergence."""
    live = _run(
        runner,
        [
            _table(),
            _insert("user1", (1, 1, "a")),
            Subscribe("user1", "t", "s1", where=Or((Cmp("n", B, ">", 5), Cmp("s", T, "=", "a")))),
            AlterDropColumn("dba", "t", "s"),
            Insert("user1", "t", ("id", "n"), (B, B), ((2, 9),)),
            Insert("user1", "t", ("id", "n"), (B, B), ((3, 1),)),
            Update("user1", "t", (("n", B, 7),), Cmp("id", B, "=", 1)),
        ],
    )
    sub = live.live.subs["s1"]
    assert sub.status == "ended" and "error" in (sub.told or "") and live.stats["told"] == 1


def test_drop_of_a_projected_or_unused_column_keeps_the_feed(runner):
    """A projected column and an unused one dropped: changes keep coming without them, snapshots pulled
    across the ALTER included."""
    live = _run(
        runner,
        [
            _table("SHARED"),
            _insert("svc", (1, 1, "a"), (2, 2, "b"), (3, 3, "c")),
            Subscribe("user1", "t", "s1", columns=("id", "s")),
            Subscribe("user2", "t", "s2", where=Cmp("n", B, ">", 1), batch_size=1),
            AlterDropColumn("svc", "t", "s"),
            NextBatch("s2"),
            Insert("svc", "t", ("id", "n"), (B, B), ((4, 4),)),
            Update("svc", "t", (("n", B, 8),), Cmp("id", B, "=", 1)),
            NextBatch("s2"),
            Delete("svc", "t", Cmp("id", B, "=", 2)),
        ],
    )
    assert {s.status for s in live.live.subs.values()} == {"ready"} and live.stats["told"] == 0


def test_a_re_added_column_under_a_subscription_shows_only_new_values(runner):
    """Drop ``s`` and add it again (finding 4's shape) under a ``*`` subscription and a projection naming it:
    old rows show NULL, new writes their value, in changes and in a later subscription's snapshot."""
    live = _run(
        runner,
        [
            _table(),
            _insert("user1", (1, 1, "secret")),
            Flush("user1", "t"),
            _insert("user1", (2, 2, "hot")),
            Subscribe("user1", "t", "s1"),
            Subscribe("user1", "t", "s2", columns=("id", "s"), snapshot=False),
            AlterDropColumn("dba", "t", "s"),
            AlterAddColumn("dba", "t", Column("s", T)),
            Update("user1", "t", (("n", B, 5),), Cmp("id", B, "=", 1)),
            Update("user1", "t", (("s", T, "new"),), Cmp("id", B, "=", 2)),
            Delete("user1", "t", Cmp("id", B, "=", 1)),
            Subscribe("user1", "t", "s3"),
        ],
    )
    assert live.stats["told"] == 0 and live.live.subs["s3"].status == "ready"


def _errors_instead_of_changes(monkeypatch, count: int) -> None:
    """Client-side injection: the first ``count`` change messages arrive as an ``error`` for their
    subscription (as a server giving up would send it); the rest arrive as sent."""
    real = _ws.LiveMessage.from_raw.__func__  # type: ignore[attr-defined]
    left = [count]

    def from_raw(cls, raw, columns=None):
        if raw.get("type") == "change" and left[0] > 0:
            left[0] -= 1
            raw = {
                "type": "error",
                "subscription_id": raw.get("subscription_id"),
                "code": "X",
                "message": "m",
            }
        return real(cls, raw, columns)

    monkeypatch.setattr(_ws.LiveMessage, "from_raw", classmethod(from_raw))


def test_an_error_where_the_contract_does_not_allow_one_is_a_divergence(runner, monkeypatch):
    """A subscription with a filter in the live grammar, nothing dropped, nothing buffered: an error instead
    of its change is a dropped subscription, a divergence (``live_query``)."""
    _errors_instead_of_changes(monkeypatch, 1)
    result = runner.run_steps(
        [
            _table(),
            Subscribe("user1", "t", "s1", where=Cmp("n", B, ">", 0), snapshot=False),
            _insert("user1", (1, 1, "a")),
        ]
    )
    assert result.divergence is not None and result.divergence.invariant is Invariant.LIVE_QUERY
    assert "obliges it to keep delivering" in str(result.divergence)


def test_nothing_may_arrive_after_the_client_was_told(runner, monkeypatch):
    """Changes buffered while a snapshot is pulled allow a buffer limit: an error then ends the subscription,
    recorded; a change for it after that is a divergence."""
    steps = [
        _table(),
        _insert("user1", (1, 1, "a"), (2, 2, "b")),
        Subscribe("user1", "t", "s1", batch_size=1),
        _insert("user1", (3, 3, "c")),  # buffered: the snapshot is still being pulled
        NextBatch("s1"),
    ]
    _errors_instead_of_changes(monkeypatch, 1)
    live = _run(runner, steps)
    assert live.live.subs["s1"].status == "ended" and live.stats["told"] == 1
    _errors_instead_of_changes(monkeypatch, 1)
    result = runner.run_steps([*steps, _insert("user1", (4, 4, "d"))])
    assert result.divergence is not None and "after the server ended the subscription" in str(
        result.divergence
    )


def test_a_filter_beyond_the_live_grammar_may_be_refused_at_subscribe(runner, monkeypatch):
    """Refusing an IN filter at subscribe time (instead of evaluating it) is a documented choice; refusing a
    filter in the live grammar is a divergence."""
    from kalammodel.model import In

    real = _ws.LiveMessage.from_raw.__func__  # type: ignore[attr-defined]

    def from_raw(cls, raw, columns=None):
        if raw.get("type") == "subscription_ack":
            raw = {
                "type": "error",
                "subscription_id": raw["subscription_id"],
                "code": "UNSUPPORTED",
                "message": "",
            }
        return real(cls, raw, columns)

    monkeypatch.setattr(_ws.LiveMessage, "from_raw", classmethod(from_raw))
    live = _run(runner, [_table(), Subscribe("user1", "t", "s1", where=In("n", B, (1, 2)), snapshot=False)])
    assert live.live.subs["s1"].status == "ended" and live.stats["told"] == 1
    result = runner.run_steps(
        [_table(), Subscribe("user1", "t", "s1", where=Cmp("n", B, "=", 1), snapshot=False)]
    )
    assert result.divergence is not None and "expected subscription_ack" in str(result.divergence)


def test_silence_about_a_change_the_filter_cannot_decide_is_a_divergence(
    kalamdb_target, actor_pool, monkeypatch
):
    """The filter names a dropped column and a change it cannot decide happens: a server that neither tells
    the client nor delivers (KalamDB's evaluator skips such a change) is found, ``live_query``. Injected on
    the client side: the server's error for the subscription never reaches it."""
    from kalammodel.checks.live import LiveExtension

    real = _ws.Subscription._put

    def put(self, item):
        if isinstance(item, dict) and item.get("type") == "error":
            return  # dropped in silence
        real(self, item)

    monkeypatch.setattr(_ws.Subscription, "_put", put)
    runner = Runner(kalamdb_target, actor_pool, extensions=[lambda s: LiveExtension(s, event_timeout=1.0)])
    result = runner.run_steps(
        [
            _table(),
            Subscribe("user1", "t", "s1", where=Cmp("s", T, "=", "a"), snapshot=False),
            AlterDropColumn("dba", "t", "s"),
            Insert("user1", "t", ("id", "n"), (B, B), ((2, 9),)),
        ]
    )
    assert result.divergence is not None and result.divergence.invariant is Invariant.LIVE_QUERY
    assert "did not arrive" in str(result.divergence) and "cannot evaluate" in str(result.divergence)
