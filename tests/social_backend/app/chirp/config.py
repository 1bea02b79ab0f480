"""Settings, read from ``CHIRP_*`` environment variables (the supervisor program sets them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where chirp keeps its state.

    ``CHIRP_DATABASE_URI``
        SQLAlchemy URL of the database (``sqlite:////abs/path``); ``python -m chirp.seed`` creates it.
    ``CHIRP_LOG_FILE``
        Application log; unset means standard error.
    ``CHIRP_LOG_MAX_BYTES``, ``CHIRP_LOG_BACKUPS``
        Size at which the application rotates its own log, and the backups it keeps (``.1`` ... ``.N``).
    ``CHIRP_TMP_DIR``
        Scratch folder for avatar uploads being received.
    ``CHIRP_SECRET_KEY``
        Flask's secret key.
    """

    database_uri: str
    tmp_dir: Path
    secret_key: str
    log_file: Path | None = None
    log_max_bytes: int = 1024 * 1024
    log_backups: int = 5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        log_file = env.get("CHIRP_LOG_FILE")
        return cls(
            database_uri=env.get("CHIRP_DATABASE_URI", "sqlite:///chirp.sqlite3"),
            tmp_dir=Path(env.get("CHIRP_TMP_DIR", "/tmp")),
            secret_key=env.get("CHIRP_SECRET_KEY", "development only"),
            log_file=Path(log_file) if log_file else None,
            log_max_bytes=int(env.get("CHIRP_LOG_MAX_BYTES", str(1024 * 1024))),
            log_backups=int(env.get("CHIRP_LOG_BACKUPS", "5")),
        )
