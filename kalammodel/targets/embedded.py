"""The embedded target: ``python -m kalammodel.server`` spawned as a child process, so kill and restart are real.

Also what ``kalammodel serve`` runs in the foreground (:func:`serve_plan`): the same server command line.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import attrs

from kalammodel.errors import DeadlineExceeded, UsageError

from .base import STDERR_TAIL_LINES, OwnedProcess, Spawned

__all__ = ["EmbeddedTarget", "ServePlan", "generate_password", "serve_plan", "server_argv"]


def server_argv(
    host: str,
    port: int,
    data_dir: Path | str,
    faults: Iterable[str] = (),
    extra: Sequence[str] = (),
    *,
    python: str = sys.executable,
) -> list[str]:
    """``python -m kalammodel.server --host H --port P --data-dir D [extra...] [--fault NAME ...]``."""
    argv = [python, "-m", "kalammodel.server", "--host", host, "--port", str(port), "--data-dir", str(data_dir)]
    argv += list(extra)
    for name in faults:
        argv += ["--fault", name]
    return argv


@attrs.frozen
class ServePlan:
    """The foreground server of ``kalammodel serve``: its command line, environment and data dir."""

    argv: list[str]
    env: dict[str, str]
    data_dir: Path
    #: the data dir is a new temporary one, removed when the plan's context ends
    temporary: bool


@contextlib.contextmanager
def serve_plan(
    host: str, port: int, data_dir: Path | str | None, root_password: str | None, faults: Iterable[str]
) -> Iterator[ServePlan]:
    """The server command of ``kalammodel serve``; a temporary data dir (removed afterwards) when none is given.

    The root password goes through ``KALAMDB_ROOT_PASSWORD``, not the command line (not visible in the process
    list).
    """
    temporary = data_dir is None
    directory = Path(tempfile.mkdtemp(prefix="kalammodel-serve-")) if data_dir is None else Path(data_dir)
    env = dict(os.environ)
    if root_password is not None:
        env["KALAMDB_ROOT_PASSWORD"] = root_password
    try:
        yield ServePlan(server_argv(host, port, directory, faults), env, directory, temporary)
    finally:
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)


class EmbeddedTarget(OwnedProcess):
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
        super().__init__(None, root_password or generate_password(), Path(data_dir) if data_dir else None)
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
        self._proc: Spawned | None = None

    def argv(self) -> list[str]:
        """The command line of the next start (the port is the bound one after the first start)."""
        if self._command is not None:
            return list(self._command)
        secrets_and_parent = ["--root-password", self.root_password, "--jwt-secret", self.jwt_secret,
                              "--exit-with-parent", str(os.getpid())]  # fmt: skip
        argv = server_argv(self.host, self.port, self.data_dir or "<temporary>", self.faults, secrets_and_parent,
                           python=self.python)  # fmt: skip
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
        proc = Spawned(self.argv(), env, self._work)
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

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
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


def generate_password() -> str:
    """A fresh root password for a server the tester starts."""
    # Upper, lower, digit and special characters: passes auth.enforce_password_complexity too.
    return f"Km-{secrets.token_hex(10)}!"

