"""The one option set: the pytest plugin and the CLI declare theirs from ``kalammodel.targets.OPTIONS``, both
spellings of an option reach the same value, and every target option reaches the target it configures."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

import kalammodel.targets as targets
from kalammodel import cli, plugin
from kalammodel.targets import OPTIONS, Option, target_from_options, values_from_cli, values_from_pytest


class RecordingGroup:
    """Stands in for pytest's option group: records each declaration."""

    def __init__(self) -> None:
        self.declared: dict[str, dict[str, Any]] = {}

    def addoption(self, *flags: str, **kw: Any) -> None:
        assert len(flags) == 1
        self.declared[flags[0]] = kw


class RecordingParser:
    def __init__(self) -> None:
        self.group = RecordingGroup()

    def getgroup(self, name: str, description: str = "") -> RecordingGroup:
        assert name == "kalammodel"
        return self.group


def plugin_options() -> dict[str, dict[str, Any]]:
    parser = RecordingParser()
    plugin.pytest_addoption(parser)  # type: ignore[arg-type]
    return parser.group.declared


def cli_command(command: str) -> argparse.ArgumentParser:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def cli_flags(command: str) -> set[str]:
    return {flag for action in cli_command(command)._actions for flag in action.option_strings}


def test_the_plugin_declares_exactly_the_records_it_owns():
    """pytest_addoption declares one option per plugin record, with its help and default."""
    declared = plugin_options()
    mine = [o for o in OPTIONS if o.pytest]
    assert list(declared) == [o.name for o in mine]
    for option in mine:
        assert declared[option.name]["help"] == option.help
    assert declared["--kalammodel-db"]["default"] == ".hypothesis/kalammodel"
    assert declared["--kalammodel-fault"]["action"] == "append"


def test_run_offers_every_plugin_option_and_replay_every_target_option():
    """`kalammodel run` accepts every option of the plugin (it hands them to pytest); `replay` every option
    that configures a target; both under the canonical flag."""
    assert {o.name for o in OPTIONS if o.pytest} <= cli_flags("run")
    assert {o.name for o in OPTIONS if o.argument is not None} <= cli_flags("replay")


def test_the_cli_spellings_of_today_still_parse_to_the_canonical_option():
    """--root-password, --data-dir, --fault, --workload, --profile and their canonical flags set the same value."""
    parse = cli.build_parser().parse_args
    short = parse(["run", "--root-password", "p", "--data-dir", "d", "--fault", "f", "--workload", "w",
                   "--profile", "ci"])  # fmt: skip
    canonical = parse(["run", "--kalamdb-root-password", "p", "--kalamdb-data-dir", "d", "--kalammodel-fault", "f",
                       "--kalammodel-workload", "w", "--hypothesis-profile", "ci"])  # fmt: skip
    assert values_from_cli(short, "run") == values_from_cli(canonical, "run")
    assert (short.root_password, short.data_dir, short.fault, short.workload, short.profile) == (
        "p", "d", ["f"], "w", "ci")  # fmt: skip


def test_help_texts_of_both_front_ends_are_kept():
    """The plugin and each CLI command show the help texts they always showed."""
    assert plugin_options()["--kalamdb-url"]["help"] == (
        "test the KalamDB server at URL (default: env KALAMDB_URL; else spawn the embedded server)"
    )
    helps = {a.dest: a.help for a in cli_command("replay")._actions}
    assert helps["kalamdb_url"] == "replay against the server at URL (default: embedded)"
    assert helps["root_password"] == "its root password (default: KALAMDB_ROOT_PASSWORD)"
    serve = {a.dest: a.help for a in cli_command("serve")._actions}
    assert serve["fault"].startswith("switch on a planted defect (repeatable): ") and "user_select_leak" in serve["fault"]


URL, PASSWORD, COMMAND = "http://127.0.0.1:9", "Pw-Opt-1!", "kalamdb-server server.toml"
#: what selects each target, as canonical flags
SELECTS: dict[str, list[str]] = {
    "embedded": [],
    "remote": ["--kalamdb-url", URL, "--kalamdb-root-password", PASSWORD],
    "process": ["--kalamdb-url", URL, "--kalamdb-root-password", PASSWORD, "--kalamdb-server-cmd", COMMAND],
}


