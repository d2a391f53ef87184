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
being **relaxed** (it may have taken effect at one instant of its interval with any outcome, or not at all:
``step_unknown``, or a skip when its return entry comes first), never by being deleted: deleting an
operation from a history is not sound for the rest (deleting the write a read saw makes that read
unexplainable, and the set would blame it for a bug that is not there). The set that remains cannot be
ordered whatever the other operations answered, so it is a faithful witness, non-linearizable on its own
too; relaxing any one of its operations makes the history linearizable. (Relaxing an operation to "any
time after its invocation" would give a witness free of the others' times, but the search then has to try
every relaxed write at every point: exponential on a few hundred operations of one key.) A part still long
after the prefix cut (over 40 answered operations) is shrunk against a frozen front: its earlier writes taken
as recorded (``Verdict.context``), since a long relaxed front lets every key keep any old value. See
:func:`_shrink` for the stages.
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
_DET, _IND, _FORCED, _SKIP = 0, 1, 2, 3  # kinds of stack frame (see _search)


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
      ``prefix`` the longest linearizable prefix the search found in that part; ``context``, for a long
      part only, the earlier writes whose recorded effects the witness assumes (empty: it assumes nothing
      of the other operations).
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
    context: tuple[Operation, ...] = ()

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


@attrs.define
class _Links:
    """The history as Porcupine's doubly linked lists. Nodes 1..m are the call and return entries in time
    order (so a node's number is its rank in time); node 0 heads the list of answered operations, node m+1
    the list of indeterminate calls (they have no return entry)."""

    node_op: list[int]  # node -> operation index
    is_call: list[bool]
    match: list[int]  # call node <-> its return node (-1: an indeterminate call has none)
    nxt: list[int]
    prv: list[int]

    @classmethod
    def build(cls, ops: Sequence[Operation]) -> _Links:
        events: list[tuple[float, int, int]] = []
        for i, o in enumerate(ops):
            events.append((o.invoke, 0, i))
            if o.ret is not None:
                events.append((o.ret, 1, i))
        events.sort()  # equal times: calls first (touching intervals count as concurrent), then by index
        m = len(events)
        node_op, is_call, match = [0] * (m + 2), [False] * (m + 2), [-1] * (m + 2)
        call_node = [0] * len(ops)
        for j, (_, kind, i) in enumerate(events, start=1):
            node_op[j] = i
            if kind == 0:
                is_call[j], call_node[i] = True, j
            else:
                match[call_node[i]], match[j] = j, call_node[i]
        nxt, prv = [-1] * (m + 2), [-1] * (m + 2)
        for lst_head, members in (
            (0, [j for j in range(1, m + 1) if ops[node_op[j]].determinate]),
            (m + 1, [j for j in range(1, m + 1) if not ops[node_op[j]].determinate]),
        ):
            chain = [lst_head, *members]
            for x, y in zip(chain, chain[1:]):
                nxt[x], prv[y] = y, x
        return cls(node_op, is_call, match, nxt, prv)


