"""Cold-file checks on real Parquet and manifest.json files written with pyarrow in temporary directories."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kalammodel.checks import check_cold_scope, find_stray_files, read_cold_scope, scope_dir

NS, TABLE, USER = "app", "notes", "km_user1_ab12"


def write_batch(directory: Path, n: int, rows: list[dict], *, schema: pa.Schema | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    schema = schema or pa.schema(
        [
            ("id", pa.int64()),
            ("body", pa.string()),
            ("meta", pa.string()),
            ("_seq", pa.int64()),
            ("_deleted", pa.bool_()),
        ]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    path = directory / f"batch-{n}.parquet"
    pq.write_table(table, path)
    return path


def segment(path: Path, rows: list[dict], **over) -> dict:
    seqs = [r["_seq"] for r in rows]
    seg = {"min_seq": min(seqs), "max_seq": max(seqs), "row_count": len(rows), "size_bytes": path.stat().st_size,
           "created_at": 1714800005000, "id": f"seg-{path.stem}", "path": path.name, "column_stats": {},
           "schema_version": 1, "status": "committed"}  # fmt: skip
    seg.update(over)
    return seg


def write_manifest(directory: Path, segments: list[dict], user_id: str | None = USER) -> Path:
    path = directory / "manifest.json"
    path.write_text(json.dumps({"table_id": f"{NS}.{TABLE}", "user_id": user_id, "version": len(segments),
                                "created_at": 1714800000000, "updated_at": 1714800005000, "segments": segments,
                                "last_sequence_number": 0, "files": None, "vector_indexes": {}}))  # fmt: skip
    return path


def row(id_: int, body: str, seq: int, meta: str | None = None) -> dict:
    return {"id": id_, "body": body, "meta": meta, "_seq": seq, "_deleted": False}


B0 = [row(1, "a", 100, '{"x": 1, "y": [1, 2]}'), row(2, "b", 101)]
B1 = [row(1, "a2", 200), row(3, "c", 201)]
KNOWN = [
    {"id": 1, "body": "a", "meta": '{"y":[1,2],"x":1}'},  # same JSON, other spelling
    {"id": 1, "body": "a2", "meta": None},
    {"id": 2, "body": "b", "meta": None},
    {"id": 3, "body": "c", "meta": None},
]
EXPECTED = {"primary_key": "id", "json_columns": ["meta"], "known_versions": KNOWN, "expect_files": True,
            "newest": [{"id": 1, "body": "a2", "meta": None}, {"id": 2, "body": "b", "meta": None}]}  # fmt: skip


@pytest.fixture
def scope_path(tmp_path: Path) -> Path:
    return scope_dir(tmp_path / "storage", NS, TABLE, USER)


def good_scope(scope_path: Path) -> None:
    p0 = write_batch(scope_path, 0, B0)
    p1 = write_batch(scope_path, 1, B1)
    write_manifest(scope_path, [segment(p0, B0), segment(p1, B1)])


def kinds(problems) -> list[str]:
    return sorted(p.kind for p in problems)


def test_scope_dir_follows_templates(tmp_path):
    """Scope directories follow the default templates and the placeholder aliases of custom ones."""
    assert scope_dir(tmp_path, "app", "notes", "alice") == tmp_path / "app" / "notes" / "alice"
    assert scope_dir(tmp_path, "app", "cfg") == tmp_path / "app" / "cfg"
    custom = "users/{namespace_id}/{table_name}/{user_id}"
    assert scope_dir(tmp_path, "app", "t", "bob", custom) == tmp_path / "users" / "app" / "t" / "bob"
    with pytest.raises(ValueError, match="no user id"):
        scope_dir(tmp_path, "app", "t", None, "{namespace}/{tableName}/{userId}")


def test_reads_a_good_scope(tmp_path, scope_path):
    """A good scope is read into segments and files with row counts, _seq ranges and rows."""
    good_scope(scope_path)
    scope = read_cold_scope(tmp_path, NS, TABLE, USER)
    assert scope.directory == scope_path and scope.has_manifest
    assert [s.path for s in scope.segments] == ["batch-0.parquet", "batch-1.parquet"]
    assert [(f.row_count, f.min_seq, f.max_seq) for f in scope.files] == [(2, 100, 101), (2, 200, 201)]
    assert scope.files[0].rows[0] == B0[0]
    assert len(scope.rows()) == 4
    by_dir = read_cold_scope(scope_path)
    assert (
        by_dir.directory == scope_path and by_dir.files == scope.files and by_dir.segments == scope.segments
    )
    with pytest.raises(ValueError, match="both namespace and table"):
        read_cold_scope(tmp_path, NS)


def test_good_scope_has_no_problems(tmp_path, scope_path):
    """A consistent scope whose rows are known versions passes every check."""
    good_scope(scope_path)
    assert check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), EXPECTED) == []


def test_custom_storage_base_and_shared_scope(tmp_path):
    """A SHARED scope under a custom storage base is found and checked."""
    base = tmp_path / "arch"
    d = scope_dir(base, NS, "cfg", None, "shared/{namespace}/{tableName}")
    p = write_batch(d, 0, B0)
    write_manifest(d, [segment(p, B0)], user_id=None)
    scope = read_cold_scope(None, NS, "cfg", storage_base=base, template="shared/{namespace}/{tableName}")
    assert scope.directory == base / "shared" / NS / "cfg"
    assert (
        check_cold_scope(scope, {"primary_key": "id", "json_columns": ["meta"], "known_versions": KNOWN})
        == []
    )


def test_nothing_flushed_is_fine_unless_expected(tmp_path):
    """An absent scope passes when no flush wrote rows, and is a problem when one did."""
    scope = read_cold_scope(tmp_path, NS, TABLE, USER)
    assert not scope.exists
    assert check_cold_scope(scope, {"primary_key": "id"}) == []
    assert kinds(check_cold_scope(scope, {"primary_key": "id", "expect_files": True})) == ["no_cold_files"]


def test_segment_without_file(tmp_path, scope_path):
    """A manifest segment whose file is missing is reported, naming the missing path."""
    good_scope(scope_path)
    (scope_path / "batch-1.parquet").unlink()
    problems = check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), EXPECTED)
    assert "segment_without_file" in kinds(problems)
    assert any("batch-1.parquet does not exist" in p.message for p in problems)


def test_tombstone_segment_may_lack_its_file(tmp_path, scope_path):
    """A segment with status tombstone is not required to have a file."""
    p0 = write_batch(scope_path, 0, B0)
    write_manifest(
        scope_path, [segment(p0, B0), {**segment(p0, B0), "path": "batch-9.parquet", "status": "tombstone"}]
    )
    expected = {**EXPECTED, "newest": []}
    assert check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), expected) == []


def test_file_without_segment(tmp_path, scope_path):
    """A batch file the manifest does not list is reported."""
    p0 = write_batch(scope_path, 0, B0)
    write_batch(scope_path, 1, B1)
    write_manifest(scope_path, [segment(p0, B0)])
    problems = check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), EXPECTED)
    assert kinds(problems) == ["file_without_segment"]
    assert problems[0].path.endswith("batch-1.parquet")


def test_manifest_missing(tmp_path, scope_path):
    """Batch files without a manifest.json are reported."""
    write_batch(scope_path, 0, B0)
    problems = check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), {**EXPECTED, "newest": []})
    assert kinds(problems) == ["manifest_missing"]


def test_manifest_unreadable(tmp_path, scope_path):
    """An unparseable manifest is reported with its path and the parser's error."""
    write_batch(scope_path, 0, B0)
    (scope_path / "manifest.json").write_text('{"segments": [')
    problems = check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), {**EXPECTED, "newest": []})
    bad = [p for p in problems if p.kind == "manifest_unreadable"]
    assert bad and bad[0].path.endswith("manifest.json") and "JSONDecodeError" in bad[0].message


