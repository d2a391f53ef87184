"""The live-query filter (`_live_filter.matches`) and the WebSocket cell encoding (PROTOCOL.md §10.5, §2.4)."""

from __future__ import annotations

import decimal
from typing import Any

import pytest
import sqlglot

from kalammodel.server._live import encode_cell
from kalammodel.server._live_filter import FilterError, matches

pytestmark = pytest.mark.embedded_only(reason="unit tests of the embedded live filter")

ROW = {"id": 7, "title": "Hello World", "done": False, "score": 2.5, "owner": "alice", "note": None}


def where(sql_where: str) -> Any:
    return sqlglot.parse_one(f"SELECT * FROM ns.t WHERE {sql_where}").args["where"].this


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("id = 7", True),
        ("id != 7", False),
        ("id <> 8", True),
        ("id > 6 AND id < 8", True),
        ("id >= 8 OR score <= 2.5", True),
        ("NOT (id = 7)", False),
        ("done = false", True),
        ("done = true", False),
        ("title LIKE 'Hello%'", True),
        ("title LIKE 'hello%'", False),
        ("title ILIKE 'hello%'", True),
        ("title NOT LIKE '%World'", False),
        ("title LIKE 'Hello_World'", True),
        ("title LIKE 'Hello!%' ESCAPE '!'", False),
        ("note IS NULL", True),
        ("note IS NOT NULL", False),
        ("owner = CURRENT_USER()", True),
        ("score = -2.5 OR id = 7", True),
        ("id = '7'", False),
        ("title > 'A' AND title < 'Z'", True),
    ],
)
def test_filter_evaluates_supported_operators(clause: str, expected: bool) -> None:
    """Each supported operator gives the SQL answer on a sample row."""
    assert matches(where(clause), ROW, "alice") is expected


@pytest.mark.parametrize("clause", ["note = 'x'", "note != 'x'", "NOT (note = 'x')", "note LIKE '%'"])
def test_comparisons_with_null_never_match(clause: str) -> None:
    """A comparison with NULL is unknown, and unknown (even negated) does not match."""
    assert matches(where(clause), ROW, "alice") is False


def test_or_with_unknown_side_can_still_match() -> None:
    """Three-valued OR: unknown OR true is true."""
    assert matches(where("note = 'x' OR id = 7"), ROW, "alice") is True


@pytest.mark.parametrize(
    "clause", ["missing = 1", "id IN (1, 7)", "id BETWEEN 1 AND 9", "UPPER(title) = 'X'"]
)
def test_unsupported_filters_raise(clause: str) -> None:
    """Unknown columns and operators KalamDB's live evaluator lacks raise FilterError."""
    with pytest.raises(FilterError):
        matches(where(clause), ROW, "alice")


def test_no_where_matches_everything() -> None:
    """A subscription without WHERE matches every row."""
    assert matches(None, {}, "bob") is True


def test_decimals_compare_numerically() -> None:
    """Decimal values compare with integer and float literals as numbers."""
    row = {"price": decimal.Decimal("10.50")}
    assert matches(where("price > 10 AND price < 10.6"), row, "u") is True


@pytest.mark.parametrize(
    ("value", "data_type", "cell"),
    [
        (12, "BigInt", "12"),
        (12, "Int", 12),
        (45.66999816894531, "Float", 45.66999816894531),
        (True, "Boolean", True),
        ("0102", "Bytes", [1, 2]),
        ("200.75", {"Decimal": {"precision": 6, "scale": 2}}, "200.75"),
        (1_700_000_000_000_000, "Timestamp", 1_700_000_000_000_000),
        ('{"a":1}', "Json", '{"a":1}'),
        (None, "BigInt", None),
        ("free", None, "free"),
    ],
)
def test_cells_are_encoded_as_in_http_results(value: Any, data_type: Any, cell: Any) -> None:
    """Canonical engine values become the §2.4 JSON cells (BIGINT as a string, bytes as numbers, ...)."""
    assert encode_cell(value, data_type) == cell
