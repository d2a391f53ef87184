"""The linearizability checker: Wing & Gong's search with Lowe's improvements, as in Porcupine.

A history is linearizable when its operations can be put in one sequential order that respects real time
(an operation that returned before another was invoked comes first) and that the sequential spec admits
outcome by outcome. :func:`check` decides it.

The search (Lowe, "Testing for linearizability", 2017; Porcupine's ``checker.go``): the history becomes a
doubly linked list of call and return entries sorted by time. Any call entry ahead of the first return
entry may be linearized next: if the spec admits its outcome from the current state, the call and its return
are *lifted* out of the list (dancing links) and the search goes on from the head; when the first entry is a
return, that operation cannot be placed any more and the search backtracks, *unlifting* the last operation.
A memo of (bitset of linearized operations, state key) prunes configurations already explored (two paths
reaching the same set with equal states have the same futures). An operation that changes no state (a
failed one, or one the spec calls ``read_only``) is placed as soon as it is admitted and never tried later:
any order placing it later can place it there instead. The search is an explicit stack, no recursion; the
deadline is checked every few hundred iterations.

Indeterminate operations (no answer: ``ret`` None) have a call entry only: they never block, may be
linearized at any point after their invocation (through ``spec.step_unknown``), and need not be linearized
at all (never happened): the search succeeds once every *answered* operation is placed. They are tried after
the answered candidates, and the memo is keyed by (answered set, state) with the set of indeterminate
operations used: a configuration is pruned when one with a subset of them used was explored, since fewer
used leaves more options.

With a ``partition`` on the spec each part is checked alone (P-compositionality). A non-linearizable part is
then shrunk greedily to a *minimal set of operations that cannot be ordered*: an operation leaves the set by
being **relaxed** (made indeterminate: it may have taken effect at any time after its invocation, or never),
never by being deleted, because deleting a write can make the rest non-linearizable for a reason that is not
the bug (a read of the deleted write's value). The set that remains is non-linearizable whatever the other
operations did, so it is a faithful witness; and relaxing any one operation of it makes it linearizable.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Hashable, Sequence
from typing import TypeVar

import attrs

from ._history import Operation, Status
from ._spec import SequentialSpec, describe_operation, partition_of

__all__ = ["Result", "Verdict", "check"]

S = TypeVar("S")

_CHECK_EVERY = 256  # search iterations between two looks at the clock
_DET, _IND, _FORCED = 0, 1, 2  # kinds of stack frame (see _search)


class Result(enum.Enum):
    """The checker's answer: linearizable, not linearizable, or undecided within the time allowed."""

    OK = "ok"
    NOT_LINEARIZABLE = "not_linearizable"
    UNKNOWN = "unknown"


@attrs.frozen
class Verdict:
    """What :func:`check` found; ``message`` says it in plain words.

    - ``OK``: ``linearizations`` holds one order per part (the operations that took effect, in order;
      an indeterminate operation missing from it never happened in that order).
    - ``NOT_LINEARIZABLE``: ``core`` is a minimal set of operations of one part that cannot be ordered
      (``core_minimal`` False when the shrink ran out of time: still a witness, maybe not minimal),
      ``prefix`` the longest linearizable prefix the search found in that part.
    - ``UNKNOWN``: the search did not finish within ``timeout``; never a guess.
    """

    result: Result
    message: str
    elapsed: float  # seconds spent, shrinking included
    partitions: int
    linearizations: tuple[tuple[Operation, ...], ...] = ()
    prefix: tuple[Operation, ...] = ()
    core: tuple[Operation, ...] = ()
    core_minimal: bool = False

    @property
    def ok(self) -> bool:
        """True only for a linearizable verdict."""
        return self.result is Result.OK

    def __str__(self) -> str:
        return self.message


@attrs.define
class _Search:
    result: bool | None  # None: timed out
    order: list[int]  # OK: operation indices in linearization order
    longest: list[int]  # the longest linearized prefix seen (at a backtrack)
    explored: int


