"""SQLite access: schema, connections and the per-request connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from flask import Flask, current_app, g

SCHEMA_VERSION = 3

CONSENT_PURPOSES = ("marketing_email", "newsletter", "analytics", "personalisation", "third_party_sharing")
ORDER_STATUSES = ("pending", "paid", "shipped", "delivered", "cancelled", "refunded")

# Personal data lives in users (contact details), posts, messages, follows,
# consents, orders (shipping address) and uploads.  Foreign keys use the
# default NO ACTION: removing a user fails until everything that points at
# the user has been erased or reassigned, except order lines, which belong
# to their order.
SCHEMA = f"""
CREATE TABLE schema_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE tenants (
    id         INTEGER PRIMARY KEY,
    slug       TEXT NOT NULL UNIQUE CHECK (slug GLOB '[a-z]*'),
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL,
    email         TEXT NOT NULL,
    phone         TEXT,
    address       TEXT,
    last_login_ip TEXT,
    last_login_at TEXT,
    created_at    TEXT NOT NULL,
    UNIQUE (tenant_id, email)
);
CREATE INDEX users_tenant_id ON users (tenant_id);

CREATE TABLE posts (
    id         INTEGER PRIMARY KEY,
    author_id  INTEGER NOT NULL REFERENCES users (id),
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX posts_author_id ON posts (author_id);

CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    sender_id    INTEGER NOT NULL REFERENCES users (id),
    recipient_id INTEGER NOT NULL REFERENCES users (id),
    body         TEXT NOT NULL,
    sent_at      TEXT NOT NULL,
    read_at      TEXT,
    CHECK (sender_id <> recipient_id)
);
CREATE INDEX messages_sender_id ON messages (sender_id);
CREATE INDEX messages_recipient_id ON messages (recipient_id);

CREATE TABLE follows (
    follower_id INTEGER NOT NULL REFERENCES users (id),
    followee_id INTEGER NOT NULL REFERENCES users (id),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
);
CREATE INDEX follows_followee_id ON follows (followee_id);

CREATE TABLE consents (
    id       INTEGER PRIMARY KEY,
    user_id  INTEGER NOT NULL REFERENCES users (id),
    purpose  TEXT NOT NULL CHECK (purpose IN ({", ".join(repr(p) for p in CONSENT_PURPOSES)})),
    granted  INTEGER NOT NULL CHECK (granted IN (0, 1)),
    source   TEXT NOT NULL,
    at       TEXT NOT NULL
);
CREATE INDEX consents_user_id ON consents (user_id);

CREATE TABLE products (
    id               INTEGER PRIMARY KEY,
    tenant_id        INTEGER NOT NULL REFERENCES tenants (id),
    sku              TEXT NOT NULL,
    name             TEXT NOT NULL,
    unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0),
    UNIQUE (tenant_id, sku)
);

CREATE TABLE orders (
    id               INTEGER PRIMARY KEY,
    tenant_id        INTEGER NOT NULL REFERENCES tenants (id),
    user_id          INTEGER NOT NULL REFERENCES users (id),
    status           TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in ORDER_STATUSES)})),
    currency         TEXT NOT NULL DEFAULT 'EUR',
    shipping_address TEXT NOT NULL,
    created_at       TEXT NOT NULL
);
CREATE INDEX orders_tenant_id ON orders (tenant_id);
CREATE INDEX orders_user_id ON orders (user_id);

CREATE TABLE order_items (
    id               INTEGER PRIMARY KEY,
    order_id         INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id       INTEGER NOT NULL REFERENCES products (id),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0)
);
CREATE INDEX order_items_order_id ON order_items (order_id);
CREATE INDEX order_items_product_id ON order_items (product_id);

CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id),
    user_id     INTEGER REFERENCES users (id),
    filename    TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    staged_path TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX uploads_user_id ON uploads (user_id);

-- Users only ever talk to and follow people of their own tenant.
CREATE TRIGGER messages_same_tenant BEFORE INSERT ON messages
WHEN (SELECT tenant_id FROM users WHERE id = NEW.sender_id)
     IS NOT (SELECT tenant_id FROM users WHERE id = NEW.recipient_id)
BEGIN
    SELECT RAISE(ABORT, 'sender and recipient belong to different tenants');
END;

CREATE TRIGGER follows_same_tenant BEFORE INSERT ON follows
WHEN (SELECT tenant_id FROM users WHERE id = NEW.follower_id)
     IS NOT (SELECT tenant_id FROM users WHERE id = NEW.followee_id)
BEGIN
    SELECT RAISE(ABORT, 'follower and followee belong to different tenants');
END;
"""


def connect(path: Path | str, *, read_only: bool = False, timeout: float = 5.0) -> sqlite3.Connection:
    """Open an existing database with foreign keys enforced.

    The file is opened through a URI in ``ro`` or ``rw`` mode, so a missing
    database is an error instead of a new empty file.
    """
    mode = "ro" if read_only else "rw"
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode={mode}", uri=True, timeout=timeout)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def get_db() -> sqlite3.Connection:
    """The connection of the current request, opened on first use."""
    if "db" not in g:
        g.db = connect(current_app.config["DIHYA"].db_path)
    conn: sqlite3.Connection = g.db
    return conn


def _close_db(_exc: BaseException | None = None) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def init_app(app: Flask) -> None:
    """Close the request connection when the application context ends."""
    app.teardown_appcontext(_close_db)
