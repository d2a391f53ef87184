"""Per-step cost of the live-query checks: steps/s of one write-heavy program with 0, 1 and 3 subscriptions.

Usage: ``python benchmarks/live_wait.py [--steps N] [--url URL --root-password P]`` (default: spawn the
embedded server). Each program inserts and updates rows of one USER table; with subscriptions open every step
waits for the changes the model expects (the runner's full checks are off here to isolate the live cost:
``check_every`` = N, so the quiet window runs once, at the end).
"""

from __future__ import annotations

import argparse
import time

from kalammodel.checks.live import live_extension
from kalammodel.model import Cmp, Column, ColumnType, TableSpec
from kalammodel.runner import Runner
from kalammodel.steps import CreateTable, Insert, Step, Subscribe, Update
from kalammodel.targets import ActorPool, EmbeddedTarget, RemoteTarget

B = ColumnType.BIGINT
COLS = (Column("id", B, nullable=False, primary_key=True), Column("n", B, nullable=False))


def program(steps: int, subscriptions: int) -> list[Step]:
    out: list[Step] = [CreateTable("user1", TableSpec("t", "USER", COLS))]
    for i in range(subscriptions):
        where = None if i % 2 == 0 else Cmp("n", B, ">=", 0)
        out.append(Subscribe("user1", "t", f"s{i}", where=where, snapshot=i % 3 != 2))
    for i in range(steps):
        if i % 2 == 0:
            out.append(Insert("user1", "t", ("id", "n"), (B, B), ((i, i),)))
        else:
            out.append(Update("user1", "t", (("n", B, i * 10),), Cmp("id", B, "=", i - 1)))
    return out


def run(runner: Runner, steps: int, subscriptions: int) -> float:
    prog = program(steps, subscriptions)
    started = time.perf_counter()
    result = runner.run_steps(prog)
    elapsed = time.perf_counter() - started
    if not result.ok:
        raise SystemExit(f"benchmark program diverged: {result.divergence or result.error}")
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--url")
    parser.add_argument("--root-password")
    args = parser.parse_args()
    target = RemoteTarget(args.url, args.root_password) if args.url else EmbeddedTarget()
    target.start()
    try:
        pool = ActorPool.for_target(target)
        warm = Runner(
            target, pool, check_every=args.steps + 10, cold_checks=False, extensions=[live_extension]
        )
        run(warm, min(args.steps, 50), 1)  # warm up the server, the pool's logins and the WebSocket path
        for subs in (0, 1, 3):
            runner = Runner(
                target, pool, check_every=args.steps + 10, cold_checks=False, extensions=[live_extension]
            )
            rate = run(runner, args.steps, subs)
            print(f"{subs} subscription(s): {rate:7.1f} steps/s  ({1000 / rate:6.2f} ms/step)")
    finally:
        target.close()


if __name__ == "__main__":
    main()
