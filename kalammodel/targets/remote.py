"""The remote target: a server someone else runs, reached at ``KALAMDB_URL``; no kill, no restart."""

from __future__ import annotations

import time
from pathlib import Path

from kalammodel.errors import DeadlineExceeded, TransportError, UsageError

from .base import BaseTarget, check_url, wait_healthy

__all__ = ["RemoteTarget"]


class RemoteTarget(BaseTarget):
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
        check_url(base_url, "KALAMDB_URL / --kalamdb-url")
        super().__init__(base_url, root_password, Path(data_dir) if data_dir else None)
        self.startup_timeout = startup_timeout

    def start(self) -> None:
        """Check that ``/health`` answers within ``startup_timeout``."""
        try:
            body = wait_healthy(self.base_url, time.monotonic() + self.startup_timeout)
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
