"""Cost of the model as a linearizability spec (kalammodel.parallel.ModelSpec); no server.

Run: /tmp/venv/bin/python benchmarks/parallel_spec.py [--rows 3,100,1000] [--sizes 4x6,8x6,4x50,8x50] [--seed 1]

Part 1, per state operation on a USER scope of ``--rows`` rows: ``key(state)`` (the structural fingerprint),
``step`` of a by-PK UPDATE on a copy-on-write state, and the same step on a full ``copy.deepcopy`` of the model
(what copy-on-write saves).

Part 2, the checker on simulated section histories through the real model: K clients each run N steps (the
parallel generator's mix: single-row INSERT, UPDATE and DELETE by PK, SELECT by PK or in full, COUNT(*)) on
one user's scope of 3 keys; each takes effect at a random instant of its interval on one sequential model,
whose expectation becomes the outcome (so the history is linearizable), then a closing full read. Reported:
the median check time of ``--repeat`` histories per size.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import sys
import time

from kalammodel.history import Operation, Status, check
from kalammodel.model import (
    ACTOR_ROLES,
    Cmp,
    Column,
    ColumnType,
    ExpectCount,
    ExpectError,
    ExpectOk,
    ExpectRows,
    Model,
    Outcome,
    TableSpec,
)
from kalammodel.parallel import ModelSpec
from kalammodel.steps import Count, Delete, Insert, Select, Step, Update

B = ColumnType.BIGINT


def model_of(rows: int) -> Model:
    model = Model(actors=dict(ACTOR_ROLES))
    model.create_table("root", TableSpec("t1", "USER", [Column("id", B, primary_key=True), Column("v", B)]))
    if rows:
        model.insert("user1", "t1", ["id", "v"], [B, B], [(k, k) for k in range(1, rows + 1)])
    return model


def per_call(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def part1(rows_list: list[int]) -> None:
    print("state operations on one USER scope (microseconds per call):")
    print(f"  {'rows':>6} {'key()':>10} {'step (cow)':>12} {'step (deepcopy)':>16}")
    for rows in rows_list:
        key, cow, full = state_costs(rows)
        print(f"  {rows:>6} {key * 1e6:>10.1f} {cow * 1e6:>12.1f} {full * 1e6:>16.1f}")


def state_costs(rows: int) -> tuple[float, float, float]:
    """Seconds per key(), per copy-on-write step, per deep-copy step, on a scope of ``rows`` rows."""
    step = Update.by_pk("user1", "t1", "id", B, 1, [("v", B, 7)])
    spec = ModelSpec(model_of(rows), [step])
    state = spec.initial()
    outcome = Outcome(ok=True, row_count=1)
    n = max(20, 20000 // max(rows, 1))

    def deep() -> None:
        step.apply(copy.deepcopy(state))

    key = per_call(lambda: spec.key(state), n)
    cow = per_call(lambda: spec.step(state, step, outcome, Status.OK), n)
    return key, cow, per_call(deep, max(5, n // 10))


def outcome_of(expectation: object, seq: int) -> Outcome:
    if isinstance(expectation, ExpectError):
        return Outcome(
            ok=False, status=expectation.status or 400, code=expectation.codes[0], message="refused"
        )
    if isinstance(expectation, ExpectOk):
        return Outcome(ok=True, row_count=expectation.affected or 0)
    if isinstance(expectation, ExpectCount):
        return Outcome(ok=True, columns=(expectation.column,), rows=((expectation.low,),), row_count=1)
    assert isinstance(expectation, ExpectRows)
    rows = tuple(
        tuple(seq if c == "_seq" else v for c, v in zip(expectation.columns, r)) for r in expectation.rows
    )
    return Outcome(ok=True, columns=expectation.columns, rows=rows, row_count=len(rows))


def random_step(rng: random.Random) -> Step:
    """One step of the parallel generator's mix on user1's scope of t1, keys 1..3."""
    k, v, what = rng.randint(1, 3), rng.randint(0, 99), rng.choice(KINDS)
    if what == "insert":
        return Insert("user1", "t1", ("id", "v"), (B, B), ((k, v),))
    if what == "update":
        return Update.by_pk("user1", "t1", "id", B, k, [("v", B, v)])
    if what == "delete":
        return Delete.by_pk("user1", "t1", "id", B, k)
    if what == "get":
        return Select("user1", "t1", where=Cmp("id", B, "=", k))
    if what == "scan":
        return Select("user1", "t1", order_by=(("id", False),))
    return Count("user1", "t1")


KINDS = ("insert", "insert", "update", "update", "delete", "get", "scan", "count")


def simulate(rng: random.Random, clients: int, steps: int) -> tuple[Model, list[Operation]]:
    model = model_of(2)
    programs = [[random_step(rng) for _ in range(steps)] for _ in range(clients)]
    intervals: list[tuple[float, float, float, int, Step]] = []
    for c, program in enumerate(programs):
        now = rng.uniform(0, 0.001)
        for step in program:
            invoke, ret = now, now + rng.uniform(0.0002, 0.002)
            intervals.append((rng.uniform(invoke, ret), invoke, ret, c, step))
            now = ret + rng.uniform(0, 0.0003)
    live = copy.deepcopy(model)
    history: list[Operation] = []
    for i, (_, invoke, ret, c, step) in enumerate(sorted(intervals, key=lambda x: x[0])):
        outcome = outcome_of(step.apply(live)[0], i)
        history.append(Operation(c, step, invoke, ret, outcome, Status.OK if outcome.ok else Status.FAILED))
    end = max(r for _, _, r, _, _ in intervals)
    scan = Select("user1", "t1", order_by=(("id", False),))
    history.append(
        Operation(clients, scan, end + 0.001, end + 0.002, outcome_of(scan.apply(live)[0], 0), Status.OK)
    )
    return model, history


def part2(sizes: list[tuple[int, int]], repeat: int, seed: int) -> None:
    print("checker on simulated section histories (one scope, 3 keys):")
    rng = random.Random(seed)
    for clients, steps in sizes:
        times = []
        for _ in range(repeat):
            model, history = simulate(rng, clients, steps)
            spec = ModelSpec(model, [o.op for o in history])
            verdict = check(history, spec, timeout=60)
            assert verdict.ok, verdict.message
            times.append(verdict.elapsed)
        print(f"  {clients} clients x {steps} steps: median {statistics.median(times) * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms over {repeat} histories")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="3,100,1000")
    parser.add_argument("--sizes", default="4x6,8x6,4x50,8x50")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"$ {' '.join(sys.argv)}  (cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f})")
    part1([int(r) for r in args.rows.split(",")])
    part2(
        [(int(a), int(b)) for a, b in (s.split("x") for s in args.sizes.split(","))], args.repeat, args.seed
    )


if __name__ == "__main__":
    main()
