"""What the linearizability checker needs of a model: the :class:`SequentialSpec` protocol.

A spec is a sequential model with **immutable** states: ``step`` and ``step_unknown`` return a new state and
never change the one they are given (the checker keeps old states to backtrack to; copy-on-write is the spec's
job: a state may share unchanged parts with the state it came from). ``key(state)`` is a hashable fingerprint:
two states with equal keys must behave alike for every later operation (it memoises the search, Lowe's cache
of (linearized set, state)).

Required methods::

    initial() -> S
    step(state, op, outcome, status) -> S | None   # status OK or FAILED: the state after op when the model
                                                   # admits outcome for it there, None when it does not
    step_unknown(state, op) -> S                   # the state after op, its outcome unknown (indeterminate)
    key(state) -> Hashable

A FAILED operation has no effect by definition: ``step`` only says whether the model admits that error there
(any non-None answer admits it), and the checker keeps the state as it was.

For the minimal set of a non-linearizable verdict to be a faithful witness, effects must be determined by the
state: whenever ``step`` admits an OK outcome its state equals ``step_unknown``'s. (The verdict itself does
not depend on this.)

Optional methods, looked up by name:

- ``partition(ops) -> list[list[Operation]]``: P-compositionality (Porcupine's partition function): split the
  history into parts of the state no operation spans (one per table scope; one per key where no read spans
  keys); each part is checked alone, and the history is linearizable iff every part is. :func:`connected_parts`
  builds one from "which keys does this operation touch".
- ``read_only(op) -> bool``: True for a request that changes no state in any state (a SELECT). A search
  optimisation (such an operation, once admitted, is placed at once and never reordered); answering True for
  a request that can write gives wrong verdicts.
- ``describe_op(op) -> str`` and ``describe_outcome(outcome, status) -> str``: the words of a report (default:
  ``op.describe()`` when the request has one, else ``repr``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Sequence
from typing import Protocol, TypeVar

from kalammodel.errors import UsageError

from ._history import Operation, Status

__all__ = ["SequentialSpec", "connected_parts", "describe_operation", "partition_of"]

S = TypeVar("S")


class SequentialSpec(Protocol[S]):
    """A sequential model with immutable states (see the module docstring for the contract)."""

    def initial(self) -> S:
        """The state before any operation."""
        ...

    def step(self, state: S, op: object, outcome: object, status: Status) -> S | None:
        """The state after ``op`` answered ``outcome`` (status OK or FAILED), or None when not admitted here."""
        ...

    def step_unknown(self, state: S, op: object) -> S:
        """The state after ``op`` took effect with an outcome nobody saw."""
        ...

    def key(self, state: S) -> Hashable:
        """A fingerprint of ``state``: equal keys behave alike for every later operation."""
        ...


def partition_of(spec: object, ops: Sequence[Operation]) -> list[list[Operation]]:
    """The spec's partition of ``ops`` (one part when it has none); UsageError unless it covers each op once."""
    fn = getattr(spec, "partition", None)
    if fn is None:
        return [list(ops)] if ops else []
    parts = [list(p) for p in fn(ops) if p]
    seen: dict[int, int] = {}
    for part in parts:
        for o in part:
            seen[id(o)] = seen.get(id(o), 0) + 1
    if len(seen) != len(ops) or any(n != 1 for n in seen.values()) or any(id(o) not in seen for o in ops):
        raise UsageError(
            f"{type(spec).__name__}.partition must put each of the {len(ops)} operations in exactly one part "
            f"(got parts of sizes {[len(p) for p in parts]})"
        )
    return parts


def connected_parts(
    ops: Sequence[Operation], keys: Callable[[Operation], Collection[Hashable] | None]
) -> list[list[Operation]]:
    """Split ``ops`` into parts no operation spans: ``keys(op)`` is the set of keys it touches (None: all).

    Operations sharing a key land in one part (union-find over keys), so a read of two keys joins their parts
    and an operation touching everything (a full scan) makes the whole history one part. Parts keep the
    order of ``ops``; usable as a spec's ``partition``: ``return connected_parts(ops, lambda o: {o.op.key})``.
    """
    parent: dict[Hashable, Hashable] = {}

    def find(k: Hashable) -> Hashable:
        root = k
        while parent[root] != root:
            root = parent[root]
        while parent[k] != root:
            parent[k], k = root, parent[k]
        return root

    touched: list[Collection[Hashable] | None] = [keys(o) for o in ops]
    if any(t is None for t in touched):
        return [list(ops)] if ops else []
    for t in touched:
        assert t is not None
        first: Hashable | None = None
        for k in t:
            parent.setdefault(k, k)
            if first is None:
                first = find(k)
            else:
                r = find(k)
                if r != first:
                    parent[r] = first
    parts: dict[Hashable, list[Operation]] = {}
    lone: list[list[Operation]] = []
    for o, t in zip(ops, touched):
        assert t is not None
        if not t:
            lone.append([o])  # touches no key: constrains nothing but itself
        else:
            parts.setdefault(find(next(iter(t))), []).append(o)
    return list(parts.values()) + lone


def _describe_op(spec: object, op: object) -> str:
    fn = getattr(spec, "describe_op", None)
    if fn is not None:
        return str(fn(op))
    describe = getattr(op, "describe", None)
    if callable(describe):
        return str(describe())
    return repr(op)


def _describe_outcome(spec: object, outcome: object, status: Status) -> str:
    fn = getattr(spec, "describe_outcome", None)
    if fn is not None:
        return str(fn(outcome, status))
    return repr(outcome)


def describe_operation(spec: object, o: Operation, start: float) -> str:
    """One operation in words, times in ms from ``start``: "client 2's put(k1, 5) invoked at 3.0 ms, returned ..."."""
    head = f"client {o.client}'s {_describe_op(spec, o.op)} invoked at {(o.invoke - start) * 1000:.1f} ms"
    if o.status is Status.INDETERMINATE:
        return f"{head} got no answer (it may or may not have taken effect)"
    assert o.ret is not None
    verb = "returned" if o.status is Status.OK else "failed with"
    return f"{head} {verb} {_describe_outcome(spec, o.outcome, o.status)} at {(o.ret - start) * 1000:.1f} ms"
