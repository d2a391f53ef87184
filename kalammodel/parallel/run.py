"""Running a parallel program: prefix on a session, K clients at the same time, a linearizability verdict, suffix.

:func:`run_program` runs one :class:`~kalammodel.parallel.program.ParallelProgram` on a fresh session:

1. the prefix runs as any program does (``Session.run``: the model and the namespace are set up, every check
   as usual);
2. the parallel section: one thread per client, each with its **own** HTTP clients (one ``KalamClient`` per
   identity it acts as, holding that identity's token: a ``KalamClient`` refreshes its token without a lock,
   so the pool's clients are not shared between threads). The threads meet at a barrier, then send their
   steps one after the other, each request recorded in a :class:`~kalammodel.history.HistoryRecorder`: an
   answer is ok, an error envelope failed, a timeout or a broken connection indeterminate. Every wait has a
   deadline (the clients' timeout, the barrier's, the join's);
3. the **closing reads**: once every client is done, each scope the section touched is read in full, in
   order, and those reads join the history as the operations of one more client. The checker must then find
   an order that also explains the final state the server holds; without them it could pick one of several
   orders of two writes to one key, and the suffix would blame the server for the checker's choice;
4. the history is checked against the model (:class:`~kalammodel.parallel.spec.ModelSpec`). Not
   linearizable: a ``Divergence(Invariant.LINEARIZABILITY, ...)`` naming the operations that cannot be
   ordered. Undecided (the checker's timeout): reported in the :class:`SectionReport`, never a failure, and
   the suffix is skipped (the model's state is not known);
5. the session's model becomes the state of the order found, the touched scopes are due for a full
   comparison, and the suffix runs with the usual checks, then the final ``check_all``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import attrs

from ..client import KalamClient
from ..errors import DeadlineExceeded, Divergence, Invariant, KalamError, SqlError, TransportError, UsageError
from ..history import HistoryRecorder, Operation, Result, Status, Verdict, check
from ..model import Cmp, Model, Outcome, TableKind
from ..runner import Runner, RunResult, Session
from ..runner.outcomes import outcome_of
from ..runner.records import TranscriptEntry
from ..steps import Select, Step
from .program import ParallelProgram, step_table
from .spec import ModelSpec

__all__ = [
    "ParallelStats",
    "ProgramCaseRunner",
    "SectionReport",
    "program_result",
    "run_program",
    "run_section",
]

#: seconds a request of a parallel client may take before it counts as indeterminate
REQUEST_TIMEOUT = 10.0
#: seconds the threads wait for each other at the start line
BARRIER_TIMEOUT = 30.0
#: seconds the linearizability search may take before the verdict is "unknown"
CHECK_TIMEOUT = 30.0


@attrs.frozen
class SectionReport:
    """What one parallel section did: its history, the verdict, and the checker's time."""

    clients: int
    history: tuple[Operation, ...]
    verdict: Verdict

    @property
    def indeterminate(self) -> int:
        return sum(1 for o in self.history if o.status is Status.INDETERMINATE)

    @property
    def check_seconds(self) -> float:
        return self.verdict.elapsed


