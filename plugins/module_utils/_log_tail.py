# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The end of a log file, read safely and bounded, and scrubbed of secrets and personal identifiers before it is shown.

:func:`read_tail` never follows a symbolic link (not at the file, not at any folder on the way: the folder is
reached with :func:`._fs_chain.open_directory`, the file opened with ``O_NOFOLLOW`` relative to it), reads only a
regular file, and never more than ``max_bytes`` from its end, whatever its size or growth. A missing, refused or
unreadable file is a :class:`Tail` that says so, never an exception.

:func:`scrub` masks what a log line may carry that no report should: ``Authorization`` headers and bearer
tokens, the values of ``password=``, ``token=``, ``secret:`` and similar pairs (quoted or not, JSON included),
JSON web tokens, the password of a URL, and it pseudonymises (with a key, :func:`._ids.pseudonym`) or masks
(without, :func:`._rgpd_values.mask`) e-mail addresses and IP addresses.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import os
import re
import stat
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._fs_chain import MISSING, SYMLINK, ChainError, open_directory
from ansible_collections.dihya.ops.plugins.module_utils._ids import pseudonym
from ansible_collections.dihya.ops.plugins.module_utils._probe_http import mask_url_credentials
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_values import mask

DEFAULT_LINES = 20
MAX_LINES = 1000
DEFAULT_MAX_BYTES = 4096
MAX_BYTES = 1024 * 1024
# A line longer than this is cut: one runaway line must not fill the report.
LINE_CHARS = 1000
MASK = '********'

FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0) | getattr(os, 'O_NOCTTY', 0)

OK = 'ok'
MISSING_FILE = 'missing'
REFUSED = 'refused'
UNREADABLE = 'unreadable'


@dataclasses.dataclass
class Tail:
    """The last lines of a log (scrubbed when they come from :func:`read_tail`), or why there are none."""

    path: str
    status: str
    message: str
    lines: list[str] = dataclasses.field(default_factory=list)
    bytes_read: int = 0
    truncated: bool = False

    @property
    def text(self) -> str:
        """The lines, one per line."""
        return '\n'.join(self.lines)

    def to_dict(self) -> dict[str, t.Any]:
        """The module's result."""
        return dict(dataclasses.asdict(self), text=self.text)


def settings_errors(path: t.Any, lines: t.Any, max_bytes: t.Any) -> list[str]:
    """One message per unusable setting (empty when all are usable)."""
    errors = []
    if not isinstance(path, str) or not path.startswith('/'):
        errors.append(f'path must be an absolute path (got {path!r})')
    elif '\0' in path or '..' in path.split('/'):
        errors.append('path must not contain NUL characters or ".." components')
    elif path.endswith('/'):
        errors.append('path must name a file, not a folder')
    if isinstance(lines, bool) or not isinstance(lines, int) or not 0 <= lines <= MAX_LINES:
        errors.append(f'lines must be between 0 and {MAX_LINES} (got {lines!r})')
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or not 1 <= max_bytes <= MAX_BYTES:
        errors.append(f'max_bytes must be between 1 and {MAX_BYTES} (got {max_bytes!r})')
    return errors


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return 'a symbolic link'
    if stat.S_ISDIR(mode):
        return 'a directory'
    if stat.S_ISFIFO(mode):
        return 'a FIFO'
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return 'a device'
    if stat.S_ISSOCK(mode):
        return 'a socket'
    return 'not a regular file'


def _open(path: str) -> int | Tail:
    """A descriptor of the regular file ``path``, or the :class:`Tail` saying why there is none."""
    folder, name = os.path.split(path)
    try:
        dir_fd = open_directory(folder or '/')
    except ChainError as exc:
        if exc.kind == MISSING:
            return Tail(path, MISSING_FILE, f'{path} does not exist (its folder {exc.component} is missing)')
        if exc.kind == SYMLINK:
            return Tail(path, REFUSED, f'{path} not read: {exc.component} is a symbolic link, which is never followed')
        reason = exc.cause.strerror if exc.cause is not None and exc.cause.strerror else exc.kind
        return Tail(path, UNREADABLE, f'{path} not read: {exc.component}: {reason}')
    try:
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return Tail(path, MISSING_FILE, f'{path} does not exist')
        if stat.S_ISLNK(info.st_mode):
            return Tail(path, REFUSED, f'{path} not read: it is a symbolic link, which is never followed')
        # Refused before opening: opening a FIFO or a device can block or act on it.
        if not stat.S_ISREG(info.st_mode):
            return Tail(path, REFUSED, f'{path} not read: it is {_kind(info.st_mode)}, not a regular file')
        try:
            fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return Tail(path, REFUSED, f'{path} not read: it is a symbolic link, which is never followed')
            if exc.errno == errno.ENOENT:
                return Tail(path, MISSING_FILE, f'{path} does not exist')
            return Tail(path, UNREADABLE, f'{path} not read: {exc.strerror}')
    finally:
        os.close(dir_fd)
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode):
        os.close(fd)
        return Tail(path, REFUSED, f'{path} not read: it is {_kind(opened.st_mode)}, not a regular file')
    return fd