def test_manifest_without_segment_list(tmp_path, scope_path):
    """A manifest whose 'segments' is not a list is unreadable."""
    scope_path.mkdir(parents=True)
    (scope_path / "manifest.json").write_text('{"segments": null}')
    problems = check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), {"primary_key": "id"})
    assert kinds(problems) == ["manifest_unreadable"]


def test_segment_row_count_disagrees(tmp_path, scope_path):
    """A segment row_count that differs from the file's row count is reported with both numbers."""
    p0 = write_batch(scope_path, 0, B0)
    write_manifest(scope_path, [segment(p0, B0, row_count=5)])
    problems = check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), {**EXPECTED, "newest": []})
    assert kinds(problems) == ["segment_row_count"]
    assert problems[0].detail == {"manifest": 5, "file": 2}


def test_segment_seq_range_disagrees(tmp_path, scope_path):
    """min_seq / max_seq that differ from the file's _seq range are reported."""
    p0 = write_batch(scope_path, 0, B0)
    write_manifest(scope_path, [segment(p0, B0, min_seq=99, max_seq=150)])
    problems = check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), {**EXPECTED, "newest": []})
    assert kinds(problems) == ["segment_seq_range", "segment_seq_range"]
    assert {p.detail["bound"] for p in problems} == {"min_seq", "max_seq"}


