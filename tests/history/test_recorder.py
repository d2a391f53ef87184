"""The history records, their JSON form, and the thread-safe recorder."""

from __future__ import annotations

import itertools
import json
import threading

import pytest

from kalammodel.errors import UsageError
from kalammodel.history import Codec, HistoryRecorder, Operation, Status, history_from_data, history_to_data


def fake_clock(step_ns: int = 1_000_000):
    """A clock advancing ``step_ns`` at every reading (1 ms by default)."""
    ticks = itertools.count(0, step_ns)
    return lambda: next(ticks)


def test_recorder_times_outcomes_and_statuses() -> None:
    """invoke/ok/fail/indeterminate give operations with their times (s since the origin) and statuses."""
    rec = HistoryRecorder(fake_clock())
    a = rec.invoke(1, "put")  # t = 1 ms (the origin read 0)
    b = rec.invoke(2, "get")  # 2 ms
    rec.ok(b, 5)  # 3 ms
    rec.fail(a, "duplicate")  # 4 ms
    c = rec.invoke(3, "del")  # 5 ms
    rec.indeterminate(c)
    h = rec.history()
    assert [(o.client, o.invoke, o.ret, o.outcome, o.status) for o in h] == [
        (1, 0.001, 0.004, "duplicate", Status.FAILED),
        (2, 0.002, 0.003, 5, Status.OK),
        (3, 0.005, None, None, Status.INDETERMINATE),
    ]


def test_pending_operations_are_indeterminate() -> None:
    """An operation invoked and never completed is reported indeterminate: its client saw no answer."""
    rec = HistoryRecorder(fake_clock())
    rec.invoke(0, "w")
    (o,) = rec.history()
    assert o.status is Status.INDETERMINATE and o.ret is None and o.outcome is None


def test_completing_a_token_twice_or_an_unknown_token_is_refused() -> None:
    """A token completes once; a second completion or a token the recorder never gave raises UsageError."""
    rec = HistoryRecorder(fake_clock())
    t = rec.invoke(0, "w")
    rec.ok(t, None)
    with pytest.raises(UsageError, match="already completed as ok"):
        rec.indeterminate(t)
    with pytest.raises(UsageError, match="unknown history token 7"):
        rec.ok(7, None)


def test_recorder_from_many_threads() -> None:
    """Eight threads recording 50 operations each yield 400 operations sorted by invocation, each client's
    own operations in sequence (one returned before its next was invoked)."""
    rec = HistoryRecorder()
    start = threading.Barrier(8)

    def client(c: int) -> None:
        start.wait()
        for i in range(50):
            t = rec.invoke(c, ("op", c, i))
            rec.ok(t, i)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    h = rec.history()
    assert len(h) == 400 and [o.invoke for o in h] == sorted(o.invoke for o in h)
    for c in range(8):
        mine = [o for o in h if o.client == c]
        assert [o.outcome for o in mine] == list(range(50))
        assert all(a.ret is not None and a.ret <= b.invoke for a, b in zip(mine, mine[1:]))


def test_operation_validates_its_times() -> None:
    """An answered operation needs ret >= invoke; an indeterminate one has no ret; invoke is finite."""
    with pytest.raises(UsageError, match="ret of a ok operation must be a finite time >= invoke 2.0"):
        Operation(0, "w", 2.0, 1.0, None, Status.OK)
    with pytest.raises(UsageError, match="an indeterminate operation has no return time"):
        Operation(0, "w", 2.0, 3.0, None, Status.INDETERMINATE)
    with pytest.raises(UsageError, match="invoke must be a finite number"):
        Operation(0, "w", float("nan"), 3.0, None, Status.FAILED)


def test_history_round_trips_through_json_with_a_codec() -> None:
    """history_to_data / history_from_data round-trip a history through JSON, requests and outcomes through
    the codec (here tuples, which JSON would turn into lists)."""
    def as_tuple(value: object) -> object:
        assert isinstance(value, list)
        return tuple(value)

    def as_list(value: object) -> object:
        assert isinstance(value, tuple)
        return list(value)

    def rows_from(value: object) -> object:
        assert isinstance(value, dict)
        return tuple(value["rows"])

    codec = Codec(as_list, as_tuple, lambda o: {"rows": as_list(o)}, rows_from)
    h = [
        Operation(1, ("put", "k", 1), 0.0, 0.25, (), Status.OK),
        Operation(2, ("get", "k"), 0.125, 0.5, (1,), Status.OK),
        Operation(3, ("put", "k", 2), 0.3, None, None, Status.INDETERMINATE),
        Operation(1, ("insert", "k", 3), 0.6, 0.7, ("duplicate",), Status.FAILED),
    ]
    data = json.loads(json.dumps(history_to_data(h, codec)))
    assert data[2] == {"client": 3, "op": ["put", "k", 2], "invoke": 0.3, "ret": None, "outcome": None,
                       "status": "indeterminate"}  # fmt: skip
    assert history_from_data(data, codec) == h
    assert history_from_data(history_to_data([h[0]])) == [h[0]]  # the identity codec


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"client": 1}, "a history is a list of operations"),
        ([{"client": 1}], "history entry 0 must be a dict with exactly the keys"),
        ([dict(client=True, op=1, invoke=0, ret=1, outcome=None, status="ok")], "'client' must be an int"),
        ([dict(client=1, op=1, invoke="0", ret=1, outcome=None, status="ok")], "'invoke' must be a number"),
        ([dict(client=1, op=1, invoke=0, ret=1, outcome=None, status="info")], "unknown status 'info'"),
        ([dict(client=1, op=1, invoke=0, ret=1, outcome=None, status="indeterminate")], "history entry 0: an "),
    ],
)
def test_bad_history_data_is_refused_by_name(data: object, message: str) -> None:
    """history_from_data names the entry, the field and the value it refuses."""
    with pytest.raises(UsageError, match=message):
        history_from_data(data)
