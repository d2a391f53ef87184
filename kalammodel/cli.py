"""The ``kalammodel`` command: a thin layer that renders library results.

```
kalammodel serve   [--port N] [--host H] [--data-dir D] [--root-password P] [--fault NAME ...]
kalammodel run     [--profile ci|dev|fuzz] [--workload NAME] [--kalamdb-url URL ...] [-- PYTEST-ARGS]
kalammodel replay  [PATH ...] [--kalamdb-url URL --root-password P --data-dir D] [--fault NAME] [--prune] [--runs N]
kalammodel export  CASE [--format sql|pytest|curl|all] [--out DIR]
kalammodel show    CASE
```

Exit codes: 0 success (replay: every case fixed), 1 replay: a case still fails, 2 bad input or an error (a
missing or corrupt case file, an unknown fault, an unreachable server). Errors print one clear line, never a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kalammodel._version import __version__
from kalammodel.errors import KalamError, KalamModelError, UsageError

__all__ = ["build_parser", "main"]

PROFILES = ("ci", "dev", "fuzz")
EXPORT_FORMATS = ("sql", "pytest", "curl")
DEFAULT_CORPUS = Path("shrunk_cases")


def _faults_catalogue() -> dict[str, str] | None:
    try:
        from kalammodel.server._faults import FAULTS
    except ImportError:
        return None
    return dict(FAULTS)


def _check_faults(faults: Sequence[str]) -> None:
    catalogue = _faults_catalogue()
    if catalogue is None or not faults:
        return
    unknown = [name for name in faults if name not in catalogue]
    if unknown:
        raise UsageError(
            f"--fault {', '.join(map(repr, unknown))}: no such planted defect; valid faults: "
            f"{', '.join(sorted(catalogue))}"
        )


def _repo_root() -> Path:
    """The checkout the package was installed from (editable install): the parent of the package dir."""
    return Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    _check_faults(args.fault)
    data_dir = args.data_dir
    temporary = data_dir is None
    if temporary:
        data_dir = tempfile.mkdtemp(prefix="kalammodel-serve-")
        print(f"kalammodel: data in {data_dir}, removed on exit (pass --data-dir to keep it)", flush=True)
    argv = [sys.executable, "-m", "kalammodel.server", "--host", args.host, "--port", str(args.port)]
    argv += ["--data-dir", str(data_dir)]
    for name in args.fault:
        argv += ["--fault", name]
    env = dict(os.environ)
    if args.root_password is not None:  # through the environment: not visible in the process list
        env["KALAMDB_ROOT_PASSWORD"] = args.root_password
    try:
        return _foreground(argv, env)
    finally:
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)


def _foreground(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Run ``argv`` in the foreground; Ctrl-C reaches it too (same process group) and we wait for it to stop."""
    try:
        proc = subprocess.Popen(argv, env=env, cwd=cwd)
    except OSError as exc:
        raise UsageError(f"cannot start {argv[0]!r}: {exc}") from None
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the child got the same Ctrl-C: give it time to shut down, then insist
        for stop, grace in ((None, 15.0), (proc.terminate, 5.0), (proc.kill, 10.0)):
            if stop is not None:
                stop()
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        return 130


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
    argv = [sys.executable, "-m", "pytest", str(test_file)]
    if args.profile:
        argv.append(f"--hypothesis-profile={args.profile}")
    if args.workload:
        argv.append(f"--kalammodel-workload={args.workload}")
    if args.kalamdb_url:
        argv.append(f"--kalamdb-url={args.kalamdb_url}")
    if args.data_dir:
        argv.append(f"--kalamdb-data-dir={args.data_dir}")
    for name in args.fault:
        argv.append(f"--kalammodel-fault={name}")
    argv += args.pytest_args
    env = dict(os.environ)
    if args.root_password is not None:
        env["KALAMDB_ROOT_PASSWORD"] = args.root_password
    return _foreground(argv, env, cwd=root)


# --------------------------------------------------------------------------------------------------- replay


class _LazyRunner:
    """A runner on a target that is started on the first replay (no server for an empty or corrupt corpus)."""

    def __init__(self, args: argparse.Namespace, actors: dict[str, str]):
        self._args = args
        self._actors = actors
        self._runner: Any = None
        self._target: Any = None
        self._pool: Any = None

    def start(self) -> None:
        from kalammodel.targets import DEFAULT_IDENTITIES, ActorPool, target_from_config

        args = self._args
        self._target = target_from_config(
            url=args.kalamdb_url,
            root_password=args.root_password,
            data_dir=args.data_dir,
            faults=tuple(args.fault),
        )
        self._target.start()
        identities = {**DEFAULT_IDENTITIES, **self._actors}
        self._pool = ActorPool.for_target(self._target, identities)
        self._pool.client("root")
        from kalammodel.live import live_extension
        from kalammodel.runner import Runner

        self._runner = Runner(self._target, self._pool, extensions=[live_extension])

    @property
    def target(self) -> Any:
        return self._target

    def run_steps(self, steps: Sequence[Any]) -> Any:
        if self._runner is None:
            self.start()
        return self._runner.run_steps(list(steps))

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
    parts = [f"{counts.get(s, 0)} {s}" for s in ("fixed", "failing", "error")]
    summary = f"{len(outcomes)} case(s): " + ", ".join(parts)
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
    serve.add_argument(
        "--port", type=int, default=8080, help="port to listen on (default 8080; 0: any free port)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--data-dir", default=None, help="data directory (default: a new temporary directory)")
    serve.add_argument(
        "--root-password", default=None, help="root password (default: env KALAMDB_ROOT_PASSWORD)"
    )
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME",
        help="switch on a planted defect (repeatable): " + ", ".join(_fault_names()),
    )
    serve.set_defaults(func=cmd_serve)

    run = sub.add_parser(
        "run", help="run the stateful tests (pytest tests/test_stateful.py); pytest args after --"
    )
    run.add_argument("--profile", choices=PROFILES, default=None, help="Hypothesis settings profile")
    run.add_argument("--workload", default=None, help="workload model: a name from models/ or a .toml path")
    run.add_argument("--kalamdb-url", default=None, help="test the server at URL instead of the embedded one")
    run.add_argument(
        "--root-password", default=None, help="its root password (default: env KALAMDB_ROOT_PASSWORD)"
    )
    run.add_argument("--data-dir", default=None, help="its data directory, to check cold files on disk")
    run.add_argument(
        "--fault", action="append", default=[], metavar="NAME", help="planted defect (embedded only)"
    )
    run.set_defaults(func=cmd_run)

    replay = sub.add_parser("replay", help="replay shrunk case files (default: shrunk_cases/)")
    replay.add_argument("paths", nargs="*", metavar="PATH", help="case files or corpus directories")
    replay.add_argument(
        "--kalamdb-url", default=None, help="replay against the server at URL (default: embedded)"
    )
    replay.add_argument(
        "--root-password", default=None, help="its root password (default: KALAMDB_ROOT_PASSWORD)"
    )
    replay.add_argument("--data-dir", default=None, help="its data directory, to check cold files on disk")
    replay.add_argument(
        "--fault", action="append", default=[], metavar="NAME", help="planted defect (embedded only)"
    )
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


def _fault_names() -> list[str]:
    from kalammodel.server._faults import FAULTS

    return sorted(FAULTS)


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
