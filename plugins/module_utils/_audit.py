# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Tamper-evident audit log: ECS-compatible JSON lines chained with HMAC-SHA256.

The engine knows nothing about Ansible and uses the standard library only, so that it runs on
any managed host and on the controller.

Record format
    One JSON object per line, in canonical form (keys sorted, no spaces, UTF-8). Each record
    carries ``dihya.audit = {"seq": n, "prev": <hex>, "hmac": <hex>}``:

    * ``seq`` counts records from 1 and keeps counting across rotated files;
    * ``prev`` is the SHA-256 (hex) of the previous record's line (without its newline), or 64
      zeros for the first record of a log;
    * ``hmac`` is the HMAC-SHA256, with the chain key, of the canonical form of the record
      without its ``hmac`` field.

Writers
    :meth:`AuditLog.append` takes an exclusive ``flock`` on ``<path>.lock``, finds the last record
    of the file, writes the new records and fsyncs them (after each record, or once per call).
    The log is opened with ``O_NOFOLLOW`` (a symbolic link at the log path is refused) and must
    be a regular file. A writer that waited for the lock while the file was rotated reopens the
    new file.

Rotation
    When a writer finds the log missing or without any record and a rotated predecessor exists
    (``<path>.1``, ``<path>.2``... or logrotate's ``dateext`` names ``<path>-20261125``; each
    possibly compressed with gzip, ``.gz``), it first writes a *checkpoint* record
    (``event.action = audit.checkpoint``) whose ``prev`` is the hash of the predecessor's last
    record and whose ``seq`` follows it. :func:`verify` therefore follows one unbroken chain from
    the oldest rotated file to the live one. Rotated files must stay in the log's directory.
    Use logrotate's ``create`` mode, not ``copytruncate`` (records written between the copy
    and the truncation would be lost without a trace).

