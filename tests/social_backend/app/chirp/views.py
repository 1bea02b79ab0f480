# The application's own dependencies (Flask-SQLAlchemy, SQLAlchemy) are not installed where the checkout's
# tools run: mypy checks this file without them.
# mypy: disable-error-code="import-not-found,untyped-decorator"
"""Routes: the HTML login page (the only health page there is), profiles, and a small token API."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, UTC

from flask import Blueprint, Response, abort, current_app, jsonify, request
from markupsafe import escape
from sqlalchemy import or_, select
from werkzeug.security import check_password_hash, generate_password_hash

from .models import Follow, Message, Post, User, db

bp = Blueprint("chirp", __name__)

_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - Chirp</title></head>
<body><h1>Sign in</h1>
<form method="post" action="/login">
<label>Username <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form>
<p>{members} members</p>
</body></html>
"""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _html(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/html")


@bp.get("/login")
def login_form() -> Response:
    """What monitoring looks at: 200 and a form once the database answers."""
    members = db.session.scalar(select(db.func.count(User.id)))
    return _html(_LOGIN_PAGE.format(members=members))


@bp.post("/login")
def login() -> Response:
    user = db.session.scalar(select(User).where(User.username == request.form.get("username", "")))
    if user is None or not check_password_hash(user.password_hash, request.form.get("password", "")):
        current_app.logger.info("failed sign-in")
        return _html("<p>Invalid username or password</p>", 401)
    user.last_seen_ip = request.remote_addr
    db.session.commit()
    current_app.logger.info("user %d signed in", user.id)
    return _html(f"<p>Welcome {escape(user.display_name)}</p>")


@bp.post("/signup")
def signup() -> tuple[Response, int]:
    """A new account; SQLite gives it the highest id plus one, so a deleted highest id comes back."""
    data = request.get_json(silent=True) or {}
    username = str(data.get("username", "")).strip()
    if not username.isalnum() or db.session.scalar(select(User).where(User.username == username)) is not None:
        abort(400)
    user = User(username=username, email=f"{username}@example.org", display_name=str(data.get("display_name", username)),
                password_hash=generate_password_hash(str(data.get("password", ""))), api_token=secrets.token_hex(20),
                last_seen_ip=request.remote_addr, member_since=_now())
    db.session.add(user)
    db.session.commit()
    current_app.logger.info("user %d signed up", user.id)
    return jsonify({"id": user.id, "api_token": user.api_token}), 201


@bp.get("/u/<username>")
def profile(username: str) -> Response:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        abort(404)
    posts = db.session.scalars(select(Post).where(Post.user_id == user.id).order_by(Post.timestamp.desc()).limit(10))
    items = "".join(f"<li>{escape(post.body)}</li>" for post in posts)
    return _html(f"<h1>{escape(user.display_name)}</h1><ul>{items}</ul>")


def _token_user() -> User:
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    user: User | None = db.session.scalar(select(User).where(User.api_token == token)) if token else None
    if user is None or user.api_token is None or not hmac.compare_digest(user.api_token, token):
        abort(401)
    return user


@bp.get("/api/messages")
def inbox() -> Response:
    user = _token_user()
    rows = db.session.scalars(select(Message).where(or_(Message.sender_id == user.id, Message.recipient_id == user.id))
                              .order_by(Message.id))
    return jsonify([{"id": m.id, "from": m.sender_id, "to": m.recipient_id, "body": m.body} for m in rows])


@bp.post("/api/messages")
def send_message() -> tuple[Response, int]:
    user = _token_user()
    data = request.get_json(silent=True) or {}
    recipient = db.session.get(User, int(data.get("recipient_id", 0)))
    if recipient is None or not str(data.get("body", "")).strip():
        abort(400)
    message = Message(sender_id=user.id, recipient_id=recipient.id, body=str(data["body"]), timestamp=_now())
    db.session.add(message)
    db.session.commit()
    current_app.logger.info("message %d sent", message.id)
    return jsonify({"id": message.id}), 201


@bp.post("/api/follow/<int:user_id>")
def follow(user_id: int) -> tuple[Response, int]:
    user = _token_user()
    if db.session.get(User, user_id) is None or user_id == user.id:
        abort(400)
    if db.session.get(Follow, (user.id, user_id)) is None:
        db.session.add(Follow(follower_id=user.id, followed_id=user_id))
        db.session.commit()
    return jsonify({"following": user_id}), 201
