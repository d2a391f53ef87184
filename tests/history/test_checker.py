"""The linearizability checker on known histories, against a brute-force oracle, shrinking and partitions."""

from __future__ import annotations

import random
import time

import pytest
from _specs import KeyValue, PartitionedKeyValue, PlainRegister, Register, brute_force, op, simulate_kv
from hypothesis import given, settings
from hypothesis import strategies as st

import kalammodel.history as history
from kalammodel.errors import UsageError
from kalammodel.history import Operation, Result, Status, Verdict, check, connected_parts

OK, FAILED = Status.OK, Status.FAILED


def verdict(ops: list[Operation], spec: object = None, **kw: object) -> Verdict:
    return check(ops, spec or Register(), **kw)  # type: ignore[arg-type]


# --- known histories --------------------------------------------------------------------------------------


def test_facade_all_is_sorted_and_complete() -> None:
    """kalammodel.history.__all__ is sorted and every name in it exists."""
    assert history.__all__ == sorted(history.__all__)
    assert all(hasattr(history, name) for name in history.__all__)


def test_empty_history_is_linearizable() -> None:
    """An empty history, or one of indeterminate operations only, is linearizable."""
    assert verdict([]).ok
    assert verdict([op(0, ("w", 1), 0, None)]).ok


def test_porcupine_readme_linearizable() -> None:
    """Porcupine's README history (put 100 overlapping a get of 100 and a get of 0) is linearizable."""
    ops = [op(0, ("w", 100), 0, 100), op(1, ("r",), 25, 75, 100), op(2, ("r",), 30, 60, 0)]
    v = verdict(ops)
    assert v.result is Result.OK and v.partitions == 1
    (order,) = v.linearizations
    assert [o.op for o in order] == [("r",), ("w", 100), ("r",)] and order[0].outcome == 0


def test_porcupine_readme_not_linearizable() -> None:
    """Porcupine's README counterexample (a get of 200 returns before a get of 0 starts) is not linearizable,
    and the two reads alone are the witness: no timing or effect of the write explains them."""
    ops = [op(0, ("w", 200), 0, 100), op(1, ("r",), 10, 30, 200), op(2, ("r",), 40, 90, 0)]
    v = verdict(ops)
    assert v.result is Result.NOT_LINEARIZABLE and not v.ok
    assert set(v.core) == set(ops[1:]) and v.core_minimal


def test_stale_read_is_not_linearizable_and_named() -> None:
    """A read of a value overwritten before it began is found; the set is the overwriting write and the read,
    in words with their clients, times (ms from the start) and outcomes."""
    ops = [op(1, ("w", 1), 0, 0.001), op(2, ("w", 2), 0.002, 0.003), op(3, ("r",), 0.0121, 0.013, 1)]
    v = verdict(ops)
    assert v.result is Result.NOT_LINEARIZABLE
    assert set(v.core) == set(ops[1:]) and v.core_minimal
    assert v.message.splitlines()[1:3] == [
        "  client 2's write(2) invoked at 2.0 ms returned None at 3.0 ms",
        "  client 3's read() invoked at 12.1 ms returned 1 at 13.0 ms",
    ]
    assert "these 2 operations cannot be ordered" in v.message and "explains both" in v.message
    assert len(v.prefix) == 2  # write 1, write 2 placed; the read cannot follow


def test_lost_update_by_compare_and_set() -> None:
    """Two read-modify-writes that both succeed from the same value (a lost update) are not linearizable."""
    ops = [op(1, ("cas", 0, 1), 0, 10, True), op(2, ("cas", 0, 1), 5, 15, True), op(3, ("r",), 20, 21, 1)]
    v = verdict(ops)
    assert v.result is Result.NOT_LINEARIZABLE
    assert {o.client for o in v.core} == {1, 2}  # the read is not needed to explain it
    assert "explains both" in v.message


