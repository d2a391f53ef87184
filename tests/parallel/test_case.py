"""Parallel programs saved as case files (a ``parallel`` section) and replayed; sequential cases unchanged."""

from __future__ import annotations

import json

import pytest
from _build import count, get, insert, scan, update

from kalammodel.corpus import load_case, replay_case, save_case
from kalammodel.corpus.format import CaseFileError
from kalammodel.errors import Divergence, Invariant, UsageError
from kalammodel.model import Column, ColumnType, TableSpec
from kalammodel.parallel import ParallelProgram, ProgramCaseRunner
from kalammodel.runner import Runner
from kalammodel.steps import CreateTable

B = ColumnType.BIGINT
PROGRAM = ParallelProgram(
    [
        CreateTable("root", TableSpec("t", "USER", [Column("id", B, primary_key=True), Column("v", B)])),
        insert(1, 0),
    ],
    [[update(1, 5), get(1)], [insert(1, 7), count()], [update(1, 6)]],
    [scan(), count()],
)
FOUND = Divergence(Invariant.LINEARIZABILITY, "not linearizable: ...", step_index=1, namespace="km_x")


def test_a_parallel_case_keeps_its_program(tmp_path):
    """The file holds the flattened steps and the program in its own 'parallel' section; both load back."""
    saved = save_case(tmp_path, PROGRAM.steps, FOUND, parallel=PROGRAM)
    data = json.loads(saved.path.read_text())
    assert data["parallel"] == json.loads(json.dumps(PROGRAM.to_data()))
    assert len(data["steps"]) == len(PROGRAM.steps) == 9
    case = load_case(saved.path)
    assert case.parallel == PROGRAM and case.steps == PROGRAM.steps
    assert case.signature.invariant == "linearizability"


def test_a_sequential_case_has_no_parallel_section(tmp_path):
    saved = save_case(tmp_path, PROGRAM.prefix, Divergence(Invariant.OUTCOME, "x", step_index=0))
    assert "parallel" not in json.loads(saved.path.read_text())
    assert load_case(saved.path).parallel is None


def test_a_bad_parallel_section_names_the_field(tmp_path):
    saved = save_case(tmp_path, PROGRAM.steps, FOUND, parallel=PROGRAM)
    data = json.loads(saved.path.read_text())
    data["parallel"]["clients"] = data["parallel"]["clients"][:1]
    saved.path.write_text(json.dumps(data))
    with pytest.raises(
        CaseFileError, match=r"field 'parallel': parallel program: field 'clients' must hold 2 to 8"
    ):
        load_case(saved.path)


def test_a_parallel_case_is_classified_and_replayed_as_a_program(tmp_path, kalamdb_target, actor_pool):
    """Saved with its program runner, the case is replayed 3 times as a parallel program (the embedded server
    is linearizable: none fails); replay_case runs the program again, not the flattened steps."""
    runner = Runner(kalamdb_target, actor_pool)
    sessions = runner.stats.sessions
    saved = save_case(
        tmp_path, PROGRAM.steps, FOUND, runner=ProgramCaseRunner(runner, PROGRAM), parallel=PROGRAM
    )
    assert saved.case.classification == "not_reproducible" and saved.case.replays.runs == 3
    outcome = replay_case(load_case(saved.path), runner)
    assert outcome.status == "fixed", outcome.message
    assert runner.stats.sessions == sessions + 4
    with pytest.raises(UsageError, match="replays its own program"):
        ProgramCaseRunner(runner, PROGRAM).run_steps(PROGRAM.prefix)


def test_a_parallel_case_needs_a_real_runner_to_replay(tmp_path):
    """A case runner that only replays step lists cannot run threads on sessions: an error, not a pass."""

    class StepsOnly:
        def run_steps(self, steps):
            raise AssertionError("a parallel case must not be replayed as a step list")

    saved = save_case(tmp_path, PROGRAM.steps, FOUND, parallel=PROGRAM)
    outcome = replay_case(load_case(saved.path), StepsOnly())
    assert outcome.status == "error" and "parallel case replays on a kalammodel Runner" in outcome.message


def test_the_cli_replays_a_parallel_case(tmp_path, capsys):
    """`kalammodel replay <case>` runs a parallel case as its program on the embedded server: fixed, exit 0."""
    from kalammodel import cli

    saved = save_case(tmp_path, PROGRAM.steps, FOUND, parallel=PROGRAM)
    code = cli.main(["replay", str(saved.path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "FIXED" in out and "1 fixed, 0 failing, 0 error" in out
