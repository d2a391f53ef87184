"""The ``kalammodel`` command line: show, export, replay exit codes, run/serve command lines, clear errors.

Fake steps and a scripted runner replace ``kalammodel.steps`` and the server, so no process is started except
in the one test that checks the console entry point end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from kalammodel import cli, corpus
from kalammodel.corpus import format as case_format
from kalammodel.errors import Divergence, TransportError, UsageError


@attrs.frozen
class FakeRequest:
    actor: str
    sql: str
    as_user: str | None = None


@attrs.frozen
class Write:
    kind: ClassVar[str] = "write"
    table: str
    id: int
    actor: str = "dba"
    as_user: str | None = None

    def requests(self, ns: str) -> list[FakeRequest]:
        return [
            FakeRequest(self.actor, f"INSERT INTO {ns}.{self.table} (id) VALUES ({self.id})", self.as_user)
        ]

    def describe(self) -> str:
        return f"write({self.table}, id={self.id}, as {self.as_user or self.actor})"


@attrs.frozen
class Read:
    kind: ClassVar[str] = "read"
    table: str
    actor: str = "user2"

    def requests(self, ns: str) -> list[FakeRequest]:
        return [FakeRequest(self.actor, f"SELECT id FROM {ns}.{self.table}")]

    def describe(self) -> str:
        return f"read({self.table}, as {self.actor})"


KINDS: dict[str, Any] = {"write": Write, "read": Read}


@pytest.fixture(autouse=True)
def fake_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    def from_data(data: dict[str, Any]) -> Any:
        data = dict(data)
        return KINDS[data.pop("kind")](**data)

    codec = case_format.StepCodec(lambda s: {"kind": s.kind, **attrs.asdict(s)}, from_data, KINDS)
    monkeypatch.setattr(case_format, "step_codec", lambda: codec)


@attrs.frozen
class Result:
    ok: bool
    divergence: Any = None
    error: str | None = None
    transcript: list[Any] = attrs.field(factory=list)


class FakeLazyRunner:
    """Stands in for cli._LazyRunner: scripted outcomes ('pass', 'fail', 'error'), records start/close."""

    script: ClassVar[list[str]] = []
    events: ClassVar[list[str]] = []

    def __init__(self, args: Any, actors: dict[str, str]):
        self.actors = actors

    def start(self) -> None:
        FakeLazyRunner.events.append("start")

    def close(self) -> None:
        FakeLazyRunner.events.append("close")

    def run_steps(self, steps: list[Any]) -> Result:
        what = FakeLazyRunner.script.pop(0)
        if what == "pass":
            return Result(True)
        if what == "error":
            return Result(False, error="TransportError: connection reset")
        return Result(
            False, Divergence("isolation", "leak", step_index=len(steps) - 1, expected=[], actual=[[1]])
        )


@pytest.fixture
def fake_runner(monkeypatch: pytest.MonkeyPatch) -> type[FakeLazyRunner]:
    FakeLazyRunner.script = []
    FakeLazyRunner.events = []
    monkeypatch.setattr(cli, "_LazyRunner", FakeLazyRunner)
    return FakeLazyRunner


def make_case(directory: Path, invariant: str = "isolation", table: str = "t1") -> Path:
    steps = [Write(table, 1, as_user="user1"), Read(table)]
    div = Divergence(
        invariant,
        "user2 sees the row of user1",
        step_index=1,
        request=f"SELECT id FROM km_x1.{table}",
        actor="user2",
        expected=[],
        actual=[[1]],
    )
    context = corpus.RunContext("km_x1", {"root": "system", "dba": "dba", "user1": "user", "user2": "user"})
    return corpus.save_case(directory, steps, div, context=context, workload="chat").path


@pytest.fixture
def corpus_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    directory = tmp_path / "shrunk_cases"
    make_case(directory, "isolation")
    make_case(directory, "rbac", "t2")
    return directory


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------------- show / export


def test_show_prints_the_program_and_divergence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """show prints the classification, the numbered steps, expected vs actual and the replay command."""
    path = make_case(tmp_path)
    code, out, _ = run(capsys, "show", str(path))
    assert code == 0
    assert "classification: deterministic" in out
    assert "#0  write(t1, id=1, as user1)" in out
    assert "#1  read(t1, as user2)   <-- diverged here" in out
    assert "expected: []" in out and "actual:   [[1]]" in out
    assert "kalammodel replay " in out and path.name in out


def test_export_sql_prints_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """export without --out prints the SQL script with the EXECUTE AS wrapper."""
    path = make_case(tmp_path)
    code, out, _ = run(capsys, "export", str(path))
    assert code == 0
    assert "CREATE NAMESPACE kmcase_" in out
    assert "EXECUTE AS USER 'user1' (INSERT INTO kmcase_" in out


def test_export_all_writes_three_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """export --format all --out DIR writes the SQL, pytest and curl files."""
    path = make_case(tmp_path)
    out_dir = tmp_path / "export"
    code, out, _ = run(capsys, "export", str(path), "--format", "all", "--out", str(out_dir))
    assert code == 0
    names = sorted(p.name for p in out_dir.iterdir())
    stem = path.stem
    assert names == sorted([f"{stem}.sh", f"{stem}.sql", f"test_{stem.replace('-', '_')}.py"])
    compile((out_dir / f"test_{stem.replace('-', '_')}.py").read_text(), "t.py", "exec")
    assert out.count("wrote ") == 3


def test_export_all_without_out_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format all needs --out: exit 2 with a message saying so."""
    code, _, err = run(capsys, "export", str(make_case(tmp_path)), "--format", "all")
    assert code == 2 and "give --out DIR" in err


