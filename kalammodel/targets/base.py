"""The Target seam and what the built-in targets share: ``/health``, waits with deadlines, child processes.

```
Target (Protocol)           base_url, data_dir, root_password, start/stop/close, kill/restart, server_version()
BaseTarget                  the shared implementation: health, version, describe, context manager; no kill
OwnedProcess(BaseTarget)    a target that spawned its server (a Spawned child): stop, SIGKILL, restart
```

Every wait has a deadline. A server that exits or never becomes ready raises an error carrying the tail of its
stderr; an unreachable URL raises ``TransportError`` naming the URL.
"""

from __future__ import annotations

import abc
import collections
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn, Protocol
from urllib.parse import urlsplit

import httpx

from kalammodel.errors import DeadlineExceeded, TransportError, UsageError

__all__ = [
    "BaseTarget",
    "LISTENING",
    "OwnedProcess",
    "STDERR_TAIL_LINES",
    "Spawned",
    "Target",
    "check_url",
    "get_health",
    "run_foreground",
    "wait_healthy",
]

#: the line the embedded server prints once it listens
LISTENING = re.compile(r"kalammodel-server listening on (http://\S+)")
STDERR_TAIL_LINES = 40


class Target(Protocol):
    """A server under test, as the runner, the checks, the pytest plugin and the CLI use it.

    A structural Protocol rather than an abstract base class: callers depend on these members only, so a test
    double or a later cluster target (several processes behind one URL) need not inherit the process helpers of
    :class:`BaseTarget`; mypy checks that each target fits. :class:`BaseTarget` is the shared implementation
    the built-in targets inherit.
    """

    #: whether ``kill``/``restart`` work (the target owns its server process)
    can_restart: bool
    root_password: str
    #: where the server's cold files can be read, or None
    data_dir: Path | None

    @property
    def base_url(self) -> str: ...

    @property
    def known_version(self) -> str | None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...

    def kill(self) -> None: ...

    def restart(self, *, hard: bool = False) -> None: ...

    def health(self, timeout: float = 5.0) -> dict[str, Any]: ...  # the JSON object of GET /health

    def server_version(self) -> str: ...

    def describe(self) -> str: ...

    def __enter__(self) -> Target: ...

    def __exit__(self, *exc: object) -> None: ...


class BaseTarget(abc.ABC):
    """What every target shares: the URL, root password and data dir, ``/health``, the version, ``describe``,
    the context manager, and ``kill``/``restart`` that refuse (a target owning its process overrides them).

    ``base_url`` (valid once started), ``data_dir`` (where cold files can be read, or None), ``root_password``.
    ``kind`` names the flavour for reports. ``can_restart`` says whether ``kill``/``restart`` work.
    """

    kind = "target"
    can_restart = False

    def __init__(self, base_url: str | None, root_password: str, data_dir: Path | None):
        self._base_url = base_url.rstrip("/") if base_url else None
        self.root_password = root_password
        self.data_dir = data_dir
        self._version: str | None = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise UsageError(f"{self.describe()} has no URL yet: call start() first")
        return self._base_url

    @abc.abstractmethod
    def start(self) -> None:
        """Start the server, or check that it answers; returns once it is ready."""

    def stop(self) -> None:  # noqa: B027 - a target that does not own its server has nothing to stop
        """Stop the server (gracefully where the target owns it). Data stays for a later start()."""

    def close(self) -> None:
        """Stop the server and remove what the target created (temporary data dirs)."""
        self.stop()

    def kill(self) -> None:
        raise UsageError(
            f"{self.describe()} cannot kill its server; use an embedded target or --kalamdb-server-cmd"
        )

    def restart(self, *, hard: bool = False) -> None:
        """Stop (``hard``: SIGKILL, no shutdown) and start again on the same URL and data dir."""
        raise UsageError(
            f"{self.describe()} cannot restart its server; use an embedded target or --kalamdb-server-cmd"
        )

    def health(self, timeout: float = 5.0) -> dict[str, Any]:
        """``GET /health`` once (TransportError naming the URL when unreachable)."""
        return get_health(self.base_url, timeout)

    def server_version(self) -> str:
        """The ``version`` the server reports on ``/health`` (cached)."""
        if self._version is None:
            self._version = str(self.health().get("version", "unknown"))
        return self._version

    @property
    def known_version(self) -> str | None:
        """The version once a start or ``server_version()`` learnt it, else None (never asks the server)."""
        return self._version

    def describe(self) -> str:
        return f"{self.kind} target at {self._base_url or '(not started)'}"

    def __enter__(self) -> BaseTarget:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._base_url or '(not started)'} data_dir={self.data_dir}>"