def test_two_acknowledged_inserts_of_one_key() -> None:
    """Two overlapping inserts of one key both acknowledged break the uniqueness spec; one refused is fine."""
    both = [op(1, ("insert", "id=5", 1), 0, 2, "ok"), op(2, ("insert", "id=5", 2), 1, 3, "ok")]
    v = verdict(both, KeyValue())
    assert v.result is Result.NOT_LINEARIZABLE and set(v.core) == set(both)
    assert "client 1's INSERT id=5 1" in v.message and "client 2's INSERT id=5 2" in v.message
    refused = [both[0], op(2, ("insert", "id=5", 2), 1, 3, "duplicate", FAILED)]
    assert verdict(refused, KeyValue()).ok
    assert "failed with 'duplicate'" in verdict([refused[1]], KeyValue()).message


def test_failed_operation_is_checked_but_has_no_effect() -> None:
    """An error answer takes no effect (a later read cannot see it) but must be admitted by the model."""
    assert verdict([op(1, ("w", 2), 0, 1, None, FAILED), op(2, ("r",), 2, 3, 0)]).ok
    assert not verdict([op(1, ("w", 2), 0, 1, None, FAILED), op(2, ("r",), 2, 3, 2)]).ok
    lonely_duplicate = [op(1, ("insert", "k", 1), 0, 1, "duplicate", FAILED)]
    assert verdict(lonely_duplicate, KeyValue()).result is Result.NOT_LINEARIZABLE


def test_touching_intervals_count_as_concurrent() -> None:
    """An operation returning at the instant another is invoked may be ordered after it."""
    assert verdict([op(1, ("r",), 5, 6, 1), op(2, ("w", 1), 0, 5)]).ok
    assert not verdict([op(1, ("r",), 5.001, 6, 0), op(2, ("w", 1), 0, 5)]).ok


@pytest.mark.parametrize(
    ("reads", "linearizable"),
    [
        ([2], True),  # the lost write took effect
        ([1], True),  # it never happened
        ([1, 2], True),  # it took effect between the reads
        ([2, 1], False),  # once seen, its effect cannot be undone
        ([2, 2, 1], False),
    ],
)
def test_indeterminate_write_is_allowed_both_ways(reads: list[int], linearizable: bool) -> None:
    """A write that got no answer may have taken effect at any time after its invocation, or never."""
    ops = [op(1, ("w", 1), 0, 1), op(2, ("w", 2), 2, None)]
    ops += [op(3, ("r",), 10 + 2 * i, 11 + 2 * i, v) for i, v in enumerate(reads)]
    v = verdict(ops)
    assert v.ok is linearizable
    if not linearizable:
        assert all(o.determinate for o in v.core)


def test_indeterminate_write_cannot_act_before_its_invocation() -> None:
    """A read that returned before an unanswered write was sent cannot see that write."""
    assert not verdict([op(1, ("r",), 0, 1, 2), op(2, ("w", 2), 2, None)]).ok
    assert verdict([op(1, ("r",), 0, 3, 2), op(2, ("w", 2), 2, None)]).ok


def test_a_write_of_the_current_value_is_still_reordered() -> None:
    """A write that leaves the state as it is now may still have to go later (found by the property test:
    only failed and read-only operations may be placed at once)."""
    ops = [
        op(1, ("w", 1), 1, 4),
        op(2, ("w", 1), 6, 7),
        op(2, ("w", 2), 7, 8),  # touches the write before it: may go first
        op(0, ("cas", 2, 1), 10, 13, False),  # so the register holds 1 here
    ]
    assert verdict(ops).ok and verdict(ops, PlainRegister()).ok


def test_linearization_respects_outcomes_and_real_time() -> None:
    """The order an OK verdict gives replays through the spec and never puts an op before one that returned
    before it was invoked."""
    rng = random.Random(7)
    ops = simulate_kv(rng, clients=4, ops=60, indeterminate=0.1)
    v = check(ops, KeyValue())
    assert v.ok
    (order,) = v.linearizations
    spec, state = KeyValue(), KeyValue().initial()
    for o in order:
        nxt = spec.step(state, o.op, o.outcome, o.status) if o.determinate else spec.step_unknown(state, o.op)
        assert nxt is not None
        state = nxt
    assert {id(o) for o in ops if o.determinate} <= {id(o) for o in order}
    for i, a in enumerate(order):
        assert all(b.ret is None or b.ret >= a.invoke for b in order[i + 1 :])


