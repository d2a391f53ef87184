"""The live-query filter (`_live_filter`) and the WebSocket cell encoding (PROTOCOL.md §10.5, §2.4).

The filter evaluates the WHERE grammar of the SELECT path by SQL three-valued logic, and refuses at compile
(subscribe) time what it cannot evaluate; the property test checks it against the model's evaluator, an
independent implementation, on random predicates in random SQL styles over rows with NULLs."""

from __future__ import annotations

import decimal
from typing import Any

import pytest
import sqlglot

from kalammodel.server._live import encode_cell
from kalammodel.server._live_filter import FilterError, compile_filter, matches

pytestmark = pytest.mark.embedded_only(reason="unit tests of the embedded live filter")

ROW = {"id": 7, "title": "Hello World", "done": False, "score": 2.5, "owner": "alice", "note": None}


TYPES = {"id": "BigInt", "title": "Text", "done": "Boolean", "score": "Double", "owner": "Text", "note": "Text"}


def where(sql_where: str) -> Any:
    return sqlglot.parse_one(f"SELECT * FROM ns.t WHERE {sql_where}", read="postgres").args["where"].this


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
        ("id = '7'", True),  # the literal takes the column's type, as in SQL (KalamDB's evaluator: false)
        ("'7' = id", True),
        ("8 > id", True),
        ("id IN (1, 7)", True),
        ("id NOT IN (1, 7)", False),
        ("id BETWEEN 1 AND 9", True),
        ("id NOT BETWEEN 7 AND 9", False),
        ("id IS NOT DISTINCT FROM 7", True),
        ("note IS DISTINCT FROM NULL", False),
        ("done IS FALSE", True),
        ("done IS NOT TRUE", True),
        ("title LIKE 'Hello\\_World'", False),
        ("NOT (NOT (id = 7 OR note = 'x'))", True),
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
    ("clause", "code"),
    [
        ("missing = 1", "INVALID_SQL"),
        ("UPPER(title) = 'X'", "UNSUPPORTED"),
        ("id + 1 = 8", "UNSUPPORTED"),
        ("id IN (SELECT 1)", "UNSUPPORTED"),
        ("title = 7", "INVALID_SQL"),
        ("id", "INVALID_SQL"),
        ("id = 'seven'", "INVALID_SQL"),
    ],
)
def test_what_cannot_be_evaluated_is_refused_when_compiled(clause: str, code: str) -> None:
    """Unknown columns, functions, arithmetic, subqueries and mismatched kinds are refused at subscribe time."""
    with pytest.raises(FilterError) as info:
        compile_filter(where(clause), TYPES, "alice")
    assert info.value.code == code, info.value


def test_a_row_without_a_filtered_column_raises_at_evaluation() -> None:
    """A column dropped after the subscription started: evaluation raises, so the client can be told."""
    compiled = compile_filter(where("note IS NULL"), TYPES, "alice")
    with pytest.raises(FilterError, match="no longer has"):
        compiled.matches({"id": 1})
    retyped = compile_filter(where("id = 7"), TYPES, "alice")
    with pytest.raises(FilterError, match="type changed"):
        retyped.matches({**ROW, "id": "seven"})


def test_kalamdb_subset_fails_only_when_evaluated() -> None:
    """The planted fault's evaluator compiles IN / BETWEEN but cannot evaluate them (KalamDB's evaluator)."""
    compiled = compile_filter(where("id IN (7) OR id BETWEEN 1 AND 2"), TYPES, "alice", kalamdb_subset=True)
    with pytest.raises(FilterError, match="unsupported expression"):
        compiled.matches(ROW)
    assert compile_filter(where("id = 7"), TYPES, "alice", kalamdb_subset=True).matches(ROW)


def test_timestamps_compare_with_string_literals() -> None:
    """A TIMESTAMP column (µs) compares with a timestamp literal as a timestamp, on either side."""
    types = {"ts": "Timestamp"}
    row = {"ts": 1_700_000_000_000_000}  # 2023-11-14 22:13:20 UTC
    assert matches(where("ts = '2023-11-14 22:13:20.000000'"), row, "u", types)
    assert matches(where("'2023-11-14 22:13:21' > ts"), row, "u", types)
    assert matches(where("ts BETWEEN '2023-11-14' AND TIMESTAMP '2023-11-15 00:00:00'"), row, "u", types)
    assert not matches(where("ts IN ('2023-11-14 22:13:21')"), row, "u", types)


def test_finding_12_is_unknown_for_null() -> None:
    """`c IN (a) AND c IN (b)` is UNKNOWN for a NULL c, so its negation does not match (finding 12)."""
    types = {"c0": "Timestamp"}
    clause = (
        "NOT (c0 = '2023-11-14 22:13:20' AND (c0 IN ('2023-11-14 22:13:20') AND c0 IN ('2023-11-14 22:13:21')))"
    )
    assert compile_filter(where(clause), types, "u").truth({"c0": None}) is None


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