def _search(spec: SequentialSpec[S], ops: Sequence[Operation], deadline: float | None) -> _Search:
    """One Wing–Gong/Lowe search over ``ops`` (see the module docstring). Iterative by design: the stack of
    lifted operations is a list, so 1,600 operations need no Python recursion; the loop is one function
    because splitting it costs a call per iteration in the hottest path."""
    n = len(ops)
    det = [o.determinate for o in ops]
    n_det = sum(det)
    events: list[tuple[float, int, int]] = []
    for i, o in enumerate(ops):
        events.append((o.invoke, 0, i))
        if o.ret is not None:
            events.append((o.ret, 1, i))
    events.sort()  # equal times: calls first (touching intervals count as concurrent), then by index
    m = len(events)
    # Nodes 1..m are the events in time order, node 0 the head of the answered list, node m+1 the head of
    # the indeterminate list. nxt/prv link each list; a node's rank is its position in time.
    node_op = [0] * (m + 2)
    is_call = [False] * (m + 2)
    match = [-1] * (m + 2)
    call_node = [0] * n
    for j, (_, kind, i) in enumerate(events, start=1):
        node_op[j] = i
        if kind == 0:
            is_call[j] = True
            call_node[i] = j
        else:
            match[call_node[i]] = j
    head, fhead = 0, m + 1
    nxt = [-1] * (m + 2)
    prv = [-1] * (m + 2)
    for lst_head, members in (
        (head, [j for j in range(1, m + 1) if det[node_op[j]]]),
        (fhead, [j for j in range(1, m + 1) if not det[node_op[j]]]),
    ):
        chain = [lst_head, *members]
        for a, b in zip(chain, chain[1:]):
            nxt[a], prv[b] = b, a

    def unlink(x: int) -> None:
        nxt[prv[x]] = nxt[x]
        if nxt[x] != -1:
            prv[nxt[x]] = prv[x]

    def relink(x: int) -> None:
        nxt[prv[x]] = x
        if nxt[x] != -1:
            prv[nxt[x]] = x

    step, step_unknown, key = spec.step, spec.step_unknown, spec.key
    reqs = [o.op for o in ops]
    outs = [o.outcome for o in ops]
    stats = [o.status for o in ops]
    pure = _pure_flags(spec, ops)
    state = spec.initial()
    state_key = key(state)
    placed_det, used_ind = 0, 0  # bitsets of linearized answered / indeterminate operations
    count_det = 0
    memo: dict[tuple[int, Hashable], list[int]] = {(0, state_key): [0]}
    # Frames: (call node, state before it, its key, kind, limit); kind _DET, _IND or _FORCED: a pure answered
    # op (failed, or read-only by the spec) admitted here. Any order placing it later can place it here
    # instead, since it changes no state anywhere, so once placed its siblings are never tried.
    stack: list[tuple[int, S, Hashable, int, int]] = []
    longest: list[int] = []
    if n_det == 0:
        return _Search(True, [], [], 0)
    cur, in_ind, limit, it = nxt[head], False, m + 1, 0
    while True:
        it += 1
        if deadline is not None and it % _CHECK_EVERY == 1 and time.monotonic() > deadline:
            return _Search(None, [], longest, it)
        retreat = False
        if not in_ind:
            if cur != -1 and is_call[cur]:
                i = node_op[cur]
                new = step(state, reqs[i], outs[i], stats[i])
                if new is not None:
                    bit = 1 << i
                    unchanged = pure[i]
                    if unchanged:
                        new, new_key = state, state_key  # a failed op has no effect, whatever step returned
                    else:
                        new_key = key(new)
                    k = (placed_det | bit, new_key)
                    seen = memo.get(k)
                    if seen is None or not any(u & ~used_ind == 0 for u in seen):
                        if seen is None:
                            memo[k] = [used_ind]
                        else:
                            seen.append(used_ind)
                        stack.append((cur, state, state_key, _FORCED if unchanged else _DET, limit))
                        state, state_key = new, new_key
                        placed_det, count_det = placed_det | bit, count_det + 1
                        unlink(cur)
                        unlink(match[cur])
                        if count_det == n_det:
                            break
                        cur = nxt[head]
                        continue
                    retreat = unchanged  # the forced move was explored and failed: so did this config
                if not retreat:
                    cur = nxt[cur]
                    continue
            else:
                # The first return entry: answered calls are exhausted here; indeterminate ones invoked
                # before it (rank < limit) may still go next.
                in_ind, limit, cur = True, (cur if cur != -1 else m + 1), nxt[fhead]
                continue
        elif cur != -1 and cur < limit:
            i = node_op[cur]
            new = step_unknown(state, reqs[i])
            bit = 1 << i
            new_key = key(new)
            k = (placed_det, new_key)
            seen = memo.get(k)
            if seen is None or not any(u & ~(used_ind | bit) == 0 for u in seen):
                if seen is None:
                    memo[k] = [used_ind | bit]
                else:
                    seen.append(used_ind | bit)
                stack.append((cur, state, state_key, _IND, limit))
                state, state_key, used_ind = new, new_key, used_ind | bit
                unlink(cur)
                in_ind, cur = False, nxt[head]
                continue
            cur = nxt[cur]
            continue
        # Nothing can go next from here: backtrack, past every forced frame.
        if len(stack) > len(longest):
            longest = [node_op[e[0]] for e in stack]
        while True:
            if not stack:
                return _Search(False, [], longest, it)
            cur, state, state_key, kind, limit = stack.pop()
            i = node_op[cur]
            if kind == _IND:
                used_ind &= ~(1 << i)
            else:
                placed_det &= ~(1 << i)
                count_det -= 1
                relink(match[cur])
            relink(cur)
            if kind != _FORCED:
                break
        in_ind = kind == _IND
        cur = nxt[cur]
    return _Search(True, [node_op[e[0]] for e in stack], longest, it)


