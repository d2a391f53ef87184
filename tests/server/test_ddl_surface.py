"""DROP COLUMN of the primary key is refused (§9; docs/kalamdb-findings.md 6), and its planted twin."""

from __future__ import annotations

import pytest
from conftest import ROOT_PASSWORD, Sql, login, remote_xfail


@remote_xfail("KalamDB bug: DROP COLUMN <primary key> answers success (docs/kalamdb-findings.md 6)")
def test_drop_primary_key_is_refused(sql, ns):
    sql(f"CREATE TABLE {ns}.p (id INT PRIMARY KEY, v INT)")
    sql(f"ALTER TABLE {ns}.p DROP COLUMN id", status=400)
    sql(f"INSERT INTO {ns}.p (id, v) VALUES (1, 2)")
    assert sql.rows(f"SELECT id, v FROM {ns}.p") == [[1, 2]]


@pytest.mark.embedded_only(reason="planted faults exist only in the embedded server")
def test_drop_pk_column_accepted(spawn_server):
    """The twin of finding 6 answers success, bumps nothing and changes nothing."""
    p = spawn_server("--fault", "drop_pk_column_accepted")
    sql = Sql(p.url, login(p.url, "root", ROOT_PASSWORD))
    sql("CREATE NAMESPACE f")
    sql("CREATE TABLE f.p (id INT PRIMARY KEY, v INT)")
    msg = sql("ALTER TABLE f.p DROP COLUMN id")["results"][0]["message"]
    assert msg == "Table f.p altered successfully: DROP COLUMN id (version 2)"
    assert "(version 2)" in sql("ALTER TABLE f.p ADD COLUMN w INT")["results"][0]["message"]
    assert [c["name"] for c in sql("SELECT * FROM f.p")["results"][0]["schema"]][:2] == ["id", "v"]
