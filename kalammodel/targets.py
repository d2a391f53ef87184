"""How to reach a server under test: spawned embedded server, a remote URL, or a process the tester controls.

```
Target                      base_url, data_dir, root_password, start/stop/close, server_version()
├── EmbeddedTarget          python -m kalammodel.server on a free loopback port, fresh data dir; kill/restart
├── RemoteTarget            KALAMDB_URL + KALAMDB_ROOT_PASSWORD (+ KALAMDB_DATA_DIR): no kill/restart
└── ProcessTarget           a command that starts a real server (kalamdb-server server.toml); kill/restart
```

``target_from_config`` picks one from options and environment. ``ActorPool`` holds one logged-in
``KalamClient`` per identity of the model ('root', 'dba', 'svc', 'user1', ...), creating the real users once.

Every wait has a deadline. A server that exits or never becomes ready raises an error carrying the tail of its
stderr; an unreachable URL raises ``TransportError`` naming the URL.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from kalammodel.errors import DeadlineExceeded, KalamError, SqlError, TransportError, UsageError

if TYPE_CHECKING:
    from kalammodel.client import KalamClient

__all__ = [
    "DEFAULT_IDENTITIES",
    "ActorPool",
    "EmbeddedTarget",
    "ProcessTarget",
    "RemoteTarget",
    "Target",
    "target_from_config",
]

LISTENING = re.compile(r"kalammodel-server listening on (http://\S+)")
_STDERR_TAIL_LINES = 40


class Target:
    """A server the tester talks to.

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

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
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
        return _get_health(self.base_url, timeout)

    def server_version(self) -> str:
        """The ``version`` the server reports on ``/health`` (cached)."""
        if self._version is None:
            self._version = str(self.health().get("version", "unknown"))
        return self._version

    def describe(self) -> str:
        return f"{self.kind} target at {self._base_url or '(not started)'}"

    def __enter__(self) -> Target:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._base_url or '(not started)'} data_dir={self.data_dir}>"


def _get_health(base_url: str, timeout: float) -> dict[str, Any]:
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


def _wait_healthy(
    base_url: str, deadline: float, proc: subprocess.Popen[Any] | None = None, on_exit: Any = None
) -> dict[str, Any]:
    """Poll ``/health`` until it answers, the deadline passes (DeadlineExceeded) or ``proc`` exits (on_exit())."""
    last: Exception | None = None
    while True:
        if proc is not None and proc.poll() is not None:
            on_exit()
        try:
            return _get_health(base_url, timeout=max(0.2, min(2.0, deadline - time.monotonic())))
        except TransportError as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(
                f"{base_url}/health did not answer before the deadline; last error: {last}"
            )
        time.sleep(0.1)  # poll interval of a condition with a deadline


class _Spawned:
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

    def stderr_tail(self, lines: int = _STDERR_TAIL_LINES) -> str:
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


class _OwnedProcess(Target):
    """A target that started its server process itself, so it can stop, SIGKILL and restart it."""

    _proc: _Spawned | None
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


