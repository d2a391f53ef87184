"""Drawing parallel programs with Hypothesis, and running them: ``--kalammodel-parallel K``.

:func:`parallel_programs` is a small strategy of its own (not the sequential state machine): a prefix that
creates one or two tables (USER or SHARED, ``id BIGINT PRIMARY KEY, v BIGINT``) and inserts some rows, then
2 to K clients of 2 to 6 steps each over a key space of :data:`KEYS` keys, so that clients conflict (the
same keys; two inserts of one key by two clients), then a suffix of full reads and counts of every scope
the section may have touched. Actors: USER tables mostly ``user1`` (one scope the clients share),
sometimes ``user2``; SHARED tables ``root``, ``dba`` and ``svc`` (a role ``user`` may not write them).

The draw reads nothing of the server or the model, so a choice sequence always gives the same program and
Hypothesis shrinks programs freely (fewer clients, fewer and simpler steps, smaller keys and values).

:func:`run_parallel` runs programs under Hypothesis (``@given``), time-budgeted like ``run_machine``, and
returns the :class:`ParallelFailure` of the minimal failing program, or None.
"""

from __future__ import annotations

import random
import sys
import time
from typing import TYPE_CHECKING

import attrs
from hypothesis import given
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky

from ..errors import Divergence, UsageError
from ..generation import pinned_constants
from ..model import Cmp, Column, ColumnType, TableKind, TableSpec
from ..steps import Count, CreateTable, Delete, Insert, Select, Step, Update
from .program import MAX_CLIENTS, MIN_CLIENTS, ParallelProgram, step_table
from .run import ParallelStats, run_program

if TYPE_CHECKING:
    from ..runner import Runner

if sys.version_info < (3, 11):  # pragma: no cover - Hypothesis depends on the backport there
    from exceptiongroup import BaseExceptionGroup

__all__ = ["KEYS", "ParallelFailure", "check_parallel", "parallel_programs", "run_parallel"]

#: the keys the clients fight over (1..KEYS)
KEYS = 3
_COLUMNS = ("id", "v")
_TYPES = (ColumnType.BIGINT, ColumnType.BIGINT)
_USER_ACTORS = ("user1", "user1", "user1", "user2")
_SHARED_ACTORS = ("root", "dba", "svc")
_KINDS = ("insert", "insert", "update", "update", "delete", "select_key", "select_all", "count")
#: examples per round of a time-budgeted run
BUDGET_ROUND = 25


def check_parallel(clients: int | None) -> None:
    """UsageError unless ``--kalammodel-parallel`` is 0 (sequential) or MIN_CLIENTS..MAX_CLIENTS."""
    if clients is None or clients == 0:
        return
    if not MIN_CLIENTS <= clients <= MAX_CLIENTS:
        raise UsageError(
            f"--kalammodel-parallel must be 0 (sequential programs) or {MIN_CLIENTS} to {MAX_CLIENTS} parallel "
            f"clients (got {clients})"
        )


def _spec(name: str, kind: TableKind) -> TableSpec:
    columns = (Column("id", ColumnType.BIGINT, primary_key=True), Column("v", ColumnType.BIGINT))
    return TableSpec(name, kind, columns)


def _insert(actor: str, table: str, key: int, value: int) -> Insert:
    return Insert(actor, table, _COLUMNS, _TYPES, ((key, value),))


@st.composite
def _section_step(draw: st.DrawFn, tables: tuple[tuple[str, TableKind], ...]) -> Step:
    name, kind = draw(st.sampled_from(tables))
    actor = draw(st.sampled_from(_USER_ACTORS if kind is TableKind.USER else _SHARED_ACTORS))
    what = draw(st.sampled_from(_KINDS))
    key = draw(st.integers(1, KEYS))
    if what == "insert":
        return _insert(actor, name, key, draw(st.integers(0, 99)))
    if what == "update":
        return Update.by_pk(
            actor, name, "id", ColumnType.BIGINT, key, [("v", ColumnType.BIGINT, draw(st.integers(0, 99)))]
        )
    if what == "delete":
        return Delete.by_pk(actor, name, "id", ColumnType.BIGINT, key)
    if what == "select_key":
        return Select(actor, name, where=Cmp("id", ColumnType.BIGINT, "=", key))
    if what == "select_all":
        return Select(actor, name, order_by=(("id", False),))
    return Count(actor, name)


