"""Cold storage on disk: read a table scope's ``manifest.json`` and ``batch-*.parquet`` and check them.

A *scope* is one flush directory: ``<base>/<namespace>/<table>`` for SHARED tables and
``<base>/<namespace>/<table>/<userId>`` for USER tables (PROTOCOL §7.3; storage ``local`` has
``base = <data_dir>/storage``, other storages their own base directory and templates, §7.6).

``read_cold_scope`` gives a ``ColdScope`` record (manifest segments, and per Parquet file its path, size, row count,
``_seq`` range and rows). ``check_cold_scope(scope, expected)`` compares it with what the model knows and returns
``Problem`` records (``kalammodel.checks.routing`` finds cold files outside the directories a storage may use).

In a session, :func:`read_cold` reads a scope's files as the step ends and returns the call that compares them
with the model later; :data:`cold_files` is the registered check (``cold_files``).

``expected`` is plain data, so that the model can build it without knowing this module::

    {
        "primary_key": "id",                      # required
        "user_columns": ["id", "body"],           # optional: the columns compared (default: the file's own)
        "json_columns": ["payload"],              # optional: compared by parsed JSON value
        "known_versions": [{"id": 1, "body": "a"}, {"id": 1, "body": "b"}],   # every version the model knows
        "newest": [{"id": 1, "body": "b"}],       # optional: the exact newest cold version per live PK
        "expect_files": True,                     # optional: True = at least one flush wrote rows here
    }

A column missing on one side counts as NULL (columns added or dropped by ALTER TABLE).
"""

from __future__ import annotations

import collections
import decimal
import functools
import json
import math
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import Invariant
from ..model import TableKind
from .registry import Finding, check

if TYPE_CHECKING:
    from ..runner import Session
    from .routing import ColdListing

__all__ = [
    "COLD_FILE",
    "ColdFile",
    "ColdScope",
    "Problem",
    "Segment",
    "check_cold_scope",
    "cold_files",
    "read_cold",
    "read_cold_scope",
    "scope_dir",
]

COLD_FILE = re.compile(r"^batch-\d+\.parquet$")
SYSTEM_COLUMNS = ("_seq", "_deleted")
SHARED_TEMPLATE = "{namespace}/{tableName}"
USER_TEMPLATE = "{namespace}/{tableName}/{userId}"
_PLACEHOLDERS = {
    "namespace": ("{namespace}", "{namespace_id}"),
    "table": ("{tableName}", "{table_name}"),
    "user": ("{userId}", "{user_id}"),
}


@attrs.frozen
class Problem:
    """One thing wrong with cold storage: ``kind`` (stable name), the file it concerns, and a message."""

    kind: str
    path: str | None
    message: str
    detail: Any = None

    def __str__(self) -> str:
        where = f" [{self.path}]" if self.path else ""
        return f"{self.kind}{where}: {self.message}"


@attrs.frozen
class Segment:
    """One ``segments[]`` entry of ``manifest.json`` (§7.5)."""

    id: str | None
    path: str | None
    row_count: int | None
    min_seq: int | None
    max_seq: int | None
    size_bytes: int | None
    status: str | None
    schema_version: int | None
    raw: dict[str, Any] = attrs.field(eq=False, repr=False)


@attrs.frozen
class ColdFile:
    """One ``batch-N.parquet``: size, row count, ``_seq`` range and rows (None when unreadable: see ``error``)."""

    path: Path
    size: int
    row_count: int | None = None
    min_seq: int | None = None
    max_seq: int | None = None
    columns: tuple[str, ...] = ()
    float32_columns: tuple[str, ...] = ()
    rows: tuple[dict[str, Any], ...] | None = attrs.field(default=None, repr=False)
    error: str | None = None


@attrs.frozen
class ColdScope:
    """The cold files of one table scope. ``manifest`` is the parsed JSON (None if missing or unreadable).

    ``namespace``/``table``/``user_id`` are those asked for (None when the scope was read by directory).
    """

    directory: Path
    namespace: str | None
    table: str | None
    user_id: str | None
    manifest_path: Path
    manifest: dict[str, Any] | None = attrs.field(default=None, repr=False)
    manifest_error: str | None = None
    segments: tuple[Segment, ...] = ()
    files: tuple[ColdFile, ...] = ()

    @property
    def exists(self) -> bool:
        return self.directory.is_dir()

    @property
    def has_manifest(self) -> bool:
        return self.manifest_path.is_file()

    def rows(self) -> list[dict[str, Any]]:
        """Every row of every readable file, in file order."""
        return [row for f in self.files for row in (f.rows or ())]