def test_eight_clients_times_two_hundred_ops_need_no_recursion() -> None:
    """A 1,600-operation history of 8 clients on one part is checked (iteratively) and found linearizable."""
    ops = simulate_kv(random.Random(3), clients=8, ops=1600, keys=8)
    assert check(ops, KeyValue()).ok


# --- against brute force ----------------------------------------------------------------------------------


@st.composite
def small_register_histories(draw: st.DrawFn) -> list[Operation]:
    clients = draw(st.integers(2, 3))
    n = draw(st.integers(1, 6))
    clock = [draw(st.integers(0, 3)) for _ in range(clients)]
    out = []
    for _ in range(n):
        c = draw(st.integers(0, clients - 1))
        invoke = clock[c] + draw(st.integers(0, 2))
        ret = invoke + draw(st.integers(0, 4))
        clock[c] = ret
        kind = draw(st.sampled_from(["w", "w", "r", "r", "cas"]))
        request: tuple[object, ...] = (
            ("w", draw(st.integers(1, 2)))
            if kind == "w"
            else ("r",)
            if kind == "r"
            else ("cas", draw(st.integers(0, 2)), draw(st.integers(1, 2)))
        )
        status = draw(st.sampled_from([OK, OK, OK, FAILED, Status.INDETERMINATE]))
        outcome = draw(st.integers(0, 2)) if kind == "r" else draw(st.booleans()) if kind == "cas" else None
        if status is Status.INDETERMINATE:
            out.append(Operation(c, request, float(invoke), None, None, status))
        else:
            out.append(Operation(c, request, float(invoke), float(ret), outcome, status))
    return out


def _assert_agrees_with_brute_force(ops: list[Operation]) -> bool:
    expected = brute_force(Register(), ops)
    assert verdict(ops, PlainRegister()).result is (Result.OK if expected else Result.NOT_LINEARIZABLE), ops
    v = verdict(ops)
    assert v.result is (Result.OK if expected else Result.NOT_LINEARIZABLE), ops
    if not expected:
        _assert_minimal_witness(Register(), ops, v)
    return expected


def _assert_minimal_witness(spec: Register | KeyValue, ops: list[Operation], v: Verdict) -> None:
    """The verdict's set is a witness whatever the others did, on its own too, and 1-minimal (brute force)."""
    core_ids = {id(o) for o in v.core}
    assert v.core_minimal and v.core and not v.context
    others = [o for o in ops if id(o) not in core_ids]
    assert not brute_force(spec, ops, optional=others)  # a witness, whatever the others answered
    assert not brute_force(spec, list(v.core))  # and on its own
    for dropped in v.core:  # relaxing any one of it too makes the history linearizable
        assert brute_force(spec, ops, optional=[*others, dropped]), (dropped, v.core)


@settings(max_examples=400, deadline=None)
@given(small_register_histories())
def test_checker_agrees_with_brute_force(ops: list[Operation]) -> None:
    """On random histories of <= 6 ops and 2-3 clients the checker's verdict equals brute-force enumeration,
    and a non-linearizable verdict's set is a 1-minimal witness."""
    _assert_agrees_with_brute_force(ops)


def test_brute_force_comparison_covers_both_verdicts() -> None:
    """Over 300 seeded random small histories the checker agrees with brute force, with both verdicts well
    represented (so the comparison above holds in both directions)."""
    rng = random.Random(11)
    outcomes = []
    for _ in range(300):
        ops = _random_small(rng)
        outcomes.append(_assert_agrees_with_brute_force(ops))
    assert 60 <= sum(outcomes) <= 240, sum(outcomes)