def reached(tmp_path: Path) -> dict[str, tuple[list[str], Any]]:
    """Per target option: the flag and value given, and how to read it back from the target."""
    return {
        "kalamdb_url": (["--kalamdb-url", URL], lambda t: t.base_url == URL),
        "root_password": (["--kalamdb-root-password", PASSWORD], lambda t: t.root_password == PASSWORD),
        "data_dir": (["--kalamdb-data-dir", str(tmp_path)], lambda t: t.data_dir == tmp_path),
        "server_cmd": (["--kalamdb-server-cmd", COMMAND], lambda t: t.argv == ["kalamdb-server", "server.toml"]),
        "fault": (["--kalammodel-fault", "flush_keeps_hot"], lambda t: t.faults == ("flush_keeps_hot",)),
    }


def pytest_like_values(argv: list[str]) -> dict[str, Any]:
    """The values the plugin reads for ``argv`` (parsed as pytest would: by the records' declarations)."""
    parser = argparse.ArgumentParser()
    for option in OPTIONS:
        if option.pytest:
            parser.add_argument(option.name, **option.declaration(option.help))
    args = vars(parser.parse_args(argv))
    return values_from_pytest(lambda flag: args[flag.lstrip("-").replace("-", "_")])


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.argument is not None], ids=lambda o: o.name)
def test_each_target_option_reaches_the_targets_it_configures(option: Option, tmp_path: Path):
    """Given through the CLI or the plugin, a target option ends up on every kind of target it configures."""
    table = reached(tmp_path)
    assert set(table) == {o.dest for o in OPTIONS if o.argument is not None}
    given, holds = table[option.dest]
    kinds = {"embedded": targets.EmbeddedTarget, "remote": targets.RemoteTarget, "process": targets.ProcessTarget}
    assert option.configures and option.configures <= set(kinds)
    for kind in sorted(option.configures):
        argv = SELECTS[kind] + given
        from_cli = values_from_cli(cli.build_parser().parse_args(["replay", *argv]), "replay")
        for values in (from_cli, pytest_like_values(argv)):
            target = target_from_options(values, environ={})
            assert isinstance(target, kinds[kind]) and holds(target), (kind, option.name)


def test_run_hands_each_option_to_pytest_under_its_canonical_flag(tmp_path: Path):
    """`kalammodel run` puts every option given on pytest's command line with the plugin's flag, in the order
    session options then target options; the root password goes through the environment only."""
    args = cli.build_parser().parse_args(
        ["run", "--fault", "a", "--kalamdb-url", URL, "--kalammodel-minutes", "2", "--root-password", PASSWORD,
         "--kalamdb-server-cmd", COMMAND, "--fault", "b", "--profile", "dev", "--kalammodel-shrink", "steps"]
    )  # fmt: skip
    argv, env = targets.run_command(tmp_path / "t.py", values_from_cli(args, "run"))
    assert argv[1:] == ["-m", "pytest", str(tmp_path / "t.py"), "--hypothesis-profile=dev",
                        "--kalammodel-minutes=2.0", "--kalammodel-shrink=steps", f"--kalamdb-url={URL}",
                        f"--kalamdb-server-cmd={COMMAND}", "--kalammodel-fault=a", "--kalammodel-fault=b"]  # fmt: skip
    assert env["KALAMDB_ROOT_PASSWORD"] == PASSWORD and not any(PASSWORD in a for a in argv)
    plugin_flags = set(plugin_options()) | {"--hypothesis-profile"}
    assert {a.split("=", 1)[0] for a in argv[4:]} <= plugin_flags


def test_targets_facade_is_sorted_and_complete():
    """kalammodel.targets.__all__ is sorted and lists every public name of the package."""
    public = {
        n for n in vars(targets)
        if n.isidentifier() and not n.startswith("_") and n != "annotations"
        and n not in ("base", "embedded", "options", "pool", "process", "remote")
    }  # fmt: skip
    assert targets.__all__ == sorted(targets.__all__)
    assert set(targets.__all__) == public


def test_the_parallel_option_is_declared_once_for_both_front_ends(tmp_path: Path):
    """--kalammodel-parallel K: an int, 0 (sequential) by default, handed on by `kalammodel run` only when given."""
    declared = plugin_options()["--kalammodel-parallel"]
    assert declared["default"] == 0 and declared["type"] is int
    given = values_from_cli(cli.build_parser().parse_args(["run", "--kalammodel-parallel", "4"]), "run")
    assert given["parallel"] == 4
    argv, _ = targets.run_command(tmp_path / "t.py", given)
    assert "--kalammodel-parallel=4" in argv
    argv, _ = targets.run_command(tmp_path / "t.py", values_from_cli(cli.build_parser().parse_args(["run"]), "run"))
    assert not any(a.startswith("--kalammodel-parallel") for a in argv)