def _suffix(tables: tuple[tuple[str, TableKind], ...], clients: tuple[tuple[Step, ...], ...]) -> list[Step]:
    """A full read and a count of every scope a client step acted in (as its owner; root for SHARED)."""
    out: list[Step] = []
    for name, kind in tables:
        actors = sorted({s.actor for c in clients for s in c if step_table(s) == name})
        if kind is TableKind.SHARED:
            actors = ["root"] if actors else []
        for actor in actors:
            out += [Select(actor, name, order_by=(("id", False),)), Count(actor, name)]
    return out


@st.composite
def parallel_programs(draw: st.DrawFn, max_clients: int = 4) -> ParallelProgram:
    """A parallel program of 2 to ``max_clients`` clients (module docstring)."""
    check_parallel(max_clients)
    n_tables = draw(st.integers(1, 2))
    tables = tuple(
        (f"t{i + 1}", draw(st.sampled_from((TableKind.USER, TableKind.SHARED)))) for i in range(n_tables)
    )
    prefix: list[Step] = [CreateTable("root", _spec(name, kind)) for name, kind in tables]
    for name, kind in tables:
        actors = _USER_ACTORS if kind is TableKind.USER else _SHARED_ACTORS
        for key in draw(st.sets(st.integers(1, KEYS), max_size=KEYS)):
            prefix.append(_insert(draw(st.sampled_from(actors)), name, key, draw(st.integers(0, 99))))
    # shrinks towards 2 clients (the first branch), drawn as often at the most
    n_clients = draw(st.one_of(st.integers(MIN_CLIENTS, max_clients), st.just(max_clients)))
    clients = tuple(
        tuple(draw(st.lists(_section_step(tables), min_size=2, max_size=6))) for _ in range(n_clients)
    )
    return ParallelProgram(prefix, clients, _suffix(tables, clients))


@attrs.define
class ParallelFailure:
    """A parallel program the server disagreed on, and the divergence (Hypothesis's minimal example)."""

    program: ParallelProgram
    divergence: Divergence
    #: Hypothesis saw the program pass on a replay: a race (the interleaving decides)
    flaky: bool = False


def run_parallel(
    runner: Runner,
    max_clients: int,
    *,
    settings: Settings | None = None,
    seed: int | None = None,
    budget_s: float | None = None,
    stats: ParallelStats | None = None,
) -> ParallelFailure | None:
    """Run parallel programs under Hypothesis (``settings``: default the loaded profile); the minimal failure.

    ``budget_s``: rounds of :data:`BUDGET_ROUND` examples with new seeds until the budget is spent (as
    ``run_machine``). Errors that are not divergences (a tool bug, a dead target) propagate.
    """
    check_parallel(max_clients)
    stats = stats if stats is not None else ParallelStats()
    base = settings if settings is not None else Settings()
    base = Settings(base, deadline=None)
    if budget_s is None:
        return _run_once(runner, max_clients, base, seed, stats)
    rounds = Settings(base, max_examples=min(BUDGET_ROUND, base.max_examples), derandomize=False)
    first = random.SystemRandom().randrange(2**32) if seed is None else seed
    stop_at = time.monotonic() + budget_s
    i = 0
    while time.monotonic() < stop_at:
        failure = _run_once(runner, max_clients, rounds, first + i, stats)
        if failure is not None:
            return failure
        i += 1
    return None


def _run_once(
    runner: Runner, max_clients: int, settings: Settings, seed: int | None, stats: ParallelStats
) -> ParallelFailure | None:
    failures: list[ParallelFailure] = []

    @Settings(settings)
    @given(program=parallel_programs(max_clients))
    def parallel_program_agrees_with_the_model(program: ParallelProgram) -> None:
        try:
            run_program(runner, program, stats=stats)
        except Divergence as div:
            failures.append(ParallelFailure(program, div))
            raise

    test = parallel_program_agrees_with_the_model
    if seed is not None:
        from hypothesis import seed as use_seed

        test = use_seed(seed)(test)
    try:
        with pinned_constants():
            test()
    except Divergence:
        return failures[-1]
    except (Flaky, BaseExceptionGroup) as exc:
        if not failures:
            raise
        last = failures[-1]
        last.flaky = isinstance(exc, Flaky)
        return last
    return None