def test_seq_given_as_strings_is_accepted(tmp_path, scope_path):
    """Sequence numbers written as JSON strings compare as integers."""
    p0 = write_batch(scope_path, 0, B0)
    write_manifest(scope_path, [segment(p0, B0, min_seq="100", max_seq="101", row_count="2")])
    assert check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), {**EXPECTED, "newest": []}) == []


def test_empty_and_zero_row_files(tmp_path, scope_path):
    """A zero-byte file and a Parquet file with no rows are both empty."""
    p0 = write_batch(scope_path, 0, [])
    (scope_path / "batch-1.parquet").write_bytes(b"")
    write_manifest(scope_path, [segment(p0, B0, row_count=0), {**segment(p0, B0), "path": "batch-1.parquet"}])
    problems = check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), {"primary_key": "id"})
    assert kinds(problems) == ["file_empty", "file_empty"]


def test_unreadable_parquet(tmp_path, scope_path):
    """A file that is not Parquet is reported with its name and pyarrow's error."""
    good_scope(scope_path)
    (scope_path / "batch-1.parquet").write_bytes(b"PAR1 this is not parquet")
    problems = check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), {**EXPECTED, "newest": []})
    bad = [p for p in problems if p.kind == "parquet_unreadable"]
    assert len(bad) == 1 and "batch-1.parquet" in bad[0].message and "ArrowInvalid" in bad[0].message


def test_duplicate_pk_in_one_file(tmp_path, scope_path):
    """The same primary key twice in one file is reported with both row numbers."""
    rows = [row(1, "a", 100), row(1, "a2", 101)]
    p0 = write_batch(scope_path, 0, rows)
    write_manifest(scope_path, [segment(p0, rows)])
    known = [{"id": 1, "body": "a"}, {"id": 1, "body": "a2"}]
    problems = check_cold_scope(
        read_cold_scope(tmp_path, NS, TABLE, USER), {"primary_key": "id", "known_versions": known}
    )
    assert kinds(problems) == ["duplicate_pk_in_file"]
    assert "rows 0 and 1" in problems[0].message


def test_same_pk_in_two_files_is_fine(tmp_path, scope_path):
    """A primary key in two different files (two flushes) is not a duplicate."""
    good_scope(scope_path)
    problems = check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), EXPECTED)
    assert "duplicate_pk_in_file" not in kinds(problems)


