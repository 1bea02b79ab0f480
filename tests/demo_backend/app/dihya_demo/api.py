"""Tenant-scoped JSON API."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import time
import uuid
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException
from werkzeug.utils import secure_filename

from .db import ORDER_STATUSES, get_db

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_PER_PAGE = 100
MAX_MESSAGE_LENGTH = 4000


def utcnow() -> str:
    """Current time in the format stored in the database."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tenant(slug: str) -> sqlite3.Row:
    row: sqlite3.Row | None = get_db().execute("SELECT id, slug, name FROM tenants WHERE slug = ?", (slug,)).fetchone()
    if row is None:
        abort(404, description=f"unknown tenant {slug!r}")
    return row


def _user_in_tenant(tenant_id: int, user_id: Any, field: str) -> sqlite3.Row:
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        abort(400, description=f"{field} must be an integer")
    row: sqlite3.Row | None = get_db().execute("SELECT id, name FROM users WHERE id = ? AND tenant_id = ?", (user_id, tenant_id)).fetchone()
    if row is None:
        abort(404, description=f"{field} {user_id} is not a user of this tenant")
    return row


def _paging() -> tuple[int, int]:
    page = request.args.get("page", default=1, type=int)
    per_page = request.args.get("per_page", default=20, type=int)
    if page is None or page < 1 or per_page is None or not 1 <= per_page <= MAX_PER_PAGE:
        abort(400, description=f"page must be >= 1 and per_page between 1 and {MAX_PER_PAGE}")
    return page, per_page


@bp.get("/tenants")
def list_tenants() -> ResponseReturnValue:
    """All tenants with their number of users."""
    rows = get_db().execute("SELECT t.slug, t.name, count(u.id) AS users FROM tenants t LEFT JOIN users u ON u.tenant_id = t.id GROUP BY t.id ORDER BY t.slug")
    return jsonify({"tenants": [dict(row) for row in rows]})


@bp.get("/tenants/<tenant>/users")
def list_users(tenant: str) -> ResponseReturnValue:
    """Users of one tenant, ``?page=`` and ``?per_page=``."""
    tenant_row = _tenant(tenant)
    page, per_page = _paging()
    db = get_db()
    total = db.execute("SELECT count(*) FROM users WHERE tenant_id = ?", (tenant_row["id"],)).fetchone()[0]
    rows = db.execute(
        "SELECT id, name, email, created_at, last_login_at FROM users WHERE tenant_id = ? ORDER BY id LIMIT ? OFFSET ?",
        (tenant_row["id"], per_page, (page - 1) * per_page),
    )
    return jsonify({"tenant": tenant_row["slug"], "page": page, "per_page": per_page, "total": total, "users": [dict(row) for row in rows]})


@bp.get("/tenants/<tenant>/users/<int:user_id>")
def get_user(tenant: str, user_id: int) -> ResponseReturnValue:
    """One user with the size of their footprint."""
    tenant_row = _tenant(tenant)
    db = get_db()
    row = db.execute(
        "SELECT id, name, email, phone, address, created_at, last_login_at FROM users WHERE id = ? AND tenant_id = ?",
        (user_id, tenant_row["id"]),
    ).fetchone()
    if row is None:
        abort(404, description=f"user {user_id} is not a user of this tenant")
    counts = db.execute(
        """
        SELECT (SELECT count(*) FROM posts WHERE author_id = :id) AS posts,
               (SELECT count(*) FROM messages WHERE sender_id = :id OR recipient_id = :id) AS messages,
               (SELECT count(*) FROM follows WHERE follower_id = :id) AS following,
               (SELECT count(*) FROM follows WHERE followee_id = :id) AS followers,
               (SELECT count(*) FROM orders WHERE user_id = :id) AS orders
        """,
        {"id": user_id},
    ).fetchone()
    return jsonify({"tenant": tenant_row["slug"], "user": dict(row), "counts": dict(counts)})


