"""Application log, rotated by the application itself.

As many Flask apps do, chirp writes its log through :class:`logging.handlers.RotatingFileHandler`:
when the file reaches ``CHIRP_LOG_MAX_BYTES`` the worker that notices renames it to ``.1`` (and ``.1``
to ``.2`` ...).  With several gunicorn workers each holds its own handler, so records are lost or land
in a backup: the situation an operator's log rotation must recognise rather than fight.
"""

from __future__ import annotations

import logging
import logging.handlers

from flask import Flask, has_request_context, request
from flask.logging import default_handler

from .config import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(request_line)s %(message)s"


class _RequestFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_line = f"{request.method} {request.path}" if has_request_context() else "-"
        return True


def configure(app: Flask, settings: Settings) -> None:
    logger = app.logger
    logger.removeHandler(default_handler)
    logger.setLevel(logging.INFO)
    handler: logging.Handler
    if settings.log_file is None:
        handler = logging.StreamHandler()
    else:
        handler = logging.handlers.RotatingFileHandler(
            settings.log_file, maxBytes=settings.log_max_bytes, backupCount=settings.log_backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_RequestFilter())
    logger.addHandler(handler)
    logger.propagate = False
