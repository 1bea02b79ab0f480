"""``/healthz``: a real readiness probe.

The probe opens the database read-only and runs a query, so a missing,
unreadable or corrupt database turns the instance unhealthy (HTTP 503).
"""

from __future__ import annotations

import sqlite3
import time

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from .db import connect
from .version import __version__

bp = Blueprint("health", __name__)

_STARTED = time.monotonic()


def check_database() -> dict[str, object]:
    """Open the database read-only, count the tenants and time it."""
    settings = current_app.config["DIHYA"]
    started = time.perf_counter()
    try:
        conn = connect(settings.db_path, read_only=True, timeout=2.0)
        try:
            tenants = conn.execute("SELECT count(*) FROM tenants").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return {
            "status": "fail",
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "error": f"{type(exc).__name__}: {exc}",
        }
    return {
        "status": "ok",
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        "tenants": tenants,
    }


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """200 with ``status: ok`` when the database answers, 503 with ``status: fail`` otherwise."""
    database = check_database()
    healthy = database["status"] == "ok"
    if not healthy:
        current_app.logger.warning("health check failed: database %s", database.get("error"))
    response = jsonify(
        {
            "status": "ok" if healthy else "fail",
            "database": database,
            "version": __version__,
            "instance": current_app.config["DIHYA"].instance,
            "uptime_s": round(time.monotonic() - _STARTED, 1),
        }
    )
    response.status_code = 200 if healthy else 503
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/slow")
def slow() -> ResponseReturnValue:
    """A request that takes ``seconds`` (at most 10) to answer: the in-flight request of the drain tests."""
    seconds = min(max(request.args.get("seconds", default=3.0, type=float) or 0.0, 0.0), 10.0)
    time.sleep(seconds)
    return jsonify({"status": "ok", "slept_s": seconds, "instance": current_app.config["DIHYA"].instance})
