"""§3: default and maximum result limits, default ordering."""

from __future__ import annotations


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
    """Without ORDER BY rows come sorted by the PK when it is projected; ORDER BY is honoured."""
    sql(f"CREATE TABLE {ns}.t (id INT PRIMARY KEY, v INT)")
    for i in (5, 1, 3):
        sql(f"INSERT INTO {ns}.t (id, v) VALUES ({i}, {10 - i})")
    assert sql.rows(f"SELECT id FROM {ns}.t") == [[1], [3], [5]]
    assert sql.rows(f"SELECT id FROM {ns}.t ORDER BY v") == [[5], [3], [1]]
    assert sql.rows(f"SELECT id FROM {ns}.t ORDER BY id LIMIT 1 OFFSET 1") == [[3]]
