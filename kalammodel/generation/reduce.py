"""Step-level reduction of a failing program: delete and simplify steps while the replay still diverges.

Hypothesis shrinks the *choices* a program was drawn from. That simplifies values well, but a stateful program
against a server costs tens of milliseconds per attempt and Hypothesis makes thousands of attempts, most of them
to minimise integers; and steps that depend on each other (a table, then rows in it, then a flush of it) are hard
to delete through choice sequences. Because kalammodel's steps are data, a program can also be reduced
directly: replay it with a step (or a chunk of steps) left out, or with one step made simpler, and keep the
change when the replay still diverges on the same invariant. Deletions first in halves, then quarters, ...,
then one by one (ddmin), repeated until no single deletion or simplification keeps the failure: the result is
1-minimal, and every accepted candidate was itself replayed to a divergence, so the saved case replays.

Used after Hypothesis's shrinking (``--kalammodel-shrink=both``, the default) or instead of it
(``--kalammodel-shrink=steps``: the fast path for long runs and the detection tests).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import Divergence
from ..model import CANONICAL_STYLE
from ..steps import Flush, StartFlush, Step

if TYPE_CHECKING:
    from ..runner import RunResult

__all__ = ["Reduction", "reduce_steps", "simplifications", "table_slice"]


@attrs.define
class Reduction:
    """The reduced program, its divergence, and what the reduction cost."""

    steps: list[Step]
    divergence: Divergence
    replays: int
    seconds: float
    #: False when the original program did not diverge again on replay (a flaky failure): left as it was
    reproduced: bool = True
    #: whether one more replay of the result diverged too (None: not checked, e.g. not reproduced at all)
    confirmed: bool | None = None


def simplifications(step: Step) -> Iterator[Step]:
    """Simpler variants of ``step``, each one change away: the step written in the canonical SQL style (so a
    reduced case keeps a style only where the spelling matters); a multi-row INSERT cut to one row; an INSERT
    without one of its non-first columns (so that an ADD COLUMN it named can go too); a read, write or
    subscription without its WHERE, ORDER BY, OFFSET/LIMIT or projection. Variants that a step's validators
    refuse are skipped. Candidates that change what the program means are fine: only one that still diverges on
    the same invariant is kept."""
    canonical = getattr(step, "style", CANONICAL_STYLE) == CANONICAL_STYLE
    if type(step) is StartFlush:  # a flush that is waited for: the program stops depending on timing
        yield _waited(step)
        if not canonical:
            yield attrs.evolve(step, style=CANONICAL_STYLE)
        return
    if not attrs.has(type(step)):
        return
    fields = attrs.fields_dict(type(step))  # type: ignore[arg-type]
    changes: list[dict[str, Any]] = [] if canonical else [{"style": CANONICAL_STYLE}]
    rows = getattr(step, "rows", None)
    if "rows" in fields and isinstance(rows, tuple) and len(rows) > 1:
        changes += [{"rows": (row,)} for row in rows]
    if "rows" in fields and "types" in fields and isinstance(rows, tuple):
        columns = step.columns  # type: ignore[attr-defined]
        for j in range(len(columns) - 1, 0, -1):
            changes.append(
                {
                    "columns": columns[:j] + columns[j + 1 :],
                    "types": step.types[:j] + step.types[j + 1 :],  # type: ignore[attr-defined]
                    "rows": tuple(r[:j] + r[j + 1 :] for r in rows),
                }
            )
    for name, simpler in (("where", None), ("order_by", ()), ("offset", None), ("limit", None)):
        if name in fields and getattr(step, name) not in (None, ()):
            changes.append({name: simpler})
    if "rows" not in fields and "columns" in fields and step.columns is not None:  # type: ignore[attr-defined]
        changes.append({"columns": None})
    for change in changes:
        try:
            yield attrs.evolve(step, **change)  # type: ignore[misc]
        except (TypeError, ValueError):
            continue


#: tables a divergence message names: "full read of scope t0/user1", "subscription s1 (user1 on t0)"
_TABLES_IN_MESSAGE = re.compile(r"\bscope (\w+)/|\(\w+ on (\w+)\)")


def _tables_of(step: Step, sub_tables: dict[str, str]) -> set[str]:
    """The tables ``step`` acts on: its own, or (live steps naming a subscription) the subscription's."""
    table = getattr(step, "table", None)
    if isinstance(table, str):
        return {table}
    subs = (getattr(step, "sub_id", None), getattr(step, "from_sub", None))
    return {sub_tables[s] for s in subs if isinstance(s, str) and s in sub_tables}


def table_slice(steps: Sequence[Step], divergence: Divergence) -> list[Step] | None:
    """``steps`` without the steps on tables the failure is not about: one candidate that drops, in one
    replay, what ddmin would take one chunk at a time. The failure's tables: the diverging (last) step's and
    any ``scope <table>/`` its message names. Steps on no table (pauses, restarts) stay. None when nothing
    would go."""
    if not steps:
        return None
    sub_tables: dict[str, str] = {}
    for step in steps:
        sub = getattr(step, "sub_id", None)
        table = getattr(step, "table", None)
        if isinstance(sub, str) and isinstance(table, str):
            sub_tables[sub] = table
        elif isinstance(sub, str) and getattr(step, "from_sub", None) in sub_tables:
            sub_tables[sub] = sub_tables[step.from_sub]  # type: ignore[attr-defined]
    named = {a or b for a, b in _TABLES_IN_MESSAGE.findall(divergence.message or "")}
    keep = _tables_of(steps[-1], sub_tables) | named
    if not keep:
        return None
    sliced = [s for s in steps if not (tables := _tables_of(s, sub_tables)) or tables & keep]
    return sliced if len(sliced) < len(steps) else None