@attrs.define
class ParallelStats:
    """What the parallel runs of a test session did, for its report line."""

    programs: int = 0
    sections: int = 0
    operations: int = 0
    indeterminate: int = 0
    unknown: int = 0
    check_seconds: list[float] = attrs.Factory(list)

    def add(self, report: SectionReport) -> None:
        self.sections += 1
        self.operations += len(report.history)
        self.indeterminate += report.indeterminate
        self.unknown += report.verdict.result is Result.UNKNOWN
        self.check_seconds.append(report.check_seconds)

    def summary(self) -> str:
        times = sorted(self.check_seconds)
        if times:
            median = times[len(times) // 2]
            checker = f"checker median {median * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms"
        else:
            checker = "no section checked"
        return (
            f"{self.programs} parallel programs, {self.sections} sections, {self.operations} operations "
            f"({self.indeterminate} indeterminate), {self.unknown} undecided; {checker}"
        )


def run_program(
    runner: Runner, program: ParallelProgram, *, stats: ParallelStats | None = None
) -> SectionReport | None:
    """Run ``program`` on a fresh session (module docstring); raise ``Divergence`` on a disagreement.

    Returns the section's report; None when the checker could not decide (the suffix was skipped).
    """
    session = runner.session()
    try:
        return _run_on(session, program, stats)
    finally:
        session.close()


def _run_on(session: Session, program: ParallelProgram, stats: ParallelStats | None) -> SectionReport | None:
    for step in program.prefix:
        session.run(step)
    session.settle()
    if stats is not None:
        stats.programs += 1
    report = run_section(session, program.clients, stats=stats)
    if report.verdict.result is Result.UNKNOWN:
        return None
    for step in program.suffix:
        session.run(step)
    session.check_all()
    return report


def program_result(runner: Runner, program: ParallelProgram) -> RunResult:
    """Run ``program`` as :meth:`Runner.run_steps` runs steps: never raises for a divergence or a server failure."""
    try:
        session = runner.session()
    except KalamError as exc:
        return RunResult(ok=False, error=f"could not start a session: {exc}")
    try:
        _run_on(session, program, None)
        return RunResult(ok=True, transcript=tuple(session.transcript), steps_run=len(program.steps))
    except Divergence as div:
        return RunResult(
            ok=False, divergence=div, transcript=tuple(session.transcript), steps_run=session.step_index + 1
        )
    except (KalamError, UsageError) as exc:
        error = f"{type(exc).__name__} at step #{session.step_index}: {exc}"
        return RunResult(
            ok=False, error=error, transcript=tuple(session.transcript), steps_run=session.step_index + 1
        )
    finally:
        session.close()


@attrs.frozen
class ProgramCaseRunner:
    """Replays one parallel program wherever a case runner is asked to replay a case's steps (``save_case``'s
    classification, ``replay_case``): the steps given are that program's, flattened (``ParallelProgram.steps``)."""

    runner: Runner
    program: ParallelProgram

    def run_steps(self, steps: Sequence[Step]) -> RunResult:
        if tuple(steps) != self.program.steps:
            raise UsageError("ProgramCaseRunner replays its own program; it was given other steps")
        return program_result(self.runner, self.program)


def _check_by_key(model: Model, step: Step) -> None:
    """UsageError unless the ``=`` of a section step names its table's primary key (program.py checks shape)."""
    where = getattr(step, "where", None)
    if not isinstance(where, Cmp):
        return
    table = model.tables.get(step_table(step))
    pk = None if table is None or table.pk is None else table.pk.column.name
    if table is not None and where.column != pk:
        raise UsageError(
            f"{step.describe()}: a step inside a parallel section must name the primary key {pk!r} of "
            f"{table.spec.name} in its WHERE (got {where.column!r})"
        )


class _Client:
    """One parallel client: a thread, its own HTTP clients (one per identity), its steps."""

    def __init__(self, index: int, session: Session, steps: Sequence[Step], recorder: HistoryRecorder):
        self.index = index
        self.session = session
        self.steps = steps
        self.recorder = recorder
        self.error: BaseException | None = None
        self.ms: list[float] = []
        self._http: dict[str, KalamClient] = {}

    def connect(self) -> None:
        """Log the client's identities in (a copy of the pool's token each) and open their connections."""
        base_url = self.session.runner.target.base_url
        for step in self.steps:
            actor: str = step.actor
            if actor not in self._http:
                token = self.session.pool.client(actor).token
                client = KalamClient(base_url, token=token, timeout=REQUEST_TIMEOUT, max_retries=0)
                self._http[actor] = client
                client.health()  # the keep-alive connection is open before the start line

    def run(self, start: threading.Barrier) -> None:
        try:
            start.wait()
            for step in self.steps:
                self._one(step)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, raised there
            self.error = exc

    def _one(self, step: Step) -> None:
        (request,) = step.requests(self.session.ns)
        client = self._http[request.actor]
        as_user = self.session.wire_user(request.as_user)
        started = time.perf_counter()
        token = self.recorder.invoke(self.index, step)
        try:
            if as_user is None:
                response = client.execute(request.sql)
            else:
                response = client.execute_as(as_user, request.sql)
        except SqlError as exc:
            self.recorder.fail(
                token, Outcome(ok=False, status=exc.status, code=exc.code, message=exc.message)
            )
        except (TransportError, DeadlineExceeded):
            self.recorder.indeterminate(token)
        except BaseException:
            self.recorder.indeterminate(token)
            raise
        else:
            self.recorder.ok(token, outcome_of(response))
        self.ms.append(round((time.perf_counter() - started) * 1000, 3))

    def close(self) -> None:
        for client in self._http.values():
            client.close()


def _closing_reads(session: Session, spec: ModelSpec) -> list[Step]:
    """A full read of every scope ``spec`` touches, as that scope's owner (root for SHARED tables)."""
    out: list[Step] = []
    for table_name, owner in spec.scopes:
        table = session.model.tables.get(table_name)
        if table is None or table.pk is None:
            continue
        order = ((table.pk.column.name, False),)
        if table.kind is TableKind.SHARED or owner is None:
            out.append(Select("root", table_name, order_by=order))
        elif owner in session.pool.names:
            out.append(Select(owner, table_name, order_by=order))
        else:
            out.append(Select("root", table_name, order_by=order, as_user=owner))
    return out


def _record_closing_reads(
    session: Session, recorder: HistoryRecorder, reads: Sequence[Step], client: int
) -> None:
    for step in reads:
        (request,) = step.requests(session.ns)
        token = recorder.invoke(client, step)
        outcome = session.send(request)  # no answer: the availability divergence, as for any sequential read
        (recorder.ok if outcome.ok else recorder.fail)(token, outcome)


def _start_all(clients: Sequence[_Client]) -> list[threading.Thread]:
    start = threading.Barrier(len(clients), timeout=BARRIER_TIMEOUT)
    threads = [
        threading.Thread(target=c.run, args=(start,), name=f"kalammodel-parallel-{c.index}", daemon=True)
        for c in clients
    ]
    for t in threads:
        t.start()
    return threads


def _join_all(session: Session, clients: Sequence[_Client], threads: Sequence[threading.Thread]) -> None:
    longest = max(len(c.steps) for c in clients)
    budget = BARRIER_TIMEOUT + REQUEST_TIMEOUT * (longest + 1)
    deadline = time.monotonic() + budget
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [c.index for c, t in zip(clients, threads) if t.is_alive()]
    if alive:
        raise Divergence(
            Invariant.AVAILABILITY,
            f"parallel client(s) {alive} did not finish their steps within {budget:.0f} s",
            step_index=session.step_index,
            namespace=session.ns,
        )
    for c in clients:
        if c.error is not None and not isinstance(c.error, threading.BrokenBarrierError):
            raise c.error
    broken = [c.index for c in clients if isinstance(c.error, threading.BrokenBarrierError)]
    if broken:
        raise Divergence(
            Invariant.AVAILABILITY,
            f"parallel clients {broken} never all reached the start line within {BARRIER_TIMEOUT:.0f} s",
            step_index=session.step_index,
            namespace=session.ns,
        )


def _transcribe(session: Session, history: Sequence[Operation]) -> None:
    for o in history:
        assert isinstance(o.op, Step)
        (request,) = o.op.requests(session.ns)
        if o.status is Status.INDETERMINATE:
            status, summary = "indeterminate", "no answer"
        else:
            assert isinstance(o.outcome, Outcome) and o.ret is not None
            status = "ok" if o.outcome.ok else f"{o.outcome.status} {o.outcome.code}"
            summary = o.outcome.brief()
        ms = 0.0 if o.ret is None else round((o.ret - o.invoke) * 1000, 3)
        session.transcript.append(
            TranscriptEntry(
                session.step_index, f"[client {o.client}] {request}", request.actor, status, summary, ms
            )
        )


def run_section(
    session: Session,
    clients: Sequence[Sequence[Step]],
    *,
    check_timeout: float = CHECK_TIMEOUT,
    stats: ParallelStats | None = None,
) -> SectionReport:
    """Run one parallel section on ``session`` after its prefix (module docstring, steps 2 to 5); its report
    is added to ``stats`` (a failing one too)."""
    session.settle()
    model = session.model
    model.clock = session.runner.clock()
    for steps in clients:
        for step in steps:
            _check_by_key(model, step)
    recorder = HistoryRecorder()
    workers = [_Client(i, session, steps, recorder) for i, steps in enumerate(clients)]
    try:
        for w in workers:
            w.connect()
        threads = _start_all(workers)
        _join_all(session, workers, threads)
    finally:
        for w in workers:
            w.close()
    session.runner.stats.steps += sum(len(steps) for steps in clients)
    spec = ModelSpec(model, [s for steps in clients for s in steps])
    _transcribe(session, recorder.history())
    _record_closing_reads(session, recorder, _closing_reads(session, spec), len(clients))
    history = recorder.history()
    verdict = check(history, spec, timeout=check_timeout)
    report = SectionReport(len(clients), tuple(history), verdict)
    if stats is not None:
        stats.add(report)
    if verdict.result is Result.NOT_LINEARIZABLE:
        raise Divergence(
            Invariant.LINEARIZABILITY,
            verdict.message,
            step_index=session.step_index,
            step=f"parallel section of {len(clients)} clients",
            expected="an order of the section's operations that the model admits, answer by answer",
            actual=[f"client {o.client}: {spec.describe_op(o.op)}" for o in verdict.core],
            namespace=session.ns,
        )
    if verdict.result is Result.OK:
        _adopt(session, spec, verdict)
    return report


def _adopt(session: Session, spec: ModelSpec, verdict: Verdict) -> None:
    """The session continues from the order the checker found: its model, its steps, its touched scopes."""
    session.model = spec.replay(verdict.linearizations)
    for order in verdict.linearizations:
        for o in order:
            assert isinstance(o.op, Step)
            session.steps.append(o.op)
            session.step_index += 1
    for table_name, owner in spec.scopes:
        session.mark_scope(table_name, owner)
