"""Parallel programs as data: the codec round-trips, bad data is refused naming the field."""

from __future__ import annotations

import json

import pytest
from _build import count, delete, get, insert, scan, update
from hypothesis import given, settings

from kalammodel.errors import UsageError
from kalammodel.model import Column, ColumnType, TableSpec
from kalammodel.parallel import ParallelProgram
from kalammodel.parallel.generate import parallel_programs
from kalammodel.steps import CreateTable, Flush, Select, step_to_data

PREFIX = [CreateTable("root", TableSpec("t", "USER", [Column("id", ColumnType.BIGINT, primary_key=True)]))]


@settings(max_examples=60, deadline=None)
@given(parallel_programs(8))
def test_drawn_programs_round_trip_through_json(program):
    """to_data is JSON-able and from_data gives the same program back."""
    data = json.loads(json.dumps(program.to_data()))
    assert ParallelProgram.from_data(data) == program
    assert 2 <= len(program.clients) <= 8 and all(2 <= len(c) <= 6 for c in program.clients)


def test_a_program_of_every_allowed_step_round_trips():
    program = ParallelProgram(
        PREFIX, [[insert(1, 2), update(1, 3)], [delete(1), get(1), scan(), count()]], [scan()]
    )
    assert ParallelProgram.from_data(program.to_data()) == program
    assert program.section_steps == 6
    assert "client 1: count(t, by=user1)" in program.describe()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"prefix": [], "clients": [[]]}, "field 'clients' must hold 2 to 8 clients (got 1)"),
        ({"prefix": [], "clients": [[step_to_data(get(1))]] * 9}, "2 to 8 clients (got 9)"),
        (
            {"prefix": [], "clients": [[step_to_data(get(1))], []]},
            "field 'clients[1]' must hold at least one step",
        ),
        ({"prefix": [], "clients": "x"}, "field 'clients' must be a list of step lists"),
        ({"prefix": [{"kind": "nope"}], "clients": []}, "field 'prefix'[0]: unknown step kind 'nope'"),
        (
            {"prefix": [], "clients": [[step_to_data(get(1))]] * 2, "suffix": [{"kind": "select"}]},
            "field 'suffix'[0]: step 'select': missing field(s)",
        ),
        ({"prefix": [], "clients": [[step_to_data(get(1))]] * 2, "extra": 1}, "unknown field(s) ['extra']"),
        ({"clients": []}, "missing field(s) ['prefix']"),
        ([], "must be a dict with prefix, clients, suffix"),
    ],
)
def test_bad_data_is_refused_naming_the_field(data, words):
    with pytest.raises(UsageError) as info:
        ParallelProgram.from_data(data)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("step", "words"),
    [
        (Flush("root", "t"), "a 'flush' step may not run inside a parallel section"),
        (PREFIX[0], "a 'create_table' step may not run inside a parallel section"),
        (
            insert(1, 1).__class__("user1", "t", ("id", "v"), (ColumnType.BIGINT,) * 2, ((1, 1), (2, 2))),
            "exactly one row",
        ),
        (delete(1).__class__("user1", "t", None), "WHERE <primary key> = <value>"),
        (Select("user1", "t", limit=3), "no LIMIT or OFFSET"),
    ],
)
def test_only_the_steps_of_this_slice_may_run_in_a_section(step, words):
    """Live, DDL, flush, restart and multi-row or predicate steps are refused inside a section, naming the spot."""
    with pytest.raises(UsageError) as info:
        ParallelProgram(PREFIX, [[get(1)], [get(2), step]])
    assert "field 'clients[1][1]'" in str(info.value) and words in str(info.value)


@pytest.mark.parametrize("clients", [1, 9, -1])
def test_the_parallel_option_takes_zero_or_two_to_eight_clients(clients):
    from kalammodel.parallel.generate import check_parallel

    for fine in (0, None, 2, 8):
        check_parallel(fine)
    with pytest.raises(
        UsageError, match=r"--kalammodel-parallel must be 0 \(sequential programs\) or 2 to 8"
    ):
        check_parallel(clients)
