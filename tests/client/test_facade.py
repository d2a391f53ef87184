"""The public facade of kalammodel.client."""

from __future__ import annotations

import kalammodel.client as client


def test_all_is_sorted_and_complete():
    """__all__ is sorted and lists every public name the package exposes."""
    # (isidentifier: pytest's assertion rewriting adds "@py_builtins" when the plugin imports the package)
    public = {n for n in vars(client) if n.isidentifier() and not n.startswith("_") and n != "annotations"}
    assert client.__all__ == sorted(client.__all__)
    assert set(client.__all__) == public


def test_architecture_names_are_exported():
    """The names docs/ARCHITECTURE.md promises are importable from the facade."""
    for name in ("KalamClient", "LiveConnection", "QueryResult", "SqlResponse", "Column"):
        assert name in client.__all__