def scope_dir(
    base: str | Path,
    namespace: str,
    table: str,
    user_id: str | None = None,
    template: str | None = None,
) -> Path:
    """The directory of a scope: ``base`` joined with the storage template (§7.3 placeholders and aliases)."""
    tpl = template or (USER_TEMPLATE if user_id is not None else SHARED_TEMPLATE)
    rel = tpl
    for key, value in (("namespace", namespace), ("table", table), ("user", user_id)):
        for ph in _PLACEHOLDERS[key]:
            if ph in rel:
                if value is None:
                    raise ValueError(f"storage template {tpl!r} has {ph} but no user id was given")
                rel = rel.replace(ph, value)
    return Path(base) / rel.strip("/")


def _batch_number(path: Path) -> int:
    m = re.match(r"batch-(\d+)\.parquet$", path.name)
    return int(m.group(1)) if m else -1


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return None


def _normalise_column(column: Any) -> list[Any]:
    """Arrow column -> python values in the client's representation (§2.4): temporal types as integers."""
    import pyarrow as pa

    t = column.type
    if pa.types.is_timestamp(t):
        return column.cast(pa.timestamp("us", tz=t.tz)).cast(pa.int64()).to_pylist()
    if pa.types.is_date32(t):
        return column.cast(pa.int32()).to_pylist()
    if pa.types.is_date64(t):
        return [None if v is None else v // 86_400_000 for v in column.cast(pa.int64()).to_pylist()]
    if pa.types.is_time(t):
        return column.cast(pa.time64("us")).cast(pa.int64()).to_pylist()
    return column.to_pylist()


#: decoded Parquet files by (path, inode, size, mtime): a written segment never changes, so each full check
#: decodes only the files written since the last one (a rewritten or truncated file has a new identity)
_DECODED: collections.OrderedDict[tuple[Any, ...], ColdFile] = collections.OrderedDict()
_DECODED_MAX = 256


def _read_parquet(path: Path) -> ColdFile:
    try:
        st = path.stat()
    except OSError as exc:
        return ColdFile(path=path, size=0, error=f"cannot stat: {exc}")
    if st.st_size == 0:
        return ColdFile(path=path, size=0, row_count=0, rows=())
    identity = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _DECODED.get(identity)
    if cached is not None:
        _DECODED.move_to_end(identity)
        return cached
    decoded = _decode_parquet(path, st.st_size)
    if decoded.error is None:
        _DECODED[identity] = decoded
        while len(_DECODED) > _DECODED_MAX:
            _DECODED.popitem(last=False)
    return decoded


def _decode_parquet(path: Path, size: int) -> ColdFile:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException, ValueError) as exc:
        return ColdFile(path=path, size=size, error=f"{type(exc).__name__}: {exc}")
    names = tuple(table.column_names)
    data = {name: _normalise_column(table.column(name)) for name in names}
    rows = tuple({name: data[name][i] for name in names} for i in range(table.num_rows))
    min_seq = max_seq = None
    if "_seq" in names and table.num_rows:
        mm = pc.min_max(table.column("_seq"))
        min_seq, max_seq = _as_int(mm["min"].as_py()), _as_int(mm["max"].as_py())
    f32 = tuple(n for n in names if pa.types.is_float32(table.schema.field(n).type))
    return ColdFile(path, size, table.num_rows, min_seq, max_seq, names, f32, rows)


def _segment(raw: Any) -> Segment:
    d = raw if isinstance(raw, dict) else {}
    return Segment(
        id=d.get("id") if isinstance(d.get("id"), str) else None,
        path=d.get("path") if isinstance(d.get("path"), str) else None,
        row_count=_as_int(d.get("row_count")),
        min_seq=_as_int(d.get("min_seq")),
        max_seq=_as_int(d.get("max_seq")),
        size_bytes=_as_int(d.get("size_bytes")),
        status=d.get("status") if isinstance(d.get("status"), str) else None,
        schema_version=_as_int(d.get("schema_version")),
        raw=d,
    )


