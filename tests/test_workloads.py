"""Workload models: every shipped file loads; every kind of mistake is reported with file, key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from kalammodel.errors import UsageError
from kalammodel.generation import (
    OPERATIONS,
    IntRange,
    Weights,
    list_workloads,
    load_workload,
    models_dir,
    resolve_workload_path,
    workload_from_dict,
)

SCENARIOS = {
    "default", "chat", "offline_sync", "shopping_cart", "iot_telemetry", "dashboards", "jobs",
    "collaborative_docs", "burst", "ddl_while_active", "multi_tenant", "multi_storage",
}  # fmt: skip


def test_every_scenario_is_shipped():
    """models/ holds the default workload and one per KalamDB scenario."""
    assert SCENARIOS <= set(list_workloads())


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_shipped_workload_loads(name):
    """Each shipped workload loads, has a header comment, draws some operation and acts as some user."""
    path = models_dir() / f"{name}.toml"
    assert path.read_text().startswith(f"# {name} — ")
    w = load_workload(name)
    assert w.name == name and w.description
    assert w.operations.names()
    assert w.table_kinds.names()
    assert w.roles()["root"] == "system"
    assert w.actors_with_role("user")


def test_defaults_fill_missing_sections():
    """An empty document is the default workload, with every operation enabled."""
    w = workload_from_dict({})
    assert set(w.operations.names()) == set(OPERATIONS)
    assert w.tables_per_example == IntRange(1, 3)
    assert w.roles() == {"root": "system", "dba": "dba", "svc": "service", "user1": "user", "user2": "user"}


def test_operations_not_listed_have_weight_zero():
    """Listing [operations] switches off the operations left out."""
    w = workload_from_dict({"operations": {"insert": 2, "select": 1.5}})
    assert w.operations.get("insert") == 2.0 and w.operations.get("select") == 1.5
    assert w.operations.get("flush") == 0.0
    assert w.operations.names() == ("insert", "select")


def test_weights_are_hashable_and_ordered():
    """Weights keep file order and a Workload can be hashed (it is a frozen value)."""
    w = Weights.of({"b": 1, "a": 2})
    assert [k for k, _ in w] == ["b", "a"] and w.as_dict() == {"b": 1.0, "a": 2.0}
    hash(workload_from_dict({}))


def test_fixed_schema_is_parsed():
    """A [[schemas]] entry becomes a TableSchema with its primary key and options."""
    w = load_workload("chat")
    typing = next(s for s in w.schemas if s.name == "typing_events")
    assert typing.kind == "stream" and typing.ttl_seconds == 5 and typing.primary_key is None
    messages = next(s for s in w.schemas if s.name == "messages")
    assert messages.primary_key == "id"
    assert [c.name for c in messages.columns][:2] == ["id", "conversation_id"]


def test_load_by_path(tmp_path):
    """A path to a .toml file loads, and its name is the file stem."""
    p = tmp_path / "mine.toml"
    p.write_text('description = "x"\n[operations]\ninsert = 1\n')
    w = load_workload(str(p))
    assert w.name == "mine" and w.source == str(p)


def test_search_dirs_come_first(tmp_path):
    """A name is looked up in the given directories before models/."""
    (tmp_path / "default.toml").write_text('description = "local override"\n')
    assert resolve_workload_path("default", (tmp_path,)) == tmp_path / "default.toml"


BAD = [
    ({"bogus": 1}, "[bogus] is not a known key", "valid keys here: name, description"),
    ({"tables": {"kind": {}}}, "[tables.kind] is not a known key", "kinds, per_example"),
    ({"operations": {"insertt": 1}}, "[operations.insertt] is not a known name", "valid names: insert,"),
    ({"operations": {"insert": -1}}, "[operations.insert] weight must be a non-negative", "(got -1)"),
    ({"operations": {"insert": "3"}}, "[operations.insert] weight must be a non-negative number", "(got '3')"),
    ({"operations": {"insert": True}}, "[operations.insert] weight must be a non-negative number", "(got True)"),
    ({"operations": {"insert": float("nan")}}, "[operations.insert] weight must be a non-negative finite", "nan"),
    ({"operations": {"insert": 0}}, "[operations] needs at least one positive weight", "{'insert': 0}"),
    ({"tables": {"kinds": {"view": 1}}}, "[tables.kinds.view] is not a known name", "user, shared, stream"),
    ({"column_types": {"varchar2": 1}}, "[column_types.varchar2] is not a known name", "bigint"),
    ({"tables": {"columns": {"min": 3, "max": 1}}}, "[tables.columns.max] must be >= min (3)", "(got 1)"),
    ({"tables": {"per_example": {"min": 0, "max": 1}}}, "[tables.per_example.min] must be at least 1", "(got 0)"),
    ({"tables": {"columns": {"min": 1}}}, "[tables.columns] needs both min and max", "min = 1, max = 4"),
    ({"batches": {"insert_rows": {"min": 1.5, "max": 2}}}, "[batches.insert_rows.min] must be an integer", "1.5"),
    ({"actors": {"user1": "superuser"}}, "[actors.user1] is not a role", "valid roles: user, service, dba"),
    ({"actors": {"boss": "system"}}, "[actors.boss] only 'root' has role 'system'", "'system'"),
    ({"actors": {"User-1": "user"}}, "[actors.User-1] identity names are", "'User-1'"),
    ({"schemas": [{"name": "t", "kind": "user", "columns": [{"name": "a", "type": "int"}]}]},
     "[schemas[0].columns] a USER table needs one primary_key column", ""),
    ({"schemas": [{"name": "t", "kind": "stream", "columns": [{"name": "a", "type": "int"}]}]},
     "[schemas[0].ttl_seconds] a STREAM table needs ttl_seconds >= 1", "(got None)"),
    ({"schemas": [{"name": "t", "kind": "user", "ttl_seconds": 5,
                   "columns": [{"name": "a", "type": "int", "primary_key": True}]}]},
     "[schemas[0].ttl_seconds] only STREAM tables take ttl_seconds", "(got 5)"),
    ({"schemas": [{"name": "t", "kind": "shared",
                   "columns": [{"name": "_seq", "type": "int", "primary_key": True}]}]},
     "[schemas[0].columns[0].name] is a column KalamDB reserves", "'_seq'"),
    ({"schemas": [{"name": "Bad", "kind": "shared", "columns": [{"name": "a", "type": "int"}]}]},
     "[schemas[0].name] a table name must be", "'Bad'"),
    ({"schemas": [{"name": "t", "kind": "shared", "columns": [{"name": "a", "type": "int", "primary_key": True},
                                                            {"name": "a", "type": "text"}]}]},
     "[schemas[0].columns[1].name] appears twice", "'a'"),
    ({"schemas": [{"name": "t", "kind": "shared", "columns": [{"name": "a", "type": "nope", "primary_key": True}]}]},
     "[schemas[0].columns[0].type] is not a column type", "valid types:"),
    ({"schemas": [{"name": "t", "kind": "user", "access_level": "public",
                   "columns": [{"name": "a", "type": "int", "primary_key": True}]}]},
     "[schemas[0].access_level] only SHARED tables take an access_level", "'public'"),
    ({"schemas": [{"name": "t", "kind": "shared", "columns": [{"name": "a", "type": "int", "primary_key": True}],
                   "colour": "red"}]},
     "[schemas[0].colour] is not a known key", "valid keys here: name, kind, columns"),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "message", "detail"), BAD, ids=[b[1][:40] for b in BAD])
def test_validation_names_key_and_value(doc, message, detail):
    """A bad workload raises UsageError naming the source, the key path and the bad value."""
    with pytest.raises(UsageError) as info:
        workload_from_dict(doc, name="bad")
    text = str(info.value)
    assert text.startswith("workload <bad>: ")
    assert message in text
    assert detail in text


def test_file_errors_name_the_file(tmp_path):
    """Errors from a file name its path; broken TOML is reported as such."""
    p = tmp_path / "w.toml"
    p.write_text("[operations]\ninsert = -2\n")
    with pytest.raises(UsageError, match=rf"workload {p}: \[operations.insert\]"):
        load_workload(p)
    p.write_text("[operations\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_workload(p)


def test_unknown_workload_lists_known_ones():
    """An unknown name lists the workloads that exist; a missing path says it does not exist."""
    with pytest.raises(UsageError, match=r"no workload named 'nope'.*known workloads: .*chat"):
        load_workload("nope")
    with pytest.raises(UsageError, match="does not exist"):
        load_workload(Path("/nonexistent/w.toml"))