def get_health(base_url: str, timeout: float) -> dict[str, Any]:  # a JSON object
    url = f"{base_url}/health"
    try:
        resp = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise TransportError(f"cannot reach {url}: {type(exc).__name__}: {exc}") from exc
    if resp.status_code != 200:
        raise TransportError(f"{url} answered HTTP {resp.status_code}: {resp.text[:200]!r}")
    try:
        body = resp.json()
    except ValueError as exc:
        raise TransportError(f"{url} answered something that is not JSON: {resp.text[:200]!r}") from exc
    if not isinstance(body, dict):
        raise TransportError(f"{url} answered {body!r}, expected a JSON object")
    return body

def wait_healthy(
    base_url: str,
    deadline: float,
    proc: subprocess.Popen[bytes] | None = None,
    on_exit: Callable[[], NoReturn] | None = None,
) -> dict[str, Any]:
    """Poll ``/health`` until it answers, the deadline passes (DeadlineExceeded) or ``proc`` exits (on_exit())."""
    last: Exception | None = None
    while True:
        if proc is not None and proc.poll() is not None and on_exit is not None:
            on_exit()
        try:
            return get_health(base_url, timeout=max(0.2, min(2.0, deadline - time.monotonic())))
        except TransportError as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(
                f"{base_url}/health did not answer before the deadline; last error: {last}"
            )
        time.sleep(0.1)  # poll interval of a condition with a deadline

class Spawned:
    """A child process in its own session, stdout drained by a thread, stderr kept in a log file."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_dir: Path, cwd: Path | None = None):
        self.argv = list(argv)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = log_dir / "server-stderr.log"
        self.stdout_path = log_dir / "server-stdout.log"
        self._stderr: IO[bytes] = open(self.stderr_path, "ab")  # noqa: SIM115 - closed in wait_closed
        self._stdout_tail: collections.deque[str] = collections.deque(maxlen=200)
        self.url: str | None = None
        self.url_seen = threading.Event()
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            self._stderr.close()
            raise UsageError(f"cannot start server command {shlex.join(self.argv)!r}: {exc}") from exc
        self._reader = threading.Thread(
            target=self._drain, name=f"kalammodel-stdout-{self.proc.pid}", daemon=True
        )
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        with open(self.stdout_path, "ab") as log:
            for raw in iter(self.proc.stdout.readline, b""):
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self._stdout_tail.append(line)
                if self.url is None:
                    m = LISTENING.search(line)
                    if m:
                        self.url = m.group(1).rstrip("/")
                        self.url_seen.set()
        self.proc.stdout.close()

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
        try:
            if not self._stderr.closed:
                self._stderr.flush()
            text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        tail = "\n".join(text.splitlines()[-lines:])
        return tail or "(stderr is empty)"

    def shown_command(self) -> str:
        """The command line with secret arguments masked."""
        shown = [
            "REDACTED" if i and self.argv[i - 1] in ("--root-password", "--jwt-secret") else arg
            for i, arg in enumerate(self.argv)
        ]
        return shlex.join(shown)

    def report(self, what: str) -> str:
        out = "\n".join(list(self._stdout_tail)[-10:]) or "(stdout is empty)"
        return (
            f"{what}\n  command: {self.shown_command()}\n  --- last lines of stderr ({self.stderr_path}) ---\n"
            f"{self.stderr_tail()}\n  --- last lines of stdout ---\n{out}"
        )

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # the child leads its own session: its group is ours alone
        except ProcessLookupError:
            pass

    def stop(self, grace: float) -> int | None:
        """SIGTERM the group, SIGKILL after ``grace`` seconds. Returns the exit code."""
        if self.proc.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.close_files()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.signal_group(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.close_files()

    def close_files(self) -> None:
        self._reader.join(timeout=2)
        if not self._stderr.closed:
            self._stderr.close()

class OwnedProcess(BaseTarget):
    """A target that started its server process itself, so it can stop, SIGKILL and restart it."""

    _proc: Spawned | None
    stop_timeout: float

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(grace=self.stop_timeout)
            self._proc = None

    def kill(self) -> None:
        """SIGKILL the server: no shutdown, no final flush. ``start()`` brings it back on the same data."""
        if self._proc is not None:
            self._proc.kill()
            self._proc = None

    def restart(self, *, hard: bool = False) -> None:
        self.kill() if hard else self.stop()
        self.start()


def check_url(url: str, option: str) -> None:
    """UsageError naming ``option`` unless ``url`` is an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{option} must be an http(s) URL like http://127.0.0.1:8080 (got {url!r})")



def run_foreground(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Run ``argv`` in the foreground; Ctrl-C reaches it too (same process group) and we wait for it to stop."""
    try:
        proc = subprocess.Popen(argv, env=env, cwd=cwd)
    except OSError as exc:
        raise UsageError(f"cannot start {argv[0]!r}: {exc}") from None
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the child got the same Ctrl-C: give it time to shut down, then insist
        for stop, grace in ((None, 15.0), (proc.terminate, 5.0), (proc.kill, 10.0)):
            if stop is not None:
                stop()
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        return 130
