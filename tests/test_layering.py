"""The import rules of docs/ARCHITECTURE.md hold, checked by import-linter on the package's import graph.

The layer table (top imports bottom, never the reverse; ``|`` separates siblings that must not import each
other, ``:`` siblings that may):

    plugin | cli                                   entry points: everything, thinly
    targets : generation : corpus                  how to reach a server; drawing programs; shrunk cases
    runner : checks                                sending steps and comparing outcomes
    steps                                          operations as data
    model | client                                 the reference model (pure) and the wire client
    errors | _version                              import nothing of kalammodel

and, apart from the table, the embedded server: it imports ``kalammodel.errors`` only, and nothing but the
entry points imports it (the server and the model are independent implementations of one contract).

Annotation-only imports (under ``if TYPE_CHECKING:``) are not counted: they make no module depend on another at
run time, and the typed seams (a ``Protocol`` or a class named in an annotation) are written with them.
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: import-linter's command (the dev extra installs it beside this interpreter)
LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which(
    "lint-imports"
)

#: the layers of the table above, top first. A module in parentheses is optional: it exists before or after the
#: architecture wave of issue 13 but not both (strategies, machine, workloads and reduce become ``generation``;
#: the runner extensions ``live`` and ``durability`` move under runner/checks). Every other child of the package
#: must be named here (the contract is exhaustive), so a new top-level module cannot escape the rules.
LAYERS = [
    "plugin | cli",
    # reproduce: the helpers an exported pytest file imports (client and errors only)
    # parallel: parallel programs (issue 15), drawn with Hypothesis and run on the runner's sessions
    "targets : generation : corpus : reproduce : parallel",
    # verdicts (the known-bugs registry) judges a divergence from the steps that led to it, like the checks
    "runner : checks : verdicts",
    "steps",
    # The model and the client share a layer as independent siblings: the model is pure (no I/O), so it imports
    # errors only, and the client knows nothing of the model.
    # history: concurrent histories and the linearizability checker, pure (errors and attrs only)
    "model | client | history",
    "errors | _version",
]
#: the entry points: the only modules that may import the embedded server
ENTRY_POINTS = ("plugin", "cli")
SERVER = "server"
#: what the server may import of the package
SERVER_MAY_IMPORT = ("errors",)
#: third-party packages a layer never touches (DESIGN.md "Layers"): the model and steps are pure data, with
#: no network and no Hypothesis; the runner and checks know nothing of Hypothesis either
NEVER_TOUCHES = {
    ("model", "steps"): ("hypothesis", "httpx", "websockets"),
    ("runner", "checks"): ("hypothesis",),
}


def _children(root: str, path: Path | None) -> list[str]:
    """The names of the top-level modules and packages of ``root`` (in ``path`` if given), read from disk."""
    if path is not None:
        locations = [str(path / root)]
    else:
        spec = importlib.util.find_spec(root)
        assert spec is not None and spec.submodule_search_locations, f"{root} is not a package"
        locations = list(spec.submodule_search_locations)
    return sorted(info.name for info in pkgutil.iter_modules(locations))


def contracts(root: str, path: Path | None = None) -> list[dict[str, object]]:
    """The import-linter contracts of the rules above for the package ``root`` (in ``path`` if given)."""
    children = _children(root, path)
    others = [name for name in children if name not in SERVER_MAY_IMPORT and name != SERVER]
    found: list[dict[str, object]] = [
        {
            "id": "layers",
            "name": "layers of docs/ARCHITECTURE.md",
            "type": "layers",
            "containers": [root],
            "layers": LAYERS,
            "exhaustive": "true",
            # the server stands outside the table: the two contracts below say what it may import and who
            # may import it
            "exhaustive_ignores": [SERVER],
        },
    ]
    if SERVER in children:
        found.append(
            {
                "id": "server-imports-only-errors",
                "name": f"{root}.server imports only {', '.join(f'{root}.{m}' for m in SERVER_MAY_IMPORT)}",
                "type": "forbidden",
                "source_modules": [f"{root}.{SERVER}"],
                "forbidden_modules": [f"{root}.{name}" for name in others],
            }
        )
        found.append(
            {
                "id": "only-entry-points-import-server",
                "name": f"only the entry points ({', '.join(ENTRY_POINTS)}) import {root}.server",
                "type": "forbidden",
                "source_modules": [
                    f"{root}.{name}" for name in children if name not in ENTRY_POINTS and name != SERVER
                ],
                "forbidden_modules": [f"{root}.{SERVER}"],
                # The embedded target's options check --kalammodel-fault names against the server's catalogue
                # of planted faults (data, not semantics); nothing else of the server is imported.
                "ignore_imports": [f"{root}.targets.options -> {root}.{SERVER}._faults"],
                "unmatched_ignore_imports_alerting": "none",
            }
        )
    if "steps" in children and "client" in children:
        found.append(
            {
                "id": "steps-never-touch-the-client",
                "name": f"{root}.steps never imports {root}.client (steps are data: no network)",
                "type": "forbidden",
                "source_modules": [f"{root}.steps"],
                "forbidden_modules": [f"{root}.client"],
            }
        )
    for sources, packages in NEVER_TOUCHES.items():
        present = [f"{root}.{name}" for name in sources if name in children]
        if present:
            found.append(
                {
                    "id": f"{'-'.join(sources)}-never-touch-{'-'.join(packages)}",
                    "name": f"{' and '.join(present)} never import {', '.join(packages)}",
                    "type": "forbidden",
                    "source_modules": present,
                    "forbidden_modules": list(packages),
                }
            )
    return found


def _ini(root: str, path: Path | None) -> str:
    """The contracts as an import-linter configuration file (INI form)."""

    def value(item: object) -> str:
        if isinstance(item, list):
            return "".join(f"\n    {line}" for line in item)
        return f" {item}"

    lines = [
        "[importlinter]",
        f"root_packages ={value([root])}",
        "include_external_packages = True",  # for the third-party packages some layers never touch
        "exclude_type_checking_imports = True",  # see the module docstring
    ]
    for contract in contracts(root, path):
        lines += ["", f"[importlinter:contract:{contract['id']}]"]
        lines += [f"{key} ={value(item)}" for key, item in contract.items() if key != "id"]
    return "\n".join(lines) + "\n"


def lint(root: str, tmp_path: Path, path: Path | None = None) -> tuple[bool, str]:
    """Run ``lint-imports`` on ``root`` (found on ``path`` if given): whether every contract is kept, and the
    report, which names each broken contract and each forbidden import chain with its lines."""
    if LINT_IMPORTS is None:
        pytest.fail(
            "lint-imports is not installed: pip install -e '.[dev]' (import-linter is in the dev extra)"
        )
    config = tmp_path / f"{root}-importlinter.ini"
    config.write_text(_ini(root, path))
    env = dict(os.environ, COLUMNS="250", NO_COLOR="1")  # no wrapping, no colour codes in the report
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [LINT_IMPORTS, str(config), "--no-cache", "--no-logo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    text = done.stdout + done.stderr
    assert done.returncode in (0, 1), f"lint-imports could not run (exit {done.returncode}):\n{text}"
    return done.returncode == 0, text


def test_the_package_keeps_the_import_rules_of_the_architecture(tmp_path):
    """kalammodel's imports follow the layer table, and only the entry points import the embedded server."""
    kept, text = lint("kalammodel", tmp_path)
    assert kept, f"a layering rule of docs/ARCHITECTURE.md is broken:\n{text}"
    assert "BROKEN" not in text and "KEPT" in text