def _waited(step: Step) -> Flush:
    return Flush(step.actor, step.table, step.as_user, style=step.style)  # type: ignore[attr-defined]


class _Reducer:
    """The replay budget and memo of one reduction, and its passes over the program."""

    def __init__(
        self,
        replay: Callable[[Sequence[Step]], RunResult],
        invariant: str,
        max_replays: int,
        max_seconds: float,
    ):
        self.replay = replay
        self.invariant = invariant
        self.max_replays = max_replays
        self.max_seconds = max_seconds
        self.started = time.monotonic()
        self.replays = 0
        self.tried: set[tuple[Step, ...]] = set()

    def budget_left(self) -> bool:
        return self.replays < self.max_replays and time.monotonic() - self.started < self.max_seconds

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def attempt(self, candidate: list[Step], memo: bool = True) -> tuple[list[Step], Divergence] | None:
        seen = False
        if memo:
            try:
                seen = tuple(candidate) in self.tried
                self.tried.add(tuple(candidate))
            except TypeError:  # a step holding an unhashable value: no memo
                pass
        if seen:
            return None  # replayed before without the divergence (or it would be the current best)
        self.replays += 1
        result = self.replay(candidate)
        div = getattr(result, "divergence", None)
        if div is None or div.invariant != self.invariant:
            return None
        # Steps after the diverging one never ran: the program ends there.
        run = getattr(result, "steps_run", len(candidate)) or len(candidate)
        return list(candidate[:run]), div

    def delete_chunks(self, best: list[Step], best_div: Divergence, first_pass: bool) -> _Best:
        """Leave out chunks of steps, from the end: halves, quarters, ... on the first pass; later passes only
        retry single steps (a failure found by a long program usually needs a handful of its steps: the big
        cuts succeed or fail on the first pass, and each replay of a program with a pause costs a STREAM TTL)."""
        changed = False
        chunk = max(1, len(best) // 2) if first_pass else 1
        while chunk >= 1 and self.budget_left():
            i = len(best) - chunk
            while i >= 0 and self.budget_left():
                candidate = best[:i] + best[i + chunk :]
                found = self.attempt(candidate) if candidate else None
                if found is not None:
                    best, best_div = found
                    changed = True
                    i = min(i, len(best)) - chunk
                else:
                    i -= chunk
            chunk //= 2
        return best, best_div, changed

    def simplify(self, best: list[Step], best_div: Divergence) -> _Best:
        """Replace each step by the first of its :func:`simplifications` that still diverges."""
        changed = False
        for index in range(len(best)):
            if not self.budget_left() or index >= len(best):
                break
            for simpler in simplifications(best[index]):
                found = self.attempt(best[:index] + [simpler] + best[index + 1 :])
                if found is not None:
                    best, best_div = found
                    changed = True
                    break
        return best, best_div, changed


#: a reduction pass's outcome: the best program, its divergence, whether the pass changed it
_Best = tuple[list[Step], Divergence, bool]


def reduce_steps(
    replay: Callable[[Sequence[Step]], RunResult],
    steps: Sequence[Step],
    divergence: Divergence,
    *,
    max_replays: int = 400,
    max_seconds: float = 300.0,
) -> Reduction:
    """Reduce ``steps`` (which diverged with ``divergence``) to a 1-minimal program diverging on the same invariant.

    ``replay(steps)`` runs a program on a fresh namespace and returns a :class:`kalammodel.runner.RunResult`
    (``Runner.run_steps``). Stops early after ``max_replays`` replays or ``max_seconds``; whatever was reduced
    by then is kept.
    """
    r = _Reducer(replay, divergence.invariant, max_replays, max_seconds)
    first = r.attempt(list(steps))
    if first is None:
        return Reduction(list(steps), divergence, r.replays, r.seconds(), reproduced=False)
    best, best_div = first
    # A failure that needs a flush to be still running is timing-dependent and may not replay; if the failure
    # also shows with every flush waited for, keep that deterministic program.
    if any(type(s) is StartFlush for s in best):
        found = r.attempt([_waited(s) if type(s) is StartFlush else s for s in best])
        if found is not None:
            best, best_div = found

    # One replay that keeps only the steps on the failure's tables (most long programs touch three tables).
    sliced = table_slice(best, best_div)
    if sliced is not None:
        found = r.attempt(sliced)
        if found is not None:
            best, best_div = found

    changed = True
    first_pass = True
    while changed and r.budget_left():
        best, best_div, deleted = r.delete_chunks(best, best_div, first_pass)
        first_pass = False
        best, best_div, simplified = r.simplify(best, best_div)
        changed = deleted or simplified
    confirmed = r.attempt(best, memo=False) is not None if r.replays < max_replays else None
    return Reduction(best, best_div, r.replays, r.seconds(), confirmed=confirmed)
