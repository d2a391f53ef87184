"""The ``kalammodel`` command: a thin layer that renders library results.

```
kalammodel serve   [--port N] [--host H] [--data-dir D] [--root-password P] [--fault NAME ...]
kalammodel run     [--profile ci|dev|fuzz] [--workload NAME] [--kalamdb-url URL ...] [-- PYTEST-ARGS]
kalammodel replay  [PATH ...] [--kalamdb-url URL --root-password P --data-dir D] [--fault NAME] [--prune] [--runs N]
kalammodel export  CASE [--format sql|pytest|curl|all] [--out DIR]
kalammodel show    CASE
```

The target options of ``serve``, ``run`` and ``replay`` are declared from the one list of
:data:`kalammodel.targets.OPTIONS`, shared with the pytest plugin: each takes the plugin's flag
(``--kalamdb-root-password``) as well as the short spelling shown above (``--root-password``), and ``run``
hands every option given to pytest.

Exit codes: 0 success (replay: every case fixed), 1 replay: a case still fails, 2 bad input or an error (a
missing or corrupt case file, an unknown fault, an unreachable server). Errors print one clear line, never a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kalammodel import targets
from kalammodel._version import __version__
from kalammodel.errors import KalamError, KalamModelError, UsageError
from kalammodel.targets import (
    ActorPool,
    Target,
    add_cli_options,
    check_faults,
    fault_names,
    run_command,
    serve_plan,
    values_from_cli,
)
from kalammodel.targets import run_foreground as _foreground

if TYPE_CHECKING:
    from kalammodel.runner import Runner, RunResult
    from kalammodel.steps import Step

__all__ = ["build_parser", "main"]

EXPORT_FORMATS = ("sql", "pytest", "curl")
DEFAULT_CORPUS = Path("shrunk_cases")


def _check_faults(faults: Sequence[str]) -> None:
    check_faults(faults, "--fault", quote=True)


def _repo_root() -> Path:
    """The checkout the package was installed from (editable install): the parent of the package dir."""
    return Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    _check_faults(args.fault)
    with serve_plan(args.host, args.port, args.data_dir, args.root_password, args.fault) as plan:
        if plan.temporary:
            print(f"kalammodel: data in {plan.data_dir}, removed on exit (pass --data-dir to keep it)", flush=True)
        return _foreground(plan.argv, plan.env)


# --------------------------------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    root = _repo_root()
    test_file = root / "tests" / "test_stateful.py"
    if not test_file.is_file():
        raise UsageError(
            f"kalammodel run needs the stateful tests of a kalammodel checkout, and {test_file} does not exist; "
            "install kalammodel from a source checkout (pip install -e .) or run pytest on the tests yourself"
        )
    _check_faults(args.fault)
    argv, env = run_command(test_file, values_from_cli(args, "run"))
    argv += args.pytest_args
    return _foreground(argv, env, cwd=root)


# --------------------------------------------------------------------------------------------------- replay


class _LazyRunner:
    """A runner on a target that is started on the first replay (no server for an empty or corrupt corpus)."""

    def __init__(self, args: argparse.Namespace, actors: dict[str, str]):
        self._args = args
        self._actors = actors
        self._runner: Runner | None = None
        self._target: Target | None = None
        self._pool: ActorPool | None = None

    def start(self) -> None:
        from kalammodel.checks.live import live_extension
        from kalammodel.runner import Runner

        # Looked up on the package when called, so that a test can substitute it.
        self._target = targets.target_from_config(**targets.target_arguments(values_from_cli(self._args, "replay")))
        self._target.start()
        self._pool = targets.ActorPool.for_target(self._target, {**targets.DEFAULT_IDENTITIES, **self._actors})
        self._pool.client("root")
        self._runner = Runner(self._target, self._pool, extensions=[live_extension])

    @property
    def target(self) -> Target | None:
        return self._target

    def run_steps(self, steps: Sequence[Step]) -> RunResult:
        return self.as_runner().run_steps(list(steps))

    def as_runner(self) -> Runner:
        """The runner, started on first use (a parallel case replays on it: ``replay_case``)."""
        if self._runner is None:
            self.start()
        assert self._runner is not None
        return self._runner

    def close(self) -> None:
        for thing in (self._pool, self._target):
            if thing is not None:
                with contextlib.suppress(Exception):
                    thing.close()


def _open_failure(args: argparse.Namespace, exc: Exception) -> UsageError:
    if args.kalamdb_url:
        advice = (
            "" if "check" in str(exc) else "; check --kalamdb-url, --root-password and that the server runs"
        )
        return UsageError(f"cannot use the KalamDB server at {args.kalamdb_url}: {exc}{advice}")
    return UsageError(f"cannot start the embedded server: {exc}")


def cmd_replay(args: argparse.Namespace) -> int:
    from kalammodel.corpus import Case, case_files, iter_cases, replay_paths

    _check_faults(args.fault)
    if args.runs < 1:
        raise UsageError(f"--runs must be at least 1 (got {args.runs})")
    paths = [Path(p) for p in args.paths] or [DEFAULT_CORPUS]
    if not args.paths and not DEFAULT_CORPUS.is_dir():
        print(f"no {DEFAULT_CORPUS}/ directory in {Path.cwd()}: nothing to replay")
        return 0
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UsageError(
            f"no such file or directory: {', '.join(missing)}; give case files or a corpus directory"
        )
    files = case_files(paths)
    if not files:
        print(f"no case files in {', '.join(map(str, paths))}: nothing to replay")
        return 0
    actors: dict[str, str] = {}
    loadable = 0
    for _, loaded in iter_cases(files):
        if isinstance(loaded, Case):
            loadable += 1
            actors.update(loaded.actors)
    actors.pop("root", None)
    runner = _LazyRunner(args, actors)
    try:
        if loadable:
            try:
                runner.start()
            except (KalamError, UsageError, OSError) as exc:
                raise _open_failure(args, exc) from None
        outcomes, code = replay_paths(files, runner, prune=args.prune, runs=args.runs)
    finally:
        runner.close()
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
        print(f"{outcome.status.upper():<8} {outcome.path}  {outcome.message}")
    pruned = sum(1 for o in outcomes if o.pruned)
    known = sorted({o.known_bug.number for o in outcomes if o.known_bug is not None})
    known_cases = sum(1 for o in outcomes if o.known_bug is not None)
    parts = [f"{counts.get(s, 0)} {s}" for s in ("fixed", "failing", "error")]
    summary = f"{len(outcomes)} case(s): " + ", ".join(parts)
    if known:
        summary += f" ({known_cases} of them known KalamDB bug(s) {', '.join(map(str, known))})"
    if pruned:
        summary += f" ({pruned} pruned)"
    print(summary)
    return code


# --------------------------------------------------------------------------------------------------- export


def cmd_export(args: argparse.Namespace) -> int:
    from kalammodel.corpus import EXPORTERS, load_case

    case = load_case(args.case)
    formats = tuple(EXPORTERS) if args.format == "all" else (args.format,)
    if args.out is None:
        if len(formats) > 1:
            raise UsageError(
                f"--format all writes {len(formats)} files ({', '.join(formats)}); give --out DIR for them"
            )
        sys.stdout.write(EXPORTERS[formats[0]].render(case))
        return 0
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; give a directory")
    out.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        exporter = EXPORTERS[fmt]
        target = out / exporter.file_name(case)
        target.write_text(exporter.render(case), encoding="utf-8")
        if exporter.mode is not None:
            target.chmod(exporter.mode)
        print(f"wrote {target}")
    return 0


# --------------------------------------------------------------------------------------------------- show


def cmd_show(args: argparse.Namespace) -> int:
    from kalammodel.corpus import describe_case, load_case

    print(describe_case(load_case(args.case)))
    return 0


# --------------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kalammodel",
        description="Model-based stateful tester for KalamDB: run, replay and export shrunk failing cases.",
    )
    parser.add_argument("--version", action="version", version=f"kalammodel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser("serve", help="run the embedded KalamDB-compatible server in the foreground")
    add_cli_options(serve, "serve", fault_names())
    serve.set_defaults(func=cmd_serve)

    run = sub.add_parser(
        "run", help="run the stateful tests (pytest tests/test_stateful.py); pytest args after --"
    )
    add_cli_options(run, "run")
    run.set_defaults(func=cmd_run)

    replay = sub.add_parser("replay", help="replay shrunk case files (default: shrunk_cases/)")
    replay.add_argument("paths", nargs="*", metavar="PATH", help="case files or corpus directories")
    add_cli_options(replay, "replay")
    replay.add_argument("--prune", action="store_true", help="delete the files of cases that are fixed")
    replay.add_argument(
        "--runs", type=int, default=1, help="replays per case; fixed only if every run passes"
    )
    replay.set_defaults(func=cmd_replay)

    export = sub.add_parser("export", help="export a case as a SQL script, a pytest file or a curl script")
    export.add_argument("case", metavar="CASE", help="a case file")
    export.add_argument("--format", choices=(*EXPORT_FORMATS, "all"), default="sql", help="default: sql")
    export.add_argument("--out", default=None, metavar="DIR", help="write files into DIR (default: print)")
    export.set_defaults(func=cmd_export)

    show = sub.add_parser("show", help="print a case as a program with its divergence")
    show.add_argument("case", metavar="CASE", help="a case file")
    show.set_defaults(func=cmd_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kalammodel`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, pytest_args = argv[:cut], argv[cut + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    if pytest_args and args.command != "run":
        parser.error(f"arguments after -- are passed to pytest by 'kalammodel run' only (got {pytest_args})")
    args.pytest_args = pytest_args
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"kalammodel {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KalamError as exc:
        print(f"kalammodel {args.command}: error talking to the server: {exc}", file=sys.stderr)
        return 2
    except KalamModelError as exc:
        print(f"kalammodel {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kalammodel {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