def _toy_package(tmp_path: Path, name: str, sources: dict[str, str]) -> None:
    """A package ``name`` with an empty module for every name of the layer table, then ``sources`` on top."""
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for layer in LAYERS:
        for item in layer.replace("|", ":").split(":"):
            module = item.strip()
            if not module.startswith("("):
                (package / f"{module}.py").write_text("")
    (package / f"{SERVER}.py").write_text("")
    for module, text in sources.items():
        (package / f"{module}.py").write_text(text)


def test_a_forbidden_import_is_reported_with_its_chain(tmp_path):
    """The same check, run on a toy package with forbidden imports, fails and names each chain with its lines."""
    _toy_package(
        tmp_path,
        "toypkg",
        {
            "server": "from . import errors\nfrom . import steps\n",  # the server reaches steps ...
            "steps": "from toypkg import model\nimport toypkg.client\n",  # ... the model and the network
            "client": "import toypkg.model\n",  # a sibling the client must not import
            "model": "from . import runner\n",  # a lower layer importing a higher one
            "runner": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from . import plugin\n",
        },
    )
    kept, text = lint("toypkg", tmp_path, path=tmp_path)
    assert not kept
    assert "toypkg.server imports only toypkg.errors BROKEN" in text
    assert "toypkg.server -> toypkg.steps (l.2)\n    toypkg.steps -> toypkg.model (l.1)" in text
    assert "toypkg.steps never imports toypkg.client (steps are data: no network) BROKEN" in text
    assert "toypkg.client is not allowed to import toypkg.model" in text
    assert "toypkg.client -> toypkg.model (l.1)" in text
    assert "toypkg.model is not allowed to import toypkg.runner" in text
    assert "toypkg.runner -> toypkg.plugin" not in text  # an annotation-only import counts for nothing
    assert "toypkg.server -> toypkg.errors" not in text  # the one import the server may make


def test_an_undeclared_top_level_module_is_reported(tmp_path):
    """A new top-level module that the layer table does not name breaks the exhaustive layers contract."""
    _toy_package(tmp_path, "toypkg2", {"helpers": "X = 1\n"})
    kept, text = lint("toypkg2", tmp_path, path=tmp_path)
    assert not kept
    assert "toypkg2.helpers" in text
