# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The one database URL contract of dihya.ops: ``db_url``, as the backend model's ``dihya_backend_db_url`` holds it.

Accepted forms, and nothing else:

- ``sqlite:///absolute/path/app.db`` or a plain absolute path ``/absolute/path/app.db``: a SQLite file;
- ``postgresql://user:password@host:port/dbname?options`` (or ``postgres://``), or libpq ``key=value``
  pairs (``host=db dbname=dihya user=ops password=...``): a PostgreSQL database.

:func:`parse_db_url` tells which, and collects every spelling of the password the text holds (as
written, percent-decoded, percent-encoded, quoted) so that :meth:`DbUrl.scrub` can mask them in any
message a driver produces. No message of this module shows the URL itself: it may hold a password.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import typing as t
import urllib.parse

MASK = '********'
Kind = t.Literal['sqlite', 'postgresql']
SQLITE: t.Final = 'sqlite'
POSTGRESQL: t.Final = 'postgresql'
FORMS = 'sqlite:///ABSOLUTE/PATH, an absolute path, postgresql://... or libpq key=value pairs'

_SCHEME = re.compile(r'([A-Za-z][A-Za-z0-9+.-]*)://')
_CONNINFO = re.compile(r'\s*[A-Za-z_]+\s*=')
# A libpq value is quoted ('...') or not; in both, a backslash escapes the next character.
_CONNINFO_PASSWORD = re.compile(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|(?:[^\s'\\]|\\.)+)")
_QUERY_PASSWORD = re.compile(r'(?:^|&)password=([^&]*)')


class DbUrlError(ValueError):
    """A ``db_url`` that is none of the accepted forms; the message never shows the URL."""


@dataclasses.dataclass(frozen=True)
class DbUrl:
    """A parsed database URL: a SQLite file (``path``) or a PostgreSQL connection string (``dsn``)."""

    kind: Kind
    path: str | None = None
    dsn: str | None = dataclasses.field(default=None, repr=False)
    secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)

    @property
    def identity(self) -> str:
        """A digest naming the database without revealing it (for audit records and metrics).

        It is computed over :meth:`masked`: the same database whatever its password, and no digest of a
        password for anyone to test guesses against.
        """
        return hashlib.sha256(self.masked().encode('utf-8', 'surrogatepass')).hexdigest()

    def scrub(self, text: str) -> str:
        """``text`` with every spelling of the URL's password replaced by ``********``."""
        return scrub(text, self.secrets)

    def masked(self) -> str:
        """The URL as it can be shown: the SQLite path, or the DSN with its password masked."""
        return t.cast(str, self.path) if self.kind == SQLITE else self.scrub(self.dsn or '')


def parse_db_url(value: object, name: str = 'db_url') -> DbUrl:
    """Parse one ``db_url``; raise :class:`DbUrlError` (naming the option ``name``) when it is none of the accepted forms."""
    if not isinstance(value, str):
        raise DbUrlError(f'{name} must be a string ({FORMS}), not {type(value).__name__}')
    text = value.strip()
    if not text:
        raise DbUrlError(f'{name} must not be empty ({FORMS})')
    if '\x00' in text:
        raise DbUrlError(f'{name} must not contain a NUL character')
    if text.startswith('/'):
        return DbUrl(kind=SQLITE, path=_sqlite_path(text, name))
    found = _SCHEME.match(text)
    scheme = found.group(1).lower() if found else ''
    if scheme == SQLITE:
        parts = urllib.parse.urlsplit(text)
        if parts.netloc or not parts.path.startswith('/') or parts.query or parts.fragment:
            raise DbUrlError(f'a SQLite {name} is sqlite:///ABSOLUTE/PATH (three slashes, no host, no query)')
        return DbUrl(kind=SQLITE, path=_sqlite_path('/' + parts.path.lstrip('/'), name))
    if scheme in ('postgresql', 'postgres'):
        try:
            parts = urllib.parse.urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            raise DbUrlError(f'{name} is not a valid postgresql:// URL (its text is not shown: it may hold a password)') from None
        return DbUrl(kind=POSTGRESQL, dsn=text, secrets=dsn_secrets(text))
    if not scheme and _CONNINFO.match(text):
        return DbUrl(kind=POSTGRESQL, dsn=text, secrets=dsn_secrets(text))
    shown = f' (scheme {scheme!r})' if scheme and scheme.isalnum() and len(scheme) <= 20 else ''
    raise DbUrlError(f'{name} must be one of {FORMS}{shown}; a relative path is refused')


def _sqlite_path(path: str, name: str) -> str:
    """``path`` if it can name a SQLite file: no ``..`` component, not a directory (``/`` at the end)."""
    if '..' in path.split('/'):
        raise DbUrlError(f'a SQLite {name} must not contain a .. component: give the path without it')
    if path.endswith('/'):
        raise DbUrlError(f'a SQLite {name} must name a file, not a directory (it ends with /)')
    return path


def dsn_secrets(dsn: str) -> tuple[str, ...]:
    """Every spelling of the password a PostgreSQL URL or conninfo string holds, longest first."""
    found: set[str] = set()
    parts: urllib.parse.SplitResult | None
    try:
        parts = urllib.parse.urlsplit(dsn)
        password = parts.password
    except ValueError:
        parts, password = None, None
    if password:
        found.update(_spellings(password))
    if parts is not None:
        for item in _QUERY_PASSWORD.findall(parts.query):
            found.update(_spellings(item))
            found.update(_spellings(urllib.parse.unquote_plus(item)))
    # The password as a reader sees it, between the user's ':' and the last '@': when it holds a '/', '?'
    # or '#' that is not percent-encoded, the URL parser reads it as the port, path, query or fragment.
    match = _SCHEME.match(dsn)
    if match is not None and '@' in dsn[match.end():]:
        userinfo = dsn[match.end():].rpartition('@')[0]
        if ':' in userinfo:
            found.update(_spellings(userinfo.split(':', 1)[1]))
    for match in _CONNINFO_PASSWORD.finditer(dsn):
        item = match.group(1)
        inner = item[1:-1] if item.startswith("'") else item
        found.update((item, inner, re.sub(r'\\(.)', r'\1', inner)))
    # Longest first, so that a secret containing another one is masked whole.
    return tuple(sorted((item for item in found if item), key=len, reverse=True))


def _spellings(password: str) -> tuple[str, ...]:
    """A URL password as written, percent-decoded and percent-encoded again (as a driver may quote it).

    Percent-encoded bytes that are not UTF-8 are decoded both as U+FFFD and as lone surrogates.
    """
    found = {password}
    for decoded in (urllib.parse.unquote(password), urllib.parse.unquote(password, errors='surrogateescape')):
        found.update((decoded, _quote(decoded, urllib.parse.quote), _quote(decoded, urllib.parse.quote_plus)))
    return tuple(found)


def _quote(text: str, quote: t.Callable[..., str]) -> str:
    """``text`` percent-encoded; a lone surrogate (from bytes that were not UTF-8) is encoded as the byte it stands for."""
    try:
        return quote(text, safe='', errors='surrogateescape')
    except UnicodeEncodeError:
        return quote(text, safe='', errors='surrogatepass')


def scrub(text: str, secrets: t.Iterable[str]) -> str:
    """``text`` with each of ``secrets`` replaced by ``********``, the longest first (one secret may hold another).

    A single string is one secret (not a list of its characters); empty ones are ignored.
    """
    if isinstance(secrets, str):
        secrets = (secrets,)
    for secret in sorted((item for item in secrets if item), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
