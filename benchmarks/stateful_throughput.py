"""Throughput of the stateful tester, and what its checks cost as a scope grows (issue 3).

Run: /tmp/venv/bin/python benchmarks/stateful_throughput.py [--examples 8] [--steps 40] [--repeat 3] [--warmup 2] [--rows 100,5000]

Spawns the embedded server (``EmbeddedTarget``: ``python -m kalammodel.server`` on a free loopback port with a
temporary data dir), logs the default workload's identities in, and measures in one run:

1. **Machine vs bare loop.** The Hypothesis state machine runs the default workload (derandomized,
   ``--examples`` examples of ``--steps`` steps; restart steps through ``kalammodel.checks.restart``; ``--live``
   adds the live-query extension). Every ``POST /v1/api/sql`` the runner sends (the steps' own SQL,
   read-backs, full scope reads, flush-job polls, namespace setup and teardown) is recorded with the identity
   that sent it. A bare loop then replays exactly those request bodies with plain ``httpx`` (one keep-alive
   client per identity, the same users' tokens, the response read but not decoded) against the same server.
   Target: the machine's requests/s are >= 70% of the bare loop's. Deliberate waits (``Pause`` steps letting
   STREAM rows expire, flush-job poll intervals, server restarts, logins) are not throughput: the machine's
   rate is also given with them subtracted, and that figure is the one held against the target. ``--warmup``
   untimed examples run first (first imports such as pyarrow, Hypothesis's constants pool, the server's first
   flush: one-off costs a long run does not pay per step); ``--repeat`` runs of machine-then-replay follow, and
   the run of median ratio is the one reported and held against the target.
2. **Per-step cost vs scope size.** For each ``--rows`` N, a USER table scope of ``user1`` is pre-loaded with N
   rows through the runner (multi-row ``Insert`` steps, so the model knows them), then the same seeded mix of
   ``--mix-steps`` steps runs, the sizes alternating in blocks of 20 steps: 30% single-row inserts, 30%
   updates by PK, 25% selects by PK, 15% deletes by PK. Reported per step: wall time in ``Session.run``, of
   which the step's own request, the read-back of written keys, the periodic full scope reads (amortised), and
   the rest (model, comparison, runner). Target: per-step cost at the largest N <= 1.5x the cost at the
   smallest. Part 2 runs with ``Runner(send_ahead=False)`` so that every check's whole cost lands in the step
   it verifies.

``--profile FILE`` writes a cProfile of part 2 at the largest N (read it with ``python -m pstats FILE``).
Never run this as a timed test: it takes about a minute and its figures depend on the machine's load.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import random
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from kalammodel.client import KalamClient, Pending
from kalammodel.generation import load_workload, machine_for, tuned_gc
from kalammodel.model import Cmp, Column, ColumnType, TableSpec
from kalammodel.runner import Runner, Session
from kalammodel.steps import CreateTable, Delete, Insert, Select, Step, Update
from kalammodel.targets import ActorPool, EmbeddedTarget, RemoteTarget

REPO = Path(__file__).resolve().parent.parent
SQL_PATH = "/v1/api/sql"
RATE_TARGET = 0.70
GROWTH_TARGET = 1.5


# ---------------------------------------------------------------------- instrumentation


@attrs.frozen
class SentRequest:
    """One HTTP request as the runner sent it: who, where, and the exact body bytes."""

    actor: str
    method: str
    path: str
    body: bytes
    seconds: float


class Recorder:
    """Records every request a pool identity's client sends while ``recording`` is on.

    Patches ``KalamClient._send`` for the duration, so clients created later (a relogin after a restart)
    are recorded too; the identity is found from the client's user id.
    """

    def __init__(self, pool: ActorPool):
        self.pool = pool
        self.sent: list[SentRequest] = []

    @contextmanager
    def on(self) -> Iterator[list[SentRequest]]:
        self.sent = sent = []
        names = {self.pool.user_id(name): name for name in self.pool.names}
        original = KalamClient._send

        def send(client: KalamClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
            started = time.perf_counter()
            try:
                return original(client, method, path, **kwargs)
            finally:
                actor = names.get(client.user or "", "?")
                body = kwargs.get("json_body")
                data = b"" if body is None else json.dumps(body).encode()
                sent.append(SentRequest(actor, method, path, data, time.perf_counter() - started))

        original_ahead = KalamClient._send_ahead

        def send_ahead(client: KalamClient, sql: str, idempotent: bool = True) -> Pending[Any]:
            # A request sent ahead (Runner(send_ahead=True)): its time is the sending plus the reading of its
            # answer (not the overlap between), recorded when the answer is read.
            started = time.perf_counter()
            pending = original_ahead(client, sql, idempotent)
            sending = time.perf_counter() - started
            data = json.dumps({"sql": sql}).encode()
            actor = names.get(client.user or "", "?")

            def answer() -> Any:
                begun = time.perf_counter()
                try:
                    return pending.result()
                finally:
                    sent.append(SentRequest(actor, "POST", SQL_PATH, data, sending + time.perf_counter() - begun))

            return Pending(answer, abort=pending.discard)

        KalamClient._send = send  # type: ignore[method-assign]
        KalamClient._send_ahead = send_ahead  # type: ignore[method-assign]
        try:
            yield sent
        finally:
            KalamClient._send = original  # type: ignore[method-assign]
            KalamClient._send_ahead = original_ahead  # type: ignore[method-assign]


class SleepMeter:
    """Counts the seconds spent in ``time.sleep`` (Pause steps, job-poll intervals) and in server restarts."""

    def __init__(self, target: Any) -> None:
        self.seconds = 0.0
        self.restart_seconds = 0.0
        self.restarts = 0
        self._real = time.sleep
        self._target = target
        self._restarting = False

    def _sleep(self, seconds: float) -> None:
        if not self._restarting:
            self.seconds += max(0.0, seconds)
        self._real(seconds)

    def _restart(self, *args: Any, **kwargs: Any) -> None:
        self._restarting = True
        started = time.perf_counter()
        try:
            type(self._target).restart(self._target, *args, **kwargs)
        finally:
            self.restart_seconds += time.perf_counter() - started
            self.restarts += 1
            self._restarting = False

    @contextmanager
    def installed(self) -> Iterator[SleepMeter]:
        time.sleep = self._sleep  # type: ignore[assignment]
        self._target.restart = self._restart  # type: ignore[method-assign]
        try:
            yield self
        finally:
            time.sleep = self._real  # type: ignore[assignment]
            del self._target.restart


class RecordingRunner(Runner):
    """A Runner that keeps the sessions it creates (to count steps and transcript entries)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.sessions: list[Session] = []
        self.run_seconds = 0.0  # wall time inside Session.run (the runner), waits and requests included
        self.run_http_seconds = 0.0  # of which inside HTTP requests
        self.sent: list[SentRequest] = []  # the recorder's list, while recording

    def session(self, namespace: str | None = None) -> Session:
        session = super().session(namespace)
        self.sessions.append(session)
        run = session.run

        def timed_run(step: Step) -> None:
            first = len(self.sent)
            started = time.perf_counter()
            try:
                run(step)
            finally:
                self.run_seconds += time.perf_counter() - started
                self.run_http_seconds += sum(r.seconds for r in self.sent[first:])

        session.run = timed_run  # type: ignore[method-assign]
        return session