def _random_small(rng: random.Random) -> list[Operation]:
    clients = rng.randint(2, 3)
    clock = [rng.randint(0, 3) for _ in range(clients)]
    out = []
    for _ in range(rng.randint(2, 6)):
        c = rng.randrange(clients)
        invoke = clock[c] + rng.randint(0, 2)
        ret = invoke + rng.randint(0, 4)
        clock[c] = ret
        kind = rng.choice(["w", "w", "r", "r", "cas"])
        request: tuple[object, ...] = (
            ("w", rng.randint(1, 2)) if kind == "w" else ("r",) if kind == "r" else ("cas", rng.randint(0, 2), 1)
        )
        status = rng.choice([OK, OK, OK, OK, FAILED, Status.INDETERMINATE])
        outcome = rng.randint(0, 2) if kind == "r" else rng.random() < 0.5 if kind == "cas" else None
        if status is Status.INDETERMINATE:
            out.append(Operation(c, request, float(invoke), None, None, status))
        else:
            out.append(Operation(c, request, float(invoke), float(ret), outcome, status))
    return out


# --- shrinking --------------------------------------------------------------------------------------------


def test_shrinker_finds_the_stale_read_among_noise() -> None:
    """A stale read hidden among 60 linearizable operations on other keys (one part) shrinks to exactly the
    overwriting put and the read."""
    noise = simulate_kv(random.Random(5), clients=4, ops=60, keys=3)
    w1 = op(7, ("put", "a", 1), 1.0, 1.2)
    w2 = op(8, ("put", "a", 2), 2.0, 2.2)
    stale = op(9, ("get", "a"), 3.0, 3.5, 1)
    v = check([*noise, w1, w2, stale], KeyValue())
    assert v.result is Result.NOT_LINEARIZABLE and v.core_minimal
    assert {id(o) for o in v.core} == {id(w2), id(stale)}


def test_shrinker_relaxes_operations_instead_of_deleting_them() -> None:
    """The set blames the stale read, not the innocent first read: greedy deletion would drop write 1 and be
    left with a lone read of 1 that nobody wrote; relaxing write 1 keeps that read explained."""
    ops = [op(1, ("w", 1), 0, 1), op(2, ("r",), 2, 3, 1), op(3, ("w", 2), 4, 5), op(4, ("r",), 6, 7, 1)]
    v = verdict(ops)
    assert sorted(o.client for o in v.core) == [3, 4] and v.core_minimal
    assert not brute_force(Register(), [ops[1]])  # what deletion would have reported: not the bug


def test_shrink_off_reports_the_whole_part() -> None:
    """With shrink=False the set is every answered operation of the failing part, flagged not minimal."""
    ops = [op(1, ("w", 1), 0, 1), op(2, ("w", 2), 2, 3), op(3, ("r",), 4, 5, 1), op(4, ("r",), 6, 7, 2)]
    v = verdict(ops, shrink=False)
    assert len(v.core) == 4 and not v.core_minimal and "may not be minimal" in v.message


# --- partitions -------------------------------------------------------------------------------------------


@st.composite
def kv_histories(draw: st.DrawFn) -> list[Operation]:
    clients = draw(st.integers(2, 3))
    clock = [0] * clients
    out = []
    for _ in range(draw(st.integers(1, 8))):
        c = draw(st.integers(0, clients - 1))
        invoke = clock[c] + draw(st.integers(0, 2))
        ret = invoke + draw(st.integers(0, 3))
        clock[c] = ret
        k = draw(st.sampled_from(["a", "b", "c"]))
        kind = draw(st.sampled_from(["put", "get", "insert"]))
        request: tuple[object, ...] = (kind, k) if kind == "get" else (kind, k, draw(st.integers(1, 2)))
        outcome: object = draw(st.sampled_from([None, 1, 2])) if kind == "get" else "ok"
        status = OK
        if kind == "insert" and draw(st.booleans()):
            outcome, status = "duplicate", FAILED
        if draw(st.integers(0, 9)) == 0:
            out.append(Operation(c, request, float(invoke), None, None, Status.INDETERMINATE))
        else:
            out.append(Operation(c, request, float(invoke), float(ret), outcome, status))
    return out


