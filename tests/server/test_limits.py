"""§3: default and maximum result limits, default ordering."""

from __future__ import annotations

import time

import httpx
import pytest
from conftest import remote_xfail


@pytest.mark.embedded_only(reason="sets the query limits with CLI flags")
def test_default_and_max_limits(spawn_server):
    """Without LIMIT the default limit applies; a bigger LIMIT is capped at max; COUNT(*) is exact."""
    from conftest import ROOT_PASSWORD, Sql, login

    p = spawn_server("--default-query-limit", "5", "--max-query-limit", "8")
    sql = Sql(p.url, login(p.url, "root", ROOT_PASSWORD))
    sql("CREATE NAMESPACE lim; CREATE TABLE lim.t (id INT PRIMARY KEY)")
    sql("INSERT INTO lim.t (id) VALUES " + ", ".join(f"({i})" for i in range(20)))
    assert len(sql.rows("SELECT id FROM lim.t")) == 5
    assert len(sql.rows("SELECT id FROM lim.t LIMIT 100")) == 8
    assert sql.rows("SELECT COUNT(*) FROM lim.t") == [["20"]]


def test_default_order_by_pk(sql, ns):
    """Without ORDER BY rows come sorted by the PK when it is projected; an ORDER BY on output columns wins."""
    sql(f"CREATE TABLE {ns}.t (id INT PRIMARY KEY, v INT)")
    for i in (5, 1, 3):
        sql(f"INSERT INTO {ns}.t (id, v) VALUES ({i}, {10 - i})")
    assert sql.rows(f"SELECT id FROM {ns}.t") == [[1], [3], [5]]
    assert sql.rows(f"SELECT id, v FROM {ns}.t ORDER BY v") == [[5, 5], [3, 7], [1, 9]]
    assert sql.rows(f"SELECT id, v FROM {ns}.t ORDER BY v DESC LIMIT 2") == [[1, 9], [3, 7]]
    assert sql.rows(f"SELECT id FROM {ns}.t ORDER BY id LIMIT 1 OFFSET 1") == [[3]]


@remote_xfail("KalamDB bug: ORDER BY a column that is not selected is replaced by the default PK order")
def test_order_by_unselected_column(sql, ns):
    """ORDER BY a column missing from the select list still decides the order (and which rows LIMIT keeps)."""
    sql(f"CREATE TABLE {ns}.t (id INT PRIMARY KEY, v INT)")
    sql(f"INSERT INTO {ns}.t (id, v) VALUES (5, 5), (1, 9), (3, 7)")
    assert sql.rows(f"SELECT id FROM {ns}.t ORDER BY v") == [[5], [3], [1]]
    assert sql.rows(f"SELECT id FROM {ns}.t ORDER BY v DESC LIMIT 2") == [[1], [3]]


@pytest.mark.embedded_only(reason="sets the query rate limit with a CLI flag")
def test_query_rate_limit_per_user(spawn_server):
    """Beyond --max-queries-per-sec a user gets 429 RATE_LIMIT_EXCEEDED; other users are unaffected; it refills."""
    from conftest import ROOT_PASSWORD, Sql, login

    p = spawn_server("--max-queries-per-sec", "2")
    root = login(p.url, "root", ROOT_PASSWORD)
    Sql(p.url, root)("CREATE USER 'rl' WITH PASSWORD 'RlPass123!' ROLE user")
    other = login(p.url, "rl", "RlPass123!")
    with httpx.Client(base_url=p.url, timeout=10) as c:

        def select(token: str) -> httpx.Response:
            return c.post(
                "/v1/api/sql", json={"sql": "SELECT 1"}, headers={"Authorization": f"Bearer {token}"}
            )

        answers = [select(root) for _ in range(10)]
        assert [r.status_code for r in answers[:1]] == [200]
        limited = [r for r in answers if r.status_code == 429]
        assert limited, [r.status_code for r in answers]
        body = limited[0].json()
        assert body["error"] == {
            "code": "RATE_LIMIT_EXCEEDED",
            "message": "Too many queries per second. Please slow down.",
        }
        assert (body["status"], body["results"]) == ("error", [])
        assert select(other).status_code == 200
        deadline = time.monotonic() + 5
        while select(root).status_code == 429:
            assert time.monotonic() < deadline, "the rate limit did not refill within 5 s"
            time.sleep(0.1)