def read_cold_scope(
    data_dir: str | Path | None,
    namespace: str | None = None,
    table: str | None = None,
    user_id: str | None = None,
    *,
    storage_base: str | Path | None = None,
    template: str | None = None,
) -> ColdScope:
    """Read the manifest and every ``batch-*.parquet`` of one scope. Never raises for bad files: they are
    recorded (``manifest_error``, ``ColdFile.error``) for ``check_cold_scope`` to report.

    Either ``read_cold_scope(scope_directory)`` (a directory from ``scope_dir``), or
    ``read_cold_scope(data_dir, namespace, table[, user_id])``: ``storage_base`` then defaults to
    ``<data_dir>/storage`` (storage ``local``) and ``template`` to the default templates of §1.2.
    """
    if namespace is None and table is None and storage_base is None and template is None:
        if data_dir is None:
            raise ValueError(
                "read_cold_scope needs a scope directory, or data_dir/storage_base with namespace and table"
            )
        directory = Path(data_dir)
    else:
        if namespace is None or table is None:
            raise ValueError(f"read_cold_scope needs both namespace and table (got {namespace!r}, {table!r})")
        if storage_base is None:
            if data_dir is None:
                raise ValueError("read_cold_scope needs data_dir or storage_base")
            storage_base = Path(data_dir) / "storage"
        directory = scope_dir(storage_base, namespace, table, user_id, template)
    manifest_path = directory / "manifest.json"
    manifest: dict[str, Any] | None = None
    error: str | None = None
    segments: tuple[Segment, ...] = ()
    if manifest_path.is_file():
        try:
            loaded = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if not isinstance(loaded, dict):
                error = f"top level is {type(loaded).__name__}, expected an object"
            elif not isinstance(loaded.get("segments"), list):
                error = f"'segments' is {loaded.get('segments')!r}, expected a list"
                manifest = loaded
            else:
                manifest = loaded
                segments = tuple(_segment(s) for s in loaded["segments"])
    files: list[ColdFile] = []
    if directory.is_dir():
        paths = sorted((p for p in directory.iterdir() if COLD_FILE.match(p.name)), key=_batch_number)
        files = [_read_parquet(p) for p in paths]
    return ColdScope(
        directory=directory,
        namespace=namespace,
        table=table,
        user_id=user_id,
        manifest_path=manifest_path,
        manifest=manifest,
        manifest_error=error,
        segments=segments,
        files=tuple(files),
    )


# ---------------------------------------------------------------------------------------------------------------
# Value comparison


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _f32(value: float) -> float:
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except (OverflowError, struct.error):
        return value


def _canon(value: Any, *, is_json: bool = False, is_f32: bool = False) -> Any:
    """A hashable, comparable form: JSON by parsed value, FLOAT rounded to f32, Decimal normalised."""
    if value is None or value is _MISSING:
        return None
    if is_json:
        parsed = value
        if isinstance(value, (str, bytes)):
            try:
                parsed = json.loads(value)
            except ValueError:
                return ("unparseable-json", value)
        return ("json", json.dumps(parsed, sort_keys=True, separators=(",", ":")))
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return ("nan",)
        return _f32(value) if is_f32 else value
    if isinstance(value, int):
        return float(_f32(value)) if is_f32 else value
    if isinstance(value, decimal.Decimal):
        return ("decimal", str(value.normalize()))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ("bytes", bytes(value))
    if isinstance(value, (list, tuple)):
        return tuple(_canon(v, is_f32=is_f32) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _canon(v)) for k, v in value.items()))
    return value


def _pk_key(value: Any) -> Any:
    """Primary-key values compare across representations (e.g. BIGINT sent as string by the server)."""
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return _canon(value)


def _row_view(
    row: Mapping[str, Any], columns: Iterable[str], json_cols: set[str], f32_cols: set[str]
) -> tuple:
    return tuple(_canon(row.get(c, _MISSING), is_json=c in json_cols, is_f32=c in f32_cols) for c in columns)


def _user_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in SYSTEM_COLUMNS}


# ---------------------------------------------------------------------------------------------------------------
# The checks