@bp.get("/tenants/<tenant>/orders")
def list_orders(tenant: str) -> ResponseReturnValue:
    """Orders of one tenant with their lines, newest first; ``?status=`` and ``?user_id=`` filter."""
    tenant_row = _tenant(tenant)
    page, per_page = _paging()
    where = ["o.tenant_id = ?"]
    params: list[Any] = [tenant_row["id"]]
    status = request.args.get("status")
    if status is not None:
        if status not in ORDER_STATUSES:
            abort(400, description=f"status must be one of {', '.join(ORDER_STATUSES)}")
        where.append("o.status = ?")
        params.append(status)
    user_id = request.args.get("user_id", type=int)
    if user_id is not None:
        where.append("o.user_id = ?")
        params.append(user_id)
    clause = " AND ".join(where)
    db = get_db()
    total = db.execute(f"SELECT count(*) FROM orders o WHERE {clause}", params).fetchone()[0]
    orders = [
        dict(row)
        for row in db.execute(
            f"""
            SELECT o.id, o.user_id, o.status, o.currency, o.created_at,
                   coalesce(sum(i.quantity * i.unit_price_cents), 0) AS total_cents
            FROM orders o LEFT JOIN order_items i ON i.order_id = o.id
            WHERE {clause}
            GROUP BY o.id ORDER BY o.created_at DESC, o.id DESC LIMIT ? OFFSET ?
            """,
            [*params, per_page, (page - 1) * per_page],
        )
    ]
    if orders:
        marks = ", ".join("?" for dummy in orders)
        items: dict[int, list[dict[str, Any]]] = {}
        for row in db.execute(
            f"""
            SELECT i.order_id, p.sku, p.name, i.quantity, i.unit_price_cents
            FROM order_items i JOIN products p ON p.id = i.product_id
            WHERE i.order_id IN ({marks}) ORDER BY i.id
            """,
            [order["id"] for order in orders],
        ):
            line = dict(row)
            items.setdefault(line.pop("order_id"), []).append(line)
        for order in orders:
            order["items"] = items.get(order["id"], [])
    return jsonify({"tenant": tenant_row["slug"], "page": page, "per_page": per_page, "total": total, "orders": orders})


@bp.post("/tenants/<tenant>/messages")
def create_message(tenant: str) -> ResponseReturnValue:
    """Send a message: JSON ``{"sender_id": int, "recipient_id": int, "body": str}``."""
    tenant_row = _tenant(tenant)
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        abort(400, description="expected a JSON object")
    sender = _user_in_tenant(tenant_row["id"], payload.get("sender_id"), "sender_id")
    recipient = _user_in_tenant(tenant_row["id"], payload.get("recipient_id"), "recipient_id")
    body = payload.get("body")
    if not isinstance(body, str) or not body.strip() or len(body) > MAX_MESSAGE_LENGTH:
        abort(400, description=f"body must be a non-empty string of at most {MAX_MESSAGE_LENGTH} characters")
    if sender["id"] == recipient["id"]:
        abort(400, description="sender and recipient must differ")
    db = get_db()
    sent_at = utcnow()
    with db:
        cursor = db.execute(
            "INSERT INTO messages (sender_id, recipient_id, body, sent_at) VALUES (?, ?, ?, ?)",
            (sender["id"], recipient["id"], body.strip(), sent_at),
        )
    message_id = cursor.lastrowid
    current_app.logger.info("tenant %s: message %s from user %s to user %s", tenant_row["slug"], message_id, sender["id"], recipient["id"])
    return jsonify({"id": message_id, "sender_id": sender["id"], "recipient_id": recipient["id"], "sent_at": sent_at}), 201


