"""§4: CREATE TABLE rules, identifiers, system columns, namespaces."""

from __future__ import annotations

import pytest
from conftest import created


def test_default_kind_is_shared_and_pk_required(sql, ns):
    """No prefix means SHARED; USER and SHARED tables need a PK; STREAM needs TTL."""
    assert sql(f"CREATE TABLE {ns}.a (id INT PRIMARY KEY)")["results"][0]["message"] == created(
        "shared", f"{ns}.a"
    )
    msg = sql(f"CREATE USER TABLE {ns}.b (id INT)", status=400)["error"]["message"]
    assert "require a PRIMARY KEY" in msg
    assert sql(f"CREATE STREAM TABLE {ns}.c (id INT)", status=400)["error"] == {
        "code": "INVALID_SQL",
        "message": "Invalid CREATE TABLE statement: STREAM tables must specify 'TTL_SECONDS'",
    }
    msg = sql(f"CREATE TABLE {ns}.d (id INT PRIMARY KEY) WITH (TYPE='USER')")["results"][0]["message"]
    assert msg == created("user", f"{ns}.d")
    err = sql(f"CREATE SHARED TABLE {ns}.e (id INT PRIMARY KEY) WITH (TYPE='USER')", status=400)["error"]
    assert err["message"] == (
        "Invalid CREATE TABLE statement: Conflicting table type definitions: CREATE Shared TABLE vs TYPE option User"
    )
    err = sql(f"CREATE TABLE {ns}.f (id INT PRIMARY KEY) WITH (BOGUS=1)", status=400)["error"]
    assert err == {
        "code": "INVALID_SQL",
        "message": "Invalid CREATE TABLE statement: Unknown table option 'BOGUS'",
    }


def test_duplicate_table_and_missing_namespace(sql, ns):
    """A duplicate is 'Already exists'; IF NOT EXISTS keeps the table and answers 'created'; a missing namespace names the fix."""
    sql(f"CREATE TABLE {ns}.t (id INT PRIMARY KEY)")
    assert sql(f"CREATE TABLE {ns}.t (id INT PRIMARY KEY)", status=400)["error"]["message"].endswith(
        f"Already exists: Table {ns}.t already exists"
    )
    sql(f"INSERT INTO {ns}.t (id) VALUES (1)")
    msg = sql(f"CREATE TABLE IF NOT EXISTS {ns}.t (id INT PRIMARY KEY, extra TEXT)")["results"][0]["message"]
    assert msg == created("shared", f"{ns}.t")
    res = sql(f"SELECT * FROM {ns}.t")["results"][0]
    assert [f["name"] for f in res["schema"]] == ["id", "_seq", "_deleted"] and res["rows"][0][0] == 1
    msg = sql("CREATE TABLE nosuchns_x.t (id INT PRIMARY KEY)", status=400)["error"]["message"]
    assert "Namespace 'nosuchns_x' does not exist. Create it first with CREATE NAMESPACE nosuchns_x" in msg


@pytest.mark.parametrize("bad", ["_seq", "_id"])
def test_reserved_column_names(sql, ns, bad):
    """Reserved system column names are rejected."""
    sql(f"CREATE TABLE {ns}.r (id INT PRIMARY KEY, {bad} INT)", status=400)


def test_reserved_namespace(sql):
    """Reserved namespaces cannot be created."""
    sql("CREATE NAMESPACE system", status=400)


def test_system_columns_and_lowercasing(sql, ns):
    """SELECT * returns user columns then _seq and _deleted; names are lowercased."""
    sql(f"CREATE TABLE {ns}.MixedCase (ID BIGINT PRIMARY KEY AUTO_INCREMENT, Name TEXT)")
    sql(f"INSERT INTO {ns}.mixedcase (name) VALUES ('x')")
    res = sql(f"SELECT * FROM {ns}.mixedcase")["results"][0]
    assert [f["name"] for f in res["schema"]] == ["id", "name", "_seq", "_deleted"]
    row = res["rows"][0]
    assert int(row[0]) > 1_000_000 and row[3] is False and int(row[2]) > 0


def test_seq_is_snowflake(sql, ns):
    """_seq holds ms since 2024-01-01 in its high bits and grows per write."""
    import time

    sql(f"CREATE TABLE {ns}.s (id INT PRIMARY KEY)")
    sql(f"INSERT INTO {ns}.s (id) VALUES (1), (2)")
    seqs = [int(r[0]) for r in sql.rows(f"SELECT _seq FROM {ns}.s ORDER BY id")]
    assert seqs[0] < seqs[1]
    ms = (seqs[0] >> 22) + 1704067200000
    assert abs(ms - time.time() * 1000) < 60_000


def test_drop_namespace_drops_tables(sql):
    """DROP NAMESPACE drops its tables (CASCADE ignored)."""
    sql("CREATE NAMESPACE dropme; CREATE TABLE dropme.t (id INT PRIMARY KEY)")
    assert (
        sql("DROP NAMESPACE dropme CASCADE")["results"][0]["message"]
        == "Namespace 'dropme' dropped successfully"
    )
    sql("SELECT * FROM dropme.t", status=400)
    assert sql("DROP TABLE IF EXISTS dropme.t")["status"] == "success"


def test_drop_table_message(sql, ns):
    """DROP TABLE answers with a cleanup job id."""
    sql(f"CREATE TABLE {ns}.t (id INT PRIMARY KEY)")
    msg = sql(f"DROP TABLE {ns}.t")["results"][0]["message"]
    assert msg.startswith(f"Table {ns}.t dropped successfully. Cleanup job: CL-")
