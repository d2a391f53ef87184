"""Mutation score of the tester: does the stateful machine find, attribute and shrink every planted defect?

Run: python benchmarks/detection.py [--seeds 5] [--fault NAME ...] [--max-examples 100] [--verbose]

For each fault of the catalogue (tests/detection/_faultbook.py; the live-query ones only once
``kalammodel.checks.live`` exists) and each seed 0..N-1, one embedded server with that fault runs the default
workload through ``run_machine`` until the first divergence, then the step reducer minimises it (``shrink="steps"``;
see docs/shrunk-cases.md). Reported per fault:
seeds that found it, the invariant named, median/max time to the first failure, median time spent shrinking,
shrunk lengths against the known minimal program. A hunt that ends in a tool error (not a divergence) counts as
not found and is printed with the error. Targets: every seed finds every fault, median time to first
failure <= 30 s, shrunk length <= minimal + 1. The last line is ``mutation score: found/planted``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "detection"))

from _faultbook import CASES, Hunt, embedded, hunt, live_checks_available  # noqa: E402

MEDIAN_FIRST_FAILURE_TARGET_S = 30.0


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:6.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds per fault (0..N-1)")
    ap.add_argument("--fault", action="append", default=[], help="only these faults (repeatable)")
    ap.add_argument("--max-examples", type=int, default=100, help="example budget per hunt")
    ap.add_argument("--verbose", action="store_true", help="also print one line per seed")
    args = ap.parse_args()

    live = live_checks_available()
    names = args.fault or [n for n, c in CASES.items() if live or not c.live]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    if not live:
        skipped = [n for n, c in CASES.items() if c.live]
        print(f"kalammodel.checks.live is not available: skipping {', '.join(skipped)}", flush=True)

    print(
        f"{'fault':32} {'found':>5} {'invariant(s)':28} {'t_first med/max s':>18} {'shrink med s':>12} "
        f"{'lengths (minimal)':>22} {'ok':>3}",
        flush=True,
    )
    found_all = 0
    all_ok = True
    started = time.perf_counter()
    for name in names:
        case = CASES[name]
        hunts: list[Hunt] = []
        with embedded((name,), case.server_args, case.workload) as server:
            for seed in range(args.seeds):
                began = time.perf_counter()
                try:
                    h = hunt(server, case, seed=seed, max_examples=args.max_examples)
                except Exception as exc:  # noqa: BLE001 - a tool error ends this hunt, not the benchmark
                    h = Hunt(None, None, time.perf_counter() - began, 0, error=f"{type(exc).__name__}: {exc}")
                hunts.append(h)
                if args.verbose or h.error:
                    print(
                        f"  {name} seed={seed}: found={h.failure is not None} invariant={h.invariant} "
                        f"t_first={_fmt(h.seconds_to_first_failure).strip()} "
                        f"shrink={_fmt(h.seconds_shrinking).strip()} length={h.shrunk_length}"
                        + (f" ERROR {h.error[:300]}" if h.error else ""),
                        flush=True,
                    )
        found = [h for h in hunts if h.failure is not None]
        firsts = [h.seconds_to_first_failure for h in found if h.seconds_to_first_failure is not None]
        shrinks = [h.seconds_shrinking for h in found if h.seconds_shrinking is not None]
        lengths = [h.shrunk_length for h in found]
        invariants = sorted({h.invariant or "?" for h in found})
        med_first = statistics.median(firsts) if firsts else None
        ok = (
            len(found) == len(hunts)
            and invariants == [case.invariant]
            and med_first is not None
            and med_first <= MEDIAN_FIRST_FAILURE_TARGET_S
            and all(n is not None and n <= case.minimal_length + 1 for n in lengths)
        )
        all_ok &= ok
        found_all += len(found) == len(hunts)
        print(
            f"{name:32} {len(found)}/{len(hunts):<3} {','.join(invariants) or '-':28} "
            f"{_fmt(med_first)} / {_fmt(max(firsts) if firsts else None):>7} "
            f"{_fmt(statistics.median(shrinks) if shrinks else None):>12} "
            f"{str(lengths) + f' ({case.minimal_length})':>22} {'yes' if ok else 'NO':>3}",
            flush=True,
        )
    print(
        f"total {time.perf_counter() - started:.0f} s; targets met for every fault: {'yes' if all_ok else 'no'}"
    )
    print(f"mutation score: {found_all}/{len(names)}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