def _check_manifest(scope: ColdScope, expect_files: bool | None) -> list[Problem]:
    problems: list[Problem] = []
    mpath = str(scope.manifest_path)
    if scope.manifest_error is not None:
        problems.append(
            Problem("manifest_unreadable", mpath, f"manifest.json cannot be parsed: {scope.manifest_error}")
        )
    if not scope.has_manifest:
        if scope.files:
            problems.append(Problem("manifest_missing", mpath,
                                    f"{len(scope.files)} batch file(s) but no manifest.json in {scope.directory}"))  # fmt: skip
        elif expect_files:
            problems.append(Problem("no_cold_files", str(scope.directory),
                                    "a flush wrote rows to this scope, but there is no manifest.json and no batch file"))  # fmt: skip
        return problems
    if scope.manifest is None:
        return problems
    by_name = {f.path.name: f for f in scope.files}
    referenced: set[str] = set()
    committed = 0
    for i, seg in enumerate(scope.segments):
        label = f"segment #{i} ({seg.path or 'no path'})"
        if seg.path is None:
            problems.append(Problem("segment_without_file", mpath, f"{label} has no 'path'", seg.raw))
            continue
        name = Path(seg.path).name
        referenced.add(name)
        if seg.status not in (None, "committed"):
            continue  # in_progress / tombstone segments may legitimately lack their file
        committed += 1
        file = by_name.get(name)
        if file is None:
            problems.append(Problem("segment_without_file", mpath,
                                    f"manifest.json lists {label} but {scope.directory / name} does not exist", seg.raw))  # fmt: skip
            continue
        if file.error is not None or file.row_count is None or file.size == 0:
            continue  # unreadable or zero-byte: reported by the file checks
        if seg.row_count is not None and seg.row_count != file.row_count:
            problems.append(Problem("segment_row_count", str(file.path),
                                    f"manifest says row_count={seg.row_count}, the file has {file.row_count} rows",
                                    {"manifest": seg.row_count, "file": file.row_count}))  # fmt: skip
        if file.row_count:
            for bound, said, real in (
                ("min_seq", seg.min_seq, file.min_seq),
                ("max_seq", seg.max_seq, file.max_seq),
            ):
                if said is not None and real is not None and said != real:
                    problems.append(Problem("segment_seq_range", str(file.path),
                                            f"manifest says {bound}={said}, the file's {bound} is {real}",
                                            {"bound": bound, "manifest": said, "file": real}))  # fmt: skip
    for f in scope.files:
        if f.path.name not in referenced:
            problems.append(Problem("file_without_segment", str(f.path),
                                    f"{f.path.name} is not listed in {scope.manifest_path.name}"))  # fmt: skip
    if expect_files and committed == 0:
        problems.append(Problem("no_cold_files", mpath, "a flush wrote rows to this scope, but the manifest lists no "
                                                        "committed segment"))  # fmt: skip
    return problems


def check_cold_scope(scope: ColdScope, expected: Mapping[str, Any]) -> list[Problem]:
    """Everything wrong with one scope's cold files, compared with the model's ``expected`` data (module doc)."""
    pk = expected.get("primary_key")
    if not isinstance(pk, str):
        raise ValueError(f"expected['primary_key'] must name the primary key column (got {pk!r})")
    json_cols = set(expected.get("json_columns") or ())
    columns_given = expected.get("user_columns")
    problems = _check_manifest(scope, expected.get("expect_files"))

    known: dict[Any, list[Mapping[str, Any]]] = {}
    for version in expected.get("known_versions") or ():
        known.setdefault(_pk_key(version.get(pk)), []).append(version)
    newest_cold: dict[Any, tuple[int, dict[str, Any], ColdFile]] = {}

    for f in scope.files:
        fpath = str(f.path)
        if f.error is not None:
            problems.append(Problem("parquet_unreadable", fpath, f"cannot read {f.path.name}: {f.error}"))
            continue
        if f.size == 0 or not f.row_count:
            problems.append(Problem("file_empty", fpath,
                                    f"{f.path.name} is empty ({f.size} bytes, {f.row_count or 0} rows)"))  # fmt: skip
            continue
        if "_seq" not in f.columns:
            problems.append(
                Problem("missing_seq_column", fpath, f"{f.path.name} has no _seq column: {f.columns}")
            )
        if pk not in f.columns:
            problems.append(Problem("missing_pk_column", fpath,
                                    f"{f.path.name} has no primary key column {pk!r}: {f.columns}"))  # fmt: skip
            continue
        f32 = set(f.float32_columns)
        compared = [c for c in (columns_given or f.columns) if c not in SYSTEM_COLUMNS]
        seen: dict[Any, int] = {}
        for index, row in enumerate(f.rows or ()):
            key = _pk_key(row.get(pk))
            if key in seen:
                problems.append(Problem("duplicate_pk_in_file", fpath,
                                        f"primary key {row.get(pk)!r} appears twice in {f.path.name} "
                                        f"(rows {seen[key]} and {index})", row.get(pk)))  # fmt: skip
            else:
                seen[key] = index
            if expected.get("known_versions") is not None:
                view = _row_view(row, compared, json_cols, f32)
                candidates = known.get(key, [])
                if not any(_row_view(v, compared, json_cols, f32) == view for v in candidates):
                    problems.append(Problem("unknown_version", fpath,
                                            f"{f.path.name} row {index} is not a version the model knows for "
                                            f"{pk}={row.get(pk)!r}",
                                            {"row": _user_view(row), "known": [dict(v) for v in candidates]}))  # fmt: skip
            seq = _as_int(row.get("_seq"))
            if seq is not None and (key not in newest_cold or seq > newest_cold[key][0]):
                newest_cold[key] = (seq, row, f)

    for want in expected.get("newest") or ():
        key = _pk_key(want.get(pk))
        if key not in newest_cold:
            problems.append(Problem("newest_missing", str(scope.directory),
                                    f"{pk}={want.get(pk)!r} should be in cold storage but no file holds it",
                                    {"expected": dict(want)}))  # fmt: skip
            continue
        _, row, f = newest_cold[key]
        compared = [c for c in (columns_given or f.columns) if c not in SYSTEM_COLUMNS]
        f32 = set(f.float32_columns)
        if _row_view(row, compared, json_cols, f32) != _row_view(want, compared, json_cols, f32):
            problems.append(Problem("newest_differs", str(f.path),
                                    f"the newest cold version of {pk}={want.get(pk)!r} is not the expected one",
                                    {"expected": dict(want), "actual": _user_view(row)}))  # fmt: skip
    return problems


