"""pytest plugin ``kalammodel``: target options, Hypothesis profiles, session fixtures, report header.

Options (group "kalammodel"):

```
--kalamdb-url URL               test a running server (else KALAMDB_URL; else the embedded server is spawned)
--kalamdb-root-password P       its root password (else KALAMDB_ROOT_PASSWORD)
--kalamdb-data-dir DIR          its storage.data_path, to check cold files on disk (else KALAMDB_DATA_DIR)
--kalamdb-server-cmd CMD        a command that starts the server at --kalamdb-url (kill/restart become real)
--kalammodel-fault NAME         switch on a planted defect of the embedded server (repeatable)
--kalammodel-workload NAME      a workload model: a file in models/ or a path (default: default)
--kalammodel-db DIR             Hypothesis example database (default .hypothesis/kalammodel)
--kalammodel-shared-db DIR      a read-only shared example database consulted as well
--kalammodel-known-bugs MODE    report|fail a divergence that matches a known KalamDB bug (default: report
                                against a real server, fail against the embedded one; docs/known-bugs.md)
```

Profiles (select with Hypothesis's own ``--hypothesis-profile``; default ``dev``, or ``ci`` when ``CI=true``):
``ci`` (derandomized, 15 examples x 30 steps, prints blobs), ``dev`` (25 x 40), ``fuzz`` (10 000 x 100).
Session fixtures: ``kalamdb_target``, ``actor_pool``, ``kalammodel_workload``, ``kalammodel_known_bugs`` (the
run's :class:`~kalammodel.generation.KnownBugPolicy`; its ledger reaches the terminal summary).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from hypothesis import HealthCheck, settings

from kalammodel.errors import UsageError
from kalammodel.targets import (
    ActorPool,
    EmbeddedTarget,
    Target,
    add_pytest_options,
    check_faults,
    check_minutes,
    describe_selection,
    known_bugs_mode,
    remote_version,
    target_from_options,
    values_from_pytest,
)

if TYPE_CHECKING:
    from hypothesis.database import ExampleDatabase

    from kalammodel.generation import KnownBugPolicy, Workload

__all__ = ["PROFILES", "actor_pool", "kalamdb_target", "kalammodel_known_bugs", "kalammodel_workload"]

# Steps talk to a server: too_slow measures that, not data generation.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
PROFILES: dict[str, dict[str, Any]] = {
    "ci": dict(derandomize=True, database=None, max_examples=15, stateful_step_count=30, deadline=None,
               print_blob=True, suppress_health_check=_SLOW_OK),
    "dev": dict(max_examples=25, stateful_step_count=40, deadline=None, suppress_health_check=_SLOW_OK),
    "fuzz": dict(max_examples=10_000, stateful_step_count=100, deadline=None, print_blob=True,
                 suppress_health_check=_SLOW_OK),
}  # fmt: skip
for _name, _kw in PROFILES.items():
    settings.register_profile(_name, **_kw)

_PROFILE_KEY = pytest.StashKey[str]()
_WORKLOAD_KEY = pytest.StashKey[str]()
_USED_TARGET = pytest.StashKey[Target]()
_REPORT_LINES = pytest.StashKey[list[str]]()
_KNOWN_BUGS = pytest.StashKey["KnownBugPolicy"]()


def report_line(config: pytest.Config, line: str) -> None:
    """Print ``line`` in the terminal summary of this pytest run (e.g. examples and steps a test ran)."""
    config.stash.setdefault(_REPORT_LINES, []).append(line)


def time_budget(config: pytest.Config) -> float | None:
    """The --kalammodel-minutes budget in seconds, or None."""
    minutes: float | None = config.getoption("--kalammodel-minutes")
    return None if minutes is None else minutes * 60.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kalammodel", "kalammodel: model-based stateful testing of KalamDB")
    add_pytest_options(group)


def _values(config: pytest.Config) -> dict[str, Any]:  # Any: each option has its own type
    return values_from_pytest(config.getoption)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _profile_option(config: pytest.Config) -> str | None:
    try:
        return config.getoption("--hypothesis-profile")
    except ValueError:  # the hypothesis pytest plugin is disabled
        return None


def _database(config: pytest.Config) -> ExampleDatabase:
    from hypothesis.database import (
        DirectoryBasedExampleDatabase,
        MultiplexedDatabase,
        ReadOnlyDatabase,
    )

    local = Path(config.getoption("--kalammodel-db"))
    if not local.is_absolute():
        local = config.rootpath / local
    db: ExampleDatabase = DirectoryBasedExampleDatabase(local)
    shared = config.getoption("--kalammodel-shared-db")
    if shared:
        shared_path = Path(shared)
        if not shared_path.is_dir():
            raise pytest.UsageError(f"--kalammodel-shared-db {shared!r} is not a directory")
        db = MultiplexedDatabase(db, ReadOnlyDatabase(DirectoryBasedExampleDatabase(shared_path)))
    return db


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    name = _profile_option(config) or ("ci" if _in_ci() else "dev")
    if name in PROFILES:
        kwargs = dict(PROFILES[name])
        if not kwargs.get("derandomize"):
            kwargs["database"] = _database(config)
        # Re-registering under the same name keeps Hypothesis's own --hypothesis-profile loading consistent.
        settings.register_profile(name, **kwargs)
        settings.load_profile(name)
    config.stash[_PROFILE_KEY] = name
    values = _values(config)
    try:
        check_minutes(values["minutes"])
        check_faults(values["fault"], "--kalammodel-fault", quote=False)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from exc

    workload = values["workload"]
    if workload:
        from kalammodel.generation import load_workload

        try:
            load_workload(workload, search_dirs=(config.rootpath / "models",))
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from exc
    config.stash[_WORKLOAD_KEY] = workload or "default"


def pytest_report_header(config: pytest.Config) -> list[str]:
    values = _values(config)
    return [
        f"kalammodel: target={describe_selection(values)}, server version={remote_version(values)}, "
        f"profile={config.stash.get(_PROFILE_KEY, '?')}, workload={config.stash.get(_WORKLOAD_KEY, 'default')}"
    ]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    target = config.stash.get(_USED_TARGET, None)
    if target is not None:
        version = target.known_version or "unknown"
        terminalreporter.write_line(f"kalammodel: ran against {target.describe()} (server version {version})")
    for line in config.stash.get(_REPORT_LINES, []):
        terminalreporter.write_line(f"kalammodel: {line}")
    policy = config.stash.get(_KNOWN_BUGS, None)
    if policy is not None:
        report = policy.ledger.report()
        fixed = f"{len(report.possibly_fixed)} possibly fixed"
        if isinstance(target, EmbeddedTarget):
            # the embedded server is no KalamDB: a bug that did not show there says nothing about KalamDB
            report = attrs.evolve(report, possibly_fixed=())
            fixed = "'possibly fixed' is not reported for the embedded server"
        terminalreporter.write_line(
            f"kalammodel: known KalamDB bugs (--kalammodel-known-bugs={policy.mode}): {len(report.seen)} seen, {fixed}"
        )
        for line in report.summary_lines():
            terminalreporter.write_line(f"kalammodel: {line}")


@pytest.fixture(scope="session")
def kalammodel_workload(pytestconfig: pytest.Config) -> Workload:
    """The workload model chosen with --kalammodel-workload (default: models/default.toml)."""
    from kalammodel.generation import load_workload

    return load_workload(
        pytestconfig.stash.get(_WORKLOAD_KEY, "default"), search_dirs=(pytestconfig.rootpath / "models",)
    )


@pytest.fixture(scope="session")
def kalamdb_target(pytestconfig: pytest.Config) -> Iterator[Target]:
    """The server under test, started for the session: embedded by default, remote or process when configured."""
    target = target_from_options(_values(pytestconfig))
    try:
        target.start()
        try:
            target.server_version()
        except Exception:  # noqa: BLE001 - the version is informative only
            pass
        pytestconfig.stash[_USED_TARGET] = target
        yield target
    finally:
        target.close()


@pytest.fixture(scope="session")
def kalammodel_known_bugs(pytestconfig: pytest.Config) -> KnownBugPolicy:
    """How the session's runs treat known KalamDB bugs (--kalammodel-known-bugs; by default ``report`` against a
    real server, ``fail`` against the embedded one), with the ledger the terminal summary reports."""
    from kalammodel.generation import KnownBugPolicy

    try:
        mode = known_bugs_mode(_values(pytestconfig))
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from exc
    policy = KnownBugPolicy(mode)
    pytestconfig.stash[_KNOWN_BUGS] = policy
    return policy


@pytest.fixture(scope="session")
def actor_pool(kalamdb_target: Target, kalammodel_workload: Workload) -> Iterator[ActorPool]:
    """One logged-in client per identity of the workload ('root', 'dba', 'svc', 'user1', ...), created once."""
    pool = ActorPool.for_target(kalamdb_target, kalammodel_workload.roles())
    try:
        pool.open_all()
        yield pool
    finally:
        pool.close()
