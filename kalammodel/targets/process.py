"""The process target: a real server started by a command line; the tester owns it, so it can kill and restart it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from kalammodel.errors import DeadlineExceeded, TransportError, UsageError

from .base import OwnedProcess, Spawned, check_url, get_health, wait_healthy

__all__ = ["ProcessTarget"]


class ProcessTarget(OwnedProcess):
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
        check_url(base_url, "--kalamdb-url")
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
        self._proc: Spawned | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        try:
            get_health(self.base_url, timeout=1.0)
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
        proc = Spawned(self.argv, env, self._work, cwd=self.cwd)
        self._proc = proc

        def exited() -> NoReturn:
            code = proc.proc.returncode
            proc.close_files()
            self._proc = None
            raise UsageError(
                proc.report(f"the server command exited with code {code} before {self.base_url} answered")
            )

        try:
            body = wait_healthy(self.base_url, time.monotonic() + self.startup_timeout, proc.proc, exited)
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
