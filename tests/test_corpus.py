"""The shrunk-case corpus: atomic save, collapse by signature, validation, classification, replay, export.

Fake steps and a scripted fake runner stand in for ``kalammodel.steps`` and ``kalammodel.runner``, so these
tests need no server.
"""

from __future__ import annotations

import decimal
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from kalammodel import corpus
from kalammodel.corpus import (
    FLAKY_MIN_RUNS,
    Case,
    CaseFileError,
    RunContext,
    export_curl,
    export_pytest,
    export_sql,
    format_failure,
    iter_cases,
    load_case,
    replay_case,
    replay_paths,
    save_case,
)
from kalammodel.corpus import format as case_format
from kalammodel.errors import Divergence, UsageError

# --------------------------------------------------------------------------------------------------- fakes


@attrs.frozen
class FakeRequest:
    actor: str
    sql: str
    as_user: str | None = None


@attrs.frozen
class CreateTable:
    kind: ClassVar[str] = "create_table"
    table: str
    table_kind: str = "USER"

    def requests(self, ns: str) -> list[FakeRequest]:
        return [
            FakeRequest(
                "root", f"CREATE {self.table_kind} TABLE {ns}.{self.table} (id BIGINT PRIMARY KEY, v TEXT)"
            )
        ]

    def describe(self) -> str:
        return f"create_table({self.table}, {self.table_kind})"


@attrs.frozen
class Insert:
    kind: ClassVar[str] = "insert"
    table: str
    id: int
    actor: str = "dba"
    as_user: str | None = None

    def requests(self, ns: str) -> list[FakeRequest]:
        sql = f"INSERT INTO {ns}.{self.table} (id, v) VALUES ({self.id}, 'it''s')"
        return [FakeRequest(self.actor, sql, self.as_user)]

    def describe(self) -> str:
        return f"insert({self.table}, id={self.id}, as {self.as_user or self.actor})"


@attrs.frozen
class Select:
    kind: ClassVar[str] = "select"
    table: str
    actor: str = "user1"
    as_user: str | None = None

    def requests(self, ns: str) -> list[FakeRequest]:
        return [FakeRequest(self.actor, f"SELECT * FROM {ns}.{self.table} WHERE id > 0", self.as_user)]

    def describe(self) -> str:
        return f"select({self.table}, as {self.as_user or self.actor})"


@attrs.frozen
class Wait:
    kind: ClassVar[str] = "wait"
    seconds: float = 1.0

    def requests(self, ns: str) -> list[FakeRequest]:
        return []

    def describe(self) -> str:
        return f"wait({self.seconds})"


KINDS: dict[str, Any] = {cls.kind: cls for cls in (CreateTable, Insert, Select, Wait)}


def to_data(step: Any) -> dict[str, Any]:
    return {"kind": step.kind, **attrs.asdict(step)}


def from_data(data: dict[str, Any]) -> Any:
    data = dict(data)
    kind = data.pop("kind")
    try:
        return KINDS[kind](**data)
    except TypeError as exc:
        raise UsageError(f"step {kind!r}: {exc}") from None


@pytest.fixture(autouse=True)
def fake_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(case_format, "step_codec", lambda: case_format.StepCodec(to_data, from_data, KINDS))


@attrs.frozen
class FakeResult:
    ok: bool
    divergence: Any = None
    error: str | None = None
    transcript: list[Any] = attrs.field(factory=list)


class ScriptedRunner:
    """Answers run_steps from a script: 'pass', 'fail' (the saved invariant), 'fail:<invariant>', 'error'."""

    def __init__(self, script: list[str], invariant: str = "isolation"):
        self.script = list(script)
        self.invariant = invariant
        self.calls: list[list[Any]] = []

    def run_steps(self, steps: list[Any], namespace: str | None = None) -> FakeResult:
        self.calls.append(list(steps))
        what = self.script.pop(0) if self.script else "pass"
        transcript = [{"step_index": i, "status": 200, "run": len(self.calls)} for i in range(len(steps))]
        if what == "pass":
            return FakeResult(True, transcript=transcript)
        if what == "error":
            return FakeResult(False, error="TransportError: connection refused", transcript=transcript)
        invariant = what.partition(":")[2] or self.invariant
        div = Divergence(
            invariant, "user2 sees user1's row", step_index=len(steps) - 1, expected=[], actual=[[1]]
        )
        return FakeResult(False, divergence=div, transcript=transcript)