# ---------------------------------------------------------------------- part 1: machine vs bare loop


@attrs.frozen
class ThroughputResult:
    examples: int
    steps: int
    requests: int
    transcript_entries: int
    machine_seconds: float
    slept_seconds: float
    restarts: int
    restart_seconds: float
    other_http: int
    other_http_seconds: float
    sql_http_seconds: float  # of the machine's time, inside its SQL requests' HTTP round trips
    runner_cpu_seconds: float  # inside Session.run but not in waits or HTTP: model, comparisons, decoding
    bare_seconds: float
    bare_errors: int

    @property
    def busy_seconds(self) -> float:
        waits = self.slept_seconds + self.restart_seconds + self.other_http_seconds
        return max(1e-9, self.machine_seconds - waits)

    @property
    def machine_rps(self) -> float:
        return self.requests / self.busy_seconds

    @property
    def machine_rps_raw(self) -> float:
        return self.requests / self.machine_seconds

    @property
    def bare_rps(self) -> float:
        return self.requests / self.bare_seconds

    @property
    def ratio(self) -> float:
        return self.machine_rps / self.bare_rps


def run_machine_part(
    target: Any,
    pool: ActorPool,
    recorder: Recorder,
    examples: int,
    steps: int,
    live: bool = False,
    warmup: int = 0,
) -> ThroughputResult:
    workload = load_workload("default", search_dirs=(REPO / "models",))
    extensions: list[Any] = []
    try:  # restart steps of the default workload kill and restart the server, as in the stateful test
        from kalammodel.checks.restart import RestartExtension

        extensions.append(RestartExtension.factory)
    except ImportError:
        pass
    if live:  # as tests/test_stateful.py runs it; WebSocket traffic is not replayed by the bare loop
        from kalammodel.checks.live import live_extension

        extensions.append(live_extension)
    runner = RecordingRunner(target, pool, extensions=extensions)
    machine = machine_for(runner, workload)
    profile = settings(
        max_examples=examples,
        stateful_step_count=steps,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    if warmup:  # untimed: first imports (pyarrow, ...), Hypothesis's constants pool, the server's first flush
        warm = settings(profile, max_examples=warmup)
        with tuned_gc():
            run_state_machine_as_test(machine_for(RecordingRunner(target, pool, extensions=extensions), workload), settings=warm)
    meter = SleepMeter(target)
    with recorder.on() as sent, meter.installed():
        runner.sent = sent
        started = time.perf_counter()
        with tuned_gc():  # as run_machine runs it
            run_state_machine_as_test(machine, settings=profile)
        machine_seconds = time.perf_counter() - started
    sql = [r for r in sent if r.method == "POST" and r.path == SQL_PATH]
    other = [r for r in sent if not (r.method == "POST" and r.path == SQL_PATH)]
    bare_seconds, errors = replay(target.base_url, pool, sql)
    return ThroughputResult(
        examples=len(runner.sessions),
        steps=sum(s.step_index + 1 for s in runner.sessions),
        requests=len(sql),
        transcript_entries=sum(len(s.transcript) for s in runner.sessions),
        machine_seconds=machine_seconds,
        slept_seconds=meter.seconds,
        restarts=meter.restarts,
        restart_seconds=meter.restart_seconds,
        other_http=len(other),
        other_http_seconds=sum(r.seconds for r in other),
        sql_http_seconds=sum(r.seconds for r in sql),
        runner_cpu_seconds=runner.run_seconds
        - meter.seconds
        - meter.restart_seconds
        - runner.run_http_seconds,
        bare_seconds=bare_seconds,
        bare_errors=errors,
    )


def replay(base_url: str, pool: ActorPool, requests: list[SentRequest]) -> tuple[float, int]:
    """Send ``requests`` again in order with plain httpx, as the same users; (seconds, non-2xx answers)."""
    clients = {
        name: httpx.Client(
            base_url=base_url,
            timeout=30.0,
            trust_env=False,
            headers={
                "Authorization": f"Bearer {pool.client(name).token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        for name in {r.actor for r in requests}
    }
    try:
        for client in clients.values():  # open the keep-alive connections before timing
            client.get("/health")
        errors = 0
        started = time.perf_counter()
        for r in requests:
            resp = clients[r.actor].request(r.method, r.path, content=r.body)  # the JSON body as sent
            if resp.status_code >= 300:
                errors += 1
        return time.perf_counter() - started, errors
    finally:
        for client in clients.values():
            client.close()


# ---------------------------------------------------------------------- part 2: per-step cost vs scope size


@attrs.frozen
class ScopeResult:
    rows: int
    steps: int
    check_every: int
    step_ms: float  # mean wall time of Session.run per step
    own_ms: float  # the step's own request(s)
    read_back_ms: float  # read-back of the written keys (request + model + compare)
    read_back_wire_ms: float  # of which the request (server, HTTP, decoding)
    full_check_ms: float  # periodic full scope checks, amortised per step
    full_check_wire_ms: float  # of which the paged read and COUNT(*)
    full_checks: int
    one_full_check_ms: float  # one full check of the pre-loaded scope
    requests_per_step: float

    @property
    def rest_ms(self) -> float:
        return self.step_ms - self.own_ms - self.read_back_ms - self.full_check_ms


TABLE = "bench"
OWNER = "user1"
SPEC = TableSpec(
    name=TABLE,
    kind="USER",  # TableSpec converts str(v).upper(): a TableKind member does not convert
    columns=(
        Column("id", ColumnType.BIGINT, nullable=False, primary_key=True),
        Column("name", ColumnType.TEXT),
        Column("n", ColumnType.INT),
        Column("ok", ColumnType.BOOLEAN),
    ),
)
COLUMNS = tuple(c.name for c in SPEC.columns)
TYPES = tuple(c.type for c in SPEC.columns)


def _row(key: int, rng: random.Random) -> tuple[Any, ...]:
    return (key, f"name {key} {rng.randrange(1000)}", rng.randrange(-1000, 1000), rng.random() < 0.5)


def _mix(rng: random.Random, live: list[int], next_key: int) -> tuple[Step, int]:
    """One step of the fixed mix over the scope's live keys (mutates ``live``)."""
    roll = rng.random()
    pk = ("id", ColumnType.BIGINT)
    if roll < 0.30 or not live:
        live.append(next_key)
        return Insert(OWNER, TABLE, COLUMNS, TYPES, (_row(next_key, rng),)), next_key + 1
    index = rng.randrange(len(live))
    key = live[index]
    if roll < 0.60:
        sets = (
            ("n", ColumnType.INT, rng.randrange(-1000, 1000)),
            ("name", ColumnType.TEXT, f"u{rng.random()}"),
        )
        return Update.by_pk(OWNER, TABLE, *pk, key, sets), next_key
    if roll < 0.85:
        return Select(OWNER, TABLE, where=Cmp("id", ColumnType.BIGINT, "=", key)), next_key
    live[index] = live[-1]
    live.pop()
    return Delete.by_pk(OWNER, TABLE, *pk, key), next_key


@attrs.define
class Timing:
    """Seconds spent in calls of one Session method, and the transcript entries those calls added."""

    seconds: float = 0.0
    calls: int = 0
    entries: set[int] = attrs.Factory(set)


@contextmanager
def _timed(session: Session, name: str, into: Timing) -> Iterator[None]:
    """Time every call of ``session.<name>`` (an instance override of the bound method)."""
    original = getattr(session, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        first = len(session.transcript)
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            into.seconds += time.perf_counter() - started
            into.calls += 1
            into.entries.update(range(first, len(session.transcript)))

    setattr(session, name, wrapper)
    try:
        yield
    finally:
        delattr(session, name)


class ScopeRun:
    """One scope size of part 2: a session with a pre-loaded scope and its seeded mix, run in blocks."""

    def __init__(self, runner: Runner, rows: int, mix_steps: int, seed: int):
        self.rows = rows
        self.runner = runner
        self.session = session = runner.session()
        rng = random.Random(seed)
        session.run(CreateTable("dba", SPEC))
        for start in range(0, rows, 500):
            batch = tuple(_row(k, rng) for k in range(start, min(rows, start + 500)))
            session.run(Insert(OWNER, TABLE, COLUMNS, TYPES, batch))
        started = time.perf_counter()
        session.check_all()  # time two full comparisons of the loaded scope
        session._dirty.add((TABLE, OWNER))
        session.check_all()
        self.one_full_ms = (time.perf_counter() - started) / 2 * 1000
        # Start the mix on a periodic checkpoint, right after a full comparison, for every size alike.
        while (session.step_index + 1) % runner.check_every != 0:
            session.run(Select(OWNER, TABLE, where=Cmp("id", ColumnType.BIGINT, "=", 0)))
        live = list(range(rows))
        next_key = rows
        mix_rng = random.Random(seed + 1)
        self.steps: list[Step] = []
        for _ in range(mix_steps):
            step, next_key = _mix(mix_rng, live, next_key)
            self.steps.append(step)
        self.done = 0
        self.elapsed = 0.0
        self.read_backs = Timing()
        self.checks = Timing()
        self.first_entry = len(session.transcript)

    def run_block(self, n: int, profiler: cProfile.Profile | None = None) -> None:
        block = self.steps[self.done : self.done + n]
        session = self.session
        with _timed(session, "_read_back", self.read_backs), _timed(session, "check_all", self.checks):
            if profiler is not None:
                profiler.enable()
            started = time.perf_counter()
            for step in block:
                session.run(step)
            self.elapsed += time.perf_counter() - started
            if profiler is not None:
                profiler.disable()
        self.done += len(block)

    def result(self) -> ScopeResult:
        entries = self.session.transcript
        checked = self.read_backs.entries | self.checks.entries
        own = sum(entries[i].ms for i in range(self.first_entry, len(entries)) if i not in checked)
        full_reads = sum(1 for i in self.checks.entries if " read_all " in f" {entries[i].request}")
        n = self.done
        return ScopeResult(
            rows=self.rows,
            steps=n,
            check_every=self.runner.check_every,
            step_ms=self.elapsed / n * 1000,
            own_ms=own / n,
            read_back_ms=self.read_backs.seconds / n * 1000,
            read_back_wire_ms=sum(entries[i].ms for i in self.read_backs.entries) / n,
            full_check_ms=self.checks.seconds / n * 1000,
            full_check_wire_ms=sum(entries[i].ms for i in self.checks.entries) / n,
            full_checks=full_reads,
            one_full_check_ms=self.one_full_ms,
            requests_per_step=(len(entries) - self.first_entry) / n,
        )

    def close(self) -> None:
        try:
            self.session.check_all()  # the teardown comparison, as the machine does
        finally:
            self.session.close()


def run_scope_part(
    target: EmbeddedTarget,
    pool: ActorPool,
    sizes: list[int],
    mix_steps: int,
    runner_options: dict[str, Any],
    seed: int,
    block: int = 20,
    profile_to: Path | None = None,
) -> list[ScopeResult]:
    """Pre-load one scope per size, then run their mixes in alternating blocks of ``block`` steps.

    Alternating spreads the other processes' load on the shared cores evenly over the sizes compared.
    """
    runs: list[ScopeRun] = []
    try:
        for rows in sizes:
            # send_ahead off: each check's whole cost shows in the step it verifies (sent ahead, its answer
            # would be read and compared in the next step, and the server's part would hide behind the mix's
            # own Python) — the stricter measure of what a check costs as the scope grows.
            options = {"send_ahead": False, **runner_options}
            runs.append(ScopeRun(Runner(target, pool, **options), rows, mix_steps, seed))
        profiler = cProfile.Profile() if profile_to is not None else None
        while any(r.done < len(r.steps) for r in runs):
            for r in runs:
                r.run_block(block, profiler if r is runs[-1] else None)
        if profiler is not None and profile_to is not None:
            profiler.dump_stats(str(profile_to))
        return [r.result() for r in runs]
    finally:
        for r in runs:
            r.close()


# ---------------------------------------------------------------------- report


def machine_info() -> str:
    load = os.getloadavg()
    return (
        f"{platform.node()} {platform.system()} {platform.release()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def report_throughput(results: list[ThroughputResult], load_before: str, load_after: str) -> bool:
    """Report the run of median ratio in full, and every run's ratio."""
    ranked = sorted(results, key=lambda r: r.ratio)
    t = ranked[(len(ranked) - 1) // 2]
    ok = t.ratio >= RATE_TARGET
    print("\n1. State machine vs bare httpx loop (default workload, same SQL, same users)")
    print(f"   {len(results)} run(s), each the machine then its bare replay; ratios in run order: "
          + ", ".join(f"{r.ratio:.0%}" for r in results) + "; the median run:")  # fmt: skip
    print(f"   examples {t.examples}, steps {t.steps}, HTTP SQL requests {t.requests} "
          f"(transcript entries {t.transcript_entries}), load average {load_before} -> {load_after}")  # fmt: skip
    print(f"   {'':34} {'seconds':>9} {'steps/s':>9} {'requests/s':>11}")
    rows = [
        ("state machine (wall)", t.machine_seconds, t.steps / t.machine_seconds, t.machine_rps_raw),
        ("state machine (minus waits)", t.busy_seconds, t.steps / t.busy_seconds, t.machine_rps),
        ("bare httpx loop", t.bare_seconds, float("nan"), t.bare_rps),
    ]
    for name, seconds, sps, rps in rows:
        shown = "" if sps != sps else f"{sps:9.1f}"
        print(f"   {name:34} {seconds:9.2f} {shown:>9} {rps:11.1f}")
    print(f"   deliberate waits: sleeps (Pause steps, job-poll intervals) {t.slept_seconds:.2f} s, "
          f"{t.restarts} server restart(s) {t.restart_seconds:.2f} s, {t.other_http} login/other non-SQL "
          f"request(s) {t.other_http_seconds:.2f} s;\n  "
          f"bare-loop non-2xx answers: {t.bare_errors}")  # fmt: skip
    tester = t.busy_seconds - t.sql_http_seconds
    print(f"   machine busy time: {t.sql_http_seconds:.2f} s in SQL requests (sending, and waiting for answers; "
          f"reads sent ahead are answered while the tester works) (the bare loop: {t.bare_seconds:.2f} s "
          f"for the same requests) + {tester:.2f} s tester CPU, of which {t.runner_cpu_seconds:.2f} s in the "
          f"runner (model, comparisons, decoding) and {tester - t.runner_cpu_seconds:.2f} s outside it "
          f"(Hypothesis drawing steps, machine rules)")  # fmt: skip
    verdict = "MET" if ok else "MISSED"
    print(f"   machine / bare request rate (median run): {t.ratio:.0%} (target >= {RATE_TARGET:.0%}): {verdict}")
    return ok


def report_scopes(results: list[ScopeResult], load_before: str, load_after: str) -> bool:
    print("\n2. Per-step cost vs scope size (USER table scope of user1; mix: 30% insert, 30% update by PK, "
          "25% select by PK, 15% delete by PK)")  # fmt: skip
    print(f"   load average {load_before} -> {load_after}; times are means per step, in ms")
    print("   (wire: the requests themselves — server, HTTP and decoding — as the transcript timed them)")
    header = (
        f"   {'rows':>6} {'steps':>6} {'step':>7} {'own req':>8} {'read-back':>10} {'(wire)':>7} "
        f"{'full chk':>9} {'(wire)':>7} {'rest':>6} {'req/step':>9} {'full reads':>11} {'1 full read':>12}"
    )
    print(header)
    for r in results:
        print(
            f"   {r.rows:>6} {r.steps:>6} {r.step_ms:7.2f} {r.own_ms:8.2f} {r.read_back_ms:10.2f} "
            f"{r.read_back_wire_ms:7.2f} {r.full_check_ms:9.2f} {r.full_check_wire_ms:7.2f} {r.rest_ms:6.2f} "
            f"{r.requests_per_step:9.2f} {r.full_checks:>11} {r.one_full_check_ms:10.1f}ms"
        )
    small, large = results[0], results[-1]
    growth = large.step_ms / small.step_ms
    checks_small = small.read_back_ms + small.full_check_ms
    checks_large = large.read_back_ms + large.full_check_ms
    ok = growth <= GROWTH_TARGET
    print(f"   per-step cost {large.rows} / {small.rows} rows: {growth:.2f}x (target <= {GROWTH_TARGET}x): "
          f"{'MET' if ok else 'MISSED'}; check time per step {checks_small:.2f} -> {checks_large:.2f} ms")  # fmt: skip
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--examples", type=int, default=8, help="state machine examples (part 1)")
    ap.add_argument("--steps", type=int, default=40, help="stateful_step_count (part 1)")
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="part 1 runs (each machine run followed by its bare replay); the median ratio is held to the target",
    )
    ap.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="untimed examples before part 1 (first imports, Hypothesis's constants pool, the server's first flush)",
    )
    ap.add_argument(
        "--live",
        action="store_true",
        help="part 1 with the live-query extension (its WebSocket time counts, its frames are not replayed)",
    )
    ap.add_argument("--rows", default="100,5000", help="comma-separated scope sizes (part 2)")
    ap.add_argument("--mix-steps", type=int, default=400, help="steps of the mix per scope size (part 2)")
    ap.add_argument("--check-every", type=int, default=None, help="override Runner(check_every=) in part 2")
    ap.add_argument(
        "--check-rows-per-step",
        type=int,
        default=None,
        help="override Runner(check_rows_per_step=) in part 2",
    )
    ap.add_argument("--seed", type=int, default=3, help="seed of part 2's rows and mix")
    ap.add_argument("--skip", choices=("machine", "scopes"), action="append", default=[], help="skip a part")
    ap.add_argument("--profile", type=Path, default=None, help="cProfile part 2 at the largest size to FILE")
    ap.add_argument(
        "--url",
        default=None,
        help="measure against this running server (e.g. a real KalamDB) instead of a spawned embedded one; "
        "restart steps are then skipped",
    )
    ap.add_argument(
        "--root-password",
        default=os.environ.get("KALAMDB_ROOT_PASSWORD"),
        help="root password of --url's server (default: $KALAMDB_ROOT_PASSWORD)",
    )
    args = ap.parse_args(argv)
    if args.url is not None and not args.root_password:
        ap.error("--url needs --root-password (or KALAMDB_ROOT_PASSWORD)")
    sizes = sorted(int(x) for x in args.rows.split(",") if x.strip())

    print("command:", shlex.join([sys.executable, *sys.argv]))
    print("machine:", machine_info())
    workload = load_workload("default", search_dirs=(REPO / "models",))
    target: Any = RemoteTarget(args.url, args.root_password) if args.url else EmbeddedTarget()
    target.start()
    ok = True
    try:
        with ActorPool.for_target(target, workload.roles()) as pool:
            pool.open_all()
            print(
                f"server: {target.describe()} (version {target.server_version()}), "
                f"data dir {target.data_dir or 'not read'}"
            )
            recorder = Recorder(pool)
            if "machine" not in args.skip:
                before = _load()
                results = [
                    run_machine_part(
                        target, pool, recorder, args.examples, args.steps, args.live, args.warmup if i == 0 else 0
                    )
                    for i in range(args.repeat)
                ]
                ok &= report_throughput(results, before, _load())
            if "scopes" not in args.skip:
                before = _load()
                options = {} if args.check_every is None else {"check_every": args.check_every}
                if args.check_rows_per_step is not None:
                    options["check_rows_per_step"] = args.check_rows_per_step
                results = run_scope_part(
                    target, pool, sizes, args.mix_steps, options, args.seed, profile_to=args.profile
                )
                ok &= report_scopes(results, before, _load())
    finally:
        target.close()
    print("\nmachine after the run:", machine_info())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
