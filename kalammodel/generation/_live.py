"""Draw functions of the live queries: subscribe, next batch, unsubscribe, resume from a ``_seq`` (records of
:mod:`kalammodel.generation.operations`), and what they draw from: the live extension's model of the example's
subscriptions. Subscriptions are run by the live extension (kalammodel.checks.live); without it these operations never
apply."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import strategies as st

from ..model import LiveModel, Predicate, TableKind, TableState
from ..steps import NextBatch, ResubscribeFromSeq, Subscribe, Unsubscribe
from .strategies import live_predicates

if TYPE_CHECKING:
    from .machine import KalamStateMachine

__all__ = [
    "MAX_OPEN_SUBS",
    "MAX_SUBS_PER_USER",
    "live_actors",
    "live_model",
    "next_batch",
    "next_sub_id",
    "old_subs",
    "resubscribe_from_seq",
    "resumable",
    "subscribe",
    "unsubscribe",
]

#: Open subscriptions per example and per identity (KalamDB's default limit is 10 per user).
MAX_OPEN_SUBS = 6
MAX_SUBS_PER_USER = 4


def live_model(m: KalamStateMachine) -> LiveModel | None:
    """The live extension's model of the session's subscriptions, None without the extension."""
    for ext in getattr(m.session, "extensions", ()):
        live = getattr(ext, "live", None)
        if live is not None and hasattr(live, "open_subs"):
            return live
    return None


def live_actors(m: KalamStateMachine) -> list[str]:
    """Identities with room for one more subscription (KalamDB's default limit is 10 per user)."""
    live = live_model(m)
    if live is None or len(live.open_subs()) >= MAX_OPEN_SUBS:
        return []
    count: dict[str, int] = {}
    for sub in live.open_subs():
        count[sub.actor] = count.get(sub.actor, 0) + 1
    return [a for a in sorted(m.actors) if count.get(a, 0) < MAX_SUBS_PER_USER]


def next_sub_id(m: KalamStateMachine) -> str:
    m.sub_count += 1
    sub_id = f"s{m.sub_count}"
    m.sub_opened[sub_id] = m.session.step_index + 1
    return sub_id


def subscribe(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    state = m.table_state(table)
    if state is None:
        return
    candidates = live_actors(m)
    writers = [a for a in candidates if a in m.scopes(state)]  # owners with rows: changes to see
    if writers and data.draw(st.integers(0, 3), label="a writer subscribes?") > 0:
        candidates = writers
    actor = data.draw(st.sampled_from(candidates), label="subscriber")
    columns = m.columns(state)
    pk = state.pk.column if state.pk is not None else None
    projection = None
    if pk is not None and data.draw(st.integers(0, 3), label="projection?") == 0:
        others = [c.name for c in columns if not c.primary_key]
        chosen = data.draw(st.lists(st.sampled_from(others), unique=True), label="columns") if others else []
        projection = (pk.name, *chosen)
    where = None
    if data.draw(st.integers(0, 2), label="filter?") > 0:
        try:
            where = data.draw(live_predicates(columns), label="filter")
        except ValueError:
            where = None
    snapshot = data.draw(st.integers(0, 4), label="snapshot?") > 0
    batch_size = last_rows = None
    # STREAM snapshots shrink as rows expire with the wall clock: one batch, so that whether a next_batch
    # is due never depends on time.
    batched = snapshot and state.kind is not TableKind.STREAM
    if batched and data.draw(st.integers(0, 3), label="batch_size?") > 0:
        batch_size = _batch_size(m, data, state, actor, where)
    if batched and data.draw(st.integers(0, 3), label="last_rows?") == 0:
        high = batch_size if batch_size is not None else 20
        last_rows = data.draw(st.integers(1, high + (1 if batch_size is not None else 0)), label="last")
    m.run(Subscribe(actor, table, next_sub_id(m), projection, where, snapshot, batch_size, last_rows))


def _batch_size(
    m: KalamStateMachine, data: st.DataObject, state: TableState, actor: str, where: Predicate | None
) -> int:
    """A snapshot batch size, half the time sized against the rows the snapshot will hold.

    Relative sizes make snapshots of two and more batches common, and half of those need exactly two
    (``rows / 2 <= batch_size < rows``): the batch boundaries are where ``has_more`` and the ``next_batch``
    cursor go wrong. Otherwise often tiny batches (at most about four). Only for USER and SHARED tables: a STREAM snapshot
    shrinks as rows expire with the wall clock, and generation must not depend on time.
    """
    sizes = m.wl.live_batch_size
    low, high = max(1, sizes.min), max(1, sizes.min, sizes.max)
    owner = None if state.kind is TableKind.SHARED else actor
    rows = 0
    if owner in m.scopes(state):
        rows, _ = m.model.matching_count(state.spec.name, owner, where)
    # Tiny batches, but never more than about four of them: each further batch is a NextBatch step, and a
    # subscription still loading its snapshot is not checked against the changes that follow.
    tiny = min(high, max(low, -(-rows // 4)))
    small = st.integers(tiny, max(tiny, min(high, 3)))
    choices = [small, st.integers(tiny, high)]
    if rows >= 2 and low <= rows - 1:
        top = min(high, rows - 1)
        choices.append(st.integers(low, top))
        two = max(low, -(-rows // 2))
        if two <= top:
            choices.append(st.integers(two, top))
    if len(choices) > 2 and data.draw(st.booleans(), label="sized to the snapshot?"):
        return data.draw(st.one_of(choices[2:]), label="batch")
    return data.draw(st.one_of(choices[:2]), label="batch")


def next_batch(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    live = live_model(m)
    assert live is not None  # next_batch applies only while a subscription loads
    loading = sorted(s.id for s in live.open_subs() if s.status == "loading")
    m.run(NextBatch(data.draw(st.sampled_from(loading), label="subscription")))


def old_subs(m: KalamStateMachine) -> list[str]:
    """Open subscriptions that saw a step or two (closing at once would leave nothing to check)."""
    live = live_model(m)
    if live is None:
        return []
    opened = m.sub_opened
    now = m.session.step_index
    return sorted(s.id for s in live.open_subs() if now - opened.get(s.id, -100) >= 2)


def unsubscribe(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    open_ids = old_subs(m)
    sub_id = data.draw(st.sampled_from(open_ids), label="subscription")
    m.run(Unsubscribe(sub_id, data.draw(st.booleans(), label="disconnect")))


def resumable(m: KalamStateMachine) -> list[str]:
    """Subscriptions to resume from: closed ones, and open ones past their snapshot that saw a step or two
    (the resume step drops their connection first: a reconnect, without waiting for an unsubscribe step).
    Each at most once; only those that received a ``_seq`` to resume from."""
    live = live_model(m)
    if live is None:
        return []
    room = set(live_actors(m))
    resumed = m.resumed
    old = set(old_subs(m))
    return sorted(
        s.id
        for s in live.subs.values()
        if (s.status == "closed" or (s.status == "ready" and s.id in old))
        and s.last_seq_seen is not None
        and s.id not in resumed
        and s.actor in room
        and s.table in m.model.tables
        # whether a STREAM subscription saw any row depends on expiry (the wall clock): generation must not
        and m.model.tables[s.table].kind is not TableKind.STREAM
    )


def resubscribe_from_seq(m: KalamStateMachine, table: str, data: st.DataObject, op: str) -> None:
    old = data.draw(st.sampled_from(resumable(m)), label="resume")
    m.resumed.add(old)
    m.run(ResubscribeFromSeq(next_sub_id(m), old))