def _read_end(fd: int, max_bytes: int) -> tuple[bytes, bool]:
    """At most ``max_bytes`` from the end of the file, and whether its start was left out."""
    size = os.fstat(fd).st_size
    start = max(0, size - max_bytes)
    chunks = []
    read = 0
    while read < max_bytes:
        chunk = os.pread(fd, max_bytes - read, start + read)
        if not chunk:
            break
        chunks.append(chunk)
        read += len(chunk)
    return b''.join(chunks), start > 0


_CONTROL = re.compile(r'[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]')
_ANSI = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')


def _printable(line: str) -> str:
    """The line without terminal escape sequences or control characters (a tab stays), cut at :data:`LINE_CHARS`."""
    line = _CONTROL.sub('?', _ANSI.sub('', line))
    return line if len(line) <= LINE_CHARS else line[:LINE_CHARS - 3] + '...'


def split_tail(data: bytes, lines: int, truncated: bool) -> tuple[list[str], bool]:
    """The last ``lines`` lines of ``data``, printable; a first line cut by the byte limit is dropped (when another follows)."""
    text = data.decode('utf-8', errors='replace')
    found = text.splitlines()
    if truncated and len(found) > 1:
        found = found[1:]
    if len(found) > lines:
        found = found[len(found) - lines:] if lines else []
        truncated = True
    return [_printable(line) for line in found], truncated


def read_tail(path: str, lines: int = DEFAULT_LINES, max_bytes: int = DEFAULT_MAX_BYTES, key: bytes | None = None) -> Tail:
    """The last ``lines`` lines of the log ``path`` within its last ``max_bytes`` bytes, scrubbed (see :func:`scrub`).

    Raise :class:`ValueError` for unusable settings (see :func:`settings_errors`); anything about the file
    itself (missing, a symbolic link, not a regular file, unreadable) is the returned :class:`Tail`'s status.
    """
    errors = settings_errors(path, lines, max_bytes)
    if errors:
        raise ValueError('; '.join(errors))
    fd = _open(path)
    if isinstance(fd, Tail):
        return fd
    try:
        data, cut = _read_end(fd, max_bytes)
    except OSError as exc:
        return Tail(path, UNREADABLE, f'{path} not read: {exc.strerror}')
    finally:
        os.close(fd)
    found, truncated = split_tail(data, lines, cut)
    scrubbed = [scrub(line, key) for line in found]
    if not scrubbed:
        message = f'{path} is empty' if not data else f'{path}: no line shown'
    else:
        message = f'last {len(scrubbed)} line(s) of {path}' + (' (earlier lines left out)' if truncated else '')
    return Tail(path, OK, message, scrubbed, len(data), truncated)


# ---------------------------------------------------------------------------
# Scrubbing
# ---------------------------------------------------------------------------

_AUTHORIZATION = re.compile(
    r'''(?i)\b((?:proxy-)?authorization|x-api-key|x-auth-token)(["']?\s*[:=]\s*["']?)(?:(basic|bearer|digest|token|negotiate)\s+)?[^\s"',;]+''')
_BEARER = re.compile(r'(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{4,}')
_SECRET_KEY = (r'[\w.-]*?(?:passw(?:or)?d|passwd|pwd|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|'
               r'credentials?|auth[_-]?key|session[_-]?id|sessionid|cookie|signature)[\w.-]*')
_SECRET_PAIR = re.compile(r'''(?i)(\b''' + _SECRET_KEY + r''')(["']?\s*[=:]\s*)(?:"(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&"'}\])]+)''')
_JWT = re.compile(r'\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*')
_EMAIL = re.compile(r"(?<![\w.*+%-])[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
_IPV4 = re.compile(r'(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)')
_IPV6 = re.compile(r'(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])')


def _identifier(text: str, key: bytes | None) -> str:
    return pseudonym(text, key) if key else mask(text)


def _address(match: re.Match[str], key: bytes | None) -> str:
    text = match.group(0)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return text
    return _identifier(text, key)


def scrub(line: str, key: bytes | None = None) -> str:
    """``line`` with secrets masked and e-mail and IP addresses pseudonymised (with ``key``) or masked (without)."""
    line = _AUTHORIZATION.sub(lambda match: match.group(1) + match.group(2) + (match.group(3) + ' ' if match.group(3) else '') + MASK, line)
    line = _BEARER.sub(lambda match: match.group(1) + ' ' + MASK, line)
    line = _JWT.sub(MASK, line)
    line = mask_url_credentials(line)
    line = _SECRET_PAIR.sub(lambda match: match.group(1) + match.group(2) + MASK, line)
    line = _EMAIL.sub(lambda match: _identifier(match.group(0), key), line)
    line = _IPV6.sub(lambda match: _address(match, key), line)
    return _IPV4.sub(lambda match: _address(match, key), line)


__all__ = ['DEFAULT_LINES', 'DEFAULT_MAX_BYTES', 'MAX_BYTES', 'MAX_LINES', 'Tail', 'read_tail', 'scrub', 'settings_errors', 'split_tail']