@bp.post("/tenants/<tenant>/uploads")
def create_upload(tenant: str) -> ResponseReturnValue:
    """Receive a file (multipart field ``file``, or the raw body) into the staging folder.

    The body is streamed into a temporary file first, then moved into the
    staging folder, where a later processing step (or the temp-file purge)
    picks it up.
    """
    tenant_row = _tenant(tenant)
    settings = current_app.config["DIHYA"]
    user_id = request.args.get("user_id", type=int)
    if user_id is not None:
        _user_in_tenant(tenant_row["id"], user_id, "user_id")
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            abort(400, description="multipart uploads carry the file in a field named 'file'")
        stream, filename = upload.stream, upload.filename or ""
    else:  # the raw body, whatever its content type: never parsed as a form
        stream, filename = request.stream, request.args.get("filename", "")
    filename = secure_filename(filename) or "upload.bin"

    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=settings.tmp_dir, prefix="upload-", suffix=".part", delete=False) as tmp:
        try:
            for chunk in iter(lambda: stream.read(64 * 1024), b""):
                digest.update(chunk)
                size += len(chunk)
                tmp.write(chunk)
        except BaseException:
            os.unlink(tmp.name)
            raise
    if size == 0:
        os.unlink(tmp.name)
        abort(400, description="empty upload")
    upload_id = uuid.uuid4().hex
    staged = Path(settings.upload_dir, f"{tenant_row['slug']}-{upload_id}-{filename}")
    os.replace(tmp.name, staged)
    os.chmod(staged, 0o640)
    db = get_db()
    with db:
        db.execute(
            "INSERT INTO uploads (id, tenant_id, user_id, filename, size_bytes, sha256, staged_path, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (upload_id, tenant_row["id"], user_id, filename, size, digest.hexdigest(), str(staged), utcnow()),
        )
    current_app.logger.info("tenant %s: upload %s staged (%d bytes)", tenant_row["slug"], upload_id, size)
    return jsonify({"id": upload_id, "filename": filename, "size_bytes": size, "sha256": digest.hexdigest()}), 201


@bp.get("/tenants/<tenant>/stats")
def tenant_stats(tenant: str) -> ResponseReturnValue:
    """Aggregated figures of one tenant, cached in the cache folder for a minute."""
    tenant_row = _tenant(tenant)
    settings = current_app.config["DIHYA"]
    cache_file = Path(settings.cache_dir, f"stats-{tenant_row['slug']}.json")
    try:
        if time.time() - cache_file.stat().st_mtime < settings.cache_ttl_s:
            return jsonify({**json.loads(cache_file.read_text(encoding="utf-8")), "cached": True})
    except (OSError, ValueError):
        pass
    row = (
        get_db()
        .execute(
            """
        SELECT (SELECT count(*) FROM users WHERE tenant_id = :t) AS users,
               (SELECT count(*) FROM orders WHERE tenant_id = :t) AS orders,
               (SELECT coalesce(sum(i.quantity * i.unit_price_cents), 0)
                  FROM order_items i JOIN orders o ON o.id = i.order_id
                 WHERE o.tenant_id = :t AND o.status IN ('paid', 'shipped', 'delivered')) AS revenue_cents,
               (SELECT count(*) FROM messages m JOIN users u ON u.id = m.sender_id WHERE u.tenant_id = :t) AS messages
        """,
            {"t": tenant_row["id"]},
        )
        .fetchone()
    )
    stats = {"tenant": tenant_row["slug"], **dict(row), "computed_at": utcnow()}
    with tempfile.NamedTemporaryFile("w", dir=settings.cache_dir, prefix=".stats-", delete=False, encoding="utf-8") as tmp:
        json.dump(stats, tmp)
    os.replace(tmp.name, cache_file)
    return jsonify({**stats, "cached": False})


def register_error_handlers(app: Flask) -> None:
    """Answer errors in JSON, and report database failures as 503."""

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        return jsonify({"error": exc.name, "description": exc.description}), exc.code or 500

    @app.errorhandler(sqlite3.Error)
    def _database_error(exc: sqlite3.Error) -> ResponseReturnValue:
        app.logger.error("database error: %s: %s", type(exc).__name__, exc)
        return jsonify({"error": "Service Unavailable", "description": "database unavailable"}), 503