@settings(max_examples=300, deadline=None)
@given(kv_histories())
def test_partitioning_gives_the_same_verdict(ops: list[Operation]) -> None:
    """Checking each key alone gives the verdict of checking the whole history of independent keys (and of
    brute force, with a 1-minimal witness, on <= 6 operations)."""
    whole = check(ops, KeyValue())
    split = check(ops, PartitionedKeyValue())
    assert whole.result is split.result
    if len(ops) <= 6:
        assert whole.ok is brute_force(KeyValue(), ops)
        if not whole.ok:
            _assert_minimal_witness(KeyValue(), ops, whole)
    assert split.partitions == len({o.op[1] for o in ops})  # type: ignore[index]
    if not split.ok:
        assert len({o.op[1] for o in split.core}) == 1  # type: ignore[index]


def test_a_scan_joins_every_part() -> None:
    """An operation spanning keys joins their parts; one touching everything makes one part."""
    ops = [op(1, ("put", "a", 1), 0, 1), op(2, ("put", "b", 1), 0, 1), op(3, ("get", "c"), 0, 1)]
    assert check(ops, PartitionedKeyValue()).partitions == 3
    assert check([*ops, op(4, ("scan",), 2, 3, {"a": 1, "b": 1})], PartitionedKeyValue()).partitions == 1
    parts = connected_parts(ops, lambda o: {"a", "b"} if o.client == 1 else {o.op[1]})  # type: ignore[index]
    assert sorted(len(p) for p in parts) == [1, 2]


def test_a_partition_losing_an_operation_is_refused() -> None:
    """A spec partition that drops or repeats an operation raises UsageError naming the sizes."""

    class Broken(KeyValue):
        def partition(self, ops: list[Operation]) -> list[list[Operation]]:
            return [ops[:1]]

    with pytest.raises(UsageError, match="exactly one part"):
        check([op(1, ("put", "a", 1), 0, 1), op(2, ("put", "b", 1), 0, 1)], Broken())


# --- timeout ----------------------------------------------------------------------------------------------


def _hard_history(writers: int) -> list[Operation]:
    """Many fully concurrent writes and a read of a value nobody wrote: every order must be tried."""
    ops = [op(i, ("w", i + 1), 0, 100) for i in range(writers)]
    return [*ops, op(writers, ("r",), 0, 100, -1)]


def test_timeout_gives_unknown_never_a_verdict() -> None:
    """A search cut short by its timeout answers UNKNOWN with an 'unknown after' message, soon after it."""
    assert verdict(_hard_history(3), timeout=0).result is Result.UNKNOWN
    started = time.monotonic()
    v = verdict(_hard_history(18), timeout=0.2)
    assert time.monotonic() - started < 5
    assert v.result is Result.UNKNOWN and not v.ok
    assert v.message.startswith("unknown after ") and "timeout" in v.message
    assert not v.core and not v.linearizations


def test_without_timeout_the_hard_history_is_decided() -> None:
    """The same shape, smaller, is decided not linearizable: the read alone is the minimal set."""
    v = verdict(_hard_history(8))
    assert v.result is Result.NOT_LINEARIZABLE and [o.client for o in v.core] == [8]


def test_a_long_part_is_shrunk_against_a_frozen_background() -> None:
    """In one part of 120 operations over 4 keys a stale read shrinks to a minimal set given the recorded
    effects of earlier writes (Verdict.context), which the message mentions."""
    ops = simulate_kv(random.Random(2), clients=4, ops=120, keys=4)
    t = max(o.ret for o in ops if o.ret is not None) + 1
    w1, w2 = op(7, ("put", "k0", 1001), t, t + 0.1), op(8, ("put", "k0", 1002), t + 0.2, t + 0.3)
    stale = op(9, ("get", "k0"), t + 0.4, t + 0.5, 1001)
    v = check([*ops, w1, w2, stale], KeyValue())
    assert v.result is Result.NOT_LINEARIZABLE and v.core_minimal
    assert stale in v.core and len(v.core) <= 2 and v.context
    assert "given the effects of" in v.message
    assert all(o.status is Status.OK and o.op[0] != "get" for o in v.context)  # type: ignore[index]