# ---------------------------------------------------------------------- in a session


def read_cold(session: Session, table: str, owner: str | None) -> Callable[[], None] | None:
    """Read the scope's cold files (and list the namespace's) now; the returned call compares them with the
    model (None: nothing to check). A full read sent ahead reads the disk as the step ends, like its SQL."""
    from .routing import list_cold_files

    # (getattr: stand-in targets of unit tests, e.g. object(), have no data directory at all)
    data_dir = getattr(session.runner.target, "data_dir", None)
    model = session.model
    state = model.tables[table]
    if data_dir is None or state.kind is TableKind.STREAM or state.spec.storage_id not in (None, "local"):
        return None
    if not session.was_flushed(table):
        return None
    if state.flush.running_job is not None or state.auto_flush:
        # A flush job writes batch-N.parquet, then manifest.json, then deletes hot keys (PROTOCOL §7.3): while
        # one may be running, the directory is legitimately between those states.
        return None
    if model.primary_key(table) is None:
        return None
    user_id = None if owner is None else session.wire_user(owner)
    base = Path(data_dir) / "storage"
    directory = scope_dir(base, session.ns, table, user_id)
    scope = read_cold_scope(directory)
    listing = list_cold_files(base, session.ns, list(model.tables))
    return functools.partial(_compare_cold, session, table, owner, user_id, directory, scope, listing)


def _compare_cold(
    session: Session,
    table: str,
    owner: str | None,
    user_id: str | None,
    directory: Path,
    scope: ColdScope,
    listing: ColdListing,
) -> None:
    from .routing import storage_routing

    cold_files(session, session.ns, table, user_id, directory, scope, expected_cold(session, table, owner))
    storage_routing(session, listing)


def expected_cold(session: Session, table: str, owner: str | None) -> dict[str, Any]:
    """What the model knows of a scope's cold files, as :func:`check_cold_scope` takes it."""
    model = session.model
    state = model.tables[table]
    pk = model.primary_key(table)
    assert pk is not None  # checked by read_cold
    known: list[dict[str, Any]] = []
    for key in model.known_pks(table, owner) | model.deleted_pks(table, owner):
        known.extend(model.known_versions(table, owner, key))
    # Old Parquet files legitimately keep dropped columns (PROTOCOL §9), and a re-added name is a new column:
    # compare only the current columns whose name was never dropped.
    dropped = {d.column.name for d in state.dropped}
    compared = [c for c in model.column_names(table) if c not in dropped]
    known = [{k: v for k, v in row.items() if k in compared or k == "_deleted"} for row in known]
    expected: dict[str, Any] = {"primary_key": pk, "known_versions": known, "user_columns": compared}
    json_cols = [c for c in model.column_names(table) if str(state.column_type(c)).upper().endswith("JSON")]
    if json_cols:
        expected["json_columns"] = json_cols
    newest = model.expected_cold_rows(table, owner)
    if newest is not None:
        expected["newest"] = [{k: v for k, v in row.items() if k in compared} for row in newest.values()]
        expected["expect_files"] = bool(newest) or None
    return expected


@check(Invariant.COLD_FILES)
def cold_files(
    ns: str, table: str, user_id: str | None, directory: Path, scope: ColdScope, expected: Mapping[str, Any]
) -> Finding | None:
    """After a completed flush, the scope's manifest and Parquet files agree with the model."""
    problems = check_cold_scope(scope, expected)
    if not problems:
        return None
    return Finding(
        f"cold files of {ns}.{table}/{user_id or '<shared>'} disagree with the model: "
        + "; ".join(str(p) for p in problems[:5]),
        request=f"read {directory}",
        expected=expected.get("newest"),
        actual=[str(p) for p in problems],
    )
