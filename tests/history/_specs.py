"""Sequential specs, a brute-force oracle and a history generator for the checker's tests."""

from __future__ import annotations

import itertools
import random
from collections.abc import Hashable, Sequence

from kalammodel.history import Operation, Status, connected_parts


class Register:
    """One integer register, initially 0: ("w", v) -> None, ("r",) -> value, ("cas", old, new) -> bool."""

    def initial(self) -> int:
        return 0

    def step(self, state: int, op: object, outcome: object, status: Status) -> int | None:
        assert isinstance(op, tuple)
        if status is Status.FAILED:
            return state  # an error answer: no effect, admitted anywhere
        if op[0] == "w":
            return op[1]
        if op[0] == "r":
            return state if outcome == state else None
        if op[0] == "cas":
            if outcome is True:
                return op[2] if state == op[1] else None
            return state if state != op[1] else None
        raise AssertionError(op)

    def step_unknown(self, state: int, op: object) -> int:
        assert isinstance(op, tuple)
        if op[0] == "w":
            return op[1]
        if op[0] == "cas" and state == op[1]:
            return op[2]
        return state

    def key(self, state: int) -> Hashable:
        return state

    def read_only(self, op: object) -> bool:
        return op == ("r",)

    def describe_op(self, op: object) -> str:
        assert isinstance(op, tuple)
        return {"w": "write({})", "r": "read()", "cas": "cas({}, {})"}[op[0]].format(*op[1:])


class PlainRegister(Register):
    """The register without the optional hints (no read_only, no describe_op): the search's plain path."""

    read_only = None  # type: ignore[assignment]
    describe_op = None  # type: ignore[assignment]


KvState = tuple[tuple[str, int], ...]  # sorted (key, value) pairs: immutable, hashable


def _get(state: KvState, k: str) -> int | None:
    return dict(state).get(k)


def _set(state: KvState, k: str, v: int | None) -> KvState:
    d = dict(state)
    if v is None:
        d.pop(k, None)
    else:
        d[k] = v
    return tuple(sorted(d.items()))


class KeyValue:
    """A map with a uniqueness rule: ("put", k, v), ("get", k) -> value | None, ("insert", k, v) -> "ok" or
    FAILED "duplicate" (the key exists), ("delete", k), ("scan",) -> the whole map as a dict."""

    def initial(self) -> KvState:
        return ()

    def step(self, state: KvState, op: object, outcome: object, status: Status) -> KvState | None:
        assert isinstance(op, tuple)
        kind = op[0]
        if kind == "insert":
            exists = _get(state, op[1]) is not None
            if status is Status.FAILED:
                return state if outcome == "duplicate" and exists else None
            return _set(state, op[1], op[2]) if not exists else None
        if status is Status.FAILED:
            return state
        if kind == "put":
            return _set(state, op[1], op[2])
        if kind == "delete":
            return _set(state, op[1], None)
        if kind == "get":
            return state if outcome == _get(state, op[1]) else None
        if kind == "scan":
            return state if outcome == dict(state) else None
        raise AssertionError(op)

    def step_unknown(self, state: KvState, op: object) -> KvState:
        assert isinstance(op, tuple)
        if op[0] == "insert":
            return state if _get(state, op[1]) is not None else _set(state, op[1], op[2])
        if op[0] == "put":
            return _set(state, op[1], op[2])
        if op[0] == "delete":
            return _set(state, op[1], None)
        return state

    def key(self, state: KvState) -> Hashable:
        return state

    def read_only(self, op: object) -> bool:
        return isinstance(op, tuple) and op[0] in ("get", "scan")

    def describe_op(self, op: object) -> str:
        assert isinstance(op, tuple)
        return f"{op[0].upper()} {' '.join(map(str, op[1:]))}".rstrip()


class PartitionedKeyValue(KeyValue):
    """KeyValue split per key (a scan spans every key, so it joins them all)."""

    def partition(self, ops: Sequence[Operation]) -> list[list[Operation]]:
        return connected_parts(ops, lambda o: None if o.op[0] == "scan" else {o.op[1]})  # type: ignore[index]


def op(client: int, request: tuple[object, ...], invoke: float, ret: float | None, outcome: object = None,
       status: Status = Status.OK) -> Operation:  # fmt: skip
    """An operation; ``ret`` None makes it indeterminate."""
    if ret is None:
        status = Status.INDETERMINATE
    return Operation(client, request, invoke, ret, None if ret is None else outcome, status)


def brute_force(spec: Register | KeyValue, ops: Sequence[Operation], optional: Sequence[Operation] = ()) -> bool:
    """Linearizable by enumeration: some subset of the indeterminate ops and of the ``optional`` answered ones
    (each of those taking effect with an unknown outcome inside its interval), in some real-time-respecting
    order with every other answered op, is admitted step by step."""
    relaxed = {id(o) for o in optional}
    required = [o for o in ops if o.determinate and id(o) not in relaxed]
    maybe = [o for o in ops if not o.determinate or id(o) in relaxed]
    for r in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, r):
            for order in itertools.permutations(required + list(chosen)):
                if not _respects_real_time(order):
                    continue
                state: object = spec.initial()
                for o in order:
                    nxt = (
                        spec.step(state, o.op, o.outcome, o.status)  # type: ignore[arg-type]
                        if id(o) not in relaxed and o.determinate
                        else spec.step_unknown(state, o.op)  # type: ignore[arg-type]
                    )
                    if nxt is None:
                        break
                    state = nxt
                else:
                    return True
    return False


def _respects_real_time(order: Sequence[Operation]) -> bool:
    for a, b in itertools.combinations(order, 2):  # a is placed before b
        if b.ret is not None and b.ret < a.invoke:
            return False
    return True


def simulate_kv(rng: random.Random, clients: int, ops: int, keys: int = 4, indeterminate: float = 0.0) -> list[Operation]:
    """A linearizable history: each client runs sequentially, each op takes effect at a random instant of
    its interval on one atomic map (unique values), intervals overlap across clients."""
    store: dict[str, int] = {}
    clock = [rng.random() for _ in range(clients)]
    planned: list[tuple[float, float, float, int, tuple[object, ...]]] = []
    counter = itertools.count(1)
    for _ in range(ops):
        c = min(range(clients), key=lambda i: clock[i])
        invoke = clock[c]
        point = invoke + rng.uniform(0.0, 1.0)
        ret = point + rng.uniform(0.0, 1.0)
        clock[c] = ret + rng.uniform(0.0, 0.3)
        k = f"k{rng.randrange(keys)}"
        request: tuple[object, ...] = ("get", k) if rng.random() < 0.5 else ("put", k, next(counter))
        planned.append((point, invoke, ret, c, request))
    out: list[Operation] = []
    for _point, invoke, ret, c, request in sorted(planned):
        if request[0] == "put":
            lost = rng.random() < indeterminate
            if lost and rng.random() < 0.5:
                out.append(Operation(c, request, invoke, None, None, Status.INDETERMINATE))
                continue  # never took effect
            store[str(request[1])] = int(request[2])  # type: ignore[call-overload]
            out.append(
                Operation(c, request, invoke, None, None, Status.INDETERMINATE)
                if lost
                else Operation(c, request, invoke, ret, None, Status.OK)
            )
        else:
            out.append(Operation(c, request, invoke, ret, store.get(str(request[1])), Status.OK))
    return sorted(out, key=lambda o: o.invoke)