def _search(
    spec: SequentialSpec[S],
    ops: Sequence[Operation],
    deadline: float | None,
    optional: frozenset[int] = frozenset(),
    frozen: frozenset[int] = frozenset(),
) -> _Search:
    """One Wing–Gong/Lowe search over ``ops`` (see the module docstring).

    ``optional`` answered operations (the shrinker's relaxed ones) may take effect with an unknown outcome
    inside their interval, or not at all: they are applied like the others (through ``step_unknown``) and
    skipped when their return entry comes first. ``frozen`` ones (the shrinker's background) take effect
    inside their interval through ``step_unknown``: their outcome is not checked. Iterative by design: the stack of lifted operations is a
    list, so 1,600 operations need no Python recursion. One function of ~150 lines, over the ~80 of the
    rules: the loop's moves share a dozen local variables, and splitting them would cost a call per
    iteration in the hottest path.
    """
    links = _Links.build(ops)
    node_op, is_call, match, nxt, prv = links.node_op, links.is_call, links.match, links.nxt, links.prv
    m = len(node_op) - 2
    head, fhead = 0, m + 1

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
    opt = [i in optional for i in range(len(ops))]
    unchecked = [opt[i] or i in frozen for i in range(len(ops))]
    pure = _pure_flags(spec, ops, optional | frozen)
    n_req = sum(1 for i, o in enumerate(ops) if o.determinate and not opt[i])
    state = spec.initial()
    state_key = key(state)
    placed, used_ind, count = 0, 0, 0  # bitsets of placed answered / used indeterminate ops; required placed
    memo: dict[tuple[int, Hashable], list[int]] = {(0, state_key): [0]}

    def admit(k: tuple[int, Hashable], used: int) -> bool:
        """Record configuration ``k`` reached with indeterminate ops ``used``; False when one with a subset
        of them used was already explored (fewer used leaves more options)."""
        seen = memo.get(k)
        if seen is None:
            memo[k] = [used]
            return True
        if any(u & ~used == 0 for u in seen):
            return False
        seen.append(used)
        return True
    # Frames: (call node, state before it, its key, kind, limit). _FORCED: a pure op admitted here; any
    # order placing it later can place it here instead, since it changes no state anywhere, so once it is
    # placed its siblings are never tried. _SKIP: an optional op left out when its return came first.
    stack: list[tuple[int, S, Hashable, int, int]] = []
    longest: list[int] = []
    if n_req == 0:
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
                new = step_unknown(state, reqs[i]) if unchecked[i] else step(state, reqs[i], outs[i], stats[i])
                if new is not None:
                    bit = 1 << i
                    forced = pure[i]
                    if forced:
                        new, new_key = state, state_key  # a failed op has no effect, whatever step returned
                    else:
                        new_key = key(new)
                    if admit((placed | bit, new_key), used_ind):
                        stack.append((cur, state, state_key, _FORCED if forced else _DET, limit))
                        state, state_key, placed = new, new_key, placed | bit
                        unlink(cur)
                        unlink(match[cur])
                        if not opt[i]:
                            count += 1
                            if count == n_req:
                                break
                        cur = nxt[head]
                        continue
                    retreat = forced  # the forced move was explored and failed: so did this config
                if not retreat:
                    cur = nxt[cur]
                    continue
            elif cur != -1 and opt[node_op[cur]]:
                # An optional op's return comes first: leave it out (pure), then try the indeterminate ones.
                i = node_op[cur]
                call = match[cur]
                if admit((placed | (1 << i), state_key), used_ind):
                    stack.append((call, state, state_key, _SKIP, cur))
                    placed |= 1 << i
                    unlink(call)
                    unlink(cur)
                    cur = nxt[head]
                    continue
                in_ind, limit, cur = True, cur, nxt[fhead]
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
            if admit((placed, new_key), used_ind | bit):
                stack.append((cur, state, state_key, _IND, limit))
                state, state_key, used_ind = new, new_key, used_ind | bit
                unlink(cur)
                in_ind, cur = False, nxt[head]
                continue
            cur = nxt[cur]
            continue
        # Nothing can go next from here: backtrack, past every forced frame.
        if len(stack) > len(longest):
            longest = [node_op[e[0]] for e in stack if e[3] != _SKIP]
        while True:
            if not stack:
                return _Search(False, [], longest, it)
            cur, state, state_key, kind, limit = stack.pop()
            i = node_op[cur]
            if kind == _IND:
                used_ind &= ~(1 << i)
            else:
                placed &= ~(1 << i)
                if not opt[i]:
                    count -= 1
                relink(match[cur])
            relink(cur)
            if kind != _FORCED:
                break
        if kind == _SKIP:
            in_ind, cur = True, nxt[fhead]  # limit: the optional op's return node, kept in the frame
        else:
            in_ind, cur = kind == _IND, nxt[cur]
    return _Search(True, [node_op[e[0]] for e in stack if e[3] != _SKIP], longest, it)


def _pure_flags(spec: object, ops: Sequence[Operation], optional: frozenset[int]) -> list[bool]:
    """Which answered operations change no state: the failed ones (unless relaxed), and those the spec's
    ``read_only`` names."""
    read_only = getattr(spec, "read_only", None)
    return [
        o.determinate
        and ((o.status is Status.FAILED and i not in optional) or (read_only is not None and bool(read_only(o.op))))
        for i, o in enumerate(ops)
    ]


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


_WINDOW_FROM = 40  # answered operations left after the prefix cut beyond which the shrinker freezes a front