STEPS = [
    CreateTable("t1"),
    Insert("t1", 1, actor="dba", as_user="user1"),
    Insert("t1", 2, actor="user2"),
    Select("t1", actor="user2"),
]
NS = "km_ab12cd"
#: what the run that found the fake failures knows: its namespace and the roles of its actor pool
CONTEXT = RunContext(NS, {"root": "system", "dba": "dba", "user1": "user", "user2": "user"})


def divergence(steps: list[Any] = STEPS, invariant: str = "isolation", **kw: Any) -> Divergence:
    index = len(steps) - 1
    request = steps[index].requests(NS)[0]
    args: dict[str, Any] = dict(
        step_index=index,
        step=steps[index],
        request=request.sql,
        actor=request.actor,
        expected=[{"id": 2, "v": "it's"}],
        actual=[{"id": 1, "v": "it's"}, {"id": 2, "v": "it's"}],
    )
    args.update(kw)
    return Divergence(invariant, "user2 reads a row of user1", **args)


def saved(directory: Path, steps: list[Any] = STEPS, **kw: Any) -> corpus.SavedCase:
    return save_case(directory, steps, divergence(steps), context=CONTEXT, workload="chat", **kw)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".json"))


# --------------------------------------------------------------------------------------------------- save / load


def test_save_then_load_round_trips_the_case(tmp_path: Path) -> None:
    """A saved case loads back with the same steps, signature and divergence."""
    result = saved(tmp_path)
    assert result.action == "created"
    assert result.path.name == f"isolation-{result.case.fingerprint}.json"
    case = load_case(result.path)
    assert list(case.steps) == STEPS
    assert case.signature == corpus.Signature("isolation", "select", "USER")
    assert case.divergence.message == "user2 reads a row of user1"
    assert case.divergence.step_index == 3
    assert case.divergence.actual == [{"id": 1, "v": "it's"}, {"id": 2, "v": "it's"}]
    assert case.divergence.namespace == NS
    assert case.workload == "chat"
    assert case.classification == "deterministic"
    assert case.actors == {"root": "system", "dba": "dba", "user2": "user"}


def test_from_data_mirrors_to_data(tmp_path: Path) -> None:
    """Case.from_data(case.to_data()) is the same case, and its data the same data."""
    case = saved(tmp_path).case
    again = Case.from_data(case.to_data())
    assert again == case
    assert again.to_data() == case.to_data()


def test_run_context_collects_what_target_and_pool_know() -> None:
    """RunContext.collect reads the namespace, roles, version, public URL and every secret; nothing else."""

    class Target:
        base_url = "http://admin:urlpass99@127.0.0.1:8080/base?token=querytoken123"
        root_password = "Root-Pa55-word!"
        jwt_secret = "jwt-secret-0123456789abcdef"

        def server_version(self) -> str:
            return "0.4.3-rc.4"

    class Pool:
        identities = {"root": "system", "dba": "dba"}

        def role(self, name: str) -> str:
            return self.identities[name]

        def password(self, name: str) -> str:
            return "Root-Pa55-word!" if name == "root" else "Km-dba-secret-1!"

    context = RunContext.collect(Target(), Pool(), NS, extra_secrets=["extra-secret"])
    assert (context.namespace, dict(context.actors)) == (NS, {"root": "system", "dba": "dba"})
    assert (context.server_version, context.public_url) == ("0.4.3-rc.4", "http://127.0.0.1:8080/base")
    assert set(context.secrets) == {"Root-Pa55-word!", "Km-dba-secret-1!", "jwt-secret-0123456789abcdef",
                                    "urlpass99", "token=querytoken123", "extra-secret"}  # fmt: skip
    assert RunContext.collect(None, None, None) == RunContext()


