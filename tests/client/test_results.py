"""Cell decoding and result records (PROTOCOL.md §2.3, §2.4)."""

from __future__ import annotations

import decimal

import pytest

from kalammodel.client import (
    Column,
    decode_cell,
    decode_live_row,
    decode_query_result,
    decode_sql_response,
    parse_columns,
)
from kalammodel.errors import TransportError

STREAMED_SELECT = {
    "status": "success",
    "results": [
        {
            "schema": [
                {"name": "id", "data_type": "BigInt", "index": 0, "flags": ["pk", "nn", "uq"]},
                {"name": "name", "data_type": "Text", "index": 1},
                {"name": "_seq", "data_type": "BigInt", "index": 2, "flags": ["nn"]},
                {"name": "_deleted", "data_type": "Boolean", "index": 3, "flags": ["nn"]},
            ],
            "rows": [["1", "Widget", "7321890123456512", False]],
            "row_count": 1,
            "as_user": "alice",
        }
    ],
    "took": 3.214,
    "error": None,
}


@pytest.mark.parametrize(
    ("data_type", "cell", "expected"),
    [
        ("BigInt", "123", 123),
        ("BigInt", "-9223372036854775808", -9223372036854775808),
        ("BigInt", 7, 7),
        ("Int", 42, 42),
        ("SmallInt", -3, -3),
        ("Double", 1.5, 1.5),
        ("Double", 2, 2.0),
        ("Float", 45.66999816894531, 45.66999816894531),
        ("Boolean", True, True),
        ("Boolean", False, False),
        ("Text", "héllo", "héllo"),
        ("Timestamp", 1672574400000000, 1672574400000000),
        ("DateTime", 1672574400000000, 1672574400000000),
        ("Date", 19358, 19358),
        ("Time", 43200000000, 43200000000),
        ("Json", '{"a": [1, 2]}', '{"a": [1, 2]}'),
        ("Uuid", "0190a6a0-0000-7000-8000-000000000000", "0190a6a0-0000-7000-8000-000000000000"),
        ({"Decimal": {"precision": 10, "scale": 2}}, "200.75", decimal.Decimal("200.75")),
        ({"Decimal": {"precision": 10, "scale": 2}}, "-0.05", decimal.Decimal("-0.05")),
        ("Bytes", [1, 2, 255], b"\x01\x02\xff"),
        ({"Embedding": 3}, [0.5, 1, -2.25], [0.5, 1.0, -2.25]),
        ("File", {"id": "f1", "name": "a.txt"}, {"id": "f1", "name": "a.txt"}),
    ],
)
def test_decode_cell_follows_the_protocol_table(data_type, cell, expected):
    """Each §2.4 data type decodes to its Python value and type."""
    value = decode_cell(cell, data_type, "c")
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("data_type", ["BigInt", "Int", "Text", "Json", "Boolean", {"Decimal": {}}, "Bytes"])
def test_null_decodes_to_none_for_every_type(data_type):
    """A JSON null is None whatever the declared type."""
    assert decode_cell(None, data_type, "c") is None


def test_text_lets_expression_cells_through():
    """Text passes non-string cells as sent (expression columns with unmapped Arrow types)."""
    assert decode_cell(5, "Text", "expr") == 5
    assert decode_cell("18446744073709551615", "Text", "u64") == "18446744073709551615"


@pytest.mark.parametrize(
    ("data_type", "cell"),
    [
        ("BigInt", "12x"),
        ("BigInt", True),
        ("Int", "42"),
        ("Double", "1.5"),
        ("Boolean", "true"),
        ("Json", {"a": 1}),
        ({"Decimal": {"precision": 4, "scale": 1}}, "abc"),
        ("Bytes", [1, 300]),
        ({"Embedding": 2}, [1.0, 2.0, 3.0]),
    ],
)
def test_decode_error_names_column_type_and_value(data_type, cell):
    """A cell that does not fit its type raises TransportError naming column, data_type and value."""
    with pytest.raises(TransportError) as info:
        decode_cell(cell, data_type, "price")
    text = str(info.value)
    assert "'price'" in text
    assert repr(data_type) in text
    assert repr(cell) in text


def test_streamed_select_decodes_rows_in_schema_order():
    """The streamed SELECT envelope of §2.3 decodes to typed tuples, dicts and flags."""
    response = decode_sql_response(STREAMED_SELECT)
    result = response.result
    assert result.column_names == ["id", "name", "_seq", "_deleted"]
    assert result.rows == [(1, "Widget", 7321890123456512, False)]
    assert result.dicts() == [{"id": 1, "name": "Widget", "_seq": 7321890123456512, "_deleted": False}]
    assert result.row_count == 1 and result.as_user == "alice" and result.message is None
    assert result.columns[0].flags == ("pk", "nn", "uq") and result.columns[0].is_primary_key
    assert result.columns[1].flags == ()
    assert response.took == pytest.approx(3.214)
    assert response.raw is STREAMED_SELECT


def test_schema_is_placed_by_index_not_by_array_order():
    """Schema fields listed out of order are sorted by index before rows are decoded."""
    result = decode_query_result(
        {
            "schema": [
                {"name": "b", "data_type": "Text", "index": 1},
                {"name": "a", "data_type": "BigInt", "index": 0},
            ],
            "rows": [["5", "x"]],
            "row_count": 1,
        }
    )
    assert result.dicts() == [{"a": 5, "b": "x"}]


def test_row_with_wrong_width_is_a_transport_error():
    """A row with more or fewer cells than the schema is rejected, not guessed."""
    with pytest.raises(TransportError, match="2 cells but the schema has 1"):
        decode_query_result({"schema": [{"name": "a", "data_type": "Int", "index": 0}], "rows": [[1, 2]]})


def test_schema_with_gap_in_indexes_is_rejected():
    """Indexes must be exactly 0..n-1."""
    with pytest.raises(TransportError, match="schema indexes"):
        parse_columns([{"name": "a", "data_type": "Int", "index": 1}])


def test_statement_results_without_schema():
    """DDL/DML results carry a message and row_count but no columns."""
    response = decode_sql_response(
        {
            "status": "success",
            "results": [
                {"row_count": 0, "message": "Namespace 'app' created successfully", "as_user": "root"},
                {"row_count": 3, "message": "Inserted 3 row(s)", "as_user": "root"},
            ],
            "took": 12.5,
        }
    )
    assert [(r.row_count, r.message) for r in response.results] == [
        (0, "Namespace 'app' created successfully"),
        (3, "Inserted 3 row(s)"),
    ]
    assert response.results[1].columns == [] and response.results[1].rows == []
    with pytest.raises(TransportError, match="exactly one result"):
        _ = response.result


def test_live_row_decodes_with_ack_schema():
    """A live row decodes by the ack schema; keys outside it pass as is, _seq always becomes int."""
    columns = [
        Column("id", "BigInt", 0, ["pk"]),
        Column("done", "Boolean", 1),
        Column("price", {"Decimal": {"precision": 6, "scale": 2}}, 2),
    ]
    row = {"id": "1", "done": False, "price": "9.50", "_seq": "7321890123456512", "row_id": "alice:5"}
    assert decode_live_row(row, columns) == {
        "id": 1,
        "done": False,
        "price": decimal.Decimal("9.50"),
        "_seq": 7321890123456512,
        "row_id": "alice:5",
    }


def test_live_row_without_schema_only_converts_seq():
    """Without a schema only _seq is converted; other values stay as sent."""
    assert decode_live_row({"id": "1", "_seq": "99"}) == {"id": "1", "_seq": 99}
