# The application's own dependencies (Flask-SQLAlchemy, SQLAlchemy) are not installed where the checkout's
# tools run: mypy checks this file without them.
# mypy: disable-error-code="import-not-found,untyped-decorator"
"""The schema, as Flask-SQLAlchemy models.

One database, one community: no tenant column.  Ids are SQLite ``INTEGER PRIMARY KEY`` columns
without ``AUTOINCREMENT``, so the id of the highest row is handed out again once that row is
deleted.  Secrets live next to the profile (``password_hash``, ``api_token``).  Follows and private
messages relate two users each.  Foreign keys are enforced on every connection.
"""

from __future__ import annotations

import sqlite3

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

db = SQLAlchemy()


@event.listens_for(Engine, "connect")
def _enforce_foreign_keys(dbapi_connection: object, connection_record: object) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()


class User(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(120), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    about_me: Mapped[str | None] = mapped_column(String(280))
    password_hash: Mapped[str] = mapped_column(String(256))
    api_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    last_seen_ip: Mapped[str | None] = mapped_column(String(45))
    member_since: Mapped[str] = mapped_column(String(32))


class Follow(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "followers"
    __table_args__ = (CheckConstraint("follower_id <> followed_id"), Index("ix_followers_followed_id", "followed_id"))

    follower_id: Mapped[int] = mapped_column(ForeignKey("user.id"), primary_key=True)
    followed_id: Mapped[int] = mapped_column(ForeignKey("user.id"), primary_key=True)


class Post(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "post"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    body: Mapped[str] = mapped_column(String(280))
    timestamp: Mapped[str] = mapped_column(String(32), index=True)


class Comment(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "comment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("post.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    body: Mapped[str] = mapped_column(String(280))
    timestamp: Mapped[str] = mapped_column(String(32))


class Message(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "message"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sender_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    body: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[str] = mapped_column(String(32), index=True)