def test_without_a_context_nothing_is_guessed(tmp_path: Path) -> None:
    """A case saved without a RunContext records no namespace, no roles and no server: none is guessed."""
    case = load_case(save_case(tmp_path, STEPS, divergence(), workload="chat").path)
    assert case.divergence.namespace is None
    assert case.actors == {}
    assert (case.server_version, case.server_url) == (None, None)
    assert "ROLE user;" in export_sql(case) and "ROLE dba" not in export_sql(case)


def test_case_file_carries_every_documented_field(tmp_path: Path) -> None:
    """The JSON file has the format tag, version, manifest, signature, replays, steps and divergence."""
    data = json.loads(saved(tmp_path).path.read_text())
    assert data["format"] == "kalammodel-case"
    assert data["format_version"] == 1
    for key in ("kalammodel_version", "server", "workload", "created_at", "fingerprint", "signature"):
        assert key in data
    assert data["created_at"].endswith("Z")
    assert set(data["replays"]) >= {"runs", "failed", "transcripts"}
    assert set(data["divergence"]) >= {
        "invariant",
        "message",
        "step_index",
        "request",
        "actor",
        "expected",
        "actual",
    }
    assert data["steps"][1] == {"kind": "insert", "table": "t1", "id": 1, "actor": "dba", "as_user": "user1"}


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    """An atomic save leaves only the case file in the directory."""
    saved(tmp_path)
    saved(tmp_path, STEPS[:1] + STEPS[2:])  # shorter: replaces the file
    assert leftovers(tmp_path) == []
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_crash_during_replace_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When os.replace fails mid-save the old case file is intact and the temp file is gone."""
    first = saved(tmp_path)
    before = first.path.read_bytes()

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        saved(tmp_path, [STEPS[0], STEPS[3]])
    assert first.path.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_same_signature_collapses_keeping_the_shorter_program(tmp_path: Path) -> None:
    """The same bug found twice is one file, holding the shorter step list."""
    long = saved(tmp_path)
    short = saved(tmp_path, [STEPS[0], STEPS[2], STEPS[3]])
    assert short.path == long.path and short.action == "replaced"
    longer_again = saved(tmp_path, [Wait(), *STEPS])
    assert longer_again.action == "kept" and longer_again.path == long.path
    assert len(load_case(long.path).steps) == 3
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_different_signatures_get_different_files(tmp_path: Path) -> None:
    """A different invariant or table kind is a different bug: a different file."""
    a = saved(tmp_path)
    b = save_case(tmp_path, STEPS, divergence(invariant="uniqueness"), workload="chat", context=CONTEXT)
    shared = [CreateTable("t1", "SHARED"), *STEPS[1:]]
    c = save_case(tmp_path, shared, divergence(shared), workload="chat", context=CONTEXT)
    assert len({a.path, b.path, c.path}) == 3
    assert load_case(c.path).signature.table_kind == "SHARED"


def test_unreadable_file_with_same_signature_is_not_overwritten(tmp_path: Path) -> None:
    """An existing corrupt file is kept; the new case goes to a numbered name."""
    first = saved(tmp_path)
    first.path.write_text("{ broken")
    again = saved(tmp_path)
    assert first.path.read_text() == "{ broken"
    assert again.path != first.path and again.path.name.startswith(first.path.stem)
    assert load_case(again.path).steps == tuple(STEPS)


def test_expected_and_actual_become_json_safe(tmp_path: Path) -> None:
    """Values JSON cannot hold are stored as data (attrs, Decimal, bytes) or as their repr."""

    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque thing>"

    expected = {"price": decimal.Decimal("1.50"), "blob": b"\x00\x01", "req": FakeRequest("root", "SELECT 1")}
    div = divergence(expected=expected, actual=(Opaque(), float("nan"), {1, 2}))
    case = load_case(save_case(tmp_path, STEPS, div, context=CONTEXT).path)
    assert case.divergence.expected == {
        "price": "1.50",
        "blob": {"bytes_hex": "0001"},
        "req": {"actor": "root", "sql": "SELECT 1", "as_user": None, "type": "FakeRequest"},
    }
    assert case.divergence.actual == ["<Opaque thing>", "nan", [1, 2]]
    assert case.divergence.actual_text is not None and case.divergence.actual_text.startswith(
        "(<Opaque thing>, nan"
    )
    assert case.divergence.expected_text is None  # plain data shows as JSON


def test_credentials_never_reach_the_case_file(tmp_path: Path) -> None:
    """Passwords, tokens and URL credentials of target and pool are absent from the saved file."""
    root_pw, user_pw, jwt = (
        "Root-Pa55-word!",
        "Km-user-secret-77!",
        "eyJhbGciOi.eyJzdWIiOiJyb290In0.c2lnbmF0dXJl",
    )

    class Target:
        base_url = "http://admin:urlpass99@127.0.0.1:8080/base?token=querytoken123#frag"
        root_password = root_pw
        jwt_secret = "jwt-secret-0123456789abcdef"

        def server_version(self) -> str:
            return "0.4.3-rc.4"

    class Pool:
        identities = {"root": "system", "user1": "user", "user2": "user", "dba": "dba"}

        def password(self, name: str) -> str:
            return root_pw if name == "root" else user_pw

        def role(self, name: str) -> str:
            return self.identities[name]

    runner = ScriptedRunner(["fail", "pass", "fail"])
    div = divergence(
        actual={"token": jwt, "auth": f"Bearer {jwt}", "note": f"login with {user_pw}"},
        request=f"ALTER USER 'x' SET PASSWORD '{user_pw}'",
    )
    result = save_case(
        tmp_path, STEPS, div, context=RunContext.collect(Target(), Pool(), NS), workload="chat", runner=runner
    )
    text = result.path.read_text()
    for secret in (
        root_pw,
        user_pw,
        jwt,
        "urlpass99",
        "querytoken123",
        "jwt-secret-0123456789abcdef",
        "admin:",
    ):
        assert secret not in text
    data = json.loads(text)
    assert data["server"] == {"version": "0.4.3-rc.4", "url": "http://127.0.0.1:8080/base"}
    assert data["actors"]["user2"] == "user"


# --------------------------------------------------------------------------------------------------- corrupt files


def _good_data(tmp_path: Path) -> dict[str, Any]:
    path = saved(tmp_path / "seed").path
    return json.loads(path.read_text())


CORRUPTIONS: dict[str, tuple[Any, str]] = {
    "not_json": (lambda d, text: "this is not json at all", "is not JSON"),
    "truncated": (lambda d, text: text[: len(text) // 2], "is truncated"),
    "empty": (lambda d, text: "", "is empty"),
    "wrong_tag": (
        lambda d, text: json.dumps({**d, "format": "schemathesis-crash"}),
        "format tag 'schemathesis-crash'",
    ),
    "future_version": (lambda d, text: json.dumps({**d, "format_version": 99}), "newer kalammodel"),
    "missing_field": (
        lambda d, text: json.dumps({k: v for k, v in d.items() if k != "divergence"}),
        "missing field 'divergence'",
    ),
    "unknown_step_kind": (
        lambda d, text: json.dumps({**d, "steps": [*d["steps"], {"kind": "teleport", "table": "t1"}]}),
        "step #4 has unknown kind 'teleport'",
    ),
    "bad_step_field": (
        lambda d, text: json.dumps({**d, "steps": [{"kind": "insert", "table": "t1", "color": "red"}]}),
        "step #0 (insert) is malformed",
    ),
    "bad_classification": (
        lambda d, text: json.dumps({**d, "classification": "maybe"}),
        "classification 'maybe'",
    ),
    "steps_not_list": (
        lambda d, text: json.dumps({**d, "steps": "all of them"}),
        "field 'steps' must be list",
    ),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_case_file_is_reported_with_its_name(tmp_path: Path, name: str) -> None:
    """Each kind of corrupt file raises CaseFileError naming the file and the problem."""
    data = _good_data(tmp_path)
    mutate, needle = CORRUPTIONS[name]
    path = tmp_path / f"{name}.json"
    path.write_text(mutate(data, json.dumps(data, indent=2)))
    with pytest.raises(CaseFileError) as info:
        load_case(path)
    assert str(path) in str(info.value)
    assert needle in str(info.value)
    assert isinstance(info.value, UsageError)
    assert path.exists()


def test_future_version_says_to_upgrade(tmp_path: Path) -> None:
    """A case from a newer format version tells the user to upgrade kalammodel."""
    data = _good_data(tmp_path)
    path = tmp_path / "future.json"
    path.write_text(json.dumps({**data, "format_version": 2}))
    with pytest.raises(CaseFileError, match="upgrade kalammodel"):
        load_case(path)


def test_missing_case_file_is_a_case_file_error(tmp_path: Path) -> None:
    """Loading a path that does not exist names it and says what to give instead."""
    with pytest.raises(CaseFileError, match="no such file"):
        load_case(tmp_path / "nope.json")


def test_bad_files_never_stop_the_others_nor_get_deleted(tmp_path: Path) -> None:
    """iter_cases and replay_paths report every corrupt file, replay the good one and delete nothing bad."""
    corpus_dir = tmp_path / "cases"
    good = saved(corpus_dir).path
    data = json.loads(good.read_text())
    bad = {}
    for name, (mutate, _) in CORRUPTIONS.items():
        bad[name] = corpus_dir / f"{name}.json"
        bad[name].write_text(mutate(data, json.dumps(data)))
    results = dict(iter_cases([corpus_dir]))
    assert isinstance(results[good], Case)
    assert all(isinstance(results[p], CaseFileError) for p in bad.values())

    runner = ScriptedRunner(["pass"])
    outcomes, code = replay_paths([corpus_dir], runner, prune=True)
    assert code == 2
    by_path = {o.path: o for o in outcomes}
    assert by_path[good].status == "fixed" and by_path[good].pruned
    assert len(runner.calls) == 1
    for name, path in bad.items():
        assert by_path[path].status == "error"
        assert path.exists(), name
    assert not good.exists()


# --------------------------------------------------------------------------------------------------- classification


def test_all_replays_failing_alike_is_deterministic(tmp_path: Path) -> None:
    """Every replay failing with the saved invariant classifies the case deterministic, transcripts dropped."""
    runner = ScriptedRunner(["fail", "fail", "fail"])
    case = load_case(saved(tmp_path, runner=runner, replays=3).path)
    assert case.classification == "deterministic"
    assert (case.replays.runs, case.replays.failed) == (3, 3)
    assert case.replays.passing == () and case.replays.failing == ()
    assert len(runner.calls) == 3


def test_some_replays_passing_is_flaky_with_both_transcripts(tmp_path: Path) -> None:
    """A case that passes on some replays is flaky and keeps one passing and one failing transcript."""
    runner = ScriptedRunner(["pass", "fail", "pass", "fail"])
    case = load_case(saved(tmp_path, runner=runner, replays=4).path)
    assert case.classification == "flaky"
    assert (case.replays.runs, case.replays.failed) == (4, 2)
    assert len(case.replays.passing) == 1 and len(case.replays.failing) == 1
    assert case.replays.passing[0][0]["run"] == 1 and case.replays.failing[0][0]["run"] == 2


def test_failing_with_another_invariant_is_flaky(tmp_path: Path) -> None:
    """Replays that all fail but not always with the same invariant are not deterministic."""
    runner = ScriptedRunner(["fail", "fail:uniqueness", "fail"])
    assert load_case(saved(tmp_path, runner=runner).path).classification == "flaky"


def test_no_replay_failing_is_not_reproducible(tmp_path: Path) -> None:
    """A case that never fails on replay is not_reproducible; replay errors are recorded."""
    runner = ScriptedRunner(["pass", "error", "pass"])
    case = load_case(saved(tmp_path, runner=runner).path)
    assert case.classification == "not_reproducible"
    assert case.replays.failed == 0
    assert case.replays.errors == ("TransportError: connection refused",)


# --------------------------------------------------------------------------------------------------- replay


@pytest.fixture
def case_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "shrunk_cases"
    saved(directory)
    other = [CreateTable("t2", "SHARED"), Select("t2")]
    save_case(directory, other, divergence(other, invariant="rbac"), workload="chat", context=CONTEXT)
    yield directory


def test_replay_all_fixed_exits_0(case_dir: Path) -> None:
    """When every case passes, replay_paths reports fixed and exits 0."""
    outcomes, code = replay_paths([case_dir], ScriptedRunner(["pass", "pass"]))
    assert code == 0
    assert [o.status for o in outcomes] == ["fixed", "fixed"]


def test_replay_still_failing_exits_1_and_names_the_invariant(case_dir: Path) -> None:
    """A case that diverges again exits 1 and says whether the invariant is the same."""
    outcomes, code = replay_paths([case_dir], ScriptedRunner(["pass", "fail:rbac"]))
    assert code == 1
    failing = [o for o in outcomes if o.status == "failing"]
    assert len(failing) == 1 and failing[0].same_invariant is True
    assert "same invariant [rbac]" in failing[0].message


def test_replay_reports_a_different_invariant(case_dir: Path) -> None:
    """A divergence of another invariant is still failing, flagged as different."""
    case = load_case(next(case_dir.glob("isolation-*.json")))
    outcome = replay_case(case, ScriptedRunner(["fail:uniqueness"]))
    assert outcome.status == "failing" and outcome.same_invariant is False
    assert "different invariant [uniqueness]" in outcome.message


def test_replay_error_exits_2(case_dir: Path) -> None:
    """A transport error during replay is an error outcome and exit code 2 (over 1)."""
    outcomes, code = replay_paths([case_dir], ScriptedRunner(["error", "fail"]))
    assert code == 2
    assert sorted(o.status for o in outcomes) == ["error", "failing"]


def test_replay_runner_exception_is_an_error_outcome(case_dir: Path) -> None:
    """A runner that raises gives an error outcome instead of stopping the replay."""

    class Exploding:
        def run_steps(self, steps: list[Any]) -> Any:
            raise RuntimeError("boom")

    outcomes, code = replay_paths([case_dir], Exploding())
    assert code == 2 and all("RuntimeError: boom" in o.message for o in outcomes)


def test_prune_removes_only_fixed_cases(case_dir: Path) -> None:
    """--prune deletes the files of fixed cases and keeps the failing ones."""
    files = sorted(case_dir.glob("*.json"))
    outcomes, code = replay_paths([case_dir], ScriptedRunner(["fail", "pass"]), prune=True)
    assert code == 1
    kept = [p for p in files if p.exists()]
    assert kept == [o.path for o in outcomes if o.status == "failing"]
    assert [o.pruned for o in outcomes] == [False, True]


def test_flaky_case_is_fixed_only_after_many_passing_runs(tmp_path: Path) -> None:
    """A flaky case needs FLAKY_MIN_RUNS passing replays before it counts as fixed."""
    case = load_case(saved(tmp_path, runner=ScriptedRunner(["pass", "fail", "fail"])).path)
    assert case.classification == "flaky"
    runner = ScriptedRunner(["pass"] * (FLAKY_MIN_RUNS - 1) + ["fail"])
    outcome = replay_case(case, runner)
    assert outcome.status == "failing" and len(runner.calls) == FLAKY_MIN_RUNS
    fixed = replay_case(case, ScriptedRunner([]))
    assert fixed.status == "fixed" and fixed.runs == FLAKY_MIN_RUNS


# --------------------------------------------------------------------------------------------------- show / export


def test_format_failure_prints_program_divergence_and_replay_command() -> None:
    """The failure renders as numbered describe() lines, expected vs actual and one replay command."""
    text = format_failure(STEPS, divergence(), "kalammodel replay shrunk_cases/isolation-abc.json")
    lines = text.splitlines()
    assert lines[0] == "Failing test case (4 steps):"
    assert lines[1].strip() == "#0  create_table(t1, USER)"
    assert lines[4].strip() == "#3  select(t1, as user2)   <-- diverged here"
    assert "[isolation] user2 reads a row of user1" in text
    assert 'expected: [{"id": 2, "v": "it\'s"}]' in text
    assert "acting user: user2" in text
    assert lines[-1] == "  kalammodel replay shrunk_cases/isolation-abc.json"


def _export_case(tmp_path: Path) -> Case:
    return load_case(saved(tmp_path).path)


def test_export_sql_renders_execute_as_and_the_divergence(tmp_path: Path) -> None:
    """The SQL script creates the namespace, wraps impersonated requests and marks the diverging statement."""
    case = _export_case(tmp_path)
    ns = f"kmcase_{case.fingerprint}"
    sql = export_sql(case)
    assert f"CREATE NAMESPACE {ns};" in sql
    assert "-- as dba, executing as user 'user1'\n" in sql
    assert f"EXECUTE AS USER 'user1' (INSERT INTO {ns}.t1 (id, v) VALUES (1, 'it''s'));" in sql
    assert f"-- as user2\nINSERT INTO {ns}.t1 (id, v) VALUES (2, 'it''s');" in sql
    diverged = f"SELECT * FROM {ns}.t1 WHERE id > 0;\n-- ^^^ DIVERGED [isolation]: user2 reads a row of user1"
    assert diverged in sql
    assert "-- Divergence [isolation] at step #3: user2 reads a row of user1" in sql
    assert "--   CREATE USER 'user2' WITH PASSWORD '<password>' ROLE user;" in sql
    assert NS not in sql


def test_export_sql_adds_the_check_request_that_diverged(tmp_path: Path) -> None:
    """A divergence found by a check read (not a step's request) is appended after its step, re-based."""
    div = divergence(
        step_index=2, request=f"SELECT id FROM {NS}.t1 ORDER BY id", actor="user2", step=STEPS[2]
    )
    case = load_case(save_case(tmp_path, STEPS, div, context=CONTEXT).path)
    sql = export_sql(case)
    ns = f"kmcase_{case.fingerprint}"
    check = f"-- kalammodel's check after step #2\n-- as user2\nSELECT id FROM {ns}.t1 ORDER BY id;\n-- ^^^ DIVERGED"
    assert check in sql
    assert sql.index("step #2:") < sql.index("check after step #2") < sql.index("step #3:")


def test_export_sql_notes_steps_without_sql(tmp_path: Path) -> None:
    """A step that sends no SQL appears as a comment in order."""
    steps = [STEPS[0], Wait(2.0), STEPS[3]]
    case = load_case(save_case(tmp_path, steps, divergence(steps), context=CONTEXT).path)
    sql = export_sql(case)
    assert "-- step #1: wait(2.0)\n--   (no SQL request" in sql


def test_export_pytest_is_valid_python_with_the_requests(tmp_path: Path) -> None:
    """The pytest export compiles, needs only kalammodel.client and runs each request as its user."""
    case = _export_case(tmp_path)
    source = export_pytest(case)
    compile(source, "test_case.py", "exec")
    assert "from kalammodel.client import KalamClient" in source
    assert "kalammodel.runner" not in source and "kalammodel.corpus" not in source
    assert 'os.environ.get("KALAMDB_URL")' in source and 'os.environ.get("KALAMDB_ROOT_PASSWORD")' in source
    assert "client.execute_as(as_user, sql)" in source
    namespace: dict[str, Any] = {}
    exec(compile(source, "test_case.py", "exec"), namespace)
    ns = f"kmcase_{case.fingerprint}"
    assert namespace["ACTORS"] == {"dba": "dba", "user2": "user"}
    assert namespace["REQUESTS"][1] == (1, "insert(t1, id=1, as user1)", "dba", "user1",
                                        f"INSERT INTO {ns}.t1 (id, v) VALUES (1, 'it''s')", False)  # fmt: skip
    assert namespace["REQUESTS"][-1][-1] is True
    assert namespace["EXPECTED"] == [{"id": 2, "v": "it's"}]


def test_export_curl_logs_in_and_posts_sql(tmp_path: Path) -> None:
    """The curl script logs in each acting user and posts every request; it is valid sh."""
    case = _export_case(tmp_path)
    script = export_curl(case)
    ns = f"kmcase_{case.fingerprint}"
    assert "/v1/api/auth/login" in script and "/v1/api/sql" in script
    assert 'ROOT=$(login root "$KALAMDB_ROOT_PASSWORD")' in script
    assert 'TOKEN_1=$(login dba "$PW")' in script
    body = json.dumps({"sql": f"EXECUTE AS USER 'user1' (INSERT INTO {ns}.t1 (id, v) VALUES (1, 'it''s'))"})
    assert body.replace("'", "'\"'\"'") in script
    assert "echo '>>> the next answer DIVERGED [isolation]'" in script
    if shutil.which("sh"):
        check = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True, timeout=10)
        assert check.returncode == 0, check.stderr


