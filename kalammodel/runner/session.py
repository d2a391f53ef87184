"""The runner: executes steps against a target and the reference model, compares, and checks invariants.

One :class:`Session` is one example: a fresh namespace, a fresh :class:`~kalammodel.model.Model`, and a transcript
of every request sent. ``session.run(step)`` applies the step to the model (which predicts one expectation per
request), sends the requests as the step's acting identity, compares each outcome with its expectation and raises
:class:`~kalammodel.errors.Divergence` naming the invariant, the step, the SQL, the acting user, the expected and
the actual outcome.

Checks, from cheapest to dearest:

* every step's own outcome (a SELECT's rows, a DML's affected count, a denial's error code);
* after a write, the written primary keys are read back by their owner (read-your-writes, isolation);
* every ``check_every`` steps and at teardown, each touched (table, owner) scope is read in full with a paged
  read cross-checked by ``COUNT(*)`` and compared with the model; after every completed flush the table's
  cold files (``manifest.json`` and ``batch-*.parquet``) are read with pyarrow and checked against the model
  when the target's data directory is known. A scope too big to re-read that often is compared every
  ``ceil(rows / check_rows_per_step)`` steps instead, so periodic full reads cost about
  ``check_rows_per_step`` rows per step at most whatever the scope's size (the read-back after each write is
  what checks every step, in O(written keys)); teardown and completed flushes still compare every scope, and
  so does the start of a flush that is not waited for (``StartFlush``: a read while its rows move).

With ``Runner(send_ahead=True)`` (the default) a step's first request goes out before the model predicts its
outcome, and the verifying reads go out as the step ends (a read-only step's own answer waits with them); their
answers are compared by the session's next call
(the next step, :meth:`Session.settle`, the final :meth:`Session.check_all`), so the server answers them while
the tester draws the next step. Their divergence names the step they verify, as before.

The runner knows nothing of Hypothesis: :meth:`Runner.run_steps` replays a plain list of steps.

This module runs steps; ``ahead.py`` keeps the reads sent ahead, ``reads.py`` makes the verification reads,
``facts.py`` and ``attribution.py`` name the invariant of a disagreement, ``kalammodel.checks`` holds the checks
beyond the wire (cold files, storage routing, live queries, restarts).
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..client import Pending
from ..errors import (
    DeadlineExceeded,
    Divergence,
    InternalError,
    Invariant,
    KalamError,
    SqlError,
    TransportError,
    UsageError,
)
from ..model import (
    Expectation,
    ExpectFlush,
    ExpectFlushDone,
    ExpectPause,
    Limits,
    Model,
    Outcome,
    Role,
    TableKind,
    compare_outcome,
    flush_job_id,
    flush_message_kind,
)
from ..steps import Request, Step
from . import reads
from .ahead import Ahead
from .attribution import attribute
from .facts import FactSource, gather_facts
from .outcomes import outcome_of, rows_summary
from .records import RunResult, RunStats, TranscriptEntry
from .seams import ActorPool, Extension, ExtensionFactory, Target

__all__ = ["Runner", "Session"]

T = TypeVar("T")

_FLUSH_JOB_TIMEOUT = 60.0
_ACTIONS = (ExpectPause, ExpectFlushDone)
#: steps that change a table's schema: every scope of the table is due for a full comparison after one
_SCHEMA_STEPS = frozenset({"alter_add_column", "alter_drop_column"})


class Runner:
    """Runs steps against one target with one actor pool. Create one per test session.

    ``check_every``: full comparison of every touched scope every N steps (and always at teardown).
    ``check_rows_per_step``: a scope of R rows is compared at least every ``max(check_every,
    ceil(R / check_rows_per_step))`` steps; with the defaults (10, 25) that is every 10 steps up to 250 rows,
    which covers every scope the shipped workloads build (at most 4 rows per insert), and every 200 steps
    for a 5,000-row scope, whose full read costs as much as about 40 ordinary steps.
    ``read_back``: after each write, read the written keys back by their owner.
    ``read_at_flush_start``: right after a flush that is not waited for starts, read every scope of its table
    (a read while rows move); off, only the periodic and teardown checks may land inside the flush.
    ``send_ahead``: the reads that verify a step (read-back, full scope reads) are sent as the step ends and
    their answers compared when the session next sends anything (the next step, :meth:`Session.settle`,
    the final :meth:`Session.check_all`): the server answers them while the tester draws the next step. The
    reads still happen between the step and the next one, and a divergence they find still names the step
    they verify; it is raised one call later. Off, every check completes inside :meth:`Session.run`.
    """

    def __init__(
        self,
        target: Target,
        pool: ActorPool,
        *,
        limits: Limits | None = None,
        check_every: int = 10,
        check_rows_per_step: int = 25,
        read_back: bool = True,
        read_at_flush_start: bool = True,
        send_ahead: bool = True,
        cold_checks: bool = True,
        model_factory: Callable[[], Model] | None = None,
        clock: Callable[[], float] = time.time,
        extensions: Sequence[ExtensionFactory] = (),
    ):
        if check_every < 1:
            raise UsageError(f"check_every must be >= 1 (got {check_every!r})")
        if check_rows_per_step < 1:
            raise UsageError(
                f"check_rows_per_step must be >= 1 (got {check_rows_per_step!r}); raise check_every "
                "to check less often"
            )
        self.target = target
        self.pool = pool
        self.limits = limits or Limits()
        self.check_every = check_every
        self.check_rows_per_step = check_rows_per_step
        self.read_back = read_back
        self.read_at_flush_start = read_at_flush_start
        self.send_ahead = send_ahead
        self.cold_checks = cold_checks
        self.clock = clock
        self._model_factory = model_factory
        #: factories called with each new Session; each returns an :class:`Extension` (its hooks: ``run_step``,
        #: ``after_step``, ``after_restart``, ``check_all``, ``close``; see ``seams.py``)
        self.extensions: list[ExtensionFactory] = list(extensions)
        #: what this runner has done: examples (sessions) started and steps run, for progress reports
        self.stats = RunStats(started=time.monotonic())
        from ..checks.restart import RestartExtension

        if RestartExtension.factory not in self.extensions:
            self.extensions.append(RestartExtension.factory)

    def new_model(self) -> Model:
        if self._model_factory is not None:
            return self._model_factory()
        actors = {name: Role(self.pool.role(name)) for name in self.pool.names}
        return Model(actors=actors, limits=self.limits)

    def session(self, namespace: str | None = None) -> Session:
        return Session(self, namespace)

    def run_steps(self, steps: Sequence[Step], namespace: str | None = None) -> RunResult:
        """Replay ``steps`` on a fresh namespace; never raises for a divergence or a server failure."""
        try:
            session = self.session(namespace)
        except KalamError as exc:
            return RunResult(ok=False, error=f"could not start a session: {exc}")
        try:
            for step in steps:
                session.run(step)
            session.check_all()
            return RunResult(ok=True, transcript=tuple(session.transcript), steps_run=len(steps))
        except Divergence as div:
            return RunResult(
                ok=False,
                divergence=div,
                transcript=tuple(session.transcript),
                steps_run=session.step_index + 1,
            )
        except (KalamError, UsageError) as exc:
            return RunResult(
                ok=False,
                error=f"{type(exc).__name__} at step #{session.step_index}: {exc}",
                transcript=tuple(session.transcript),
                steps_run=session.step_index + 1,
            )
        finally:
            session.close()


class Session:
    """One example: a fresh namespace, a fresh model, a transcript; see the module docstring."""

    def __init__(self, runner: Runner, namespace: str | None = None):
        self.runner = runner
        self.pool = runner.pool
        self.ns = namespace or f"km_{uuid.uuid4().hex[:10]}"
        self.model = runner.new_model()
        self.transcript: list[TranscriptEntry] = []
        self.steps: list[Step] = []
        self.step_index = -1
        #: scopes (table, owner) touched since their last full comparison
        self._dirty: set[tuple[str, str | None]] = set()
        #: step index of each scope's last full comparison (absent: never, i.e. -1)
        self._compared_at: dict[tuple[str, str | None], int] = {}
        self._flushed_tables: set[str] = set()
        #: verifying reads sent ahead, oldest first — see settle()
        self._ahead = Ahead(runner.send_ahead)
        self._closed = False
        self.extensions: list[Extension] = []
        self.pool.root.execute(f"CREATE NAMESPACE IF NOT EXISTS {self.ns}")
        runner.stats.sessions += 1
        self.extensions = [factory(self) for factory in runner.extensions]

    # ------------------------------------------------------------------ public

    def run(self, step: Step) -> None:
        """Run one step; raise Divergence when the server disagrees with the model.

        With ``Runner(send_ahead=True)`` the reads verifying the previous step are compared first, so their
        divergence (naming that step) is raised here, before this step is recorded.
        """
        self.settle()
        self.step_index += 1
        self.steps.append(step)
        self.runner.stats.steps += 1
        self.model.clock = self.runner.clock()
        for ext in self.extensions:
            if ext.run_step(self, step):
                self._after_step(step)
                return
        requests = list(step.requests(self.ns))
        # The step's first request goes out before the model predicts its outcome: the server works while the
        # model does (a step that sends requests has no runner action, steps.py).
        first = (
            self.send_ahead(requests[0], idempotent=False) if requests and self.runner.send_ahead else None
        )
        try:
            expectations = step.apply(self.model)
        except BaseException:
            if first is not None:
                first.discard()
            raise
        answers = [e for e in expectations if not isinstance(e, _ACTIONS)]
        if len(requests) != len(answers):
            if first is not None:
                first.discard()
            raise InternalError(
                f"step {step.describe()} rendered {len(requests)} request(s) but predicted "
                f"{len(answers)} outcome(s)"
            )
        pending = iter(requests)
        for expectation in expectations:
            if isinstance(expectation, ExpectPause | ExpectFlushDone):
                self._run_action(step, expectation)
            elif first is not None and step.reads_only and len(requests) == 1:
                # A read's answer changes nothing the runner does next: compared with the verifying reads, while
                # the tester draws the next step.
                request = next(pending)
                self._note_writes(step, request, expectation)
                self._ahead.later(first, functools.partial(self._check_answer_of, step, request, expectation))
                first = None
            else:
                self._run_one(step, next(pending), expectation, first)
                first = None
        if self.runner.read_back:
            reads.read_back(self, step)
        self._after_step(step)

    def _after_step(self, step: Step) -> None:
        for ext in self.extensions:
            ext.after_step(self, step)
        if (self.step_index + 1) % self.runner.check_every == 0:
            self.check_all(due_only=True)

    def check_all(self, *, due_only: bool = False) -> None:
        """Compare every touched scope in full with the model (and cold files where readable).

        ``due_only`` (the periodic check): only scopes whose interval would pass before the next periodic check
        (see :class:`Runner`); the others stay pending. Without it (teardown): every touched scope.
        """
        for key in sorted(self._dirty, key=lambda k: (k[0], k[1] or "")):
            table_name, owner = key
            if table_name not in self.model.tables:
                self._dirty.discard(key)
                continue
            if due_only and not reads.full_check_due(self, table_name, owner):
                continue
            self._check_scope(table_name, owner)
        for ext in self.extensions:
            ext.check_all(self, final=not due_only)
        if not due_only:
            self.settle()

    def settle(self) -> None:
        """Compare the answers of every read sent ahead, oldest first; raise the first divergence.

        Every request the session sends itself settles first, so the reads always see the state of the step
        they verify. After a divergence the remaining answers are discarded.
        """
        self._ahead.settle()

    def close(self) -> None:
        """Drop the namespace. Never raises: a dead server must not hide the real failure."""
        if self._closed:
            return
        self._closed = True
        self._ahead.discard()
        for ext in self.extensions:
            try:
                ext.close(self)
            except Exception:  # noqa: BLE001 - closing must never hide the real failure
                pass
        try:
            self.pool.root.execute(f"DROP NAMESPACE IF EXISTS {self.ns} CASCADE")
        except (KalamError, OSError):
            pass

    def current_step(self) -> Step | None:
        """The step running (or last run); None before the first."""
        return self.steps[-1] if self.steps else None

    def was_flushed(self, table: str) -> bool:
        """Whether a flush of ``table`` completed in this example (its scopes may have cold files)."""
        return table in self._flushed_tables

    def mark_scope(self, table: str, owner: str | None) -> None:
        """Compare the scope ``(table, owner)`` in full at the next check."""
        self._dirty.add((table, owner))

    # ------------------------------------------------------------------ sending

    def wire_user(self, as_user: str | None) -> str | None:
        """Map a model user id to the server's: pool identities have real ids, synthetic ids are used as is."""
        if as_user is None:
            return None
        return self.pool.user_id(as_user) if as_user in self.pool.names else as_user

    def send(self, request: Request) -> Outcome:
        """Send one request as its actor; return the outcome as plain values (errors included).

        Reads sent ahead are settled first: nothing this session sends overtakes them.
        """
        self.settle()
        client = self.pool.client(request.actor)
        started = time.perf_counter()
        as_user = self.wire_user(request.as_user)
        if as_user is None:
            return self.answered(request, started, functools.partial(client.execute, request.sql))
        return self.answered(request, started, functools.partial(client.execute_as, as_user, request.sql))

    def send_ahead(self, request: Request, *, idempotent: bool = True) -> Pending[Outcome]:
        """Send a request now (on a connection of its own); its outcome, recorded in the transcript, comes
        later. ``idempotent=False`` for a write: never sent twice (``KalamClient.submit``)."""
        client = self.pool.client(request.actor)
        started = time.perf_counter()
        pending = client.submit(request.sql, as_user=self.wire_user(request.as_user), idempotent=idempotent)
        return Pending(lambda: self.answered(request, started, pending.result), abort=pending.discard)

    def answered(
        self,
        request: Request,
        started: float,
        answer: Callable[[], T],
        decode: Callable[[T], Outcome] = outcome_of,  # type: ignore[assignment]  # (T is a SqlResponse then)
        what: str = "the server did not answer",
    ) -> Outcome:
        """The outcome of ``answer()`` (a SqlResponse, or what ``decode`` takes; or it raises), recorded in the
        transcript; no answer: the ``availability`` divergence, saying ``what``."""
        try:
            outcome = decode(answer())
        except SqlError as exc:
            outcome = Outcome(ok=False, status=exc.status, code=exc.code, message=exc.message)
        except (TransportError, DeadlineExceeded) as exc:
            self._record(request, "transport-error", str(exc), started)
            raise self._unanswered(request, what, exc) from exc
        self._record(
            request, "ok" if outcome.ok else f"{outcome.status} {outcome.code}", outcome.brief(), started
        )
        return outcome

    def transcript_note(self, text: str) -> None:
        """Record something the runner did that is not a request (a restart, a wait)."""
        self.transcript.append(TranscriptEntry(self.step_index, text, "root", "note", text, 0.0))

    def _unanswered(self, request: Request, what: str, exc: Exception) -> Divergence:
        """The ``availability`` divergence for a request the server did not answer (transport error, deadline)."""
        return Divergence(
            Invariant.AVAILABILITY,
            f"{what}: {exc}",
            step_index=self.step_index,
            step=self.current_step(),
            request=str(request),
            actor=request.actor,
            namespace=self.ns,
        )

    def _record(self, request: Request, status: str, summary: str, started: float) -> None:
        self.transcript.append(
            TranscriptEntry(
                step_index=self.step_index,
                request=str(request),
                actor=request.actor,
                status=status,
                summary=summary[:300],
                ms=round((time.perf_counter() - started) * 1000, 3),
            )
        )

    # ------------------------------------------------------------------ one request

    def _run_action(self, step: Step, expectation: ExpectPause | ExpectFlushDone) -> None:
        """Runner actions that send no SQL: let time pass (STREAM TTL), wait for a running flush job."""
        if isinstance(expectation, ExpectPause):
            time.sleep(max(0.0, expectation.seconds))
            self.model.clock = self.runner.clock()
            # Time passing is a change of every STREAM scope (rows expire): each is due for a full comparison,
            # even one compared just before the pause.
            for name, state in self.model.tables.items():
                if state.kind is TableKind.STREAM:
                    self._mark_all_scopes(name)
            return
        request = Request("root", f"-- wait for the flush job of {expectation.table}")
        self._await_job(step, request, expectation.table, expectation.job_id)

    def _run_one(
        self, step: Step, request: Request, expectation: Expectation, sent: Pending[Outcome] | None = None
    ) -> None:
        """``sent``: the request's outcome when it was sent already (:meth:`send_ahead`)."""
        outcome = sent.result() if sent is not None else self.send(request)
        self._check_answer(step, request, expectation, outcome)
        self._note_writes(step, request, expectation)
        if isinstance(expectation, ExpectFlush) and outcome.ok:
            job_id = flush_job_id(outcome.message)
            kind = flush_message_kind(outcome.message)
            if expectation.wait:
                if job_id is not None:
                    self._await_job(step, request, expectation.table, job_id)
                elif kind == "skipped_running":
                    # another flush of this table is queued or running (automatic flush): nothing to wait for
                    pass
                else:
                    self.model.flush_completed(expectation.table)
            else:
                self.model.flush_started(expectation.table, job_id)
                if job_id is not None and self.runner.read_at_flush_start:
                    # A flush just began: read every scope of the table now, while its rows are on the move
                    # (hot + cold consistency *during* a flush), not whenever the periodic check comes.
                    for owner in self._scopes_of(expectation.table):
                        self._check_scope(expectation.table, owner)

    def _check_answer(self, step: Step, request: Request, expectation: Expectation, outcome: Outcome) -> None:
        problem = compare_outcome(expectation, outcome)
        if problem is not None:
            raise self.divergence(step, request, expectation, outcome, problem)

    def _check_answer_of(
        self, step: Step, request: Request, expectation: Expectation, answer: Callable[[], Outcome]
    ) -> None:
        self._check_answer(step, request, expectation, answer())

    def _await_job(self, step: Step, request: Request, table: str, job_id: str | None) -> None:
        if job_id is not None:
            self._wait_for_job(step, request, job_id)
        self.model.flush_completed(table)
        self._flushed_tables.add(table)
        self._mark_all_scopes(table)
        # A completed flush is the moment hot + cold consistency and the cold files are checked.
        for owner in self._scopes_of(table):
            self._check_scope(table, owner)

    def _wait_for_job(self, step: Step, request: Request, job_id: str) -> None:
        started = time.perf_counter()
        try:
            job = self.pool.root.wait_for_job(job_id, timeout=_FLUSH_JOB_TIMEOUT)
        except DeadlineExceeded as exc:
            raise Divergence(
                Invariant.AVAILABILITY,
                f"flush job {job_id} did not finish within {_FLUSH_JOB_TIMEOUT:.0f} s: {exc}",
                step_index=self.step_index,
                step=step,
                request=str(request),
                actor=request.actor,
                namespace=self.ns,
            ) from exc
        status = str(job.get("status"))
        self.transcript.append(
            TranscriptEntry(
                self.step_index,
                f"wait for job {job_id}",
                "root",
                status,
                str(job.get("message"))[:300],
                round((time.perf_counter() - started) * 1000, 3),
            )
        )
        if status not in ("completed", "skipped"):
            raise Divergence(
                Invariant.AVAILABILITY,
                f"flush job {job_id} ended with status {status!r}: {job.get('message')}",
                step_index=self.step_index,
                step=step,
                request=str(request),
                actor=request.actor,
                expected="completed",
                actual=job,
                namespace=self.ns,
            )

    # ------------------------------------------------------------------ bookkeeping of touched scopes

    def _mark_all_scopes(self, table: str) -> None:
        """Every owner's scope of ``table`` is due for a full comparison (after a flush, an ALTER, a pause)."""
        self._dirty.update((table, owner) for owner in self._scopes_of(table))

    def _scopes_of(self, table: str) -> list[str | None]:
        if table not in self.model.tables:
            return []
        return self.model.scopes(table)

    def _note_writes(self, step: Step, request: Request, expectation: Expectation) -> None:
        table = getattr(step, "table", None)
        if not isinstance(table, str) or table not in self.model.tables:
            return
        state = self.model.tables[table]
        if step.kind in _SCHEMA_STEPS:
            # ALTER TABLE changes what every owner's rows read like (a new column NULL, a dropped one gone):
            # every scope is compared again, not only the ALTERing identity's.
            self._mark_all_scopes(table)
            return
        owner = (
            None if state.kind is TableKind.SHARED else self.model.effective_user(step.actor, step.as_user)
        )
        self._dirty.add((table, owner))

    def _check_scope(self, table: str, owner: str | None) -> None:
        """Read one scope in full (paged, cross-checked by COUNT(*)) and compare it with the model."""
        reads.check_scope(self, table, owner)

    # ------------------------------------------------------------------ attribution

    def divergence(
        self,
        step: Step | None,
        request: Request,
        expectation: Expectation,
        outcome: Outcome,
        problem: str,
        full: bool = False,
        table: str | None = None,
    ) -> Divergence:
        """The divergence of a read or statement whose outcome disagrees with ``expectation``, its invariant
        attributed from the facts (``attribution.py``). ``table``: the table that was read when it is not the
        step's (a full scope read, a live SQL check)."""
        owner = self.model.effective_user(request.actor, request.as_user)
        return Divergence(
            self._classify(step, expectation, outcome, full, owner, table),
            problem,
            step_index=self.step_index,
            step=step.describe() if step is not None else None,
            request=str(request),
            actor=request.actor if request.as_user is None else f"{request.actor} as {request.as_user}",
            expected=expectation,
            actual=outcome.brief() if not outcome.ok or not outcome.rows else rows_summary(outcome),
            namespace=self.ns,
        )

    def _classify(
        self,
        step: Step | None,
        expectation: Expectation,
        outcome: Outcome,
        full: bool,
        owner: str | None = None,
        read_table: str | None = None,
    ) -> Invariant:
        """The invariant of a disagreement: the facts gathered from the model, then :func:`attribute`."""
        source = FactSource(self.model, self._flushed_tables, self.steps)
        facts = gather_facts(
            source, step, expectation, outcome, full=full, owner=owner, read_table=read_table
        )
        return attribute(facts)