def test_missing_case_file_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """show/export of a missing file print one line naming it and exit 2."""
    missing = tmp_path / "nope.json"
    for command in ("show", "export"):
        code, _, err = run(capsys, command, str(missing))
        assert code == 2
        assert str(missing) in err and "no such file" in err


def test_corrupt_case_file_exits_2_with_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """show of a corrupt case names the file and what is wrong, exit 2."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format": "kalammodel-case", "format_version": 7}))
    code, _, err = run(capsys, "show", str(path))
    assert code == 2
    assert "bad.json" in err and "newer kalammodel" in err
    assert path.exists()


# --------------------------------------------------------------------------------------------------- replay


def test_replay_all_fixed_exits_0(
    corpus_dir: Path, fake_runner: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """replay of a fixed corpus prints one line per case, a summary, and exits 0."""
    fake_runner.script = ["pass", "pass"]
    code, out, _ = run(capsys, "replay")
    assert code == 0
    lines = out.splitlines()
    assert len([line for line in lines if line.startswith("FIXED")]) == 2
    assert lines[-1] == "2 case(s): 2 fixed, 0 failing, 0 error"
    assert fake_runner.events == ["start", "close"]


def test_replay_still_failing_exits_1(
    corpus_dir: Path, fake_runner: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A case that still diverges makes replay exit 1."""
    fake_runner.script = ["fail", "pass"]
    code, out, _ = run(capsys, "replay", str(corpus_dir))
    assert code == 1
    assert "FAILING" in out and "1 fixed, 1 failing, 0 error" in out


