"""The corpus on disk: case files named by fingerprint, written atomically without credentials, listed, read.

:func:`save_case` writes ``<directory>/<invariant>-<fingerprint>.json``; the same bug found twice collapses into
one file (the shorter program wins), and a file that cannot be read is never overwritten.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from kalammodel.errors import UsageError

from ._data import now, slug
from ._runs import CaseRunner, classify
from ._steps import failing_step, step_kind, table_kind
from .context import RunContext
from .format import Case, CaseFileError, DivergenceRecord, Replays, Signature, load_case

if TYPE_CHECKING:
    from kalammodel.errors import Divergence
    from kalammodel.parallel import ParallelProgram
    from kalammodel.steps import Step


@attrs.frozen
class SavedCase:
    """What :func:`save_case` did: ``action`` is ``created``, ``replaced`` (the new program is shorter) or
    ``kept`` (an existing file with the same signature has a program at most as long; it was left as it is)."""

    path: Path
    case: Case
    action: str
    note: str = ""


# --------------------------------------------------------------------------------------------------- secrets

_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_PASSWORD = re.compile(r"(?i)\b(password)(\s*[=:]?\s*)'(?:[^']|'')*'")


def scrub(value: Any, secrets: Sequence[str]) -> Any:  # Any: JSON data
    """Remove credentials from free text (transcripts, messages, requests): the given secrets, JWTs, bearer
    tokens and ``PASSWORD '...'`` literals."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "<redacted>")
        value = _JWT.sub("<token>", value)
        value = _BEARER.sub(r"\1 <token>", value)
        return _PASSWORD.sub(r"\1\2'<redacted>'", value)
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    return value


