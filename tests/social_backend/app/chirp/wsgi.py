"""WSGI entry point: ``gunicorn chirp.wsgi:app``."""

from __future__ import annotations

from . import create_app

app = create_app()
