"""Runtime settings read from the environment."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where the application keeps its state.

    Environment variables (all optional):

    ``DIHYA_DB_PATH``
        SQLite database file (default ``./dihya.db``).  The application never
        creates it: ``python -m dihya_demo.seed`` does.
    ``DIHYA_LOG_DIR``
        Folder for ``app.log``; unset means log to standard error.
    ``DIHYA_TMP_DIR``
        Scratch space for request bodies being received.
    ``DIHYA_CACHE_DIR``
        Computed responses kept for a short while (default ``$DIHYA_TMP_DIR/cache``).
    ``DIHYA_UPLOAD_DIR``
        Upload staging folder (default ``$DIHYA_TMP_DIR/uploads/staging``).
    ``DIHYA_INSTANCE``
        Name reported by ``/healthz`` (default: the host name).
    ``DIHYA_LOG_LEVEL``
        Level of the application log (default ``INFO``).
    """

    db_path: Path
    tmp_dir: Path
    cache_dir: Path
    upload_dir: Path
    instance: str
    log_dir: Path | None = None
    log_level: str = "INFO"
    cache_ttl_s: float = 60.0
    max_upload_bytes: int = 5 * 1024 * 1024

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        tmp_dir = Path(env.get("DIHYA_TMP_DIR") or Path(tempfile.gettempdir(), "dihya"))
        log_dir = env.get("DIHYA_LOG_DIR")
        return cls(
            db_path=Path(env.get("DIHYA_DB_PATH") or "dihya.db").absolute(),
            tmp_dir=tmp_dir.absolute(),
            cache_dir=Path(env.get("DIHYA_CACHE_DIR") or tmp_dir / "cache").absolute(),
            upload_dir=Path(env.get("DIHYA_UPLOAD_DIR") or tmp_dir / "uploads" / "staging").absolute(),
            instance=env.get("DIHYA_INSTANCE") or socket.gethostname(),
            log_dir=Path(log_dir).absolute() if log_dir else None,
            log_level=(env.get("DIHYA_LOG_LEVEL") or "INFO").upper(),
        )

    def ensure_dirs(self) -> None:
        """Create the folders the application writes to (not the database)."""
        folders = [self.tmp_dir, self.cache_dir, self.upload_dir]
        if self.log_dir is not None:
            folders.append(self.log_dir)
        for folder in folders:
            folder.mkdir(mode=0o750, parents=True, exist_ok=True)