def _shrink(
    spec: SequentialSpec[S], ops: Sequence[Operation], deadline: float | None, base: float
) -> tuple[list[int], bool, list[int]]:
    """A minimal set of answered operations of ``ops`` that cannot be ordered, the others relaxed (optional:
    taking effect inside their interval with any outcome, or not at all): (its indices, whether it is
    1-minimal, the indices of the frozen background).

    1. The shortest failing prefix (binary search by invocation; everything after it relaxed): cheap, since
       relaxed operations after the failure are seldom reached.
    2. Only when more than ``_WINDOW_FROM`` answered operations are left: the longest front that can be
       *frozen* (its writes take effect as recorded, outcomes unchecked; its reads and failed ones relaxed)
       with the history still failing. Relaxing a long front instead lets the search choose, per key, any
       old write as the surviving one: exponential in the keys of one part. The witness then holds given
       that background (``Verdict.context``).
    3. Greedy relaxation, in chunks halving down to single operations, then single-operation passes until
       none can go. A candidate whose check runs out of its share of time keeps its operations (the set
       stays a witness); the flag says whether every single-operation check was decided.
    """
    answered = [i for i, o in enumerate(ops) if o.determinate]
    read_only = getattr(spec, "read_only", None)
    freezable = {
        i for i in answered if ops[i].status is Status.OK and not (read_only is not None and read_only(ops[i].op))
    }
    cap = max(0.05, 3 * base)
    frozen: list[int] = []

    def fails(keep: Sequence[int], freeze: Sequence[int] = ()) -> bool | None:
        sub = None if deadline is None else min(deadline, time.monotonic() + cap)
        if sub is not None and sub <= time.monotonic():
            return None
        frz = frozenset(i for i in [*frozen, *freeze] if i in freezable)
        opt = frozenset(answered) - frz - set(keep)
        r = _search(spec, ops, sub, opt, frz)
        return None if r.result is None else not r.result

    lo, hi = 1, len(answered)
    while lo < hi:
        mid = (lo + hi) // 2
        if fails(answered[:mid]):
            hi = mid
        else:
            lo = mid + 1
    core = answered[:hi]
    if len(core) > _WINDOW_FROM:
        lo, hi = 0, len(core) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fails(core[mid:], core[:mid]):
                lo = mid
            else:
                hi = mid - 1
        frozen, core = [i for i in core[:lo] if i in freezable], core[lo:]
    chunk = max(1, len(core) // 2)
    while chunk > 1:
        i = 0
        while i < len(core):
            candidate = core[:i] + core[i + chunk :]
            if candidate and fails(candidate):
                core = candidate
            else:
                i += chunk
        chunk //= 2
    while True:
        changed = undecided = False
        for x in list(core):
            if len(core) == 1:
                break
            verdict = fails([i for i in core if i != x])
            if verdict is None:
                undecided = True
            elif verdict:
                core.remove(x)
                changed = True
        if not changed:
            return core, not undecided, frozen


def _message_not_linearizable(
    spec: object, ops: Sequence[Operation], core: Sequence[Operation], context: Sequence[Operation],
    prefix: int, where_part: tuple[int, int], minimal: bool, start: float,
) -> str:
    part, parts = where_part
    where = f" (part {part + 1} of {parts}, {len(ops)} operations)" if parts > 1 else ""
    lines = [
        f"not linearizable{where}: {'these' if len(core) > 1 else 'this'} {len(core)} operation"
        f"{'s' if len(core) != 1 else ''} cannot be ordered:"
    ]
    lines += [f"  {describe_operation(spec, o, start)}" for o in sorted(core, key=lambda o: o.invoke)]
    tail = "both" if len(core) == 2 else "all of them" if len(core) > 2 else "it"
    lines.append(
        f"No order of these consistent with their times explains {tail}, whatever the other operations did"
        f" (each may have taken effect inside its own interval, or any time after its invocation if it got"
        f" no answer, or not at all)."
    )
    if context:
        last = max(o.ret for o in context if o.ret is not None)
        lines.append(
            f"That holds given the effects of {len(context)} earlier write(s) of this part, taken as recorded"
            f" (the last returned at {(last - start) * 1000:.1f} ms; Verdict.context lists them)."
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
            idx, minimal, background = _shrink(spec, ops, _deadline(shrink_timeout), time.monotonic() - t0)
        else:
            idx, minimal, background = [i for i, o in enumerate(ops) if o.determinate], False, []
        core = tuple(ops[i] for i in idx)
        context = tuple(ops[i] for i in background)
        prefix = tuple(ops[i] for i in r.longest)
        message = _message_not_linearizable(spec, ops, core, context, len(prefix), (p, len(parts)), minimal, start)
        return Verdict(
            Result.NOT_LINEARIZABLE, message, time.monotonic() - started, len(parts),
            prefix=prefix, core=core, core_minimal=minimal, context=context,
        )
    elapsed = time.monotonic() - started
    if timed_out:
        message = (
            f"unknown after {elapsed:.1f} s: {len(timed_out)} of {len(parts)} part(s) undecided (sizes "
            f"{timed_out} operations) when the {timeout} s timeout passed; the others are linearizable. "
            f"Give more time, or a spec partition that splits the history into smaller independent parts."
        )
        return Verdict(Result.UNKNOWN, message, elapsed, len(parts))
    message = (
        f"linearizable: {len(history)} operation{'s' if len(history) != 1 else ''} in {len(parts)}"
        f" independent part{'s' if len(parts) != 1 else ''}"
    )
    return Verdict(Result.OK, message, elapsed, len(parts), linearizations=tuple(orders))
