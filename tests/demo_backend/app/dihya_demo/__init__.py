"""Demo stand-in for the Dihya Flask backend.

A small multi-tenant Flask application backed by SQLite.  It exposes the
endpoints the operations collection works against (health, tenant-scoped
reads, writes that move the logs and the database, uploads through a staging
folder) and is configured entirely through ``DIHYA_*`` environment variables.
"""

from __future__ import annotations

from flask import Flask

from .config import Settings
from .version import __version__

__all__ = ["Settings", "__version__", "create_app"]


def create_app(settings: Settings | None = None) -> Flask:
    """Build the application.

    ``settings`` defaults to :meth:`Settings.from_env`, so a WSGI server only
    needs the ``DIHYA_*`` variables in its environment.
    """
    from . import api, db, health, logs  # pylint: disable=import-outside-toplevel

    settings = settings or Settings.from_env()
    settings.ensure_dirs()

    app = Flask(__name__)
    app.config.update(
        DIHYA=settings,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        JSON_SORT_KEYS=False,
    )
    logs.configure(app, settings)
    db.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    api.register_error_handlers(app)
    app.logger.info("instance %s started (version %s, database %s)", settings.instance, __version__, settings.db_path)
    return app
