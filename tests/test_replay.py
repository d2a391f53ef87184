"""Replays every saved case in ``shrunk_cases/`` against the session's server: one test per file.

A case passes when it is fixed (the steps now pass); a case that still diverges fails with its program and
divergence; a corrupt case file fails its own test with the reason. With no case files, the module still holds
one test (the corpus directory is readable), so that pytest never exits with "no tests collected".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kalammodel.corpus import CaseFileError, case_files, format_failure, load_case, replay_case

CORPUS = Path(__file__).resolve().parent.parent / "shrunk_cases"
CASE_FILES = case_files([CORPUS]) if CORPUS.is_dir() else []


def test_corpus_directory_is_readable() -> None:
    """shrunk_cases/ exists and can be listed (it holds the saved cases and their README)."""
    assert CORPUS.is_dir(), f"{CORPUS} is missing: the shrunk-case corpus directory belongs in the repository"
    assert os.access(CORPUS, os.R_OK | os.X_OK)
    assert isinstance(os.listdir(CORPUS), list)


@pytest.fixture
def case_pool(request: pytest.FixtureRequest, kalamdb_target: Any, actor_pool: Any) -> Iterator[Any]:
    """The session's actor pool, or a pool with the case's identities when the workload lacks some of them."""
    actors: dict[str, str] = request.param
    identities = getattr(actor_pool, "identities", {})
    if all(identities.get(name) == role for name, role in actors.items()):
        yield actor_pool
        return
    from kalammodel.targets import ActorPool

    pool = ActorPool.for_target(kalamdb_target, {**identities, **actors})
    try:
        yield pool
    finally:
        pool.close()


def _actors(path: Path) -> dict[str, str]:
    try:
        return dict(load_case(path).actors)
    except CaseFileError:
        return {}


def _replay(path: Path, target: Any, pool: Any) -> None:
    try:
        case = load_case(path)
    except CaseFileError as exc:
        problem = str(exc)
    else:
        problem = None
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    from kalammodel.checks.live import live_extension
    from kalammodel.runner import Runner

    outcome = replay_case(case, Runner(target, pool, extensions=[live_extension]))
    if outcome.status == "fixed":
        return
    if outcome.status == "error":
        pytest.fail(f"{path.name}: {outcome.message}", pytrace=False)
    program = format_failure(case.steps, outcome.divergence or case.divergence, case.replay_command())
    pytest.fail(f"{path.name}: {outcome.message}\n\n{program}", pytrace=False)


if CASE_FILES:  # one test per case file; none (rather than an "empty parameter set" skip) without cases

    @pytest.mark.parametrize(
        ("path", "case_pool"),
        [(path, _actors(path)) for path in CASE_FILES],
        ids=[path.name for path in CASE_FILES],
        indirect=["case_pool"],
    )
    def test_shrunk_case_is_fixed(path: Path, kalamdb_target: Any, case_pool: Any) -> None:
        """The saved case no longer diverges on the server under test."""
        _replay(path, kalamdb_target, case_pool)
