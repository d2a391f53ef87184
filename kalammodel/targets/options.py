"""The one option set of kalammodel, from which the pytest plugin and the ``kalammodel`` CLI declare theirs.

Each :class:`Option` record names an option once: its canonical flag (the pytest spelling, e.g.
``--kalamdb-root-password``), the shorter spelling the CLI has always accepted beside it (``--root-password``),
the environment variable it falls back to, its type, default, help, the CLI commands that offer it, and the
targets it configures. :func:`add_pytest_options` and :func:`add_cli_options` generate the declarations;
:func:`option_values` reads the parsed values back by ``dest``; :func:`target_from_options` builds the target.

Canonical spellings: the ``--kalamdb-*`` / ``--kalammodel-*`` flags (they are unambiguous inside pytest). The CLI
accepts both spellings of ``--root-password``, ``--data-dir``, ``--fault``, ``--workload`` and ``--profile``.

Target selection (:func:`target_from_config`): a server command selects ``ProcessTarget``, else a URL
``RemoteTarget``, else ``EmbeddedTarget``. A new target: its module, its option records here (``configures``
naming it, ``argument`` the keyword of :func:`target_from_config`), and its branch in that function.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from kalammodel.errors import KalamModelError, UsageError

from .base import BaseTarget, get_health
from .embedded import EmbeddedTarget
from .process import ProcessTarget
from .remote import RemoteTarget

__all__ = [
    "OPTIONS",
    "Option",
    "OptionGroup",
    "PROFILES",
    "add_cli_options",
    "add_pytest_options",
    "check_faults",
    "check_minutes",
    "describe_selection",
    "fault_names",
    "known_bugs_mode",
    "option_values",
    "remote_version",
    "run_command",
    "target_arguments",
    "target_from_config",
    "target_from_options",
    "values_from_cli",
    "values_from_pytest",
]

#: the Hypothesis settings profiles the plugin registers
PROFILES = ("ci", "dev", "fuzz")
#: the values of --kalammodel-known-bugs (kalammodel.generation.KNOWN_BUG_MODES)
KNOWN_BUG_MODES = ("report", "fail")
EMBEDDED, REMOTE, PROCESS = EmbeddedTarget.kind, RemoteTarget.kind, ProcessTarget.kind
ALL_TARGETS = frozenset({EMBEDDED, REMOTE, PROCESS})


@attrs.frozen
class Option:
    """One option of kalammodel, declared once for both front ends."""

    #: the canonical flag, as pytest spells it
    name: str
    #: the key of the parsed value (and the attribute of the CLI's ``argparse.Namespace``)
    dest: str
    #: the help pytest shows (and the CLI, unless ``cli`` gives its own)
    help: str
    #: the environment variable the value falls back to (read where the value is used)
    env: str | None = None
    #: converts the text given (None: kept as a str)
    type: Callable[[str], Any] | None = None
    default: Any = None  # Any: of the option's own type (str, float, int or a list)
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    #: repeatable: the values given, in order, as a list
    repeat: bool = False
    #: the target kinds the option configures (empty: a setting of the test session)
    configures: frozenset[str] = frozenset()
    #: the keyword of :func:`target_from_config` the value goes to (target options only)
    argument: str | None = None
    #: never put on a command line: ``kalammodel run`` hands it to pytest through ``env``
    secret: bool = False
    #: declared by the kalammodel pytest plugin (False: by Hypothesis's, or a CLI-only option)
    pytest: bool = True
    #: the CLI commands offering the option, each with its help there (None: ``help``; ``{faults}`` is filled in)
    cli: Mapping[str, str | None] = attrs.field(factory=dict)
    #: the CLI's own spelling, accepted beside ``name`` (the one its help lists first)
    cli_alias: str | None = None

    def flags(self, front: str) -> tuple[str, ...]:
        """The flags of the option in ``front`` ('pytest' or 'cli')."""
        if front == "cli" and self.cli_alias is not None:
            return (self.cli_alias, self.name)
        return (self.name,)

    def declaration(self, help_text: str) -> dict[str, Any]:
        """The keyword arguments of ``addoption`` / ``add_argument`` (both take argparse's)."""
        kw: dict[str, Any] = {"help": help_text}
        if self.repeat:
            kw.update(action="append", default=list(self.default or ()))
        else:
            kw["default"] = self.default
        for key in ("type", "metavar", "choices"):
            if getattr(self, key) is not None:
                kw[key] = getattr(self, key)
        return kw


_PW_ENV = "KALAMDB_ROOT_PASSWORD"
_DIR_HELP = "its data directory, to check cold files on disk"
_FAULT_HELP = "planted defect (embedded only)"

OPTIONS: tuple[Option, ...] = (
    # Declared by Hypothesis's pytest plugin; `kalammodel run --profile` hands it on.
    Option("--hypothesis-profile", "profile", choices=PROFILES, pytest=False, cli_alias="--profile",
           help="Hypothesis settings profile", cli={"run": None}),
    Option("--kalamdb-url", "kalamdb_url", env="KALAMDB_URL", metavar="URL", configures=frozenset({REMOTE, PROCESS}),
           argument="url", help="test the KalamDB server at URL (default: env KALAMDB_URL; else spawn the embedded server)",
           cli={"run": "test the server at URL instead of the embedded one",
                "replay": "replay against the server at URL (default: embedded)"}),
    Option("--kalamdb-root-password", "root_password", env=_PW_ENV, metavar="PASSWORD", configures=ALL_TARGETS,
           argument="root_password", secret=True, cli_alias="--root-password",
           help="root password of that server (default: env KALAMDB_ROOT_PASSWORD)",
           cli={"serve": "root password (default: env KALAMDB_ROOT_PASSWORD)",
                "run": "its root password (default: env KALAMDB_ROOT_PASSWORD)",
                "replay": "its root password (default: KALAMDB_ROOT_PASSWORD)"}),
    Option("--kalamdb-data-dir", "data_dir", env="KALAMDB_DATA_DIR", metavar="DIR", configures=ALL_TARGETS,
           argument="data_dir", cli_alias="--data-dir",
           help="the server's storage.data_path, to check cold files on disk (default: env KALAMDB_DATA_DIR)",
           cli={"serve": "data directory (default: a new temporary directory)", "run": _DIR_HELP, "replay": _DIR_HELP}),
    Option("--kalamdb-server-cmd", "server_cmd", metavar="CMD", configures=frozenset({PROCESS}), argument="command",
           help="command that starts the server at --kalamdb-url, e.g. "
           "'kalamdb-server docs/kalamdb-test-server.toml' (lets the tester kill and restart it)",
           cli={"run": None, "replay": None}),
    Option("--kalammodel-fault", "fault", repeat=True, metavar="NAME", configures=frozenset({EMBEDDED}),
           argument="faults", cli_alias="--fault",
           help="switch on a planted defect of the embedded server (repeatable)",
           cli={"serve": "switch on a planted defect (repeatable): {faults}", "run": _FAULT_HELP,
                "replay": _FAULT_HELP}),
    Option("--kalammodel-workload", "workload", metavar="NAME", cli_alias="--workload",
           help="workload model: a name from models/ or a path to a .toml file (default: default)",
           cli={"run": "workload model: a name from models/ or a .toml path"}),
    Option("--kalammodel-db", "db", default=".hypothesis/kalammodel", metavar="DIR", cli={"run": None},
           help="Hypothesis example database directory (default: .hypothesis/kalammodel)"),
    Option("--kalammodel-shared-db", "shared_db", metavar="DIR", cli={"run": None},
           help="a shared example database, read but never written"),
    Option("--kalammodel-minutes", "minutes", type=float, metavar="N", cli={"run": None},
           help="time budget: start no new example after N minutes (a failure found is still shrunk); "
           "for long fuzz runs, e.g. --hypothesis-profile=fuzz --kalammodel-minutes=30"),
    Option("--kalammodel-shrink", "shrink", default="both", choices=("both", "hypothesis", "steps"), cli={"run": None},
           help="how failures are minimised: Hypothesis's shrinker then the step reducer (both, default), "
           "one of them only (hypothesis, steps: much faster against a server; see docs/shrunk-cases.md)"),
    Option("--kalammodel-parallel", "parallel", type=int, default=0, metavar="K", cli={"run": None},
           help="draw parallel programs: a sequential prefix, K clients (2 to 8) at the same time checked for "
           "linearizability, a sequential suffix (0, default: sequential programs; see docs/concurrency.md)"),
    Option("--kalammodel-cases-dir", "cases_dir", metavar="DIR", cli={"run": None},
           help="where failures are saved as case files (default: shrunk_cases/ of the checkout)"),
    Option("--kalammodel-known-bugs", "known_bugs", choices=KNOWN_BUG_MODES, cli={"run": None},
           help="a divergence that matches a known KalamDB bug (docs/known-bugs.md): count it, end its example "
           "and go on (report), or fail as any divergence does, naming the bug (fail); default: report against "
           "a real server (a URL or a server command), fail against the embedded server"),
    # The foreground server of `kalammodel serve` only.
    Option("--port", "port", type=int, default=8080, pytest=False,
           help="port to listen on (default 8080; 0: any free port)", cli={"serve": None}),
    Option("--host", "host", default="127.0.0.1", pytest=False, help="address to bind (default 127.0.0.1)",
           cli={"serve": None}),
)  # fmt: skip


def _cli_order(command: str) -> list[Option]:
    """The options of CLI ``command`` as its help lists them and ``run`` hands them to pytest: how to test
    (session options) before what to test (target options), each in declaration order."""
    return sorted((o for o in OPTIONS if command in o.cli), key=lambda o: bool(o.configures))


class OptionGroup(Protocol):
    """What :func:`add_pytest_options` needs of pytest's option group (``pytest.OptionGroup``)."""

    def addoption(self, *flags: str, **kw: Any) -> None: ...


def add_pytest_options(group: OptionGroup) -> None:
    """Declare every option of the plugin in ``group`` (the plugin's ``pytest_addoption``)."""
    for option in OPTIONS:
        if option.pytest:
            group.addoption(*option.flags("pytest"), **option.declaration(option.help))


def add_cli_options(parser: argparse.ArgumentParser, command: str, faults: Iterable[str] = ()) -> None:
    """Declare the options of CLI ``command`` in ``parser``; ``faults`` fills ``{faults}`` in help texts."""
    for option in _cli_order(command):
        text = (option.cli[command] or option.help).replace("{faults}", ", ".join(faults))
        parser.add_argument(*option.flags("cli"), dest=option.dest, **option.declaration(text))


# The values of the options by dest: Any, since each option has its own type (str, float, list of str).


def option_values(get: Callable[[Option], Any], command: str | None = None) -> dict[str, Any]:
    """The value of each option by ``dest``: ``get(option)`` for those of the plugin (``command`` None) or of
    CLI ``command``, the default for the others."""
    values: dict[str, Any] = {}
    for option in OPTIONS:
        offered = option.pytest if command is None else command in option.cli
        default = list(option.default or ()) if option.repeat else option.default
        values[option.dest] = get(option) if offered else default
    return values


def values_from_pytest(getoption: Callable[[str], Any]) -> dict[str, Any]:
    """The values of the plugin's options, read with ``pytest.Config.getoption``."""
    return option_values(lambda option: getoption(option.name))


def values_from_cli(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The values of CLI ``command``'s options from its parsed arguments."""
    return option_values(lambda option: getattr(args, option.dest), command)


# ---------------------------------------------------------------------------------------------- building targets


def target_arguments(values: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords of :func:`target_from_config` from the option values."""
    return {option.argument: values[option.dest] for option in OPTIONS if option.argument is not None}


def target_from_options(values: Mapping[str, Any], *, environ: Mapping[str, str] | None = None) -> BaseTarget:
    """The target the option values select and configure (see :func:`target_from_config`)."""
    return target_from_config(**target_arguments(values), environ=environ)


def target_from_config(
    url: str | None = None,
    root_password: str | None = None,
    data_dir: str | Path | None = None,
    faults: Sequence[str] = (),
    command: str | Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> BaseTarget:
    """Choose the target from options, falling back to ``KALAMDB_URL``, ``KALAMDB_ROOT_PASSWORD``,
    ``KALAMDB_DATA_DIR``.

    - a command: ``ProcessTarget`` (needs the URL it listens on and the root password);
    - a URL: ``RemoteTarget`` (needs the root password);
    - neither: ``EmbeddedTarget`` with ``faults`` (planted defects exist only in the embedded server).
    """
    env = os.environ if environ is None else environ
    url = url or env.get("KALAMDB_URL") or None
    root_password = root_password or env.get("KALAMDB_ROOT_PASSWORD") or None
    faults = tuple(faults)
    if command:
        if faults:
            raise UsageError(f"--kalammodel-fault {', '.join(faults)}: faults are planted in the embedded server only; "
                             f"drop them or drop --kalamdb-server-cmd")  # fmt: skip
        if not url:
            raise UsageError(
                "--kalamdb-server-cmd needs --kalamdb-url (or KALAMDB_URL): where its server listens"
            )
        if not root_password:
            raise UsageError(
                "--kalamdb-server-cmd needs --kalamdb-root-password (or KALAMDB_ROOT_PASSWORD); it is passed to the "
                "server as KALAMDB_ROOT_PASSWORD on first boot and used to log in as root"
            )
        return ProcessTarget(command, url, root_password, data_dir or env.get("KALAMDB_DATA_DIR") or None)
    if url:
        if faults:
            raise UsageError(f"--kalammodel-fault {', '.join(faults)}: faults are planted in the embedded server only; "
                             f"drop them or drop --kalamdb-url / KALAMDB_URL")  # fmt: skip
        if not root_password:
            raise UsageError(f"the server at {url} needs the root password: set KALAMDB_ROOT_PASSWORD or pass "
                             f"--kalamdb-root-password")  # fmt: skip
        return RemoteTarget(url, root_password, data_dir or env.get("KALAMDB_DATA_DIR") or None)
    return EmbeddedTarget(faults, data_dir=data_dir, root_password=root_password)


# ------------------------------------------------------------------------------------- checks and descriptions


def _faults_catalogue() -> dict[str, str] | None:
    try:
        from kalammodel.server._faults import FAULTS  # the server is optional: no catalogue, no check
    except ImportError:
        return None
    return dict(FAULTS)


def fault_names() -> list[str]:
    """The planted defects of the embedded server, sorted ([] without the server)."""
    return sorted(_faults_catalogue() or ())


def check_faults(faults: Sequence[str], flag: str, *, quote: bool) -> None:
    """UsageError naming the unknown faults (``repr`` of each if ``quote``, as the CLI has always printed them)
    and listing the valid ones."""
    catalogue = _faults_catalogue()
    if catalogue is None or not faults:
        return
    unknown = [name for name in faults if name not in catalogue]
    if unknown:
        names = ", ".join(map(repr, unknown)) if quote else ", ".join(unknown)
        raise UsageError(f"{flag} {names}: no such planted defect; valid faults: {', '.join(sorted(catalogue))}")


def check_minutes(minutes: float | None) -> None:
    """UsageError unless the ``--kalammodel-minutes`` budget is unset or positive."""
    if minutes is not None and not minutes > 0:
        raise UsageError(f"--kalammodel-minutes must be a positive number of minutes (got {minutes})")


def known_bugs_mode(values: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> str:
    """The --kalammodel-known-bugs mode the option values select: the one given, else ``report`` against a real
    server (a URL, from the option or ``KALAMDB_URL``, or a server command) and ``fail`` against the embedded
    server (the correct baseline: no known KalamDB bug may occur there)."""
    value: str | None = values["known_bugs"]
    if value is not None:
        if value not in KNOWN_BUG_MODES:
            choices = ", ".join(KNOWN_BUG_MODES)
            raise UsageError(f"--kalammodel-known-bugs must be one of {choices} (got {value!r})")
        return value
    return "report" if values["server_cmd"] or _url(values, environ) else "fail"


def _url(values: Mapping[str, Any], environ: Mapping[str, str] | None) -> str | None:
    env = os.environ if environ is None else environ
    url: str | None = values["kalamdb_url"] or env.get("KALAMDB_URL")
    return url


def describe_selection(values: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> str:
    """The target the values select, in words, before it is built (the plugin's report header)."""
    url, cmd = _url(values, environ), values["server_cmd"]
    if cmd:
        return f"process ({cmd}) at {url or '(no URL)'}"
    if url:
        return f"remote {url}"
    faults = values["fault"]
    return "embedded" + (f" with faults {', '.join(faults)}" if faults else "")


def remote_version(values: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> str:
    """The version a remote target reports on ``/health`` (asked once, 2 s), or why it is not known yet."""
    url = _url(values, environ)
    if not url or values["server_cmd"]:
        return "reported when the target starts"
    try:
        return str(get_health(url.rstrip("/"), timeout=2.0).get("version", "unknown"))
    except KalamModelError as exc:
        return f"unreachable ({exc})"


def run_command(test_file: Path, values: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The pytest command line and environment of ``kalammodel run``: each option given is handed on with its
    canonical flag; a secret (the root password) through its environment variable instead."""
    argv = [sys.executable, "-m", "pytest", str(test_file)]
    env = dict(os.environ)
    for option in _cli_order("run"):
        value = values[option.dest]
        if option.secret:
            if value is not None and option.env is not None:
                env[option.env] = value
            continue
        for one in value if option.repeat else [value]:
            if one is not None and one != "" and one != option.default:
                argv.append(f"{option.name}={one}")
    return argv, env