def test_unknown_version(tmp_path, scope_path):
    """A row whose user columns match no known version is reported with the row and the candidates."""
    rows = [row(1, "zzz", 100)]
    p0 = write_batch(scope_path, 0, rows)
    write_manifest(scope_path, [segment(p0, rows)])
    problems = check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), {**EXPECTED, "newest": []})
    assert kinds(problems) == ["unknown_version"]
    assert problems[0].detail["row"] == {"id": 1, "body": "zzz", "meta": None}
    assert len(problems[0].detail["known"]) == 2


def test_json_compares_by_parsed_value(tmp_path, scope_path):
    """JSON columns compare by value; without json_columns the texts must match exactly."""
    good_scope(scope_path)
    scope = read_cold_scope(tmp_path, NS, TABLE, USER)
    assert check_cold_scope(scope, EXPECTED) == []
    as_text = {**EXPECTED, "json_columns": [], "newest": []}
    assert kinds(check_cold_scope(scope, as_text)) == ["unknown_version"]


def test_columns_missing_on_one_side_count_as_null(tmp_path, scope_path):
    """A column added after the flush (absent from the file) matches a known version with NULL there."""
    good_scope(scope_path)
    known = [{**v, "added": None} for v in KNOWN]
    expected = {**EXPECTED, "known_versions": known, "user_columns": ["id", "body", "meta", "added"]}
    assert check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), expected) == []
    known_bad = [{**v, "added": 7} for v in KNOWN]
    problems = check_cold_scope(
        read_cold_scope(tmp_path, NS, TABLE, USER), {**expected, "known_versions": known_bad}
    )
    assert set(kinds(problems)) == {"unknown_version"}


def test_user_columns_restrict_the_comparison(tmp_path, scope_path):
    """A dropped column left in old files is ignored when user_columns excludes it."""
    good_scope(scope_path)
    known = [{"id": v["id"], "body": v["body"]} for v in KNOWN]
    newest = [{"id": 1, "body": "a2"}]
    expected = {
        "primary_key": "id",
        "user_columns": ["id", "body"],
        "known_versions": known,
        "newest": newest,
    }
    assert check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), expected) == []


def test_newest_cold_version_differs(tmp_path, scope_path):
    """The newest version per PK across files must equal the expected one (an older one is not enough)."""
    good_scope(scope_path)
    expected = {**EXPECTED, "newest": [{"id": 1, "body": "a", "meta": '{"x":1,"y":[1,2]}'}]}
    problems = check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), expected)
    assert kinds(problems) == ["newest_differs"]
    assert problems[0].detail["actual"]["body"] == "a2"


def test_newest_cold_version_missing(tmp_path, scope_path):
    """A live PK the model expects in cold storage but no file holds is reported."""
    good_scope(scope_path)
    expected = {**EXPECTED, "newest": [{"id": 4, "body": "d", "meta": None}]}
    assert kinds(check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), expected)) == ["newest_missing"]


def test_pk_given_as_string_matches_int(tmp_path, scope_path):
    """A BIGINT primary key the model holds as a string matches the file's integer."""
    good_scope(scope_path)
    known = [{**v, "id": str(v["id"])} for v in KNOWN]
    expected = {**EXPECTED, "known_versions": known, "newest": [{"id": "1", "body": "a2", "meta": None}]}
    # The PK column itself is compared as a user column too: strings vs ints differ there.
    problems = check_cold_scope(
        read_cold_scope(tmp_path, NS, TABLE, USER), {**expected, "user_columns": ["body"]}
    )
    assert problems == []


