"""Durability: every acknowledged write survives kill -9 and a restart (hot and cold)."""

from __future__ import annotations

import pytest
from conftest import ROOT_PASSWORD, Sql, login


@pytest.mark.embedded_only(reason="kills and restarts a spawned server process")
def test_kill9_keeps_acknowledged_writes(spawn_server, tmp_path):
    """Rows, updates, deletes, users and flushed data are all there after kill -9 and restart."""
    data = tmp_path / "durable"
    p = spawn_server(data_dir=data)
    sql = Sql(p.url, login(p.url, "root", ROOT_PASSWORD))
    sql("CREATE NAMESPACE d; CREATE USER TABLE d.n (id INT PRIMARY KEY, v TEXT)")
    sql("INSERT INTO d.n (id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    sql.flush("d.n")
    sql("UPDATE d.n SET v = 'B' WHERE id = 2")
    sql("DELETE FROM d.n WHERE id = 3")
    for i in range(4, 40):
        sql(f"INSERT INTO d.n (id, v) VALUES ({i}, 'v{i}')")
    sql("CREATE USER 'dur' WITH PASSWORD 'DurPass1!' ROLE user")
    before = sql.rows("SELECT id, v, _seq FROM d.n")
    p.kill()
    q = spawn_server(data_dir=data)
    sql2 = Sql(q.url, login(q.url, "root", ROOT_PASSWORD))
    assert sql2.rows("SELECT id, v, _seq FROM d.n") == before
    assert login(q.url, "dur", "DurPass1!")
    sql2("INSERT INTO d.n (id, v) VALUES (100, 'after')")
    seqs = [int(r[0]) for r in sql2.rows("SELECT _seq FROM d.n ORDER BY _seq")]
    assert seqs == sorted(set(seqs)) and seqs[-1] > max(int(r[2]) for r in before)