def test_public_names_are_sorted_and_exist() -> None:
    """corpus.__all__ is sorted (constants, classes, functions) and every name in it exists."""

    def order(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert list(corpus.__all__) == sorted(corpus.__all__, key=order)
    assert all(hasattr(corpus, name) for name in corpus.__all__)


def test_saving_nothing_is_a_usage_error(tmp_path: Path) -> None:
    """save_case refuses an empty step list and a missing divergence with a clear message."""
    with pytest.raises(UsageError, match="empty step list"):
        save_case(tmp_path, [], divergence(), context=CONTEXT)
    with pytest.raises(UsageError, match="divergence"):
        save_case(tmp_path, STEPS, None, context=CONTEXT)
    assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------------------------------- tests/test_replay.py


def _run_replay_module(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a copy of tests/test_replay.py beside a corpus of ``files``, with stand-in session fixtures."""
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(Path(__file__).with_name("test_replay.py"), tests / "test_replay.py")
    (tests / "conftest.py").write_text(
        "import pytest\n\n"
        "@pytest.fixture(scope='session')\ndef kalamdb_target():\n    return object()\n\n"
        "@pytest.fixture(scope='session')\ndef actor_pool():\n    return object()\n"
    )
    cases = tmp_path / "shrunk_cases"
    cases.mkdir()
    for name, text in files.items():
        (cases / name).write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-rA",
         str(tests / "test_replay.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip


def test_replay_module_collects_one_test_for_an_empty_corpus(tmp_path: Path) -> None:
    """With no case files test_replay.py still runs one passing test (pytest never exits 5)."""
    proc = _run_replay_module(tmp_path, {"README.md": "# corpus\n"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_replay_module_fails_a_corrupt_case_in_its_own_test(tmp_path: Path) -> None:
    """A corrupt case file fails its own test, named after the file, with the CaseFileError message."""
    proc = _run_replay_module(tmp_path, {"broken-case.json": "{ not json"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED tests/test_replay.py::test_shrunk_case_is_fixed[broken-case.json]" in proc.stdout
    assert "broken-case.json: is not JSON" in proc.stdout
    assert "1 failed, 1 passed" in proc.stdout


def test_runner_style_request_is_stored_as_sql(tmp_path: Path) -> None:
    """A request rendered as "[actor] sql" (str of a runner Request) is stored as the SQL and still matched."""
    sql = STEPS[1].requests(NS)[0].sql
    div = divergence(
        step_index=1,
        step=STEPS[1].describe(),
        request=f"[dba] EXECUTE AS USER 'user1' ({sql})",
        actor="dba as user1",
    )
    case = load_case(save_case(tmp_path, STEPS, div, context=CONTEXT).path)
    assert case.divergence.request == f"EXECUTE AS USER 'user1' ({sql})"
    assert case.divergence.namespace == NS
    assert case.signature.step_kind == "insert"
    exported = export_sql(case)
    assert "'it''s'));\n-- ^^^ DIVERGED [isolation]" in exported
    assert "kalammodel's check" not in exported
