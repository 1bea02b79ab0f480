# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The audit record on disk: reading a log's lines, recognising and authenticating records, opening log files.

Record format
    One JSON object per line, in canonical form (keys sorted, no spaces, UTF-8). Each record
    carries ``dihya.audit = {"seq": n, "prev": <hex>, "hmac": <hex>}``:

    * ``seq`` counts records from 1 and keeps counting across rotated files;
    * ``prev`` is the SHA-256 (hex) of the previous record's line (without its newline), or 64
      zeros for the first record of a log;
    * ``hmac`` is the HMAC-SHA256, with the chain key, of the canonical form of the record
      without its ``hmac`` field;
    * ``recovered`` (optional) lists the size and SHA-256 of incomplete lines a crashed writer
      left before the record (see ``_audit_log``).

Files
    Log files are opened with ``O_NOFOLLOW`` (a symbolic link at the path is refused) and must be
    regular files. Rotated predecessors (``<path>.1``, ``<path>-20261125``, possibly ``.gz``) are
    found in the log's directory by :func:`rotated_files`.

Both the writer (``_audit_log``) and the verifier (``_audit_verify``) read files through here.
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import hashlib
import hmac
import json
import os
import re
import stat
import typing as t
import zlib

from ansible_collections.dihya.ops.plugins.module_utils._audit_event import AuditError
from ansible_collections.dihya.ops.plugins.module_utils._canonical import canonical


ZERO_HASH = '0' * 64
CHECKPOINT_ACTION = 'audit.checkpoint'

# Size limits: a record line written by the writer, a line the verifier parses.
MAX_RECORD_BYTES = 65536
MAX_LINE_BYTES = 1 << 20

_HEX64 = re.compile(r'[0-9a-f]{64}')
_OPEN_FLAGS = os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0)
# What reading a plain or compressed log file may raise.
READ_ERRORS = (OSError, EOFError, zlib.error)


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------

def line_hash(line: bytes) -> str:
    """The chain hash of a record line (without its newline)."""
    return hashlib.sha256(line).hexdigest()


def audit_block(document: t.Any) -> dict[str, t.Any] | None:
    """``dihya.audit`` of a well-formed record, else None."""
    if not isinstance(document, dict):
        return None
    dihya = document.get('dihya')
    audit = dihya.get('audit') if isinstance(dihya, dict) else None
    if not isinstance(audit, dict):
        return None
    seq, prev, mac = audit.get('seq'), audit.get('prev'), audit.get('hmac')
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        return None
    if not isinstance(prev, str) or not _HEX64.fullmatch(prev) or not isinstance(mac, str) or not _HEX64.fullmatch(mac):
        return None
    recovered = audit.get('recovered')
    if recovered is not None and not (isinstance(recovered, list) and all(_fragment_entry(item) for item in recovered)):
        return None
    return audit


def _fragment_entry(item: t.Any) -> bool:
    return (isinstance(item, dict) and set(item) == {'bytes', 'sha256'} and isinstance(item['bytes'], int)
            and not isinstance(item['bytes'], bool) and isinstance(item['sha256'], str) and bool(_HEX64.fullmatch(item['sha256'])))


def _reject_constant(name: str) -> t.NoReturn:
    raise ValueError(f'{name} is not valid JSON')


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_line(line: bytes) -> t.Any:
    """The JSON value of a line; raises ValueError when it is not valid UTF-8 JSON."""
    return _DECODER.decode(line.decode('utf-8'))


def record_of(line: bytes) -> tuple[dict[str, t.Any], dict[str, t.Any]] | None:
    """``(record, audit block)`` when the line is a well-formed record (HMAC not checked), else None."""
    try:
        document = parse_line(line)
    except (ValueError, RecursionError):
        return None
    audit = audit_block(document)
    return None if audit is None else (document, audit)


def record_mac(record: dict[str, t.Any], key: bytes) -> str:
    """HMAC-SHA256 (hex) of the canonical form of ``record`` without ``dihya.audit.hmac``."""
    audit = record['dihya']['audit']
    body = dict(record, dihya=dict(record['dihya'], audit={name: value for name, value in audit.items() if name != 'hmac'}))
    return hmac.new(key, canonical(body).encode('utf-8'), hashlib.sha256).hexdigest()