def _pure_flags(spec: object, ops: Sequence[Operation]) -> list[bool]:
    """Which operations change no state: the failed ones, and those the spec's ``read_only`` names."""
    read_only = getattr(spec, "read_only", None)
    return [
        o.status is Status.FAILED or (o.determinate and read_only is not None and bool(read_only(o.op)))
        for o in ops
    ]


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _drop_trailing(ops: list[Operation]) -> list[Operation]:
    """Without the indeterminate operations invoked after every answered one returned: they can only go
    last or never, so they change no verdict."""
    last = max((o.ret for o in ops if o.ret is not None), default=None)
    return [o for o in ops if o.determinate or (last is not None and o.invoke <= last)]


def _shrink(
    spec: SequentialSpec[S], ops: Sequence[Operation], deadline: float | None, base: float
) -> tuple[list[int], bool]:
    """Indices of a minimal set of answered operations of ``ops`` that cannot be ordered, the others relaxed.

    Greedy, in chunks halving down to single operations (then single-operation passes until none can go):
    a chunk is relaxed when the history stays non-linearizable without it. A candidate whose check runs out
    of its share of time keeps its operations (the set stays a witness); the flag says whether every
    single-operation check was decided, i.e. whether the set is 1-minimal.
    """
    core = [i for i, o in enumerate(ops) if o.determinate]
    cap = max(0.05, 20 * base)

    def fails(keep: set[int]) -> bool | None:
        hist = _drop_trailing([o if i in keep else o.relaxed() for i, o in enumerate(ops)])
        sub = None if deadline is None else min(deadline, time.monotonic() + cap)
        if sub is not None and sub <= time.monotonic():
            return None
        r = _search(spec, hist, sub)
        return None if r.result is None else not r.result

    chunk = max(1, len(core) // 2)
    while chunk > 1:
        i = 0
        while i < len(core):
            candidate = set(core[:i] + core[i + chunk :])
            if candidate and fails(candidate):
                core = sorted(candidate)
            else:
                i += chunk
        chunk //= 2
    while True:
        changed = undecided = False
        for x in list(core):
            if len(core) == 1:
                break
            verdict = fails(set(core) - {x})
            if verdict is None:
                undecided = True
            elif verdict:
                core.remove(x)
                changed = True
        if not changed:
            return core, not undecided


def _message_not_linearizable(
    spec: object, ops: Sequence[Operation], core: Sequence[Operation], prefix: int, part: int, parts: int,
    minimal: bool, start: float,
) -> str:
    where = f" (part {part + 1} of {parts}, {len(ops)} operations)" if parts > 1 else ""
    lines = [
        f"not linearizable{where}: {'these' if len(core) > 1 else 'this'} {len(core)} operation"
        f"{'s' if len(core) != 1 else ''} cannot be ordered:"
    ]
    lines += [f"  {describe_operation(spec, o, start)}" for o in sorted(core, key=lambda o: o.invoke)]
    tail = "both" if len(core) == 2 else "all of them" if len(core) > 2 else "it"
    lines.append(
        f"No order of these consistent with their times explains {tail}, whatever the other operations did"
        f" (each may have taken effect at any time after its invocation, or never)."
    )
    if not minimal:
        lines.append("(The shrink ran out of time: the set may not be minimal.)")
    lines.append(f"The longest linearizable prefix found places {prefix} of the {len(ops)} operations.")
    return "\n".join(lines)


def check(
    history: Sequence[Operation],
    spec: SequentialSpec[S],
    *,
    timeout: float | None = None,
    shrink: bool = True,
    shrink_timeout: float | None = 10.0,
) -> Verdict:
    """Whether ``history`` is linearizable with respect to ``spec``.

    ``timeout`` bounds the search (seconds; None: no bound): when it passes the verdict is UNKNOWN, never a
    guess. A non-linearizable part is then shrunk to a minimal set of operations that cannot be ordered,
    within ``shrink_timeout`` more seconds (``shrink=False``: the set is every answered operation of it).
    """
    started = time.monotonic()
    deadline = _deadline(timeout)
    start = min((o.invoke for o in history), default=0.0)
    parts = sorted(partition_of(spec, history), key=len)
    orders: list[tuple[Operation, ...]] = []
    timed_out: list[int] = []
    for p, part in enumerate(parts):
        ops = sorted(part, key=lambda o: o.invoke)
        t0 = time.monotonic()
        r = _search(spec, ops, deadline)
        if r.result is None:
            timed_out.append(len(ops))
            continue
        if r.result:
            orders.append(tuple(ops[i] for i in r.order))
            continue
        if shrink:
            idx, minimal = _shrink(spec, ops, _deadline(shrink_timeout), time.monotonic() - t0)
        else:
            idx, minimal = [i for i, o in enumerate(ops) if o.determinate], False
        core = tuple(ops[i] for i in idx)
        prefix = tuple(ops[i] for i in r.longest)
        message = _message_not_linearizable(spec, ops, core, len(prefix), p, len(parts), minimal, start)
        return Verdict(
            Result.NOT_LINEARIZABLE, message, time.monotonic() - started, len(parts),
            prefix=prefix, core=core, core_minimal=minimal,
        )
    elapsed = time.monotonic() - started
    if timed_out:
        message = (
            f"unknown after {elapsed:.1f} s: {len(timed_out)} of {len(parts)} part(s) undecided (sizes "
            f"{timed_out} operations) when the {timeout} s timeout passed; the others are linearizable. "
            f"Give more time, or a spec partition that splits the history into smaller independent parts."
        )
        return Verdict(Result.UNKNOWN, message, elapsed, len(parts))
    message = f"linearizable: {len(history)} operations in {len(parts)} independent part(s)"
    return Verdict(Result.OK, message, elapsed, len(parts), linearizations=tuple(orders))
