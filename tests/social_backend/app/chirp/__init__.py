"""Chirp: a small social Flask application, the second sample backend of the test fleet.

Deliberately unlike the demo backend: Flask-SQLAlchemy models on one SQLite file, a single
tenant (no tenant column anywhere), integer ids that SQLite hands out again after a deletion,
secrets in the users table (password hash, API token), followers and private messages between
users, an HTML login page as its only health page, and an application log that the application
rotates itself (``RotatingFileHandler``) while several gunicorn workers write to it.
"""

from __future__ import annotations

from flask import Flask, Response, request

from .config import Settings

__version__ = "1.4.2"
__all__ = ["Settings", "__version__", "create_app"]


def create_app(settings: Settings | None = None) -> Flask:
    """Build the application; ``settings`` defaults to :meth:`Settings.from_env` (``CHIRP_*``)."""
    from . import logs, models, views  # pylint: disable=import-outside-toplevel

    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        CHIRP=settings,
        SQLALCHEMY_DATABASE_URI=settings.database_uri,
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    logs.configure(app, settings)
    models.db.init_app(app)
    app.register_blueprint(views.bp)

    @app.after_request
    def _log_request(response: Response) -> Response:
        app.logger.info("%s %s", response.status_code, request.full_path)
        return response

    app.logger.info("chirp %s started, database %s", __version__, settings.database_uri)
    return app