def line_mac_matches(line: bytes, mac: str, key: bytes) -> bool:
    """Whether the HMAC of the line's own bytes, without its ``"hmac":"...",`` member, is ``mac``.

    Only the writer's canonical bytes can match: this proves both the HMAC and the canonical form
    without serialising the record again. When it does not match, the caller finds out why.
    """
    member = b'"audit":{"hmac":"' + mac.encode('ascii') + b'",'
    if line.count(member) != 1:
        return False
    return hmac.compare_digest(hmac.new(key, line.replace(member, b'"audit":{', 1), hashlib.sha256).hexdigest(), mac)


# ---------------------------------------------------------------------------
# Lines
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class Line:
    """One line of a log file, without its newline."""

    number: int
    data: bytes | None          # None when longer than MAX_LINE_BYTES
    size: int
    sha256: str
    newline: bool


def read_lines(handle: t.BinaryIO) -> t.Iterator[Line]:
    """The lines of ``handle``; an overlong line is hashed piece by piece, never held."""
    number = 0
    while True:
        chunk = handle.readline(MAX_LINE_BYTES + 1)
        if not chunk:
            return
        number += 1
        if chunk.endswith(b'\n'):
            data = chunk[:-1]
            yield Line(number, data, len(data), line_hash(data), True)
            continue
        if len(chunk) <= MAX_LINE_BYTES:
            yield Line(number, chunk, len(chunk), line_hash(chunk), False)
            return
        digest, size, newline = hashlib.sha256(chunk), len(chunk), False
        while True:
            chunk = handle.readline(MAX_LINE_BYTES)
            if not chunk:
                break
            if chunk.endswith(b'\n'):
                chunk, newline = chunk[:-1], True
            digest.update(chunk)
            size += len(chunk)
            if newline:
                break
        yield Line(number, None, size, digest.hexdigest(), newline)
        if not newline:
            return


# ---------------------------------------------------------------------------
# Files: opening safely, rotated predecessors
# ---------------------------------------------------------------------------

def open_regular(path: str, flags: int, mode: int = 0o600) -> int:
    """Open ``path`` without following a symbolic link at it; refuse anything but a regular file.

    ``FileNotFoundError`` and ``FileExistsError`` pass through (callers decide); any other problem is an AuditError.
    """
    try:
        fd = os.open(path, flags | _OPEN_FLAGS | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AuditError(f'refusing to open {path}: it is a symbolic link') from None
        if exc.errno in (errno.ENOENT, errno.EEXIST):
            raise
        raise AuditError(f'cannot open {path}: {exc.strerror}') from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AuditError(f'refusing to use {path}: it is not a regular file')
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def rotated_files(path: str) -> list[str]:
    """Rotated predecessors of ``path`` in its directory, oldest first.

    logrotate's ``dateext`` names (``<name>-20261125``, ``<name>-2026112512``,
    ``<name>-20261125-1764100000``), ordered by their date, come before numbered names
    (``<name>.3``, ``<name>.2``, ``<name>.1``); either may end in ``.gz``. When both a file and
    its ``.gz`` exist (compression in progress), the uncompressed one is used.
    """
    directory, name = os.path.split(os.path.abspath(path))
    numbered = re.compile(re.escape(name) + r'\.([0-9]+)(\.gz)?')
    dated = re.compile(re.escape(name) + r'-([0-9]+(?:-[0-9]+)*)(\.gz)?')
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    present = set(entries)
    keyed: list[tuple[tuple[int, ...], str]] = []
    for entry in entries:
        match_numbered, match_dated = numbered.fullmatch(entry), dated.fullmatch(entry)
        match = match_numbered or match_dated
        if match is None or (match.group(2) and entry[:-3] in present):
            continue
        key: tuple[int, ...] = (1, -int(match.group(1))) if match_numbered else (0, *(int(part) for part in match.group(1).split('-')))
        keyed.append((key, entry))
    keyed.sort()
    return [os.path.join(directory, entry) for dummy, entry in keyed]


class Opened:
    """A binary reader over a plain or gzip-compressed file opened with O_NOFOLLOW."""

    def __init__(self, path: str) -> None:
        fd = open_regular(path, os.O_RDONLY)
        self.raw = os.fdopen(fd, 'rb')
        self.handle: t.BinaryIO = self.raw
        if path.endswith('.gz'):
            self.handle = t.cast(t.BinaryIO, gzip.GzipFile(fileobj=self.raw, mode='rb'))

    def close(self) -> None:
        if self.handle is not self.raw:
            self.handle.close()
        self.raw.close()