def test_replay_error_and_corrupt_file_exit_2(
    corpus_dir: Path, fake_runner: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corrupt file is an ERROR line (file kept) while the other cases still replay; exit 2."""
    bad = corpus_dir / "aaa-truncated.json"
    bad.write_text('{"format": "kalammodel-case", "format_version": 1, "steps": [')
    fake_runner.script = ["pass", "pass"]
    code, out, _ = run(capsys, "replay")
    assert code == 2
    assert f"ERROR    shrunk_cases/{bad.name}  is truncated" in out
    assert out.count("FIXED") == 2
    assert bad.exists()


def test_replay_transport_error_exits_2(
    corpus_dir: Path, fake_runner: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A transport error during a replay is reported and exits 2."""
    fake_runner.script = ["error", "fail"]
    code, out, _ = run(capsys, "replay")
    assert code == 2 and "connection reset" in out


def test_replay_prune_removes_only_fixed(
    corpus_dir: Path, fake_runner: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """--prune deletes fixed case files and keeps failing ones."""
    files = sorted(corpus_dir.glob("*.json"))
    fake_runner.script = ["pass", "fail"]
    code, out, _ = run(capsys, "replay", "--prune")
    assert code == 1
    assert [p.exists() for p in files] == [False, True]
    assert "(1 pruned)" in out


def test_replay_empty_corpus_starts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_runner: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """With no case files replay says so, starts no server and exits 0."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shrunk_cases").mkdir()
    code, out, _ = run(capsys, "replay")
    assert code == 0 and "no case files" in out
    assert fake_runner.events == []


def test_replay_only_corrupt_files_starts_no_server(tmp_path: Path, fake_runner: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A corpus of unreadable files is reported without starting a server."""
    (tmp_path / "x.json").write_text("not json")
    code, out, _ = run(capsys, "replay", str(tmp_path))
    assert code == 2 and "is not JSON" in out
    assert "start" not in fake_runner.events


def test_replay_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An explicit path that does not exist is a usage error naming it."""
    code, _, err = run(capsys, "replay", str(tmp_path / "gone"))
    assert code == 2 and "gone" in err and "no such file or directory" in err


def test_replay_unknown_fault_exits_2(corpus_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --fault names the value and lists the valid faults."""
    code, _, err = run(capsys, "replay", "--fault", "no_such_fault")
    assert code == 2
    assert "'no_such_fault'" in err and "user_select_leak" in err


def test_replay_unreachable_url_exits_2(corpus_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A server URL that does not answer gives a message naming the URL and what to check, exit 2."""
    from kalammodel import targets

    def quick_remote(url: str | None = None, root_password: str | None = None, **kw: Any) -> targets.Target:
        assert url is not None and root_password is not None
        return targets.RemoteTarget(url, root_password, startup_timeout=0.3)

    monkeypatch.setattr(targets, "target_from_config", quick_remote)
    url = "http://127.0.0.1:9"  # discard port: nothing listens
    code, _, err = run(capsys, "replay", "--kalamdb-url", url, "--root-password", "pw-Secret-1!")
    assert code == 2
    assert url in err and "--kalamdb-url" in err and "Traceback" not in err
    assert "pw-Secret-1!" not in err


def test_replay_url_without_password_exits_2(corpus_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """--kalamdb-url without a root password is a usage error saying how to give it."""
    monkeypatch.delenv("KALAMDB_ROOT_PASSWORD", raising=False)
    code, _, err = run(capsys, "replay", "--kalamdb-url", "http://127.0.0.1:9")
    assert code == 2 and "root password" in err


def test_replay_lazy_runner_reports_start_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """_open_failure turns a transport error into a usage message naming the URL."""
    args = cli.build_parser().parse_args(["replay", "--kalamdb-url", "http://h:1"])
    error = cli._open_failure(args, TransportError("refused"))
    assert isinstance(error, UsageError) and "http://h:1" in str(error) and "refused" in str(error)


# --------------------------------------------------------------------------------------------------- run / serve


def test_run_builds_the_pytest_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:  # fmt: skip
    """run passes profile, workload, URL and extra args to pytest on tests/test_stateful.py; the password goes
    through the environment, not the command line."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_stateful.py").write_text("")
    seen: dict[str, Any] = {}

    def fake_foreground(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        seen.update(argv=argv, env=env, cwd=cwd)
        return 3

    monkeypatch.setattr(cli, "_repo_root", lambda: tmp_path)
    monkeypatch.setattr(cli, "_foreground", fake_foreground)
    code, _, _ = run(capsys, "run", "--profile", "ci", "--workload", "chat", "--kalamdb-url", "http://h:8080",
                     "--root-password", "S3cret-pw!", "--", "-x", "-k", "leak")  # fmt: skip
    assert code == 3
    assert seen["argv"][1:] == ["-m", "pytest", str(tmp_path / "tests" / "test_stateful.py"),
                                "--hypothesis-profile=ci", "--kalammodel-workload=chat",
                                "--kalamdb-url=http://h:8080", "-x", "-k", "leak"]  # fmt: skip
    assert seen["env"]["KALAMDB_ROOT_PASSWORD"] == "S3cret-pw!"
    assert seen["cwd"] == tmp_path


def test_run_without_tests_dir_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:  # fmt: skip
    """run outside a checkout explains that tests/test_stateful.py is needed."""
    monkeypatch.setattr(cli, "_repo_root", lambda: tmp_path)
    code, _, err = run(capsys, "run")
    assert code == 2 and "test_stateful.py" in err and "source checkout" in err


def test_serve_starts_the_embedded_server(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:  # fmt: skip
    """serve runs python -m kalammodel.server with port, data dir and faults in the foreground."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(
        cli, "_foreground", lambda argv, env=None, cwd=None: seen.update(argv=argv, env=env) or 0
    )
    code, _, _ = run(
        capsys, "serve", "--port", "0", "--data-dir", str(tmp_path), "--fault", "user_select_leak"
    )
    assert code == 0
    assert seen["argv"][1:] == ["-m", "kalammodel.server", "--host", "127.0.0.1", "--port", "0",
                                "--data-dir", str(tmp_path), "--fault", "user_select_leak"]  # fmt: skip


def test_serve_unknown_fault_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """serve refuses an unknown fault before starting anything."""
    code, _, err = run(capsys, "serve", "--fault", "typo_fault")
    assert code == 2 and "'typo_fault'" in err and "valid faults" in err


def test_pytest_args_only_for_run(capsys: pytest.CaptureFixture[str]) -> None:
    """Arguments after -- are refused for commands other than run."""
    with pytest.raises(SystemExit) as info:
        cli.main(["show", "x.json", "--", "-x"])
    assert info.value.code == 2
    assert "passed to pytest by 'kalammodel run' only" in capsys.readouterr().err


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    """The real entry point reports a missing case file in one line, exit 2, without a traceback."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from kalammodel.cli import main; sys.exit(main())", "show",
         str(tmp_path / "missing.json")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "missing.json" in proc.stderr


def test_cli_public_names() -> None:
    """cli.__all__ is sorted and complete."""
    assert cli.__all__ == sorted(cli.__all__)
    assert all(callable(getattr(cli, name)) for name in cli.__all__)
