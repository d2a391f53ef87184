"""The Hypothesis state machine: one rule that draws a Step and hands it to the runner.

Each rule call draws one operation by its workload weight among those that apply now (``step``), draws the
operation's arguments from the current model state, and runs the step through
:class:`kalammodel.runner.Session`. The operations, their weights, preconditions and the functions that draw
their arguments are records of :mod:`kalammodel.generation.operations`; this module holds the machine's own
records (who wrote which table, the flushes it started, ...) and the helpers the draw functions share. The
``tables`` bundle holds the tables created so far; keys are drawn from the model (live, deleted, cold or
subscribed rows of an owner's scope), which knows more than a bundle of written keys could. Swarm testing:
each example leaves out a random subset of the workload's operations, so that some examples hammer a few
operations hard.

On a divergence the machine remembers the step list of the run (``KalamStateMachine.last_failure``); because
Hypothesis replays the minimal failing example last, that is the shrunk program the corpus saves. With a
:class:`~kalammodel.generation.known_bugs.KnownBugPolicy` in ``report`` mode, a divergence that matches a known
KalamDB bug is counted instead and the example ends there: no further step runs (each later rule call returns
at once), the final comparison is skipped, and Hypothesis sees a passing example.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
from hypothesis import event, note
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, multiple, rule

from ..checks.restart import can_restart
from ..errors import Divergence
from ..model import Column, Role, TableKind, TableState
from ..steps import Step
from ._ddl import create_table
from ._styles import restyle, sql_styles, styled
from .known_bugs import KnownBugPolicy, known_bug_line
from .operations import BY_NAME, FALLBACK, REGISTRY
from .strategies import weighted

if TYPE_CHECKING:
    from ..runner import Runner
    from ..verdicts import KnownBug
    from .reduce import Reduction
    from .workloads import Workload

__all__ = ["SYNTHETIC_USERS", "Failure", "KalamStateMachine", "StepHook", "machine_for"]

#: Synthetic user ids reached only through EXECUTE AS USER (they need no CREATE USER, PROTOCOL §6.3).
SYNTHETIC_USERS = ("syn_a", "syn_b")

#: an extra check run after each step with the machine and the step, e.g. live-query subscriptions
StepHook = Callable[["KalamStateMachine", Step], object]


@attrs.define
class Failure:
    """The steps of a run that diverged, and the divergence."""

    steps: list[Step]
    divergence: Divergence
    #: further distinct failures Hypothesis found in the same run (each with its own minimal steps)
    others: list[Failure] = attrs.Factory(list)
    #: the step-level reduction applied after (or instead of) Hypothesis's shrinking, if any
    reduction: Reduction | None = None
    #: the known KalamDB bug the divergence matches (set by the driver on the final failures), if any
    known_bug: KnownBug | None = None


class KalamStateMachine(RuleBasedStateMachine):
    """Configured by :func:`machine_for` (runner and workload); see the module docstring."""

    runner: ClassVar[Runner | None] = None
    workload: ClassVar[Workload | None] = None
    last_failure: ClassVar[Failure | None] = None
    #: every divergence met, in order (Hypothesis replays each distinct minimal failure last)
    failures: ClassVar[list[Failure]] = []
    #: extra checks run after each step, e.g. live-query subscriptions (kalammodel.checks.live)
    step_hooks: ClassVar[tuple[StepHook, ...]] = ()
    #: how known-bug divergences are treated (None: as any divergence, and no example is observed)
    known_bugs: ClassVar[KnownBugPolicy | None] = None

    tables = Bundle("tables")

    def __init__(self) -> None:
        super().__init__()
        runner, workload = type(self).runner, type(self).workload
        if runner is None or workload is None:
            raise RuntimeError("KalamStateMachine must be configured with machine_for(runner, workload)")
        self.wl: Workload = workload  # the class's workload, known to be set
        self.session = runner.session()
        self.model = self.session.model
        self.ops = dict(workload.operations.items)
        self.enabled: set[str] = {op for op, w in self.ops.items() if w > 0}
        self.failed = False
        #: the known bug this example met (report mode): it runs no further step
        self.met_known_bug: KnownBug | None = None
        self.paused = False
        self.who_used: dict[str, list[tuple[str, str | None]]] = {}  # per table, in order of first use
        self.flushing: set[str] = set()  # tables with a StartFlush not yet awaited (machine's own record)
        self.restarted = False
        self.can_restart = can_restart(runner.target)
        self.table_count = 0
        self.actors = {name: Role(runner.pool.role(name)) for name in runner.pool.names}
        self.sub_count = 0
        self.sub_opened: dict[str, int] = {}  # subscription id -> index of the step that opened it
        self.resumed: set[str] = set()  # subscriptions resumed from already (each at most once)
        self.data: st.DataObject | None = None  # the current rule's draws (the step's SQL style is drawn from it)

    # ------------------------------------------------------------------ the rules

    @initialize(target=tables, data=st.data())
    def first_table(self, data: st.DataObject) -> Any:  # Any: a table name or Hypothesis's multiple()
        self.data = data
        self._draw_swarm(data)
        return create_table(self, "", data, "create_table")

    def _draw_swarm(self, data: st.DataObject) -> None:
        """Swarm testing: each example leaves out some of the workload's operations (each one in four).

        Examples that never flush, or never read, or only write and flush, hammer what remains much harder
        than an even mix does (Groce et al., "Swarm testing", ISSTA 2012). Plain inserts are never left out:
        every other operation needs rows. The draws shrink towards "everything on".
        """
        for op in sorted(self.enabled):
            if op in BY_NAME and BY_NAME[op].always_on:
                continue
            if data.draw(st.integers(0, 3), label=f"swarm: leave out {op}?") == 3:
                self.enabled.discard(op)

    @rule(target=tables, table=tables, data=st.data())
    def step(self, table: str, data: st.DataObject) -> Any:  # Any: a table name or Hypothesis's multiple()
        """One step: an operation drawn by its workload weight among those that apply now, then its arguments.

        One rule, so that the workload's weights are the operation mix (Hypothesis picks among rules
        uniformly) and every rule call runs a step. ``table`` is drawn from the bundle for the operations that
        act on a table; the others (awaiting a flush, the live-query steps on subscriptions, pause, restart)
        ignore it. The operation draw shrinks towards the first choice, a plain INSERT.
        """
        if self.met_known_bug is not None:  # the example ended at a known bug: the remaining calls are no-ops
            return multiple()
        self.data = data
        choices = self._choices(table)
        op = BY_NAME[data.draw(_weighted_choice(tuple(choices)), label="operation")]
        result = op.draw(self, table, data, op.name)
        return result if op.creates_table else multiple()

    def _choices(self, table: str) -> list[tuple[str, float]]:
        """(operation, weight) for every enabled operation whose precondition holds with ``table`` drawn."""
        state = self.table_state(table)
        stream = state is not None and state.kind is TableKind.STREAM
        out: list[tuple[str, float]] = []
        for op in REGISTRY:
            weight = op.weight(self, op)
            if weight > 0 and op.applies(self, state, stream):
                out.append((op.name, weight))
        if not out:  # a dropped table with nothing else to do: an insert is refused and checked as such
            out.append((FALLBACK, 1.0))
        return out

    def own_weight(self, name: str) -> float:
        """The workload weight of operation ``name`` in this example: 0 when the swarm left it out."""
        return self.ops.get(name, 0) if name in self.enabled else 0.0

    # ------------------------------------------------------------------ helpers of the draw functions

    def run(self, step: Step) -> None:
        """Run ``step`` in the session, then the step hooks; record the failure on a divergence.

        After a known bug went past (report mode) nothing runs: a draw function that runs several steps stops.
        A step that sends SQL is written in a style drawn here, after its arguments (``generation/_styles.py``).
        """
        if self.met_known_bug is not None:
            return
        if styled(step) and self.data is not None:
            step = restyle(step, self.data.draw(sql_styles(), label="style"))
        event(f"step: {step.kind}")
        note(f"#{self.session.step_index + 1} {step.describe()}")
        try:
            self.session.run(step)
            if self.step_hooks:
                self.session.settle()  # a hook sees the step verified, as without send_ahead
            for hook in self.step_hooks:
                hook(self, step)
        except Divergence as div:
            if self._goes_past(div):
                return
            self.failed = True
            self._record(div)
            raise

    def _goes_past(self, div: Divergence) -> bool:
        """Whether ``div`` is a known bug the policy reports and goes past: then it is counted, noted, and the
        example ends (no further step, no final comparison)."""
        policy = type(self).known_bugs
        bug = None if policy is None else policy.go_past(div, self.session.steps)
        if bug is None:
            return False
        self.met_known_bug = bug
        event(bug.label)
        note(f"{known_bug_line(bug)}: [{div.invariant}] {div.message}")
        return True

    def _record(self, div: Divergence) -> None:
        failure = Failure(list(self.session.steps), div)
        type(self).last_failure = failure
        type(self).failures.append(failure)

    def names_by_role(self, *roles: Role) -> list[str]:
        return sorted(n for n, r in self.actors.items() if r in roles)

    def who(
        self, data: st.DataObject, kind: TableKind, write: bool, table: str | None = None
    ) -> tuple[str, str | None]:
        """An acting identity and an optional EXECUTE AS target that is allowed for this table kind.

        Sticky per table: three writes in four (one read in two) reuse a (identity, EXECUTE AS) pair already
        used on the table, so that sequences on one owner's rows (insert, flush, delete, flush, read) are
        common, while every pair stays reachable. Bugs live in such sequences; scattering rows over a dozen owners hides them.
        """
        if kind is TableKind.SHARED:
            roles = (Role.SERVICE, Role.DBA, Role.SYSTEM) if write else tuple(Role)
            return data.draw(st.sampled_from(self.names_by_role(*roles) or ["root"]), label="actor"), None
        used = self.who_used.get(table, []) if table is not None else []
        # Reads stick less: a read by another owner than the writers is the basic partition-isolation check
        # (and the full comparisons already read every owner's own scope).
        if used and data.draw(st.integers(0, 3 if write else 1), label="same owner?") > 0:
            return data.draw(st.sampled_from(used), label="actor")
        own: list[tuple[str, str | None]] = [(n, None) for n in sorted(self.actors)]
        impersonators = self.names_by_role(Role.SERVICE, Role.DBA, Role.SYSTEM)
        users = self.names_by_role(Role.USER)
        via: list[tuple[str, str | None]] = [(i, s) for i in impersonators for s in SYNTHETIC_USERS]
        via += [(i, u) for i in impersonators for u in users]
        who = data.draw(st.sampled_from(own + via), label="actor")
        # Only writers become the table's owners: a reader registered here would scatter later writes.
        if write and table is not None and who not in used:
            self.who_used.setdefault(table, []).append(who)
        return who

    def table_state(self, name: str) -> TableState | None:
        return self.model.tables.get(name)

    def columns(self, state: TableState) -> list[Column]:
        return [s.column for s in state.columns]

    def shared_levels(self) -> frozenset[str]:
        """ACCESS_LEVELs of the example's SHARED tables."""
        return frozenset(
            t.spec.access_level or "PRIVATE" for t in self.model.tables.values() if t.kind is TableKind.SHARED
        )

    def owner(self, state: TableState, actor: str, as_user: str | None) -> str | None:
        return None if state.kind is TableKind.SHARED else self.model.effective_user(actor, as_user)

    def scopes(self, state: TableState) -> list[str | None]:
        return self.model.scopes(state.spec.name)

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> None:
        try:
            if not self.failed and self.met_known_bug is None:
                try:
                    self.session.check_all()
                except Divergence as div:
                    if not self._goes_past(div):
                        self._record(div)
                        raise
        finally:
            try:
                policy = type(self).known_bugs
                if policy is not None:
                    policy.observe(self.session.steps)  # every example, diverged or not
            finally:
                self.session.close()


@functools.lru_cache(maxsize=512)
def _weighted_choice(choices: tuple[tuple[str, float], ...]) -> st.SearchStrategy[str]:
    """An operation with probability proportional to its weight (quarter-weight resolution), first shrinks best."""
    return weighted([(name, weight * 4) for name, weight in choices])


def machine_for(
    runner: Runner,
    workload: Workload,
    *,
    hooks: tuple[StepHook, ...] = (),
    known_bugs: KnownBugPolicy | None = None,
) -> type[KalamStateMachine]:
    """A state machine class bound to ``runner`` and ``workload`` (one per test session)."""
    return type(
        "KalamDB",
        (KalamStateMachine,),
        {"runner": runner, "workload": workload, "last_failure": None, "failures": [], "step_hooks": hooks,
         "known_bugs": known_bugs},
    )  # fmt: skip
