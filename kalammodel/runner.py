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
"""

from __future__ import annotations

import functools
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .client import Pending
from .errors import (
    DeadlineExceeded,
    Divergence,
    InternalError,
    Invariant,
    KalamError,
    SqlError,
    TransportError,
    UsageError,
)
from .model import (
    Cmp,
    ExpectCount,
    ExpectError,
    ExpectFlush,
    ExpectFlushDone,
    ExpectOk,
    ExpectPause,
    ExpectRows,
    Limits,
    Model,
    Outcome,
    Role,
    TableKind,
    compare_outcome,
    flush_job_id,
    flush_message_kind,
    row_key,
    unexpected_rows,
)
from .steps import Request, Step

__all__ = ["RunResult", "Runner", "Session", "TranscriptEntry"]

_FLUSH_JOB_TIMEOUT = 60.0
_ACTIONS = (ExpectPause, ExpectFlushDone)


@attrs.frozen
class TranscriptEntry:
    """One request of a run as it went over the wire, with a short summary of the reply."""

    step_index: int
    request: str
    actor: str
    status: str
    summary: str
    ms: float

    def to_data(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class RunResult:
    """The result of replaying a list of steps: ``ok``, or the divergence / tool error that stopped it."""

    ok: bool
    divergence: Divergence | None = None
    error: str | None = None
    transcript: tuple[TranscriptEntry, ...] = ()
    steps_run: int = 0


@attrs.define
class RunStats:
    """Counters of one runner: how many examples (sessions) and steps it ran, since when (monotonic)."""

    started: float
    sessions: int = 0
    steps: int = 0

    def summary(self) -> str:
        seconds = time.monotonic() - self.started
        rate = self.steps / seconds if seconds > 0 else 0.0
        return f"{self.sessions} examples, {self.steps} steps in {seconds:.0f} s ({rate:.1f} steps/s)"


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
        target: Any,
        pool: Any,
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
        extensions: Sequence[Callable[[Session], Any]] = (),
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
        #: factories called with each new Session; each returns an extension object that may define
        #: ``run_step(session, step) -> bool`` (True: it ran the step itself, e.g. live-query steps),
        #: ``after_step(session, step)``, ``check_all(session, final)`` (``final``: at teardown, not a periodic
        #: check) and ``close(session)``.
        self.extensions: list[Callable[[Session], Any]] = list(extensions)
        #: what this runner has done: examples (sessions) started and steps run, for progress reports
        self.stats = RunStats(started=time.monotonic())
        from .durability import RestartExtension

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
        self._dirty: set[tuple[str, str | None]] = set()
        #: step index of each scope's last full comparison (absent: never, i.e. -1)
        self._compared_at: dict[tuple[str, str | None], int] = {}
        self._flushed_tables: set[str] = set()
        #: verifying reads sent ahead, oldest first: (the pending answer, what compares it) — see settle()
        self._ahead: list[tuple[Pending[Any], Callable[[Callable[[], Any]], None]]] = []
        self._closed = False
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
            run_step = getattr(ext, "run_step", None)
            if run_step is not None and run_step(self, step):
                self._after_step(step)
                return
        requests = list(step.requests(self.ns))
        # The step's first request goes out before the model predicts its outcome: the server works while the
        # model does (a step that sends requests has no runner action, steps.py).
        first = self.send_ahead(requests[0], idempotent=False) if requests and self.runner.send_ahead else None
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
            if isinstance(expectation, _ACTIONS):
                self._run_action(step, expectation)
            elif first is not None and step.reads_only and len(requests) == 1:
                # A read's answer changes nothing the runner does next: compared with the verifying reads, while
                # the tester draws the next step.
                request = next(pending)
                self._note_writes(step, request, expectation)
                self._later(first, functools.partial(self._check_answer_of, step, request, expectation))
                first = None
            else:
                self._run_one(step, next(pending), expectation, first)
                first = None
        if self.runner.read_back:
            self._read_back(step)
        self._after_step(step)

    def _after_step(self, step: Step) -> None:
        for ext in self.extensions:
            after = getattr(ext, "after_step", None)
            if after is not None:
                after(self, step)
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
            if due_only and not self._full_check_due(table_name, owner):
                continue
            self._check_scope(table_name, owner)
        for ext in self.extensions:
            check = getattr(ext, "check_all", None)
            if check is not None:
                check(self, final=not due_only)
        if not due_only:
            self.settle()

    def settle(self) -> None:
        """Compare the answers of every read sent ahead, oldest first; raise the first divergence.

        Every request the session sends itself settles first, so the reads always see the state of the step
        they verify. After a divergence the remaining answers are discarded.
        """
        while self._ahead:
            pending, finish = self._ahead.pop(0)
            try:
                finish(pending.result)
            except BaseException:
                self._discard_ahead()
                raise

    def _discard_ahead(self) -> None:
        while self._ahead:
            self._ahead.pop(0)[0].discard()

    def _later(self, pending: Pending[Any], finish: Callable[[Callable[[], Any]], None]) -> None:
        """Compare ``pending`` with ``finish(pending.result)`` now, or at :meth:`settle` when sending ahead."""
        if self.runner.send_ahead:
            self._ahead.append((pending, finish))
        else:
            finish(pending.result)

    def close(self) -> None:
        """Drop the namespace. Never raises: a dead server must not hide the real failure."""
        if self._closed:
            return
        self._closed = True
        self._discard_ahead()
        for ext in getattr(self, "extensions", ()):
            close = getattr(ext, "close", None)
            if close is not None:
                try:
                    close(self)
                except Exception:  # noqa: BLE001 - closing must never hide the real failure
                    pass
        try:
            self.pool.root.execute(f"DROP NAMESPACE IF EXISTS {self.ns} CASCADE")
        except (KalamError, OSError):
            pass

    # ------------------------------------------------------------------ sending

    def _wire_user(self, as_user: str | None) -> str | None:
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
        as_user = self._wire_user(request.as_user)
        if as_user is None:
            return self._answered(request, started, functools.partial(client.execute, request.sql))
        return self._answered(request, started, functools.partial(client.execute_as, as_user, request.sql))

    def send_ahead(self, request: Request, *, idempotent: bool = True) -> Pending[Outcome]:
        """Send a request now (on a connection of its own); its outcome, recorded in the transcript, comes
        later. ``idempotent=False`` for a write: never sent twice (``KalamClient.submit``)."""
        client = self.pool.client(request.actor)
        started = time.perf_counter()
        pending = client.submit(request.sql, as_user=self._wire_user(request.as_user), idempotent=idempotent)
        return Pending(lambda: self._answered(request, started, pending.result), abort=pending.discard)

    def _answered(
        self,
        request: Request,
        started: float,
        answer: Callable[[], Any],
        decode: Callable[[Any], Outcome] | None = None,
        what: str = "the server did not answer",
    ) -> Outcome:
        """The outcome of ``answer()`` (a SqlResponse, or what ``decode`` takes; or it raises), recorded in the
        transcript; no answer: the ``availability`` divergence, saying ``what``."""
        try:
            outcome = (decode or _outcome_of)(answer())
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
            "availability",
            f"{what}: {exc}",
            step_index=self.step_index,
            step=self._current_step(),
            request=str(request),
            actor=request.actor,
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

    def _current_step(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    # ------------------------------------------------------------------ one request

    def _run_action(self, step: Step, expectation: Any) -> None:
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
        self, step: Step, request: Request, expectation: Any, sent: Pending[Outcome] | None = None
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

    def _check_answer(self, step: Step, request: Request, expectation: Any, outcome: Outcome) -> None:
        problem = compare_outcome(expectation, outcome)
        if problem is not None:
            raise self._divergence(step, request, expectation, outcome, problem)

    def _check_answer_of(
        self, step: Step, request: Request, expectation: Any, answer: Callable[[], Outcome]
    ) -> None:
        self._check_answer(step, request, expectation, answer())

    def _await_job(self, step: Step, request: Request, table: str, job_id: str | None) -> None:
        if job_id is not None:
            started = time.perf_counter()
            try:
                job = self.pool.root.wait_for_job(job_id, timeout=_FLUSH_JOB_TIMEOUT)
            except DeadlineExceeded as exc:
                raise Divergence(
                    "availability",
                    f"flush job {job_id} did not finish within {_FLUSH_JOB_TIMEOUT:.0f} s: {exc}",
                    step_index=self.step_index,
                    step=step,
                    request=str(request),
                    actor=request.actor,
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
                    "availability",
                    f"flush job {job_id} ended with status {status!r}: {job.get('message')}",
                    step_index=self.step_index,
                    step=step,
                    request=str(request),
                    actor=request.actor,
                    expected="completed",
                    actual=job,
                )
        self.model.flush_completed(table)
        self._flushed_tables.add(table)
        self._mark_all_scopes(table)
        # A completed flush is the moment hot + cold consistency and the cold files are checked.
        for owner in self._scopes_of(table):
            self._check_scope(table, owner)

    # ------------------------------------------------------------------ bookkeeping of touched scopes

    def _mark_all_scopes(self, table: str) -> None:
        """Every owner's scope of ``table`` is due for a full comparison (after a flush, an ALTER, a pause)."""
        self._dirty.update((table, owner) for owner in self._scopes_of(table))

    def _scopes_of(self, table: str) -> list[str | None]:
        if table not in self.model.tables:
            return []
        return self.model.scopes(table)

    def _note_writes(self, step: Step, request: Request, expectation: Any) -> None:
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

    # ------------------------------------------------------------------ read-back after writes

    def _read_back(self, step: Step) -> None:
        """After a successful write, read the scope's written keys back by their owner."""
        table = getattr(step, "table", None)
        if not isinstance(table, str) or table not in self.model.tables:
            return
        state = self.model.tables[table]
        if state.kind is TableKind.STREAM:
            return
        pk = self.model.primary_key(table)
        keys = _written_keys(step, pk)
        if not keys or pk is None:
            return
        owner = (
            None if state.kind is TableKind.SHARED else self.model.effective_user(step.actor, step.as_user)
        )
        # O(written keys), not O(scope): the model looks the keys up; the full scope waits for check_all.
        expected = self.model.rows_for_keys(table, owner, keys)
        col_type = state.column_type(pk)
        from .model import render_value

        literals = [render_value(col_type, k) for k in keys]  # type: ignore[arg-type]
        if len(literals) == 1:  # a point lookup: the cheapest read on any server (and the usual by-PK write)
            sql = f"SELECT * FROM {self.ns}.{table} WHERE {pk} = {literals[0]}"
        else:
            sql = f"SELECT * FROM {self.ns}.{table} WHERE {pk} IN ({', '.join(literals)}) ORDER BY {pk}"
        request = self._reader_request(state.kind, owner, sql)
        exp = ExpectRows(
            expected.columns,
            expected.rows,
            ordered=False,
            maybe_rows=expected.maybe_rows,
            types=expected.types,
        )

        def compare(outcome_of: Callable[[], Outcome]) -> None:
            outcome = outcome_of()
            problem = compare_outcome(exp, outcome)
            if problem is not None:
                raise self._divergence(step, request, exp, outcome, f"read-back of the written keys: {problem}")

        self._later(self.send_ahead(request), compare)

    def _reader_request(self, kind: TableKind, owner: str | None, sql: str) -> Request:
        """Who reads a scope: SHARED as root; USER/STREAM as the owner (own token or EXECUTE AS by root)."""
        if kind is TableKind.SHARED or owner is None:
            return Request("root", sql)
        if owner in self.pool.names:
            return Request(owner, sql)
        return Request("root", sql, as_user=owner)

    # ------------------------------------------------------------------ full scope check

    def _full_check_due(self, table: str, owner: str | None) -> bool:
        """Whether waiting for the next periodic check would leave the scope uncompared for too long."""
        rows = self.model.scope_size(table, owner)
        interval = max(self.runner.check_every, -(-rows // self.runner.check_rows_per_step))
        last = self._compared_at.get((table, owner), -1)
        return self.step_index + self.runner.check_every - last > interval

    def _check_scope(self, table: str, owner: str | None) -> None:
        """Read one scope in full (paged, cross-checked by COUNT(*)) and compare it with the model."""
        self._dirty.discard((table, owner))
        self._compared_at[(table, owner)] = self.step_index
        state = self.model.tables[table]
        pk = self.model.primary_key(table)
        expected = self.model.expect_full_read(table, owner)
        request = self._reader_request(
            state.kind, owner, f"SELECT * FROM {self.ns}.{table} ORDER BY {pk or '_seq'}"
        )
        client = self.pool.client(request.actor)
        started = time.perf_counter()
        wire_as = self._wire_user(request.as_user)
        pending: Pending[Any]
        if state.kind is TableKind.STREAM:
            # STREAM rows expire while a paged read and its COUNT(*) run, so their totals may differ
            # legitimately: one bounded SELECT instead (STREAM scopes are small; the model tolerates rows
            # near their TTL).
            pending = client.submit(f"{request.sql} LIMIT {self.runner.limits.max_query_limit}", as_user=wire_as)
        else:
            pending = client.submit_read_all(f"{self.ns}.{table}", order_by=pk or "_seq", as_user=wire_as)

        decode = _outcome_of if state.kind is TableKind.STREAM else outcome_of_result

        def compare(answer: Callable[[], Any]) -> None:
            try:
                outcome = self._answered(request, started, answer, decode, "full read failed")
            except Divergence as div:  # the paged read and COUNT(*) disagree
                placed = div.evolve(step_index=self.step_index, step=self._current_step())
                if div.invariant is Invariant.READ_ALL_COMPLETE and state.flush.running_job is not None:
                    # Not a paging bug: the two reads saw the rows a running flush moves differently (e.g. a
                    # deleted row back in cold storage for one of them, docs/kalamdb-findings.md #1).
                    placed = placed.evolve(
                        invariant=Invariant.HOT_COLD_CONSISTENCY,
                        message=f"while a flush of {table} runs: {div.message}",
                    )
                raise placed from None
            problem = compare_outcome(expected, outcome)
            if problem is not None:
                raise self._divergence(
                    self._current_step(),
                    request,
                    expected,
                    outcome,
                    f"full read of scope {table}/{owner or '<shared>'}: {problem}",
                    full=True,
                    table=table,
                )
            if cold is not None:
                cold()

        # The cold files are read now, as the step ends (like the SQL read), and compared after the SQL read.
        cold = self._read_cold(table, owner) if self.runner.cold_checks else None
        self._later(pending, compare)

    # ------------------------------------------------------------------ cold files

    def _read_cold(self, table: str, owner: str | None) -> Callable[[], None] | None:
        """Read the scope's cold files (and list the namespace's) now; the returned call compares them with the
        model (None: nothing to check). A full read sent ahead reads the disk as the step ends, like its SQL."""
        data_dir = getattr(self.runner.target, "data_dir", None)
        state = self.model.tables[table]
        if data_dir is None or state.kind is TableKind.STREAM or state.spec.storage_id not in (None, "local"):
            return None
        if table not in self._flushed_tables:
            return None
        if state.flush.running_job is not None or state.auto_flush:
            # A flush job writes batch-N.parquet, then manifest.json, then deletes hot keys (PROTOCOL §7.3):
            # while one may be running, the directory is legitimately between those states.
            return None
        if self.model.primary_key(table) is None:
            return None
        from .checks.cold import read_cold_scope, scope_dir

        user_id = None if owner is None else self._wire_user(owner)
        base = Path(data_dir) / "storage"
        directory = scope_dir(base, self.ns, table, user_id)
        scope = read_cold_scope(directory)
        strays = self._stray_files(base)
        return functools.partial(self._compare_cold, table, owner, user_id, directory, scope, base, strays)

    def _compare_cold(
        self,
        table: str,
        owner: str | None,
        user_id: str | None,
        directory: Path,
        scope: Any,
        base: Path,
        strays: tuple[list[str], list[Any]],
    ) -> None:
        from .checks.cold import check_cold_scope

        state = self.model.tables[table]
        pk = self.model.primary_key(table)
        assert pk is not None  # checked by _read_cold
        known: list[dict[str, Any]] = []
        for key in self.model.known_pks(table, owner) | self.model.deleted_pks(table, owner):
            known.extend(self.model.known_versions(table, owner, key))
        # Old Parquet files legitimately keep dropped columns (PROTOCOL §9), and a re-added name is a new
        # column: compare only the current columns whose name was never dropped.
        dropped = {d.column.name for d in state.dropped}
        compared = [c for c in self.model.column_names(table) if c not in dropped]
        known = [{k: v for k, v in row.items() if k in compared or k == "_deleted"} for row in known]
        expected: dict[str, Any] = {"primary_key": pk, "known_versions": known, "user_columns": compared}
        json_cols = [
            c for c in self.model.column_names(table) if str(state.column_type(c)).upper().endswith("JSON")
        ]
        if json_cols:
            expected["json_columns"] = json_cols
        newest = self.model.expected_cold_rows(table, owner)
        if newest is not None:
            expected["newest"] = [{k: v for k, v in row.items() if k in compared} for row in newest.values()]
            expected["expect_files"] = bool(newest) or None
        problems = check_cold_scope(scope, expected)
        if problems:
            raise Divergence(
                "cold_files",
                f"cold files of {self.ns}.{table}/{user_id or '<shared>'} disagree with the model: "
                + "; ".join(str(p) for p in problems[:5]),
                step_index=self.step_index,
                step=self._current_step(),
                request=f"read {directory}",
                expected=expected.get("newest"),
                actual=[str(p) for p in problems],
            )
        self._check_routing(base, strays)

    def _stray_files(self, base: Path) -> tuple[list[str], list[Any]]:
        """(the allowed table directories, the cold files of this namespace outside them), listed now."""
        from .checks.cold import find_stray_files

        root = base / self.ns
        allowed = [root / name for name in self.model.tables]
        if not root.is_dir():
            return [str(a) for a in allowed], []
        return [str(a) for a in allowed], list(find_stray_files(root, allowed))

    def _check_routing(self, base: Path, listed: tuple[list[str], list[Any]]) -> None:
        """Storage routing: every cold file under this namespace lies in the directory of a table it has.

        A file in another table's directory, in a dropped table's, or outside any table's, is a routing bug.
        ``listed``: what :meth:`_stray_files` found.
        """
        root = base / self.ns
        allowed, strays = listed
        if strays:
            raise Divergence(
                "storage_routing",
                f"cold files of namespace {self.ns} outside the directories of its tables: "
                + "; ".join(str(p) for p in strays[:5]),
                step_index=self.step_index,
                step=self._current_step(),
                request=f"list {root}",
                expected=allowed,
                actual=[str(p) for p in strays],
            )

    # ------------------------------------------------------------------ attribution

    def _divergence(
        self,
        step: Step | None,
        request: Request,
        expectation: Any,
        outcome: Outcome,
        problem: str,
        full: bool = False,
        table: str | None = None,
    ) -> Divergence:
        """``table``: the table that was read when it is not the step's (a full scope read, a live SQL check)."""
        owner = self.model.effective_user(request.actor, request.as_user)
        invariant = self._classify(step, expectation, outcome, full, owner, table)
        return Divergence(
            invariant,
            problem,
            step_index=self.step_index,
            step=step.describe() if step is not None else None,
            request=str(request),
            actor=request.actor if request.as_user is None else f"{request.actor} as {request.as_user}",
            expected=expectation,
            actual=outcome.brief() if not outcome.ok or not outcome.rows else _rows_summary(outcome),
        )

    def _classify(
        self,
        step: Step | None,
        expectation: Any,
        outcome: Outcome,
        full: bool,
        owner: str | None = None,
        read_table: str | None = None,
    ) -> str:
        kind = getattr(step, "kind", "") or ""
        if isinstance(expectation, ExpectError):
            if "PERMISSION_DENIED" in expectation.codes or kind.startswith("probe"):
                return "rbac"
            if "dropped" in kind:
                return "schema_evolution"
            if "PRIMARY_KEY" in expectation.reason.upper() or "duplicate" in expectation.reason.lower():
                return "uniqueness"
            return "outcome"
        if kind.startswith("probe") and not outcome.ok:
            return "rbac"
        table = read_table if read_table is not None else getattr(step, "table", None)
        state = self.model.tables.get(table) if isinstance(table, str) else None
        if (
            not full
            and outcome.ok
            and isinstance(expectation, ExpectRows)
            and kind in ("insert", "update", "delete")
        ):
            # (not a full scope read that happens to run during such a step: that is about the whole scope)
            if (
                getattr(step, "as_user", None) is not None
                and state is not None
                and state.flush.running_job is None  # rows a running flush moves are its own question
                and not self._same_keys(table, expectation, outcome)  # type: ignore[arg-type]
            ):
                # The read-back of an EXECUTE AS USER write by its target user misses a written row or holds
                # another: the write went to (or came from) another user's partition. (Right keys with wrong
                # values are the values' problem: classified below.)
                return "isolation"
        if (
            state is not None
            and state.kind is TableKind.STREAM
            and outcome.ok
            and isinstance(expectation, ExpectRows)
            and self._misses_only_impersonated_rows(table, owner, expectation, outcome)  # type: ignore[arg-type]
        ):
            # Only rows that EXECUTE AS USER inserts wrote for this owner are missing (the owner's own rows are
            # all there, nothing else differs): written to another partition, not expired early.
            return "isolation"
        if (
            isinstance(expectation, ExpectOk)
            and not outcome.ok
            and kind == "insert"
            and state is not None
            and _says_duplicate_key(outcome)
            and self._inserts_a_deleted_key(table, state, step, owner)  # type: ignore[arg-type]
        ):
            # The key's newest version in the writer's own scope is a tombstone, and a deleted key is free
            # again (§5.3): KalamDB 0.4.3's cold PK check ignores a newer hot tombstone (docs/kalamdb-findings.md
            # #2). Not isolation, even when another owner holds the key too.
            return "soft_delete"
        if (
            isinstance(expectation, ExpectOk)
            and not outcome.ok
            and kind == "insert"
            and state is not None
            and state.kind is not TableKind.SHARED
            and _says_duplicate_key(outcome)
            and self._key_held_by_another_owner(table, step, owner)  # type: ignore[arg-type]
        ):
            # A key the writer's partition does not hold is "already there": a write of another owner's
            # partition landed in this one (or this one's in another), e.g. an EXECUTE AS USER write in the
            # caller's partition.
            return "isolation"
        if isinstance(expectation, (ExpectRows, ExpectCount)) and outcome.ok and state is not None:
            verdict = self._classify_rows(table, state, expectation, outcome, owner)  # type: ignore[arg-type]
            if verdict:
                return verdict
        if state is not None and state.kind is TableKind.STREAM:
            if not outcome.ok:  # an expiry hides rows; it never fails a statement
                return "schema_evolution" if getattr(state, "schema_changes", None) else "outcome"
            return "stream_ttl"
        if (
            isinstance(expectation, ExpectOk)
            and state is not None
            and (table in self._flushed_tables or state.flush.running_job is not None)
        ):
            # e.g. an UPDATE or DELETE by predicate that misses rows in cold storage or in a running flush
            return "hot_cold_consistency"
        if state is not None and getattr(state, "schema_changes", None):
            return "schema_evolution"
        return "outcome"

    def _classify_rows(
        self, table: str, state: Any, expectation: Any, outcome: Outcome, owner: str | None = None
    ) -> str | None:
        if self._rows_of_other_owners(table, state, expectation, outcome, owner):
            return "isolation"
        if self._count_includes_other_owners(table, state, expectation, outcome, owner):
            return "isolation"
        if state.kind is TableKind.STREAM and self._returns_own_expired_rows(table, owner, expectation, outcome):
            # before the duplicate-key rule: an expired row next to a newer one with its key is a TTL failure
            return "stream_ttl"
        pk = self.model.primary_key(table)
        cols = list(outcome.columns)
        if pk is not None and pk in cols:
            keys = [_key(r[cols.index(pk)]) for r in outcome.rows]
            if len(keys) != len(set(keys)) and not getattr(expectation, "maybe_rows", ()):
                dup_expected = (
                    isinstance(expectation, ExpectRows)
                    and len({_key(r[list(expectation.columns).index(pk)]) for r in expectation.rows})
                    != len(expectation.rows)
                    if isinstance(expectation, ExpectRows) and pk in expectation.columns
                    else False
                )
                if not dup_expected:
                    return "uniqueness"
            # Rows of another owner's scope showing up: isolation.
            if state.kind is not TableKind.SHARED and isinstance(expectation, ExpectRows):
                expected_keys = (
                    {
                        _key(r[list(expectation.columns).index(pk)])
                        for r in expectation.rows + expectation.maybe_rows
                    }
                    if pk in expectation.columns
                    else set()
                )
                extra = [k for k in keys if k not in expected_keys]
                if extra:
                    deleted_somewhere = False
                    for other in self.model.scopes(table):
                        if extra and any(
                            k in {_key(x) for x in self.model.deleted_pks(table, other)} for k in extra
                        ):
                            deleted_somewhere = True
                    others = set()
                    for other in self.model.scopes(table):
                        others |= {_key(x) for x in self.model.known_pks(table, other)}
                    if any(k in others for k in extra) and not deleted_somewhere:
                        return "isolation"
                    if deleted_somewhere:
                        return "soft_delete"
            elif isinstance(expectation, ExpectRows) and pk in expectation.columns:
                expected_keys = {
                    _key(r[list(expectation.columns).index(pk)])
                    for r in expectation.rows + expectation.maybe_rows
                }
                extra = [k for k in keys if k not in expected_keys]
                deleted = {_key(x) for x in self.model.deleted_pks(table, None)}
                if extra and all(k in deleted for k in extra):
                    return "soft_delete"
        if state.kind is TableKind.STREAM:
            # A STREAM row differs by TTL, unless only the values of re-added column names differ.
            if getattr(state, "reused_names", False) and self._only_readded_columns_differ(
                state, expectation, outcome, pk
            ):
                return "schema_evolution"
            return "stream_ttl"
        flushed = table in self._flushed_tables or state.flush.running_job is not None
        if getattr(state, "reused_names", False):  # a dropped column name was added again: old values?
            # ... unless the table was flushed and the difference is not in values of re-added columns: a
            # missing row, or a wrong value in a column that was never dropped, is the flush's.
            if not flushed or self._only_readded_columns_differ(state, expectation, outcome, pk):
                return "schema_evolution"
            return "hot_cold_consistency"
        if flushed:
            return "hot_cold_consistency"
        if getattr(state, "schema_changes", None):
            return "schema_evolution"
        return None


    def _same_keys(self, table: str, expectation: Any, outcome: Outcome) -> bool:
        """Whether a read returned rows with exactly the expected primary keys (values aside)."""
        pk = self.model.primary_key(table)
        if pk is None or pk not in expectation.columns or pk not in outcome.columns:
            return False
        want = sorted(repr(_key(r[list(expectation.columns).index(pk)])) for r in expectation.rows)
        got = sorted(repr(_key(r[list(outcome.columns).index(pk)])) for r in outcome.rows)
        return want == got and not expectation.maybe_rows

    def _misses_only_impersonated_rows(
        self, table: str, owner: str | None, expectation: Any, outcome: Outcome
    ) -> bool:
        """Whether ``outcome`` is ``expectation`` less some rows that ``EXECUTE AS USER`` inserts of this
        session wrote into ``owner``'s scope of ``table``: no row too many, at least one missing, every missing
        row one of theirs."""
        if owner is None or tuple(outcome.columns) != tuple(expectation.columns):
            return False
        if unexpected_rows(expectation, outcome.columns, outcome.rows):
            return False
        key = row_key(expectation)
        missing = Counter(key(r) for r in expectation.rows) - Counter(key(r) for r in outcome.rows)
        if not missing:
            return False
        written: Counter[tuple[Any, ...]] = Counter()
        for step in self.steps:
            as_user = getattr(step, "as_user", None)
            if step.kind != "stream_insert" or as_user is None or getattr(step, "table", None) != table:
                continue
            if self.model.effective_user(step.actor, as_user) != owner:
                continue
            columns = list(step.columns)  # type: ignore[attr-defined]
            for row in step.rows:  # type: ignore[attr-defined]
                written[key(_as_result_row(expectation.columns, dict(zip(columns, row))))] += 1
        return bool(written) and not missing - written

    def _key_held_by_another_owner(self, table: str, step: Step, owner: str | None) -> bool:
        """Whether a key ``step`` inserts lives, by the model, in another owner's scope of ``table``."""
        keys = {_key(k) for k in _written_keys(step, self.model.primary_key(table))}
        return any(
            keys & {_key(k) for k in self.model.known_pks(table, other)}
            for other in self.model.scopes(table)
            if other != owner
        )

    def _inserts_a_deleted_key(self, table: str, state: Any, step: Step, owner: str | None) -> bool:
        """Whether ``step`` (an INSERT the model accepted, so applied: each key's newest version is the step's)
        inserted a key whose version before it, in the writer's own scope, is a tombstone."""
        scope = None if state.kind is TableKind.SHARED else owner
        for key in _written_keys(step, self.model.primary_key(table)):
            versions = self.model.known_versions(table, scope, key)
            if len(versions) >= 2 and versions[-2].get("_deleted"):
                return True
        return False

    def _rows_of_other_owners(
        self, table: str, state: Any, expectation: Any, outcome: Outcome, owner: str | None
    ) -> bool:
        """Whether a read of ``owner``'s USER/STREAM rows returned a row it should not that is, column for
        column, a row of another owner (and none of ``owner``'s own past versions): a partition leak.

        Compares whole rows, not primary keys, because owners often share keys (each user's id=0): a leaked
        row then looks like a duplicate key, and key-based attribution would call it a uniqueness failure.
        """
        if state.kind is TableKind.SHARED or owner is None or not isinstance(expectation, ExpectRows):
            return False
        extra = unexpected_rows(expectation, outcome.columns, outcome.rows)
        if not extra:
            return False
        key = row_key(expectation)

        def keys_of(rows: Iterable[Mapping[str, Any]]) -> set[tuple[Any, ...]]:
            # visible rows carry no _deleted (False); known versions carry theirs
            return {key(_as_result_row(expectation.columns, r)) for r in rows}

        theirs: set[tuple[Any, ...]] = set()
        for other in self.model.scopes(table):
            if other != owner:
                theirs |= keys_of(self.model.visible_rows(table, other) + self.model.maybe_rows(table, other))
        if not theirs:
            return False
        mine = set()
        if owner in self.model.scopes(table):
            for pk in self.model.known_pks(table, owner) | self.model.deleted_pks(table, owner):
                mine |= keys_of(self.model.known_versions(table, owner, pk))
            # a STREAM row of the reader's own that outlived its TTL is an expiry failure, even when another
            # owner now holds an equal row (PK-less STREAM rows often look alike)
            mine |= keys_of(self.model.stream_rows_ever(table, owner))
        return any(key(row) in theirs and key(row) not in mine for row in extra)

    def _returns_own_expired_rows(
        self, table: str, owner: str | None, expectation: Any, outcome: Outcome
    ) -> bool:
        """Whether a STREAM read returned, beyond what the model allows, a row the reader's scope held and the
        model knows is past its TTL."""
        if not isinstance(expectation, ExpectRows) or owner not in self.model.scopes(table):
            return False
        extra = unexpected_rows(expectation, outcome.columns, outcome.rows)
        if not extra:
            return False
        key = row_key(expectation)
        expired = {
            key(_as_result_row(expectation.columns, r))
            for r in self.model.stream_rows_ever(table, owner, expired_only=True)
        }
        return any(key(row) in expired for row in extra)

    def _only_readded_columns_differ(self, state: Any, expectation: Any, outcome: Outcome, pk: str | None) -> bool:
        """Whether every row the read should return came back (by primary key) and the rows that differ do so
        only in columns whose name was dropped and added again."""
        if not isinstance(expectation, ExpectRows) or list(outcome.columns) != list(expectation.columns):
            return False
        cols = list(expectation.columns)
        readded = {d.column.name for d in getattr(state, "dropped", ())} & set(cols)
        if pk is None or pk not in cols:  # (a STREAM table without PRIMARY KEY) rows compared without them
            kept = [i for i, c in enumerate(cols) if c not in readded and c not in expectation.unchecked]
            if len(kept) == len(cols):
                return False

            def project(rows: Iterable[Sequence[Any]]) -> Counter[str]:
                return Counter(repr(tuple(r[i] for i in kept)) for r in rows)

            sure, returned = project(expectation.rows), project(outcome.rows)
            # without the re-added columns: every sure row came back, nothing beyond the rows that may expire
            return not sure - returned and not returned - (sure + project(expectation.maybe_rows))
        at = cols.index(pk)
        got = {_key(r[at]): r for r in outcome.rows}
        key = row_key(expectation)
        differing: set[str] = set()
        for want in expectation.rows:
            have = got.get(_key(want[at]))
            if have is None:
                return False
            if key(want) != key(have):
                differing |= {c for i, c in enumerate(cols) if c not in expectation.unchecked and want[i] != have[i]}
        return bool(differing) and differing <= readded

    def _count_includes_other_owners(
        self, table: str, state: Any, expectation: Any, outcome: Outcome, owner: str | None
    ) -> bool:
        """Whether a COUNT(*) over ``owner``'s USER/STREAM rows came out too high by no more than the rows of
        other owners that match the same WHERE: their rows were counted too (a partition leak)."""
        if state.kind is TableKind.SHARED or owner is None or not isinstance(expectation, ExpectCount):
            return False
        if len(outcome.rows) != 1 or len(outcome.rows[0]) != 1 or not isinstance(outcome.rows[0][0], int):
            return False
        surplus = outcome.rows[0][0] - expectation.high
        if surplus <= 0:
            return False
        where = getattr(self._current_step(), "where", None)
        others = sum(self.model.matching_count(table, o, where)[1] for o in self.model.scopes(table) if o != owner)
        return surplus <= others


# ---------------------------------------------------------------------- helpers


def _outcome_of(response: Any) -> Outcome:
    results = list(getattr(response, "results", ()) or ())
    if not results:
        return Outcome(ok=True, row_count=0)
    return outcome_of_result(results[0])


def outcome_of_result(result: Any) -> Outcome:
    """A successful query result (``QueryResult``: columns, rows, row_count, message) as an :class:`Outcome`."""
    return Outcome(
        ok=True,
        columns=tuple(c.name for c in result.columns),
        rows=tuple(tuple(r) for r in result.rows),
        row_count=result.row_count,
        message=result.message,
    )


#: steps that change a table's schema: every scope of the table is due for a full comparison after one
_SCHEMA_STEPS = frozenset({"alter_add_column", "alter_drop_column"})


def _as_result_row(columns: Sequence[str], row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A row given by column name (the model's, or a step's) in a result's column order: absent columns NULL,
    ``_deleted`` False."""
    return tuple(row.get(c, False if c == "_deleted" else None) for c in columns)


def _says_duplicate_key(outcome: Outcome) -> bool:
    text = f"{outcome.code or ''} {outcome.message or ''}".lower()
    return "primary key" in text or "already exists" in text or "duplicate" in text


def _rows_summary(outcome: Outcome, limit: int = 20) -> str:
    rows = list(outcome.rows[:limit])
    more = f" ... (+{len(outcome.rows) - limit} more)" if len(outcome.rows) > limit else ""
    return f"columns={list(outcome.columns)} rows={rows}{more}"


def _key(value: Any) -> Any:
    """A hashable, type-tolerant key for primary-key values (1 == 1.0 == '1' must not collide wrongly)."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    return ("s", str(value))


def _written_keys(step: Step, pk: str | None) -> list[Any]:
    """Primary keys a write step names explicitly: inserted rows, and UPDATE/DELETE ``WHERE pk = v``."""
    if pk is None or step.kind not in ("insert", "update", "delete"):
        return []
    columns = getattr(step, "columns", None)
    rows = getattr(step, "rows", None)
    if columns is not None and rows is not None and pk in columns:
        index = list(columns).index(pk)
        seen: dict[Any, Any] = {}
        for row in rows:
            if row[index] is not None:
                seen.setdefault(_key(row[index]), row[index])
        return list(seen.values())
    where = getattr(step, "where", None)
    if isinstance(where, Cmp) and where.column == pk and where.op == "=" and where.value is not None:
        return [where.value]
    return []


def iter_steps(steps: Iterable[Step]) -> Iterable[tuple[int, Step]]:
    return enumerate(steps)