Crashes
    A writer killed in the middle of a write may leave an incomplete last line. The next writer
    starts its first record on a new line, chains it to the last *complete* record, and lists
    the incomplete line(s) it found after that record in ``dihya.audit.recovered`` (size and
    SHA-256 of each), under the record's HMAC. :func:`verify` accepts a line that is not valid
    JSON only when it is

    * attested, byte for byte, by the ``recovered`` list of the next record of the same file
      (reported in ``notes`` as ``truncated record (crash)``), or
    * one of the lines after the last record of a file, when each of them looks like what a
      write cut short leaves: the start of a record (``{"`` or just ``{``), possibly followed
      by zero bytes (a block the file system allocated but never wrote), or zero bytes only.
      A crash leaves one such line; a write cut short by a full disk, then another cut short
      in the same way before any record got through, leave one line each (the second writer
      starts on a new line). In the newest file this sets ``truncated_tail``.

    Everything else is tampering: a line that is valid JSON but not a well-formed record, a
    record whose HMAC does not match or that is not in canonical form, a ``prev`` that does not
    match the previous record, a gap in ``seq``, an incomplete line nobody attested before a
    later record, a line at the end of a file that no writer could have left.

    Accepting incomplete lines at the end of a file costs nothing in strength: cutting records
    off the end of a log cannot be detected by a hash chain anyway (see Limits), and a rotated
    file's end is pinned by the checkpoint of the file that follows it.

Paths
    Log paths must be absolute, without NUL bytes and without ``..`` components
    (:func:`check_path`): a relative path depends on the working directory of whoever runs the
    writer, and ``..`` is collapsed by name here while the kernel would resolve it through
    whatever symbolic link precedes it, so the file written and the file reported could differ.

Limits
    A hash chain cannot show that records were removed from its *end* (or whole files from its
    beginning, which is what log retention does). :func:`verify` returns ``last_seq`` and
    ``last_hash``, and ``min_last_seq`` makes it fail when the log ends before a sequence number
    known from elsewhere (for example a previous verification).
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import fcntl
import gzip
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import stat
import time
import typing as t
import zlib


CATEGORIES = ('audit', 'security', 'rgpd', 'ops')
OUTCOMES = ('success', 'failure', 'denied')
FSYNC_MODES = ('always', 'batch')

ZERO_HASH = '0' * 64
CHECKPOINT_ACTION = 'audit.checkpoint'
TRUNCATED_REASON = 'truncated record (crash)'

MIN_KEY_BYTES = 16
# Size limits: a record line written by append(), a line verify() parses, the tail a writer scans.
MAX_RECORD_BYTES = 65536
MAX_LINE_BYTES = 1 << 20
MAX_TAIL_SCAN = 4 << 20
MAX_TEXT_CHARS = 1024
LOCK_TIMEOUT = 60.0

_HEX64 = re.compile(r'[0-9a-f]{64}')
_OPEN_FLAGS = os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0)


class AuditError(Exception):
    """Bad input or unwritable log; message is safe to show (never holds key material)."""


def check_path(value: t.Any, name: str = 'path') -> str:
    """``value`` normalised (``//`` and ``.`` components removed) when it is an absolute path; else AuditError.

    Refused: anything but a non-empty string, a relative path (``x``, ``./x``, a ``~`` nobody
    expanded), a NUL byte, a ``..`` component. The message names the option and shows the value.
    """
    if not isinstance(value, str) or not value:
        raise AuditError(f'{name} must be a non-empty absolute path')
    if '\x00' in value:
        raise AuditError(f'{name} must not contain a NUL byte')
    if not value.startswith('/'):
        raise AuditError(f'{name} must be an absolute path (starting with /), not {value!r}: a relative path depends on the '
                         'working directory of the process that writes')
    if '..' in value.split('/'):
        raise AuditError(f'{name} must not contain a .. component ({value!r}): give the path without it')
    return '/' + os.path.normpath(value).lstrip('/')


@dataclasses.dataclass(frozen=True)
class AuditSettings:
    """How events are built and written.

    ``key`` is the chain key (at least 16 bytes). ``pseudonym_key`` keys the pseudonyms of
    user ids, e-mail addresses and IP addresses; without it, it is derived from ``key``.
    """

    key: bytes
    pseudonym_key: bytes | None = None
    pseudonymise: bool = True
    fsync: str = 'always'
    max_details_bytes: int = 16384

    def __post_init__(self) -> None:
        check_key(self.key)
        if self.pseudonym_key is not None and (not isinstance(self.pseudonym_key, bytes) or not self.pseudonym_key):
            raise AuditError('the pseudonym key must be a non-empty byte string')
        if self.fsync not in FSYNC_MODES:
            raise AuditError(f'unknown fsync mode {self.fsync!r}: expected one of {", ".join(FSYNC_MODES)}')
        if isinstance(self.max_details_bytes, bool) or not isinstance(self.max_details_bytes, int) or self.max_details_bytes < 2:
            raise AuditError('max_details_bytes must be an integer of at least 2')

    def pseudonym_secret(self) -> bytes:
        if self.pseudonym_key is not None:
            return self.pseudonym_key
        return hmac.new(self.key, b'dihya-pseudonym', hashlib.sha256).digest()


def check_key(key: t.Any) -> None:
    """Raise :class:`AuditError` unless ``key`` is usable as a chain key (the message never shows it)."""
    if not isinstance(key, bytes):
        raise AuditError('the audit key must be a byte string')
    if len(key) < MIN_KEY_BYTES:
        raise AuditError(f'the audit key must be at least {MIN_KEY_BYTES} bytes long')


def canonical(document: t.Any) -> str:
    """The canonical JSON form: sorted keys, no spaces, UTF-8 text, no NaN."""
    return json.dumps(document, sort_keys=True, separators=(',', ':'), ensure_ascii=False, allow_nan=False)


def new_trace_id() -> str:
    """A random W3C trace id: 32 lowercase hex digits, never all zeros."""
    while True:
        value = secrets.token_hex(16)
        if value != '0' * 32:
            return value


def pseudonym(value: str, settings: AuditSettings) -> str:
    """``hmac:`` followed by the HMAC-SHA256 (hex) of ``value``: stable for a key, not reversible without it."""
    if not isinstance(value, str):
        raise AuditError(f'a pseudonymised value must be a string, not {type(value).__name__}')
    return 'hmac:' + hmac.new(settings.pseudonym_secret(), value.encode('utf-8', 'surrogatepass'), hashlib.sha256).hexdigest()


def format_timestamp(timestamp: datetime.datetime | None = None) -> str:
    """``2026-11-25T20:31:02.123456Z``: UTC, microseconds. A naive time stamp is taken as UTC."""
    if timestamp is None:
        timestamp = datetime.datetime.now(datetime.timezone.utc)
    elif not isinstance(timestamp, datetime.datetime):
        raise AuditError(f'timestamp must be a datetime, not {type(timestamp).__name__}')
    elif timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=datetime.timezone.utc)
    return timestamp.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def _text(name: str, value: t.Any, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise AuditError(f'{name} must be a non-empty string')
    if len(value) > MAX_TEXT_CHARS:
        raise AuditError(f'{name} is longer than {MAX_TEXT_CHARS} characters')
    return value


def _json_copy(name: str, value: t.Any) -> t.Any:
    """A normalised copy (what a reader gets back from the JSON text); AuditError if not serialisable."""
    try:
        # Not sorted first: keys of mixed types (7 and 'x') are fine once they are all text.
        return json.loads(json.dumps(value, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise AuditError(f'{name} are not JSON-serialisable: {exc}') from None
    except RecursionError:
        raise AuditError(f'{name} are nested too deeply') from None


def _labels(labels: t.Any) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise AuditError(f'labels must be a mapping, not {type(labels).__name__}')
    result = {}
    for name, value in labels.items():
        if not isinstance(name, str) or not name:
            raise AuditError('label names must be non-empty strings')
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        elif isinstance(value, (int, float)):
            value = str(value)
        elif not isinstance(value, str):
            raise AuditError(f'label {name!r} must be a string, a number or a boolean, not {type(value).__name__}')
        result[name] = value
    return result


def build_event(*, action: str, category: str, outcome: str, settings: AuditSettings,
                user: str | None = None, tenant: str | None = None, trace_id: str | None = None,
                correlation_id: str | None = None, route: str | None = None, host: str | None = None,
                email: str | None = None, source_ip: str | None = None,
                labels: dict[str, str] | None = None, details: dict | None = None,
                timestamp: datetime.datetime | None = None) -> dict:
    """An ECS-compatible event document, ready for :meth:`AuditLog.append`.

    ``user``, ``email`` and ``source_ip`` are replaced by :func:`pseudonym` unless
    ``settings.pseudonymise`` is false. A missing ``trace_id`` gets a new one; a missing
    ``host`` is this machine's host name.
    """
    _text('action', action, required=True)
    if category not in CATEGORIES:
        raise AuditError(f'unknown category {category!r}: expected one of {", ".join(CATEGORIES)}')
    if outcome not in OUTCOMES:
        raise AuditError(f'unknown outcome {outcome!r}: expected one of {", ".join(OUTCOMES)}')
    if details is not None and not isinstance(details, dict):
        raise AuditError(f'details must be a mapping, not {type(details).__name__}')
    clean_labels = _labels(labels)
    extra = _json_copy('labels and details', {'labels': clean_labels, 'details': details or {}})
    size = len(canonical(extra).encode('utf-8', 'surrogatepass'))
    if size > settings.max_details_bytes:
        raise AuditError(f'labels and details take {size} bytes, more than the limit of {settings.max_details_bytes} bytes')

    def personal(name: str, value: t.Any) -> str | None:
        text = _text(name, value)
        if text is None or not settings.pseudonymise:
            return text
        return pseudonym(text, settings)

    event: dict[str, t.Any] = {
        '@timestamp': format_timestamp(timestamp),
        'event': {'action': action, 'category': category, 'outcome': outcome, 'kind': 'event'},
        'trace': {'id': _text('trace_id', trace_id) or new_trace_id()},
        'host': {'name': _text('host', host) or socket.gethostname()},
    }
    user_doc = {}
    if user is not None:
        user_doc['id'] = personal('user', user)
    if email is not None:
        user_doc['email'] = personal('email', email)
    if user_doc:
        event['user'] = user_doc
    if tenant is not None:
        event['organization'] = {'id': _text('tenant', tenant)}
    if route is not None:
        event['url'] = {'path': _text('route', route)}
    if source_ip is not None:
        event['source'] = {'ip': personal('source_ip', source_ip)}
    if extra['labels']:
        event['labels'] = extra['labels']
    dihya: dict[str, t.Any] = {}
    if correlation_id is not None:
        dihya['correlation_id'] = _text('correlation_id', correlation_id)
    if extra['details']:
        dihya['details'] = extra['details']
    if dihya:
        event['dihya'] = dihya
    try:
        canonical(event).encode('utf-8')
    except UnicodeEncodeError:
        raise AuditError('the event holds text that is not valid Unicode (lone surrogates)') from None
    return event


# ---------------------------------------------------------------------------
# Reading lines and records
# ---------------------------------------------------------------------------

def line_hash(line: bytes) -> str:
    """The chain hash of a record line (without its newline)."""
    return hashlib.sha256(line).hexdigest()


def _audit_block(document: t.Any) -> dict | None:
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


def record_of(line: bytes) -> tuple[dict, dict] | None:
    """``(record, audit block)`` when the line is a well-formed record (HMAC not checked), else None."""
    try:
        document = parse_line(line)
    except (ValueError, RecursionError):
        return None
    audit = _audit_block(document)
    return None if audit is None else (document, audit)


def record_mac(record: dict, key: bytes) -> str:
    """HMAC-SHA256 (hex) of the canonical form of ``record`` without ``dihya.audit.hmac``."""
    audit = record['dihya']['audit']
    body = dict(record, dihya=dict(record['dihya'], audit={name: value for name, value in audit.items() if name != 'hmac'}))
    return hmac.new(key, canonical(body).encode('utf-8'), hashlib.sha256).hexdigest()


def _line_mac_matches(line: bytes, mac: str, key: bytes) -> bool:
    """Whether the HMAC of the line's own bytes, without its ``"hmac":"...",`` member, is ``mac``.

    Only the writer's canonical bytes can match: this proves both the HMAC and the canonical form
    without serialising the record again. When it does not match, the caller finds out why.
    """
    member = b'"audit":{"hmac":"' + mac.encode('ascii') + b'",'
    if line.count(member) != 1:
        return False
    return hmac.compare_digest(hmac.new(key, line.replace(member, b'"audit":{', 1), hashlib.sha256).hexdigest(), mac)


@dataclasses.dataclass
class _Line:
    number: int
    data: bytes | None          # None when longer than MAX_LINE_BYTES
    size: int
    sha256: str
    newline: bool


def _read_lines(handle: t.BinaryIO) -> t.Iterator[_Line]:
    number = 0
    while True:
        chunk = handle.readline(MAX_LINE_BYTES + 1)
        if not chunk:
            return
        number += 1
        if chunk.endswith(b'\n'):
            data = chunk[:-1]
            yield _Line(number, data, len(data), line_hash(data), True)
            continue
        if len(chunk) <= MAX_LINE_BYTES:
            yield _Line(number, chunk, len(chunk), line_hash(chunk), False)
            return
        # An overlong line: hash it piece by piece, never hold it.
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
        yield _Line(number, None, size, digest.hexdigest(), newline)
        if not newline:
            return


# ---------------------------------------------------------------------------
# Files: opening safely, rotated predecessors
# ---------------------------------------------------------------------------

def _open_regular(path: str, flags: int, mode: int = 0o600) -> int:
    """Open ``path`` without following a symbolic link at it; refuse anything but a regular file."""
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
    keyed = []
    for entry in entries:
        match_numbered, match_dated = numbered.fullmatch(entry), dated.fullmatch(entry)
        match = match_numbered or match_dated
        if match is None or (match.group(2) and entry[:-3] in present):
            continue
        if match_numbered:
            key = (1, -int(match.group(1)))
        else:
            key = (0, *(int(part) for part in match.group(1).split('-')))
        keyed.append((key, entry))
    keyed.sort()
    return [os.path.join(directory, entry) for dummy, entry in keyed]


class _Opened:
    """A binary reader over a plain or gzip-compressed file opened with O_NOFOLLOW."""

    def __init__(self, path: str) -> None:
        fd = _open_regular(path, os.O_RDONLY)
        self.raw = os.fdopen(fd, 'rb')
        self.handle: t.BinaryIO = self.raw
        if path.endswith('.gz'):
            self.handle = t.cast(t.BinaryIO, gzip.GzipFile(fileobj=self.raw, mode='rb'))

    def close(self) -> None:
        if self.handle is not self.raw:
            self.handle.close()
        self.raw.close()


_READ_ERRORS = (OSError, EOFError, zlib.error)


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class _Anchor:
    """Where the next record chains to."""

    seq: int
    hash: str
    source: str | None = None           # predecessor file when the next record must be a checkpoint
    fragments: list[dict] = dataclasses.field(default_factory=list)
    needs_newline: bool = False


def _tail_of_fd(fd: int, size: int) -> tuple[tuple[int, str] | None, list[dict]]:
    """Scan a file backwards: ``((seq, hash) of its last record or None, fragments after it, oldest first)``.

    Fragments are the lines after the last record (the last one possibly without a newline).
    """
    fragments: list[dict] = []
    if size == 0:
        return None, fragments
    end = size - 1 if os.pread(fd, 1, size - 1) == b'\n' else size
    pos, buffer, step = end, b'', 8192
    while True:
        read = min(step, pos)
        pos -= read
        buffer = os.pread(fd, read, pos) + buffer
        pieces = buffer.split(b'\n')
        # The first piece may be the end of a line that starts before pos.
        first_complete = 1 if pos > 0 else 0
        while len(pieces) > first_complete:
            piece = pieces.pop()
            found = record_of(piece)
            if found is not None:
                return (found[1]['seq'], line_hash(piece)), fragments
            fragments.insert(0, {'bytes': len(piece), 'sha256': line_hash(piece)})
        if pos == 0:
            return None, fragments
        if end - pos >= MAX_TAIL_SCAN:
            raise AuditError(f'no audit record in the last {MAX_TAIL_SCAN} bytes of the log; verify it with dihya.ops.audit_verify')
        buffer = pieces[0]
        step = min(step * 4, 1 << 20, MAX_TAIL_SCAN - (end - pos))


def _tail_of_file(path: str) -> tuple[int, str] | None:
    """The ``(seq, hash)`` of the last record of a (possibly compressed) rotated file, or None."""
    if not path.endswith('.gz'):
        try:
            fd = _open_regular(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return _tail_of_fd(fd, os.fstat(fd).st_size)[0]
        finally:
            os.close(fd)
    last = None
    try:
        opened = _Opened(path)
    except FileNotFoundError:
        return None
    try:
        for line in _read_lines(opened.handle):
            if line.data is not None:
                found = record_of(line.data)
                if found is not None:
                    last = (found[1]['seq'], line.sha256)
    except _READ_ERRORS as exc:
        raise AuditError(f'cannot read the rotated file {path}: {exc}') from None
    finally:
        opened.close()
    return last


_TOKEN = secrets.token_hex(16)
_MARKER = canonical({'prev': _TOKEN, 'seq': 0}).encode('ascii')


@dataclasses.dataclass
class _Prepared:
    """An event and its canonical text before and after its ``dihya.audit`` block."""

    event: dict
    head: bytes
    tail: bytes

    @classmethod
    def of(cls, event: dict) -> _Prepared:
        dihya = dict(event.get('dihya', {}))
        dihya['audit'] = {'prev': _TOKEN, 'seq': 0}
        text = canonical(dict(event, dihya=dihya)).encode('utf-8')
        head, dummy, tail = text.partition(_MARKER)
        if _MARKER in tail:  # pragma: no cover - the token is random
            raise AuditError('cannot place the audit block in the event')
        return cls(event, head, tail)


class AuditLog:
    """Append records to one audit log file; safe for many concurrent processes and threads."""

    def __init__(self, path: str, settings: AuditSettings, mode: int = 0o600) -> None:
        self.path = check_path(path, 'the audit log path')
        if not isinstance(settings, AuditSettings):
            raise AuditError('settings must be an AuditSettings')
        self.settings = settings
        self.mode = mode
        self.lock_timeout = LOCK_TIMEOUT
        # (st_dev, st_ino, size, seq, hash) right after this object's last write: when the file is still
        # exactly so under the lock, nobody wrote since and the tail need not be read again.
        self._cache: tuple[int, int, int, int, str] | None = None

    # -- public -------------------------------------------------------------------------------

    def append(self, events: t.Sequence[dict]) -> list[dict]:
        """Write ``events`` as chained records, in order; return the records as written.

        Nothing is written when an event is unusable. After a rotation the first record written is
        a checkpoint linking the new file to the rotated one; it is not among the returned records.
        """
        prepared = [self._prepare(event) for event in events]
        if not prepared:
            return []
        return self._write(prepared, checkpoint_only=False)

    def rotate_checkpoint(self) -> None:
        """After a rotation, start the new file with a checkpoint record (no-op if it already has records)."""
        self._write([], checkpoint_only=True)

    # -- internals ----------------------------------------------------------------------------

    def _prepare(self, event: t.Any) -> _Prepared:
        if not isinstance(event, dict):
            raise AuditError(f'an audit event must be a mapping, not {type(event).__name__}')
        copy = _json_copy('audit events', event)
        dihya = copy.get('dihya', {})
        if not isinstance(dihya, dict):
            raise AuditError('the dihya field of an audit event must be a mapping')
        if 'audit' in dihya:
            raise AuditError('an audit event must not carry dihya.audit: the log adds it')
        try:
            prepared = _Prepared.of(copy)
        except UnicodeEncodeError:
            raise AuditError('the event holds text that is not valid Unicode (lone surrogates)') from None
        size = len(prepared.head) + len(prepared.tail)
        if size > MAX_RECORD_BYTES - 1024:
            raise AuditError(f'an audit event takes {size} bytes, more than the limit of {MAX_RECORD_BYTES - 1024} bytes')
        return prepared

    def _lock(self) -> int:
        lock_path = self.path + '.lock'
        try:
            fd = _open_regular(lock_path, os.O_RDWR | os.O_CREAT, self.mode)
        except FileNotFoundError:
            raise AuditError(f'cannot create the lock file {lock_path}: its directory does not exist') from None
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.0002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise AuditError(f'cannot lock {lock_path}: {exc.strerror}') from None
            if time.monotonic() > deadline:
                os.close(fd)
                raise AuditError(f'timed out after {self.lock_timeout:.0f} s waiting for the lock {lock_path}')
            time.sleep(pause)
            pause = min(pause * 2, 0.002)

    def _open_log(self) -> tuple[int, bool]:
        """Open the live file for appending, creating it if needed; ``(fd, created)``."""
        try:
            return _open_regular(self.path, os.O_RDWR | os.O_APPEND), False
        except FileNotFoundError:
            pass
        try:
            return _open_regular(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, self.mode), True
        except FileNotFoundError:
            raise AuditError(f'cannot create {self.path}: its directory does not exist') from None
        except FileExistsError:
            return _open_regular(self.path, os.O_RDWR | os.O_APPEND), False

    def _open_current(self) -> tuple[int, bool]:
        """Open the live file under the lock, reopening it if it was rotated meanwhile."""
        for dummy in range(10):
            fd, created = self._open_log()
            try:
                info = os.stat(self.path, follow_symlinks=False)
            except FileNotFoundError:
                os.close(fd)
                continue
            mine = os.fstat(fd)
            if (info.st_dev, info.st_ino) == (mine.st_dev, mine.st_ino):
                return fd, created
            os.close(fd)
        raise AuditError(f'{self.path} keeps being replaced while it is opened')

    def _anchor(self, fd: int) -> _Anchor:
        info = os.fstat(fd)
        size = info.st_size
        if self._cache is not None and self._cache[:3] == (info.st_dev, info.st_ino, size):
            return _Anchor(seq=self._cache[3], hash=self._cache[4])
        last, fragments = _tail_of_fd(fd, size)
        needs_newline = size > 0 and os.pread(fd, 1, size - 1) != b'\n'
        if last is not None:
            return _Anchor(seq=last[0], hash=last[1], fragments=fragments, needs_newline=needs_newline)
        for previous in reversed(rotated_files(self.path)):
            found = _tail_of_file(previous)
            if found is not None:
                return _Anchor(seq=found[0], hash=found[1], source=os.path.basename(previous),
                               fragments=fragments, needs_newline=needs_newline)
        return _Anchor(seq=0, hash=ZERO_HASH, fragments=fragments, needs_newline=needs_newline)

    def _checkpoint(self, anchor: _Anchor) -> dict:
        event = build_event(action=CHECKPOINT_ACTION, category='audit', outcome='success', settings=self.settings)
        event['dihya'] = {'checkpoint': {'file': anchor.source, 'seq': anchor.seq, 'hash': anchor.hash}}
        return event

    def _seal(self, event: dict | _Prepared, seq: int, prev: str, recovered: list[dict]) -> tuple[dict, bytes]:
        """The record and its line. The canonical text around ``dihya.audit`` was made outside the lock."""
        prepared = event if isinstance(event, _Prepared) else _Prepared.of(event)
        audit: dict[str, t.Any] = {'prev': prev, 'seq': seq}
        if recovered:
            audit['recovered'] = recovered
        block = canonical(audit).encode('utf-8')
        mac = hmac.new(self.settings.key, prepared.head + block + prepared.tail, hashlib.sha256).hexdigest()
        # Keys are sorted: "hmac" comes first in the block.
        line = b''.join((prepared.head, b'{"hmac":"', mac.encode('ascii'), b'",', block[1:], prepared.tail))
        audit['hmac'] = mac
        document = prepared.event
        return dict(document, dihya=dict(document.get('dihya', {}), audit=audit)), line

    def _write(self, prepared: list[_Prepared], checkpoint_only: bool) -> list[dict]:
        if os.path.islink(self.path):
            raise AuditError(f'refusing to open {self.path}: it is a symbolic link')
        lock_fd = self._lock()
        try:
            fd, created = self._open_current()
            try:
                if created:
                    _fsync_directory(os.path.dirname(self.path))
                anchor = self._anchor(fd)
                events = list(prepared)
                if anchor.source is not None:
                    events.insert(0, _Prepared.of(self._checkpoint(anchor)))
                elif checkpoint_only:
                    return []
                seq, prev = anchor.seq, anchor.hash
                written, lines = [], []
                for index, event in enumerate(events):
                    seq += 1
                    record, line = self._seal(event, seq, prev, anchor.fragments if index == 0 else [])
                    prev = line_hash(line)
                    written.append(record)
                    lines.append(line + b'\n')
                if anchor.needs_newline:
                    lines[0] = b'\n' + lines[0]
                if self.settings.fsync == 'always':
                    for line in lines:
                        _write_all(fd, line)
                        os.fsync(fd)
                else:
                    _write_all(fd, b''.join(lines))
                    os.fsync(fd)
                info = os.fstat(fd)
                self._cache = (info.st_dev, info.st_ino, info.st_size, seq, prev)
            except OSError as exc:
                self._cache = None
                raise AuditError(f'cannot write to {self.path}: {exc.strerror}') from None
            except BaseException:
                self._cache = None
                raise
            finally:
                os.close(fd)
        finally:
            os.close(lock_fd)
        if anchor.source is not None:
            written.pop(0)
        return written


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        count = os.write(fd, view)
        view = view[count:]


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory or '.', os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# Verifying
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class VerifyReport:
    """Result of :func:`verify`. ``error`` is the first bad line: ``{"file", "line", "reason"}``."""

    ok: bool
    records: int
    files: list[str]
    last_seq: int | None
    last_hash: str | None
    truncated_tail: bool
    error: dict | None
    first_seq: int | None = None
    notes: list[dict] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Failed(Exception):
    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(reason)
        self.where = {'file': path, 'line': line, 'reason': reason}


def _cut_short(line: _Line) -> bool:
    """Whether an unparsable line is what a write cut short leaves: the start of a record, then maybe zero bytes.

    A writer starts every record at the beginning of a line with ``{"``; a cut write leaves a
    prefix of it (``{`` alone when one byte got through), and a file system may leave a block
    of zero bytes where data was allocated but not written.
    """
    data = line.data
    if data is None or not data or line.size >= MAX_RECORD_BYTES:
        return False
    text = data.rstrip(b'\x00')
    return not text or text == b'{' or text.startswith(b'{"')


class _Verifier:
    def __init__(self, key: bytes) -> None:
        self.key = key
        self.records = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.last_hash: str | None = None
        self.last_where: tuple[str, int] | None = None
        self.truncated_tail = False
        self.notes: list[dict] = []

    def file(self, path: str, handle: t.BinaryIO, newest: bool) -> int:
        """Verify one file; return its number of lines."""
        pending: list[_Line] = []
        number = 0
        for line in _read_lines(handle):
            number = line.number
            document = None
            if line.data is not None:
                try:
                    document = parse_line(line.data)
                except (ValueError, RecursionError):
                    document = None
                else:
                    if _audit_block(document) is None:
                        raise _Failed(path, line.number, 'not an audit record (valid JSON without a well-formed dihya.audit block)')
            if document is None:
                pending.append(line)
                continue
            self.record(path, line, line.data or b'', document, pending)
            pending = []
        if pending:
            # Lines after the last record: writes cut short (a crash, a full disk), none recovered yet.
            for item in pending:
                if not _cut_short(item):
                    raise _Failed(path, item.number, 'not a valid audit record (incomplete or altered line)')
            for item in pending:
                where = 'last line of the file' if item is pending[-1] else 'line after the last record'
                self.notes.append({'file': path, 'line': item.number, 'reason': f'{TRUNCATED_REASON}: {where} is incomplete'})
            if newest:
                self.truncated_tail = True
        return number

    def record(self, path: str, line: _Line, data: bytes, document: dict, pending: list[_Line]) -> None:
        audit = document['dihya']['audit']
        if not _line_mac_matches(data, audit['hmac'], self.key):
            try:
                in_form = canonical(document).encode('utf-8') == data
            except (ValueError, UnicodeEncodeError):
                in_form = False
            if not in_form:
                raise _Failed(path, line.number, 'record is not in canonical form (altered)')
            if not hmac.compare_digest(record_mac(document, self.key), audit['hmac']):
                raise _Failed(path, line.number, 'HMAC mismatch: record altered, or written with another key')
        recovered = audit.get('recovered') or []
        if [(item.size, item.sha256) for item in pending] != [(item['bytes'], item['sha256']) for item in recovered]:
            if pending:
                raise _Failed(path, pending[0].number, 'not a valid audit record (incomplete or altered line)')
            raise _Failed(path, line.number, 'the record attests incomplete lines that are not in the file before it')
        if self.last_hash is None:
            is_checkpoint = isinstance(document.get('event'), dict) and document['event'].get('action') == CHECKPOINT_ACTION
            if not is_checkpoint and (audit['seq'] != 1 or audit['prev'] != ZERO_HASH):
                raise _Failed(path, line.number, f'the chain starts at seq {audit["seq"]} with neither the first record of the log nor a rotation checkpoint')
            self.first_seq = audit['seq']
        else:
            if audit['prev'] != self.last_hash:
                where = self.last_where or (path, 0)
                raise _Failed(path, line.number, f'chain broken: prev is not the hash of the previous record ({where[0]} line {where[1]})')
            if audit['seq'] != self.last_seq + 1:
                raise _Failed(path, line.number, f'sequence gap: expected seq {self.last_seq + 1}, found {audit["seq"]}')
        for item in pending:
            self.notes.append({'file': path, 'line': item.number, 'reason': f'{TRUNCATED_REASON}: recovered by the record at line {line.number}'})
        self.records += 1
        self.last_seq, self.last_hash, self.last_where = audit['seq'], line.sha256, (path, line.number)


def verify(path: str, key: bytes, include_rotated: bool = True, min_last_seq: int | None = None) -> VerifyReport:
    """Verify the chain of ``path`` (and, by default, of its rotated predecessors, oldest first).

    Reads only. Stops at the first bad line. See the module documentation for what counts as a
    crash rather than tampering. Raises :class:`AuditError` when there is nothing to verify or
    a file cannot be opened (symbolic link, not a regular file, permissions).
    """
    check_key(key)
    path = check_path(path, 'the audit log path')
    files = rotated_files(path) if include_rotated else []
    if os.path.lexists(path) or not files:
        files.append(path)
    verifier = _Verifier(key)
    error = None
    lines = 0
    for index, name in enumerate(files):
        try:
            opened = _Opened(name)
        except FileNotFoundError:
            if name == path and not files[:-1]:
                raise AuditError(f'{path} does not exist') from None
            continue  # rotated away meanwhile
        try:
            lines = verifier.file(name, opened.handle, newest=index == len(files) - 1)
        except _Failed as exc:
            error = exc.where
            break
        except _READ_ERRORS as exc:
            error = {'file': name, 'line': lines + 1, 'reason': f'cannot read the file: {exc}'}
            break
        finally:
            opened.close()
    if error is None and min_last_seq is not None and (verifier.last_seq is None or verifier.last_seq < min_last_seq):
        tail = [item for item in verifier.notes if item['file'] == files[-1]]
        line = tail[-1]['line'] if verifier.truncated_tail and tail else lines + 1
        error = {'file': files[-1], 'line': line,
                 'reason': f'the log ends at seq {verifier.last_seq}, before the expected seq {min_last_seq}: records are missing at its end'}
    return VerifyReport(
        ok=error is None, records=verifier.records, files=files, last_seq=verifier.last_seq, last_hash=verifier.last_hash,
        truncated_tail=verifier.truncated_tail, error=error, first_seq=verifier.first_seq, notes=verifier.notes,
    )
