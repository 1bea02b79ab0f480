"""Application log.

``<log dir>/app.log`` is written through a :class:`logging.handlers.WatchedFileHandler`:
every worker notices when the file is moved away (logrotate without
``copytruncate``) and reopens it, so rotation needs no signal and loses no line.
"""

from __future__ import annotations

import logging
import logging.handlers

from flask import Flask, has_request_context, request
from flask.logging import default_handler

from .config import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s %(instance)s %(request_line)s %(message)s"


class _ContextFilter(logging.Filter):
    """Adds the instance name and the current request to every record."""

    def __init__(self, instance: str) -> None:
        super().__init__()
        self.instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance = self.instance
        record.request_line = f"{request.method} {request.path}" if has_request_context() else "-"
        return True


def configure(app: Flask, settings: Settings) -> None:
    """Attach the application log handler to ``app.logger`` (once)."""
    logger = app.logger
    logger.removeHandler(default_handler)
    logger.setLevel(settings.log_level)
    if settings.log_dir is None:
        handler: logging.Handler = logging.StreamHandler()
        target = "<stderr>"
    else:
        target = str(settings.log_dir / "app.log")
        handler = logging.handlers.WatchedFileHandler(target, encoding="utf-8")
    for existing in logger.handlers:
        if getattr(existing, "dihya_target", None) == target:
            return
    handler.dihya_target = target  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_ContextFilter(settings.instance))
    logger.addHandler(handler)
    logger.propagate = False