def test_temporal_and_float32_values_are_normalised(tmp_path, scope_path):
    """Timestamps read as µs integers, dates as days, FLOAT compares after f32 rounding."""
    schema = pa.schema([("id", pa.int64()), ("at", pa.timestamp("ms")), ("day", pa.date32()), ("t", pa.time64("us")),
                        ("f", pa.float32()), ("_seq", pa.int64()), ("_deleted", pa.bool_())])  # fmt: skip
    import datetime as dt

    rows = [{"id": 1, "at": dt.datetime(2024, 1, 1, 0, 0, 1), "day": dt.date(1970, 1, 11), "t": dt.time(0, 0, 2),
             "f": 45.67, "_seq": 5, "_deleted": False}]  # fmt: skip
    p0 = write_batch(scope_path, 0, rows, schema=schema)
    write_manifest(scope_path, [segment(p0, rows)])
    scope = read_cold_scope(tmp_path, NS, TABLE, USER)
    got = scope.files[0].rows[0]
    assert got["at"] == 1_704_067_201_000_000 and got["day"] == 10 and got["t"] == 2_000_000
    known = [{"id": 1, "at": 1_704_067_201_000_000, "day": 10, "t": 2_000_000, "f": 45.67}]
    assert check_cold_scope(scope, {"primary_key": "id", "known_versions": known}) == []


def test_missing_pk_column(tmp_path, scope_path):
    """A file without the primary key column is reported instead of crashing."""
    rows = [row(1, "a", 100)]
    p0 = write_batch(scope_path, 0, rows)
    write_manifest(scope_path, [segment(p0, rows)])
    problems = check_cold_scope(read_cold_scope(tmp_path, NS, TABLE, USER), {"primary_key": "key"})
    assert kinds(problems) == ["missing_pk_column"]


def test_primary_key_is_required():
    """check_cold_scope refuses expected data without a primary key name."""
    from kalammodel.checks import ColdScope

    scope = ColdScope(Path("/x"), NS, TABLE, None, Path("/x/manifest.json"))
    with pytest.raises(ValueError, match="primary_key"):
        check_cold_scope(scope, {})


def test_find_stray_files(tmp_path):
    """Cold files outside the allowed storage directories are strays; files inside are not."""
    local = tmp_path / "data" / "storage"
    arch = tmp_path / "arch"
    write_batch(local / NS / "notes" / USER, 0, B0)
    write_manifest(local / NS / "notes" / USER, [])
    write_batch(local / NS / "archived", 0, B0)  # belongs to storage arch but landed in local
    write_batch(arch / NS / "archived", 0, B0)
    (local / NS / "notes" / "README").write_text("not a cold file")
    problems = find_stray_files(tmp_path, [local / NS / "notes", arch])
    assert [p.kind for p in problems] == ["stray_file"]
    assert problems[0].path.endswith("archived/batch-0.parquet") and "/storage/" in problems[0].path
    assert find_stray_files(tmp_path / "absent", []) == []


def test_an_unchanged_file_is_decoded_once_and_a_rewritten_one_again(tmp_path, scope_path, monkeypatch):
    """Each full check reads every file of a scope, but decodes only those written (or rewritten, truncated)
    since it last saw them: a change on disk is never hidden by the cache."""
    from kalammodel.checks import cold

    good_scope(scope_path)
    decoded: list[str] = []
    real = cold._decode_parquet
    monkeypatch.setattr(cold, "_decode_parquet", lambda path, size: decoded.append(path.name) or real(path, size))
    first = read_cold_scope(tmp_path, NS, TABLE, USER)
    assert decoded == ["batch-0.parquet", "batch-1.parquet"]
    again = read_cold_scope(tmp_path, NS, TABLE, USER)
    assert decoded == ["batch-0.parquet", "batch-1.parquet"] and again.files == first.files
    write_batch(scope_path, 1, [row(9, "rewritten", 300)])
    changed = read_cold_scope(tmp_path, NS, TABLE, USER)
    assert decoded[2:] == ["batch-1.parquet"]
    assert changed.files[1].rows[0]["body"] == "rewritten"
    (scope_path / "batch-0.parquet").write_bytes(b"")
    assert read_cold_scope(tmp_path, NS, TABLE, USER).files[0].row_count == 0