def remove_secrets(value: Any, secrets: Sequence[str]) -> Any:  # Any: JSON data
    """Replace exact secrets only (used on step data, whose SQL literals must otherwise stay replayable)."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "<redacted>")
        return value
    if isinstance(value, list):
        return [remove_secrets(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: remove_secrets(v, secrets) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------------------- atomic write


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never a part: a temp file in
    the same directory, fsync, then ``os.replace``. On any failure the temp file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable (POSIX); best effort elsewhere
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# --------------------------------------------------------------------------------------------------- save


def _actor_roles(steps: Sequence[Step], namespace: str, roles: dict[str, str]) -> dict[str, str]:
    """Identity -> role of every identity that sends a request, in order; an identity the run's context does
    not know is left out (its role is unknown, not guessed)."""
    actors: dict[str, str] = {}
    for step in steps:
        try:
            requests = step.requests(namespace)
        except Exception:  # a step that cannot render its requests names no actor; the case is still saved
            continue
        for request in requests:
            actor = request.actor
            if actor and actor not in actors and actor in roles:
                actors[actor] = roles[actor]
    return actors


def _free_path(path: Path) -> Path:
    for n in range(2, 1000):
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise UsageError(f"too many unreadable case files named like {path}; remove or repair them")


def _settle(path: Path, steps: Sequence[Step]) -> tuple[Path, str, str, Case | None]:
    """(path to write, action, note, the existing case when it is kept) for a new case of ``len(steps)``."""
    if not path.exists():
        return path, "created", "", None
    try:
        existing = load_case(path)
    except CaseFileError as exc:
        free = _free_path(path)
        return (
            free,
            "created",
            (f"kept the unreadable file with the same signature ({exc.problem}); wrote {free.name} instead"),
            None,
        )
    if len(existing.steps) <= len(steps):
        note = (
            f"{path.name} already holds this failure with {len(existing.steps)} step(s) "
            f"(this run found {len(steps)})"
        )
        return path, "kept", note, existing
    return (
        path,
        "replaced",
        f"replaced {len(existing.steps)} step(s) with a shorter program of {len(steps)}",
        None,
    )


def save_case(
    directory: str | os.PathLike[str],
    steps: Sequence[Step],
    divergence: Divergence | DivergenceRecord | None,
    *,
    context: RunContext | None = None,
    workload: str | None = None,
    runner: CaseRunner | None = None,
    replays: int = 3,
    parallel: ParallelProgram | None = None,
) -> SavedCase:
    """Save a shrunk failing step list as ``<directory>/<invariant>-<fingerprint>.json``.

    ``context`` is what the run knows (namespace, actor roles, server version and URL, secrets); without it
    those fields stay empty. With a ``runner`` the steps are first replayed ``replays`` times on fresh namespaces
    and the case is classified ``deterministic`` (every replay fails with the same invariant), ``flaky`` (some
    pass: one passing and one failing transcript are kept) or ``not_reproducible`` (none fails). Without a
    runner the case is ``deterministic``: Hypothesis's own final replay of the minimal example failed.
    ``parallel``: the case is that parallel program (``steps`` must be ``parallel.steps``), stored in the file's
    ``parallel`` section; its runner is a ``kalammodel.parallel.ProgramCaseRunner`` (a ``flaky`` parallel case
    is a race: the interleaving decides).

    If a readable file with the same signature exists and its program is not longer, it is kept as it is;
    otherwise it is replaced. An unreadable file is never overwritten: the new case goes to a numbered name.
    Credentials never reach the file: the URL loses user info and query, and known secrets, JWTs and
    ``PASSWORD '...'`` literals in free text are redacted.
    """
    steps = tuple(steps)
    if not steps:
        raise UsageError("save_case needs at least one step; got an empty step list")
    if parallel is not None and steps != parallel.steps:
        raise UsageError("save_case of a parallel program: steps must be parallel.steps (prefix, clients, suffix)")
    if divergence is None:
        raise UsageError("save_case needs the divergence that the steps produce; got None")
    context = context if context is not None else RunContext()
    record = DivergenceRecord.from_divergence(divergence)
    if record.namespace is None and context.namespace is not None:
        record = attrs.evolve(record, namespace=context.namespace)
    failing = failing_step(steps, record, divergence)
    signature = Signature(
        record.invariant, step_kind(failing) if failing is not None else "unknown", table_kind(steps, failing)
    )
    path, action, note, kept = _settle(case_path(directory, signature), steps)
    if kept is not None:
        return SavedCase(path, kept, action, note)
    if runner is not None and replays > 0:
        classification, replay_record = classify(runner, steps, record.invariant, replays)
    else:
        classification, replay_record = "deterministic", Replays()
    case = Case(
        steps=steps,
        divergence=record,
        signature=signature,
        classification=classification,
        replays=replay_record,
        workload=workload,
        server_version=context.server_version,
        server_url=context.public_url,
        created_at=now(),
        actors=_actor_roles(steps, record.namespace or "ns", dict(context.actors)),
        path=path,
        parallel=parallel,
    )
    data = case.to_data()
    steps_data = remove_secrets(data.pop("steps"), context.secrets)
    parallel_data = remove_secrets(data.pop("parallel"), context.secrets) if "parallel" in data else None
    data = scrub(data, context.secrets)
    data["steps"] = steps_data
    if parallel_data is not None:
        data["parallel"] = parallel_data
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")
    return SavedCase(path, case, action, note)


def case_path(directory: str | os.PathLike[str], signature: Signature) -> Path:
    """Where the case of ``signature`` is stored in ``directory``: ``<invariant>-<fingerprint>.json``."""
    return Path(directory) / f"{slug(signature.invariant)}-{signature.fingerprint}.json"


# --------------------------------------------------------------------------------------------------- list and read


def case_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand ``paths``: a directory gives its ``*.json`` files (sorted, hidden temp files skipped); a file is kept
    as given (missing files are kept too, so that the caller reports them)."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found.extend(p for p in sorted(path.glob("*.json")) if not p.name.startswith(".") and p.is_file())
        else:
            found.append(path)
    return found


def iter_cases(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[Path, Case | CaseFileError]]:
    """Yield ``(path, Case)`` or ``(path, CaseFileError)`` for every case file under ``paths``.

    A bad file is reported, never deleted, and never stops the others.
    """
    for path in case_files(paths):
        try:
            yield path, load_case(path)
        except CaseFileError as exc:
            yield path, exc