class EmbeddedTarget(_OwnedProcess):
    """The embedded server, spawned as a separate process so that kill and restart are real.

    ``python -m kalammodel.server --port 0 --data-dir <tmp> --root-password <generated> --jwt-secret <generated>
    [--fault NAME ...]``; ready when it prints ``kalammodel-server listening on http://HOST:PORT``. A restart
    reuses the port, the data dir and the JWT secret, so clients and tokens stay valid.
    """

    kind = "embedded"
    can_restart = True

    def __init__(
        self,
        faults: Iterable[str] = (),
        *,
        data_dir: Path | str | None = None,
        root_password: str | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        host: str = "127.0.0.1",
        port: int = 0,
        extra_args: Sequence[str] = (),
        python: str = sys.executable,
        command: Sequence[str] | None = None,
    ):
        self._owns_dir = data_dir is None
        self._work: Path | None = None  # temporary dir for logs (and data, unless data_dir is given)
        super().__init__(None, root_password or _generate_password(), Path(data_dir) if data_dir else None)
        self.faults = tuple(faults)
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.host = host
        self.port = port
        self.extra_args = tuple(extra_args)
        self.python = python
        self._command = tuple(command) if command is not None else None
        self.jwt_secret = secrets.token_hex(32)
        self._proc: _Spawned | None = None

    def argv(self) -> list[str]:
        """The command line of the next start (the port is the bound one after the first start)."""
        if self._command is not None:
            return list(self._command)
        argv = [self.python, "-m", "kalammodel.server", "--host", self.host, "--port", str(self.port),
                "--data-dir", str(self.data_dir or "<temporary>"), "--root-password", self.root_password,
                "--jwt-secret", self.jwt_secret, "--exit-with-parent", str(os.getpid())]  # fmt: skip
        for name in self.faults:
            argv += ["--fault", name]
        return argv + list(self.extra_args)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.proc.pid if self._proc is not None else None

    def log_paths(self) -> tuple[Path, Path] | None:
        """(stdout log, stderr log) of the server process, once started."""
        if self._work is None:
            return None
        return self._work / "server-stdout.log", self._work / "server-stderr.log"

    def start(self) -> None:
        if self.running:
            return
        if self._work is None:
            self._work = Path(tempfile.mkdtemp(prefix="kalammodel-embedded-"))
        if self.data_dir is None:
            self.data_dir = self._work / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        proc = _Spawned(self.argv(), env, self._work)
        self._proc = proc
        deadline = time.monotonic() + self.startup_timeout
        while not proc.url_seen.wait(0.05):
            code = proc.proc.poll()
            if code is not None:
                proc.url_seen.wait(0.5)  # the line may sit in the pipe still
                if proc.url is not None:
                    break
                proc.close_files()
                self._proc = None
                raise UsageError(
                    proc.report(f"the embedded server exited with code {code} before it was ready")
                )
            if time.monotonic() >= deadline:
                proc.stop(grace=2.0)
                self._proc = None
                raise DeadlineExceeded(proc.report(
                    f"the embedded server did not print 'kalammodel-server listening on http://HOST:PORT' "
                    f"within {self.startup_timeout:g} s"))  # fmt: skip
        assert proc.url is not None
        if proc.proc.poll() is not None:
            code = proc.proc.returncode
            proc.close_files()
            self._proc = None
            raise UsageError(
                proc.report(f"the embedded server exited with code {code} right after it was ready")
            )
        self._base_url = proc.url
        self.port = urlsplit(proc.url).port or self.port

    def close(self) -> None:
        """Stop the server and remove the temporary directory (and the data dir, if the target made it)."""
        self.stop()
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None
            if self._owns_dir:
                self.data_dir = None

    def stderr_tail(self, lines: int = _STDERR_TAIL_LINES) -> str:
        """The last lines the server wrote to stderr ('' before the first start)."""
        paths = self.log_paths()
        if paths is None:
            return ""
        try:
            return "\n".join(paths[1].read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def describe(self) -> str:
        faults = f", faults: {', '.join(self.faults)}" if self.faults else ""
        return f"embedded target at {self._base_url or '(not started)'}{faults}"


class RemoteTarget(Target):
    """A server someone else runs: ``KALAMDB_URL``, ``KALAMDB_ROOT_PASSWORD``, optional ``KALAMDB_DATA_DIR``."""

    kind = "remote"

    def __init__(
        self,
        base_url: str,
        root_password: str,
        data_dir: Path | str | None = None,
        *,
        startup_timeout: float = 10.0,
    ):
        _check_url(base_url, "KALAMDB_URL / --kalamdb-url")
        super().__init__(base_url, root_password, Path(data_dir) if data_dir else None)
        self.startup_timeout = startup_timeout

    def start(self) -> None:
        """Check that ``/health`` answers within ``startup_timeout``."""
        try:
            body = _wait_healthy(self.base_url, time.monotonic() + self.startup_timeout)
        except (DeadlineExceeded, TransportError) as exc:
            raise TransportError(
                f"the KalamDB server at {self.base_url} is not reachable ({exc}); check KALAMDB_URL / "
                f"--kalamdb-url and that the server runs (docs/running-against-kalamdb.md)"
            ) from exc
        self._version = str(body.get("version", "unknown"))
        if self.data_dir is not None and not self.data_dir.is_dir():
            raise UsageError(
                f"KALAMDB_DATA_DIR / --kalamdb-data-dir {str(self.data_dir)!r} is not a directory; point it at the "
                f"server's storage.data_path or leave it unset to skip on-disk cold checks"
            )


class ProcessTarget(_OwnedProcess):
    """A real server started by a command line, e.g. ``kalamdb-server docs/kalamdb-test-server.toml``.

    The tester owns the process: ``kill()`` (SIGKILL), ``restart()``. ``base_url`` is where the command's server
    listens (it is also passed as ``KALAMDB_SERVER_HOST``/``KALAMDB_SERVER_PORT``, and ``data_dir`` as
    ``KALAMDB_DATA_DIR``, which ``kalamdb-server`` applies over its config file); ``root_password`` goes in
    ``KALAMDB_ROOT_PASSWORD`` (used by KalamDB on the first boot of an empty data dir only).
    """

    kind = "process"
    can_restart = True

    def __init__(
        self,
        command: Sequence[str] | str,
        base_url: str,
        root_password: str,
        data_dir: Path | str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        startup_timeout: float = 120.0,
        stop_timeout: float = 30.0,
    ):
        _check_url(base_url, "--kalamdb-url")
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not argv:
            raise UsageError("--kalamdb-server-cmd is empty; give the command that starts the server")
        super().__init__(base_url, root_password, Path(data_dir) if data_dir else None)
        self.argv = argv
        self.env = dict(env or {})
        self.cwd = Path(cwd) if cwd else None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._work: Path | None = None  # temporary dir for the process's logs
        self._proc: _Spawned | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        try:
            _get_health(self.base_url, timeout=1.0)
        except TransportError:
            pass
        else:
            raise UsageError(
                f"something already answers at {self.base_url}; stop it first, or use --kalamdb-url without "
                f"--kalamdb-server-cmd to test that server as a remote target"
            )
        parts = urlsplit(self.base_url)
        env = {**os.environ, "KALAMDB_ROOT_PASSWORD": self.root_password,
               "KALAMDB_SERVER_HOST": parts.hostname or "127.0.0.1", "KALAMDB_SERVER_PORT": str(parts.port or 80)}  # fmt: skip
        if self.data_dir is not None:
            env["KALAMDB_DATA_DIR"] = str(self.data_dir)
        env.update(self.env)
        if self._work is None:
            self._work = Path(tempfile.mkdtemp(prefix="kalammodel-process-"))
        proc = _Spawned(self.argv, env, self._work, cwd=self.cwd)
        self._proc = proc

        def exited() -> None:
            code = proc.proc.returncode
            proc.close_files()
            self._proc = None
            raise UsageError(
                proc.report(f"the server command exited with code {code} before {self.base_url} answered")
            )

        try:
            body = _wait_healthy(self.base_url, time.monotonic() + self.startup_timeout, proc.proc, exited)
        except DeadlineExceeded:
            proc.stop(grace=5.0)
            self._proc = None
            raise DeadlineExceeded(
                proc.report(
                    f"the server command did not answer on {self.base_url}/health within {self.startup_timeout:g} s"
                )
            ) from None
        self._version = str(body.get("version", "unknown"))

    def close(self) -> None:
        self.stop()
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None


def _check_url(url: str, option: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{option} must be an http(s) URL like http://127.0.0.1:8080 (got {url!r})")


def _generate_password() -> str:
    # Upper, lower, digit and special characters: passes auth.enforce_password_complexity too.
    return f"Km-{secrets.token_hex(10)}!"


def target_from_config(
    url: str | None = None,
    root_password: str | None = None,
    data_dir: str | Path | None = None,
    faults: Sequence[str] = (),
    command: str | Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Target:
    """Choose the target from options, falling back to ``KALAMDB_URL``, ``KALAMDB_ROOT_PASSWORD``,
    ``KALAMDB_DATA_DIR``.

    - a command: ``ProcessTarget`` (needs the URL it listens on and the root password);
    - a URL: ``RemoteTarget`` (needs the root password);
    - neither: ``EmbeddedTarget`` with ``faults`` (planted defects exist only in the embedded server).
    """
    env = os.environ if environ is None else environ
    url = url or env.get("KALAMDB_URL") or None
    root_password = root_password or env.get("KALAMDB_ROOT_PASSWORD") or None
    faults = tuple(faults)
    if command:
        if faults:
            raise UsageError(f"--kalammodel-fault {', '.join(faults)}: faults are planted in the embedded server only; "
                             f"drop them or drop --kalamdb-server-cmd")  # fmt: skip
        if not url:
            raise UsageError(
                "--kalamdb-server-cmd needs --kalamdb-url (or KALAMDB_URL): where its server listens"
            )
        if not root_password:
            raise UsageError(
                "--kalamdb-server-cmd needs --kalamdb-root-password (or KALAMDB_ROOT_PASSWORD); it is passed to the "
                "server as KALAMDB_ROOT_PASSWORD on first boot and used to log in as root"
            )
        return ProcessTarget(command, url, root_password, data_dir or env.get("KALAMDB_DATA_DIR") or None)
    if url:
        if faults:
            raise UsageError(f"--kalammodel-fault {', '.join(faults)}: faults are planted in the embedded server only; "
                             f"drop them or drop --kalamdb-url / KALAMDB_URL")  # fmt: skip
        if not root_password:
            raise UsageError(f"the server at {url} needs the root password: set KALAMDB_ROOT_PASSWORD or pass "
                             f"--kalamdb-root-password")  # fmt: skip
        return RemoteTarget(url, root_password, data_dir or env.get("KALAMDB_DATA_DIR") or None)
    return EmbeddedTarget(faults, data_dir=data_dir, root_password=root_password)


# --------------------------------------------------------------------------------------------------------------
# Session identities

DEFAULT_IDENTITIES: dict[str, str] = {
    "root": "system",
    "dba": "dba",
    "svc": "service",
    "user1": "user",
    "user2": "user",
}


class ActorPool:
    """One logged-in ``KalamClient`` per identity of the model, real users created once per session.

    'root' is the server's root user. Every other identity ``name`` maps to the real user
    ``km_<name>_<suffix>`` with the identity's role. The suffix and passwords derive from a secret
    (``KALAMMODEL_SECRET``, else the root password), so a later session against the same server finds the same
    users: on "already exists" the pool resets the password with ``ALTER USER ... SET PASSWORD`` (and the role
    with ``SET ROLE``) instead of guessing logins, which would count towards KalamDB's 5-strike lockout.
    """

    def __init__(
        self,
        base_url: str,
        root_password: str,
        identities: Mapping[str, str] | None = None,
        *,
        suffix: str | None = None,
        secret: str | None = None,
        timeout: float = 10.0,
    ):
        ids = dict(DEFAULT_IDENTITIES if identities is None else identities)
        ids.setdefault("root", "system")
        if ids["root"] != "system":
            raise UsageError(
                f"identity 'root' is the server's root user with role 'system' (got role {ids['root']!r})"
            )
        for name, role in ids.items():
            if role not in ("user", "service", "dba", "system"):
                raise UsageError(
                    f"identity {name!r} has role {role!r}; valid roles: user, service, dba, system"
                )
            if role == "system" and name != "root":
                raise UsageError(f"identity {name!r}: only 'root' has role 'system'")
        self.base_url = base_url.rstrip("/")
        self.root_password = root_password
        self.identities = ids
        self.timeout = timeout
        self._secret = (
            secret or os.environ.get("KALAMMODEL_SECRET") or f"kalammodel:{root_password}"
        ).encode()
        self.suffix = suffix or hmac.new(self._secret, b"suffix", hashlib.sha256).hexdigest()[:4]
        if not re.fullmatch(r"[a-z0-9]{1,12}", self.suffix):
            raise UsageError(
                f"actor pool suffix must be 1-12 lowercase letters or digits (got {self.suffix!r})"
            )
        self._clients: dict[str, KalamClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_target(cls, target: Target, identities: Mapping[str, str] | None = None, **kw: Any) -> ActorPool:
        return cls(target.base_url, target.root_password, identities, **kw)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.identities)

    def role(self, name: str) -> str:
        return self.identities[self._known(name)]

    def user_id(self, name: str) -> str:
        """The real user id of identity ``name`` ('root' stays 'root')."""
        return "root" if self._known(name) == "root" else f"km_{name}_{self.suffix}"

    def password(self, name: str) -> str:
        """The deterministic password of identity ``name`` (the root password for 'root')."""
        if self._known(name) == "root":
            return self.root_password
        digest = hmac.new(self._secret, f"password:{self.user_id(name)}".encode(), hashlib.sha256).hexdigest()
        return f"Km-{digest[:20]}!"

    def _known(self, name: str) -> str:
        if name not in self.identities:
            raise UsageError(f"no identity {name!r} in the actor pool; known: {', '.join(self.identities)}")
        return name

    @property
    def root(self) -> KalamClient:
        return self.client("root")

    def client(self, name: str) -> KalamClient:
        """The logged-in client of identity ``name`` (created and logged in on first use)."""
        self._known(name)
        with self._lock:
            if name not in self._clients:
                self._clients[name] = self._open(name)
            return self._clients[name]

    def open_all(self) -> ActorPool:
        """Create and log in every identity now (fails fast at session start)."""
        for name in self.identities:
            self.client(name)
        return self

    def _open(self, name: str) -> KalamClient:
        from kalammodel.client import KalamClient, quote_literal

        if name == "root":
            return KalamClient.bootstrap(self.base_url, self.root_password, timeout=self.timeout)
        root = self.client_unlocked_root()
        uid, pw, role = self.user_id(name), self.password(name), self.identities[name]
        try:
            root.create_user(uid, pw, role)
        except SqlError as exc:
            if "already exists" not in (exc.message or "").lower():
                raise
            root.execute(f"ALTER USER {quote_literal(uid)} SET PASSWORD {quote_literal(pw)}")
            root.execute(f"ALTER USER {quote_literal(uid)} SET ROLE {role}")
        return root.client_for(uid, pw)

    def client_unlocked_root(self) -> KalamClient:
        # Called with self._lock held by client(): open root without re-taking the lock.
        if "root" not in self._clients:
            self._clients["root"] = self._open("root")
        return self._clients["root"]

    def relogin(self) -> None:
        """Drop every client and log in again (after a restart that invalidated tokens)."""
        self.close()

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for c in clients.values():
            try:
                c.close()
            except (KalamError, OSError):
                pass

    def __enter__(self) -> ActorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
