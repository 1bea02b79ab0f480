# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""RGPD operations on one data subject: inventory, export, anonymise, erase, consent, and replay of erasures.

The engine knows nothing about Ansible. A caller opens a database (``_rgpd_db.open_database``), loads a data
map (``_rgpd_map.load_data_map``) and builds an :class:`Engine`; the constructor checks every mapped table and
column against the live schema before any row is read, and raises :class:`RgpdError` listing all problems.

Every query is scoped to one tenant: a row is the subject's only when it points at the subject (directly,
through the subject row, or through a join path) *and* belongs to the requested tenant. Values are always
bound parameters; identifiers come from the validated data map and are quoted by the adapter.

Each operation returns a plain dict (see ``docs/rgpd.md``). In check mode every operation counts what it would
read or change and changes nothing.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime
import fcntl
import hashlib
import hmac
import io
import ipaddress
import json
import os
import queue
import re
import secrets
import stat
import threading
import typing as t
import uuid
import zipfile

from ansible_collections.dihya.ops.plugins.module_utils._rgpd_db import Database, DbError, TableInfo, optional_library, quote
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import IDENTIFIER, TEXT_STRATEGIES, ConsentMap, DataMap, Side, TableMap
from ansible_collections.dihya.ops.plugins.module_utils._safe_write import (
    UnsafeDestination, append_open, atomic_write, check_destination, open_dir,
)


OPERATIONS = ('inventory', 'export', 'anonymise', 'erase', 'consent', 'replay')
CONSENT_ACTIONS = ('grant', 'withdraw', 'status')

LEDGER_TABLE = 'dihya_rgpd_erasure_ledger'
LEDGER_DDL = (
    'CREATE TABLE IF NOT EXISTS {table} ('
    'entry_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, subject TEXT NOT NULL, data_map_version TEXT NOT NULL, '
    'erased_at TEXT NOT NULL, trace_id TEXT NOT NULL, counts TEXT NOT NULL, replay_of TEXT, fingerprint TEXT, fingerprint_columns TEXT)'
)
# Columns added to the in-database ledger table since its first version (added to an older table when missing).
LEDGER_ADDED_COLUMNS = ('fingerprint', 'fingerprint_columns')
# The subject row's fingerprint, when the data map names no fingerprint_columns: the first of these the table has.
DEFAULT_FINGERPRINT_COLUMNS = ('created_at', 'created', 'date_joined', 'inserted_at', 'registered_at', 'signup_at', 'created_on')
FINGERPRINT_CONTEXT = b'dihya-rgpd-fingerprint/1\x00'
# What replay says of each ledger entry.
REPLAY_ERASED, REPLAY_WOULD_ERASE, REPLAY_ABSENT, REPLAY_MISMATCH, REPLAY_UNVERIFIED = 'erased', 'would_erase', 'absent', 'mismatch', 'unverified'
# Export: the rows fetched at once are bounded by this many bytes of row text (and never more than the adapter's batch);
# the prefetch queue holds at most this many bytes too.
EXPORT_BATCH_BYTES = 4 * 1024 * 1024
# The first fetch of a table takes one row: its size sets the next fetches (a first batch of big rows would be big).
EXPORT_FIRST_BATCH = 1
ARCHIVE_FORMAT = 'dihya-rgpd-export/1'
# Encrypted archive: MAGIC, a 12-byte nonce, the AES-256-GCM ciphertext of the zip file, the 16-byte tag.
ENCRYPTION_MAGIC = b'DIHYA-RGPD-AESGCM-1\n'
NONCE_SIZE = 12
TAG_SIZE = 16
TEMP_MARKER = '.rgpd-tmp-'
REDACTED = '[redacted]'
# Strategies whose result does not depend on the value: applied by one UPDATE statement.
CONSTANT_STRATEGIES = frozenset(('null', 'redact'))
PSEUDONYM_PREFIX = 'hmac:'
FAKE_PREFIX = 'anon-'
DEFAULT_BATCH = 500
WRITE_BUFFER = 256 * 1024
# Fast deflate: rows of text compress well even at level 1, and the export is CPU-bound.
COMPRESS_LEVEL = 1
MIN_KEY_BYTES = 16

_INTEGER = re.compile(r'-?\d{1,19}')
_PSEUDONYM = re.compile(r'hmac:[0-9a-f]{64}')

# Column names that look like secrets (password hashes, tokens, keys): words of the name (snake_case, camelCase, kebab)...
_SECRET_WORDS = frozenset(('password', 'passwd', 'pwd', 'passphrase', 'hash', 'hashed', 'digest', 'token', 'secret', 'otp', 'totp', 'hotp',
                           'mfa', '2fa', 'salt', 'pin', 'apikey', 'credential', 'credentials', 'privatekey', 'nonce'))
_SECRET_PAIRS = (('api', 'key'), ('private', 'key'), ('access', 'key'), ('secret', 'key'), ('signing', 'key'), ('recovery', 'code'),
                 ('backup', 'code'), ('reset', 'code'), ('session', 'key'))
# ... or these anywhere in the name, once lowercased and stripped of separators (``PASSWORDHASH``, ``authtoken``).
_SECRET_PARTS = ('password', 'passwd', 'secret', 'token', 'apikey', 'privatekey', 'otpsecret')


def looks_secret(name: str) -> bool:
    """Whether a column name looks like it holds a secret (``password_hash``, ``apiToken``, ``OTP_SECRET``, ``salt``...)."""
    words = [word for word in re.split(r'[^a-z0-9]+', re.sub(r'([a-z0-9])([A-Z])', r'\1_\2', name).lower()) if word]
    if any(word in _SECRET_WORDS for word in words):
        return True
    if any(first in words and second in words for first, second in _SECRET_PAIRS):
        return True
    flat = ''.join(words)
    return any(part in flat for part in _SECRET_PARTS)


class RgpdError(Exception):
    """A request the engine refuses, or a data map that does not fit the database; the message is safe to show."""


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------

def pseudonym(value: t.Any, key: bytes) -> str:
    """``hmac:`` and the HMAC-SHA256 of the value's text: deterministic for a key, irreversible without it."""
    return PSEUDONYM_PREFIX + hmac.new(key, str(value).encode('utf-8'), hashlib.sha256).hexdigest()


def mask(value: str) -> str:
    """Keep little: an address keeps its network (/24, /48), an e-mail its first letter and domain, other text its first character."""
    text = str(value)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        prefix = 24 if address.version == 4 else 48
        return str(ipaddress.ip_network(f'{text}/{prefix}', strict=False).network_address)
    if '@' in text:
        local, domain = text.rsplit('@', 1)
        return f'{local[:1]}***@{domain}'
    return text[:1] + ''.join('*' if char.isalnum() else char for char in text[1:])


def fake(value: str, key: bytes) -> str:
    """A stable stand-in derived from the value: ``anon-<12 hex>`` (an ``@example.invalid`` address for e-mails)."""
    text = str(value)
    if text.startswith(FAKE_PREFIX):
        return text
    digest = hmac.new(key, b'fake\x00' + text.encode('utf-8'), hashlib.sha256).hexdigest()[:12]
    return f'{FAKE_PREFIX}{digest}@example.invalid' if '@' in text else f'{FAKE_PREFIX}{digest}'


def anonymise_value(strategy: str, value: t.Any, key: bytes) -> t.Any:
    """Apply one strategy. Applying it again to its own output gives the same output (so anonymise is idempotent)."""
    if strategy == 'keep' or value is None:
        return value
    if strategy in ('null', 'secret'):
        # The engine turns ``secret`` into ``null`` or ``redact`` per column (see Engine._strategies).
        return None
    if strategy == 'redact':
        return REDACTED
    if strategy == 'hmac':
        text = str(value)
        return text if _PSEUDONYM.fullmatch(text) else pseudonym(text, key)
    if strategy == 'mask':
        return mask(value)
    if strategy == 'fake':
        return fake(value, key)
    raise RgpdError(f'unknown strategy {strategy!r}')


def new_trace_id() -> str:
    """32 lowercase hex characters (the W3C trace id format)."""
    return secrets.token_hex(16)


def utcnow() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _json_value(value: t.Any) -> t.Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


_CONVERTED = (bytes, bytearray, memoryview, datetime.datetime, datetime.date, datetime.time)


def _csv_value(value: t.Any) -> t.Any:
    if isinstance(value, _CONVERTED):
        return _json_value(value)
    return value


def _prefetched(batches: t.Iterator[t.Any], depth: int = 2, max_bytes: int | None = None,
                size: t.Callable[[t.Any], int] | None = None) -> t.Iterator[t.Any]:
    """Yield the items of ``batches``, read ahead by a thread holding at most ``depth`` items.

    With ``max_bytes`` and ``size`` (the bytes of an item, called by the reading thread as soon as it has the item),
    the items waiting in the queue also hold at most ``max_bytes`` (or one item, when a single item is larger).
    The database driver releases the GIL while it waits for the server, so the server produces the next rows while
    this thread encodes and compresses the previous ones. When the
    consumer stops early (an error), the reading thread stops and closes ``batches`` itself before this returns.
    """
    items: queue.Queue[tuple[str, t.Any, int]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    room = threading.Condition()
    queued = [0]

    def put(item: tuple[str, t.Any, int]) -> bool:
        if max_bytes is not None:
            with room:
                while not stop.is_set() and queued[0] and queued[0] + item[2] > max_bytes:
                    room.wait(0.05)
                queued[0] += item[2]
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(('batch', batch, size(batch) if size is not None else 0)):
                    return
            put(('end', None, 0))
        except BaseException as exc:  # pylint: disable=broad-exception-caught
            put(('error', exc, 0))
        finally:
            close = getattr(batches, 'close', None)
            if close is not None:
                close()

    reader = threading.Thread(target=produce, name='dihya-rgpd-reader', daemon=True)
    reader.start()
    try:
        while True:
            kind, item, nbytes = items.get()
            if nbytes:
                with room:
                    queued[0] -= nbytes
                    room.notify_all()
            if kind == 'end':
                return
            if kind == 'error':
                raise item
            yield item
            item = None
    finally:
        stop.set()
        reader.join()


def _measured(batches: t.Iterator[t.Sequence[t.Sequence[t.Any]]], budget: _ByteBudget) -> t.Iterator[t.Any]:
    """The batches, each measured by ``budget`` before the next one is fetched."""
    for rows in batches:
        budget.measure(rows)
        yield rows
        del rows


def _row_bytes(row: t.Sequence[t.Any]) -> int:
    """About how many bytes a fetched row holds (its texts and blobs, plus a little per value)."""
    return sum(len(value) if isinstance(value, (str, bytes, bytearray, memoryview)) else 16 for value in row) + 64


class _ByteBudget:
    """How many rows to fetch next so that a batch holds about ``budget`` bytes, whatever the size of the rows.

    The first fetch takes ``first`` rows; after that, ``budget`` divided by the largest row seen so far (at least one
    row, at most ``most``). :meth:`measure` is called on every batch as soon as it is fetched.
    """

    def __init__(self, budget: int | None = None, first: int | None = None, most: int = DEFAULT_BATCH * 2) -> None:
        self.budget = EXPORT_BATCH_BYTES if budget is None else budget
        self.first = EXPORT_FIRST_BATCH if first is None else first
        self.most = most
        self.largest = 0

    def __call__(self) -> int:
        if not self.largest:
            return self.first
        return max(1, min(self.most, self.budget // self.largest))

    def measure(self, rows: t.Sequence[t.Sequence[t.Any]]) -> int:
        total = 0
        for row in rows:
            nbytes = _row_bytes(row)
            total += nbytes
            self.largest = max(self.largest, nbytes)
        return total


def _csv_line(values: t.Sequence[t.Any]) -> str:
    """One CSV line as the csv module writes it, without its line end."""
    text = io.StringIO()
    csv.writer(text).writerow(values)
    return text.getvalue()[:-2]


# ---------------------------------------------------------------------------
# Files: hashing, encryption, atomic archive
# ---------------------------------------------------------------------------

class _HashingWriter(io.RawIOBase):
    """Passes bytes through to ``target`` and keeps their SHA-256 and size."""

    def __init__(self, target: t.Any) -> None:
        super().__init__()
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: t.Any) -> int:
        chunk = bytes(data)
        self.target.write(chunk)
        self.digest.update(chunk)
        self.size += len(chunk)
        return len(chunk)


class _EncryptingWriter(io.RawIOBase):
    """AES-256-GCM stream: MAGIC, nonce, ciphertext, then the tag when closed. Not seekable (zipfile streams into it)."""

    def __init__(self, target: t.BinaryIO, key: bytes) -> None:
        super().__init__()
        ciphers = optional_library('cryptography.hazmat.primitives.ciphers', 'archive encryption')
        nonce = os.urandom(NONCE_SIZE)
        self.encryptor = ciphers.Cipher(ciphers.algorithms.AES(key), ciphers.modes.GCM(nonce)).encryptor()
        self.encryptor.authenticate_additional_data(ENCRYPTION_MAGIC)
        self.target = target
        self.target.write(ENCRYPTION_MAGIC + nonce)

    def writable(self) -> bool:
        return True

    def write(self, data: t.Any) -> int:
        chunk = bytes(data)
        self.target.write(self.encryptor.update(chunk))
        return len(chunk)

    def finish(self) -> None:
        self.target.write(self.encryptor.finalize() + self.encryptor.tag)


class _Spool:
    """A temporary file without a name in a given directory (mode 0600): gone when closed, even if the process is killed.

    Where the directory's file system cannot create a file without a name, the file is created under a name marked
    as an export's temporary file and unlinked at once. With ``encrypted`` its content is AES-256-CTR encrypted with a
    random key that only this object holds, renewed by every :meth:`reset`: the plaintext never reaches the disk.
    """

    def __init__(self, directory: str, stale_name: str, encrypted: bool = False) -> None:
        flags = os.O_RDWR | getattr(os, 'O_CLOEXEC', 0)
        try:
            fd = os.open(directory, flags | os.O_TMPFILE, 0o600)
        except (AttributeError, OSError):
            path = os.path.join(directory, stale_name)
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)
            os.unlink(path)
        self.file = os.fdopen(fd, 'w+b')
        self.ciphers = optional_library('cryptography.hazmat.primitives.ciphers', 'archive encryption') if encrypted else None
        self.key = b''
        self.nonce = b''
        self.encryptor: t.Any = None

    def reset(self) -> None:
        """Empty the file (and pick a new key)."""
        self.file.seek(0)
        self.file.truncate()
        if self.ciphers is not None:
            self.key, self.nonce = os.urandom(32), os.urandom(16)
            self.encryptor = self._cipher().encryptor()

    def _cipher(self) -> t.Any:
        ciphers = t.cast(t.Any, self.ciphers)
        return ciphers.Cipher(ciphers.algorithms.AES(self.key), ciphers.modes.CTR(self.nonce))

    def write(self, data: bytes) -> None:
        self.file.write(self.encryptor.update(data) if self.encryptor is not None else data)

    def copy_to(self, target: t.Any) -> int:
        """Write the content (decrypted) to ``target``; return its size."""
        self.file.flush()
        self.file.seek(0)
        decryptor = self._cipher().decryptor() if self.ciphers is not None else None
        size = 0
        for chunk in iter(lambda: self.file.read(1 << 20), b''):
            target.write(decryptor.update(chunk) if decryptor is not None else chunk)
            size += len(chunk)
        return size

    def close(self) -> None:
        self.file.close()


def parse_encryption_key(value: str | bytes) -> bytes:
    """A 32-byte key given as URL-safe base64 (the format of ``Fernet.generate_key()``) or 64 hex characters."""
    text = value.decode('ascii', 'replace') if isinstance(value, bytes) else str(value)
    text = text.strip()
    try:
        key = bytes.fromhex(text) if re.fullmatch(r'[0-9a-fA-F]{64}', text) else base64.urlsafe_b64decode(text.encode('ascii'))
    except (ValueError, UnicodeEncodeError):
        key = b''
    if len(key) != 32:
        raise RgpdError('encryption_key must be 32 bytes given as URL-safe base64 (44 characters) or 64 hex characters')
    return key


def decrypt_archive(source: str, destination: str, key: str | bytes) -> None:
    """Decrypt an encrypted export into ``destination`` (a zip file); the plaintext is kept only if the tag verifies.

    ``destination`` must not exist (nothing is ever written over or through what is there, see ``_safe_write``).
    """
    raw_key = parse_encryption_key(key)
    ciphers = optional_library('cryptography.hazmat.primitives.ciphers', 'archive decryption')
    size = os.path.getsize(source)
    header = len(ENCRYPTION_MAGIC) + NONCE_SIZE
    if size < header + TAG_SIZE:
        raise RgpdError(f'{source} is not an encrypted export (too short)')
    with open(source, 'rb') as handle:
        if handle.read(len(ENCRYPTION_MAGIC)) != ENCRYPTION_MAGIC:
            raise RgpdError(f'{source} is not an encrypted export (bad header)')
        nonce = handle.read(NONCE_SIZE)
        handle.seek(size - TAG_SIZE)
        tag = handle.read(TAG_SIZE)
        handle.seek(header)
        decryptor = ciphers.Cipher(ciphers.algorithms.AES(raw_key), ciphers.modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(ENCRYPTION_MAGIC)
        remaining = size - header - TAG_SIZE
        try:
            # A temporary file, linked to destination only once the tag verified.
            with atomic_write(os.path.abspath(destination), mode=0o600) as out:
                while remaining:
                    chunk = handle.read(min(remaining, 1 << 20))
                    remaining -= len(chunk)
                    out.write(decryptor.update(chunk))
                decryptor.finalize()
        except UnsafeDestination as exc:
            raise RgpdError(f'destination {exc}') from None
        except OSError:
            raise
        except Exception as exc:
            raise RgpdError(f'{source}: decryption failed (wrong key or damaged file)') from exc


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temp_files(dest: str) -> list[str]:
    """Remove temporary files left by an export to ``dest`` whose writing process is gone (killed or crashed).

    Only regular files named as an export's temporary file are removed; anything else by that name (a symbolic link,
    a FIFO, a directory) was not made by an export and is left alone. The directory is opened without following links.
    """
    directory, base = os.path.split(dest)
    prefix = f'.{base}{TEMP_MARKER}'
    removed = []
    dir_fd = open_dir(directory)
    try:
        for name in os.listdir(dir_fd):
            if not name.startswith(prefix):
                continue
            pid_text = name[len(prefix):].split('-', 1)[0]
            if pid_text.isdigit() and int(pid_text) != os.getpid() and _pid_alive(int(pid_text)):
                continue
            try:
                if not stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    continue
                os.unlink(name, dir_fd=dir_fd)
                removed.append(os.path.join(directory, name))
            except FileNotFoundError:
                pass
    finally:
        os.close(dir_fd)
    return removed


def _check_destination(dest: str, check_mode: bool = False, force: bool = False) -> None:
    """``dest`` is absolute, in an existing directory reached without symbolic links, and free: nothing there, or with
    ``force`` a regular file (a FIFO, a device, a link or a directory is refused even with ``force``).

    In check mode the directory may not exist yet: an earlier task of the same run would create it.
    """
    if not isinstance(dest, str) or not os.path.isabs(dest):
        raise RgpdError('dest must be an absolute path')
    directory = os.path.dirname(dest)
    try:
        check_destination(dest, force=force, missing_dir_ok=check_mode)
    except UnsafeDestination as exc:
        raise RgpdError(f'dest {exc}') from None
    except FileNotFoundError:
        raise RgpdError(f'the directory of dest does not exist: {directory}') from None


# ---------------------------------------------------------------------------
# Ledger file
# ---------------------------------------------------------------------------

def append_ledger_file(path: str, record: t.Mapping[str, t.Any]) -> None:
    """Append one JSON line under an exclusive lock, then fsync; the file is created with mode 0600.

    An existing regular file is appended to; a symbolic link, FIFO, device or directory at ``path`` (or a symbolic
    link on its way) is refused with :class:`RgpdError`.
    """
    try:
        fd = append_open(path, 0o600)
    except UnsafeDestination as exc:
        raise RgpdError(f'ledger_file {exc}') from None
    except FileNotFoundError as exc:
        raise RgpdError(f'cannot open ledger_file {path}: {exc.filename} does not exist') from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, (json.dumps(dict(record), sort_keys=True, separators=(',', ':')) + '\n').encode('utf-8'))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_ledger_file(path: str) -> list[dict[str, t.Any]]:
    """Erasure entries of a ledger file, oldest first, each with its last ``state``; an incomplete last line is ignored."""
    entries: dict[str, dict[str, t.Any]] = {}
    try:
        with open(path, encoding='utf-8') as handle:
            for line in handle:
                if not line.endswith('\n'):
                    break
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise RgpdError(f'{path}: unreadable ledger line') from exc
                entry_id = record.get('entry_id')
                if not isinstance(entry_id, str):
                    raise RgpdError(f'{path}: ledger line without entry_id')
                entries.setdefault(entry_id, {}).update(record)
    except OSError as exc:
        raise RgpdError(f'cannot read ledger file {path}: {exc.strerror}') from exc
    return list(entries.values())


# ---------------------------------------------------------------------------
# Schema check
# ---------------------------------------------------------------------------

def _plain_name(name: str) -> bool:
    """Whether a table name is one a data map can give (see ``_rgpd_map.IDENTIFIER``)."""
    try:
        quote(name)
    except DbError:
        return False
    return True


def tenant_proof_errors(data_map: DataMap, info: t.Mapping[str, TableInfo]) -> list[str]:
    """Why some rows the data map reaches could belong to another tenant than the one asked for; empty when none can.

    A row is proven to be the requested tenant's through its table's own ``tenant_column``, or through a reference
    that is unique on its own in the referenced table and leads, step by step, to a row whose tenant is proven:
    ``subject_columns`` reference the subject id column, which must then be the subject table's primary key or a
    unique key by itself; a ``parent`` path references ``references``, which must be unique by itself in the parent
    table, and the parent's own tenant must be proven the same way. An id that is unique only together with the tenant
    (``PRIMARY KEY (id, tenant_id)``) proves nothing: the same id names a row of every tenant. Uniqueness is a fact of the
    schema (a partial or expression unique index does not count), so this is checked against the live database.
    Missing tables and columns are left to the other checks.
    """
    reasons: dict[str, str | None] = {}

    def not_unique(table: str, column: str) -> str | None:
        found = info.get(table)
        if found is None or column not in found.columns or found.unique_on(column):
            return None
        return f'{table}.{column} is not unique on its own (the key is {found.key_text()})'

    def reason(name: str, seen: frozenset[str]) -> str | None:
        if name in reasons:
            return reasons[name]
        table = data_map.tables[name]
        result: str | None = None
        if table.tenant_column is None and table.parent is not None:
            parent = table.parent
            if parent.table in data_map.tables and parent.table not in seen:
                result = not_unique(parent.table, parent.references)
                above = reason(parent.table, seen | {name}) if result is None else None
                if above is not None:
                    result = f'its parent path goes through {parent.table!r}, whose tenant cannot be proven: {above}'
        elif table.tenant_column is None:
            result = not_unique(data_map.subject_table, data_map.subject_id_column)
        reasons[name] = result
        return result

    errors = []
    for name in data_map.tables:
        why = reason(name, frozenset((name,)))
        if why is not None:
            errors.append(f"tables.{name}: cannot prove each row's tenant: {why}; add tenant_column to {name}, "
                          'or a parent path through a table whose key is unique')
    consent = data_map.consent
    if consent is not None and consent.tenant_column is None:
        why = not_unique(data_map.subject_table, data_map.subject_id_column)
        if why is not None:
            errors.append(f"consent: cannot prove each row's tenant: {why}; add consent.tenant_column (the tenant column of {consent.table})")
    lookup = data_map.tenant_lookup
    if lookup is not None:
        why = not_unique(lookup.table, lookup.key_column)
        if why is not None:
            errors.append(f'tenant_lookup: {why}, so one tenant key could name two tenants; make {lookup.key_column} unique in {lookup.table}')
    return errors


def _unmapped_referencing_errors(db: Database, data_map: DataMap, info: t.Mapping[str, TableInfo]) -> list[str]:
    """Tables outside the data map holding a foreign key to the subject table, or to a mapped table whose rows erasure
    deletes: erasure would fail on them (foreign keys on) or leave their rows pointing at nothing (foreign keys off).

    Names are compared as the database compares them (SQLite ignores the case of ASCII letters), and every table is
    found, even one whose name no data map can give ("user-notes") or, on PostgreSQL, one in another schema.
    """
    mapped = {db.fold(name) for name in data_map.tables}
    errors = []
    for target in data_map.tables.values():
        if target.name not in info or (target.erasure != 'delete' and target.name != data_map.subject_table):
            continue
        what = repr(target.name) if target.name == data_map.subject_table else f'the mapped table {target.name!r}, whose rows erasure deletes,'
        for other in sorted(db.referencing_tables(target.name)):
            if db.fold(other) in mapped:
                continue
            if db.kind == 'postgresql' and '.' in other:
                why = 'and cannot be: it lives in another schema than the one the data map covers; move it, or drop or change its foreign key'
            elif not _plain_name(other):
                why = ('and cannot be: its name is not a plain identifier (letters, digits and _); rename the table so that it can be mapped, '
                       'or drop its foreign key')
            else:
                why = 'add it to the data map'
            errors.append(f'table {other!r} has a foreign key to {what} but is not in the data map ({why}): erasure could leave rows behind')
    return errors


def check_schema(db: Database, data_map: DataMap) -> dict[str, TableInfo]:
    """Check every table and column the data map names against the database; raise listing every problem.

    This includes the tenant proof (:func:`tenant_proof_errors`): a data map through which a row of another tenant
    could be read or changed is refused here, before any row is read.
    """
    names = list(data_map.tables)
    if data_map.consent is not None:
        names.append(data_map.consent.table)
    if data_map.tenant_lookup is not None:
        names.append(data_map.tenant_lookup.table)
    info = db.introspect(dict.fromkeys(names))
    errors: list[str] = []

    def column(table: str, name: str | None, where: str) -> t.Any:
        if name is None or table not in info:
            return None
        found = info[table].columns.get(name)
        if found is None:
            errors.append(f'{where}: table {table!r} has no column {name!r}')
        return found

    for name in dict.fromkeys(names):
        if name not in info:
            errors.append(f'table {name!r} does not exist in the database')
    if LEDGER_TABLE in data_map.tables:
        errors.append(f'tables.{LEDGER_TABLE}: the erasure ledger cannot be mapped')
    subject = data_map.subject
    column(subject.name, data_map.subject_id_column, 'subject.id_column')
    column(subject.name, data_map.subject_tenant_column, 'subject.tenant_column')
    repoint_to_null = subject.erasure == 'delete'
    for table in data_map.tables.values():
        where = f'tables.{table.name}'
        if table.name not in info:
            continue
        for side in table.sides:
            found = column(table.name, side.column, f'{where}.subject_columns')
            if (found is not None and table.erasure == 'anonymise' and table.name != subject.name and repoint_to_null and found.notnull):
                errors.append(
                    f'{where}: erasure anonymise keeps the row, so {side.column!r} must stop pointing at the subject; it is NOT NULL and '
                    f'the subject table is deleted (use erasure anonymise on {subject.name!r} to repoint to a tombstone, or delete these rows)'
                )
        column(table.name, table.tenant_column, f'{where}.tenant_column')
        if table.parent is not None:
            column(table.name, table.parent.column, f'{where}.parent.column')
            column(table.parent.table, table.parent.references, f'{where}.parent.references')
        for name, strategy in table.strategies().items():
            found = column(table.name, name, f'{where}.columns')
            if found is None:
                continue
            if strategy in TEXT_STRATEGIES and found.kind == 'integer':
                errors.append(f'{where}.columns.{name}: strategy {strategy!r} writes text but the column is {found.type}')
            if strategy == 'null' and found.notnull:
                errors.append(f'{where}.columns.{name}: strategy null on a NOT NULL column')
            if any(side.column == name for side in table.sides) or name == table.tenant_column:
                errors.append(f'{where}.columns.{name}: a subject or tenant column cannot be anonymised with a strategy')
        for name in table.key or ():
            column(table.name, name, f'{where}.key')
        if not (table.key or info[table.name].primary_key):
            errors.append(f'{where}: the table has no primary key; give key: [columns identifying a row]')
        elif table.key and all(name in info[table.name].columns for name in table.key):
            # Rows are updated by key: a key that is not unique (an id unique only per tenant) would change the rows of
            # another subject, or another tenant, sharing it.
            unique = {info[table.name].primary_key, *info[table.name].unique} - {()}
            if not any(set(candidate) <= set(table.key) for candidate in unique):
                errors.append(
                    f'{where}.key: ({", ".join(table.key)}) does not identify one row: no primary key or unique key of {table.name} is made of '
                    'these columns, so an update by key could change rows of another subject or tenant; give the primary key or a unique key'
                )
    if subject.name in info and subject.erasure == 'anonymise':
        id_info = info[subject.name].columns.get(data_map.subject_id_column)
        if id_info is not None and not (id_info.generated or id_info.kind == 'text'):
            errors.append(
                f'tables.{subject.name}: erasure anonymise replaces the subject row by a tombstone with a new id, '
                f'but {data_map.subject_id_column!r} has no default and is not text'
            )
    errors.extend(_unmapped_referencing_errors(db, data_map, info))
    errors.extend(tenant_proof_errors(data_map, info))
    consent = data_map.consent
    if consent is not None:
        for attribute in ('subject_column', 'purpose_column', 'granted_column', 'source_column', 'time_column', 'tenant_column'):
            column(consent.table, getattr(consent, attribute), f'consent.{attribute}')
    lookup = data_map.tenant_lookup
    if lookup is not None:
        column(lookup.table, lookup.id_column, 'tenant_lookup.id_column')
        column(lookup.table, lookup.key_column, 'tenant_lookup.key_column')
    if errors:
        raise RgpdError('the data map does not match the database:\n  - ' + '\n  - '.join(errors))
    return info


# ---------------------------------------------------------------------------
# Engine
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class Subject:
    """A subject resolved in one tenant."""

    given: str
    id: t.Any
    tenant_given: str
    tenant: t.Any
    pseudonym: str


class Engine:
    """RGPD operations on one database with one data map."""

    def __init__(
        self,
        db: Database,
        data_map: DataMap,
        pseudonym_key: bytes,
        check_mode: bool = False,
        trace_id: str | None = None,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        if not isinstance(pseudonym_key, bytes) or len(pseudonym_key) < MIN_KEY_BYTES:
            raise RgpdError(f'the pseudonym key must be at least {MIN_KEY_BYTES} bytes')
        self.db = db
        self.map = data_map
        self.key = pseudonym_key
        self.check_mode = check_mode
        self.trace_id = trace_id or new_trace_id()
        if not re.fullmatch(r'[0-9a-f]{32}', self.trace_id):
            raise RgpdError('trace_id must be 32 lowercase hexadecimal characters')
        self.batch = batch
        self.info = check_schema(db, data_map)
        # Foreign keys between mapped tables, under the data map's names (SQLite finds "Users" for users).
        mapped = {db.fold(name): name for name in data_map.tables}
        self.foreign_keys = sorted({
            (table, mapped[db.fold(parent)]) for table, table_info in self.info.items() if table in data_map.tables
            for parent in table_info.references if db.fold(parent) in mapped
        })
        self._order: list[str] | None = None

    @property
    def order(self) -> list[str]:
        """The erasure order (children first). Only erasure needs it: a foreign-key cycle between mapped tables fails
        erase and replay here, with the cycle named, and leaves inventory, export, anonymise and consent working."""
        if self._order is None:
            try:
                self._order = self.map.erase_order(self.foreign_keys)
            except ValueError as exc:  # DataMapError
                raise RgpdError(f'{exc}; inventory, export, anonymise and consent work, erasure cannot '
                                '(make one of these foreign keys ON DELETE CASCADE or SET NULL, or keep one table with erasure: anonymise)') from exc
        return self._order

    # -- helpers -----------------------------------------------------------------------------------
    def _table(self, name: str) -> str:
        return self.db.table(name)

    def _sql(self, text: str) -> str:
        return self.db.sql(text)

    def _coerce(self, value: t.Any, table: str, column: str, what: str) -> t.Any:
        info = self.info[table].columns[column]
        if info.kind == 'integer':
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            text = str(value).strip()
            if not _INTEGER.fullmatch(text):
                raise RgpdError(f'{what} must be an integer ({table}.{column} is {info.type}); got {len(str(value))} characters that are not')
            return int(text)
        if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == '':
            raise RgpdError(f'{what} must be a non-empty string')
        return str(value)

    def _resolve_tenant(self, tenant: t.Any) -> t.Any:
        lookup = self.map.tenant_lookup
        if lookup is None:
            return self._coerce(tenant, self.map.subject_table, self.map.subject_tenant_column, 'tenant')
        key = self._coerce(tenant, lookup.table, lookup.key_column, 'tenant')
        rows = self.db.query(
            self._sql(f'SELECT {quote(lookup.id_column)} FROM {self._table(lookup.table)} WHERE {quote(lookup.key_column)} = ? LIMIT 2'), (key,),
        )
        if not rows:
            raise RgpdError(f'tenant {str(tenant)[:64]!r} not found in {lookup.table}.{lookup.key_column}')
        if len(rows) > 1:  # the schema check makes the key unique; never guess between two tenants
            raise RgpdError(f'tenant {str(tenant)[:64]!r} names several rows of {lookup.table}')
        return rows[0][0]

    def subject(self, tenant: t.Any, subject_id: t.Any) -> Subject:
        """Resolve the tenant and coerce the subject id to the id column's type (the subject may not exist)."""
        resolved = self._resolve_tenant(tenant)
        value = self._coerce(subject_id, self.map.subject_table, self.map.subject_id_column, 'subject_id')
        return Subject(str(subject_id), value, str(tenant), resolved, pseudonym(value, self.key))

    def _exists(self, subject: Subject) -> bool:
        where, params = self._match(self.map.subject, 't0', 0, None, subject)
        return bool(self.db.query(self._sql(f'SELECT 1 FROM {self._table(self.map.subject_table)} t0 WHERE {where}'), params))

    def _match(self, table: TableMap, alias: str, depth: int, side: str | None, subject: Subject) -> tuple[str, list[t.Any]]:
        """WHERE clause (on ``alias``) selecting the rows of ``table`` that are the subject's, in the subject's tenant.

        The SQL carries the tenant proof that :func:`tenant_proof_errors` checked on the schema: a subject column is
        matched against the subject row found by its id *and* tenant; a parent path against the parent rows matched
        the same way, step by step; a table's own tenant column is always filtered on too.
        """
        params: list[t.Any] = []
        if table.parent is not None:
            parent = self.map.tables[table.parent.table]
            inner = f't{depth + 1}'
            where, inner_params = self._match(parent, inner, depth + 1, None, subject)
            clause = (f'{alias}.{quote(table.parent.column)} IN (SELECT {inner}.{quote(table.parent.references)} '
                      f'FROM {self._table(parent.name)} {inner} WHERE {where})')
            params.extend(inner_params)
        elif table.name == self.map.subject_table and [entry.column for entry in table.sides] == [self.map.subject_id_column]:
            # The subject row itself: its id and its tenant (added below).
            clause = f'({alias}.{quote(self.map.subject_id_column)} = ?)'
            params.append(subject.id)
        else:
            parts = []
            inner = f's{depth}'
            id_column, tenant_column = quote(self.map.subject_id_column), quote(self.map.subject_tenant_column)
            for entry in table.sides:
                if side is not None and entry.column != side:
                    continue
                # Through the subject row, found by its id and tenant. The equality lets the planner use an index on the
                # column (SQLite would otherwise prefer one on the table's tenant column and read the whole tenant).
                column = f'{alias}.{quote(entry.column)}'
                parts.append(
                    f'({column} = ? AND {column} IN (SELECT {inner}.{id_column} FROM {self._table(self.map.subject_table)} {inner} '
                    f'WHERE {inner}.{id_column} = ? AND {inner}.{tenant_column} = ?))'
                )
                params.extend((subject.id, subject.id, subject.tenant))
            clause = '(' + ' OR '.join(parts) + ')'
        if table.tenant_column is not None:
            clause += f' AND {alias}.{quote(table.tenant_column)} = ?'
            params.append(subject.tenant)
        return clause, params

    def _count(self, table: TableMap, side: str | None, subject: Subject) -> int:
        where, params = self._match(table, 't0', 0, side, subject)
        return int(self.db.query(self._sql(f'SELECT count(*) FROM {self._table(table.name)} t0 WHERE {where}'), params)[0][0])

    def _counts(self, subject: Subject) -> dict[str, dict[str, t.Any]]:
        counts: dict[str, dict[str, t.Any]] = {}
        for name, table in self.map.tables.items():
            entry: dict[str, t.Any] = {'rows': self._count(table, None, subject)}
            if len(table.sides) > 1:
                entry['sides'] = {side.column: self._count(table, side.column, subject) for side in table.sides}
            counts[name] = entry
        return counts

    def _key(self, table: TableMap) -> tuple[str, ...]:
        return table.key or self.info[table.name].primary_key

    def _batches(self, table: TableMap, side: str | None, columns: t.Sequence[str], subject: Subject) -> t.Iterator[list[tuple[t.Any, ...]]]:
        """The subject's rows of ``table`` as (key..., columns...) in key order, a batch at a time.

        The rows are updated while they are read. A PostgreSQL cursor does not see changes made after it
        was opened, so one streamed query is enough; SQLite gives no such promise, so there each batch is a
        new query starting after the last key seen (keyset pagination).
        """
        key = self._key(table)
        selected = ', '.join(f't0.{quote(name)}' for name in (*key, *columns))
        key_list = ', '.join(f't0.{quote(name)}' for name in key)
        if self.db.insensitive_cursors:
            where, params = self._match(table, 't0', 0, side, subject)
            batch: list[tuple[t.Any, ...]] = []
            for row in self.db.stream(self._sql(f'SELECT {selected} FROM {self._table(table.name)} t0 WHERE {where} ORDER BY {key_list}'), params):
                batch.append(tuple(row))
                if len(batch) >= self.batch:
                    yield batch
                    batch = []
            if batch:
                yield batch
            return
        last: tuple[t.Any, ...] | None = None
        while True:
            where, params = self._match(table, 't0', 0, side, subject)
            if last is not None:
                where += f' AND ({key_list}) > ({", ".join("?" for dummy in key)})'
                params.extend(last)
            rows = self.db.query(
                self._sql(f'SELECT {selected} FROM {self._table(table.name)} t0 WHERE {where} ORDER BY {key_list} LIMIT {int(self.batch)}'), params,
            )
            if not rows:
                return
            yield rows
            last = tuple(rows[-1][:len(key)])

    def _result(self, operation: str, subject: Subject | None, **extra: t.Any) -> dict[str, t.Any]:
        result: dict[str, t.Any] = {'operation': operation, 'changed': False, 'check_mode': self.check_mode, 'trace_id': self.trace_id}
        if subject is not None:
            result.update(subject=subject.pseudonym, tenant=subject.tenant_given)
        result['data_map_version'] = self.map.version
        result.update(extra)
        return result

    # -- secret columns, resolved strategies, warnings -----------------------------------------------
    def _secret_columns(self, table: TableMap) -> set[str]:
        return {column for column, strategy in table.strategies().items() if strategy == 'secret'}

    def _strategies(self, table: TableMap, side: str | None = None) -> dict[str, str]:
        """The strategies of ``table`` for ``side``, ``secret`` resolved per column: NULL when nullable, else ``[redacted]``."""
        strategies = table.strategies(side)
        columns = self.info[table.name].columns
        for column, strategy in strategies.items():
            if strategy == 'secret' and column in columns:
                strategies[column] = 'redact' if columns[column].notnull else 'null'
        return strategies

    def check_secrets(self) -> None:
        """Refuse secret columns that erasure could not clear (NOT NULL and not text) or that identify rows (key columns)."""
        errors = []
        for table in self.map.tables.values():
            info = self.info[table.name]
            key = set(self._key(table))
            for column in sorted(self._secret_columns(table)):
                found = info.columns.get(column)
                if found is None:
                    continue
                if found.notnull and found.kind != 'text':
                    errors.append(f'tables.{table.name}.columns.{column}: strategy secret on a NOT NULL {found.type} column, which can hold '
                                  'neither NULL nor [redacted]; make it nullable')
                if column in key:
                    errors.append(f'tables.{table.name}.columns.{column}: a key column cannot be secret (exports order rows by it)')
        if errors:
            raise RgpdError('the data map does not match the database:\n  - ' + '\n  - '.join(errors))

    def warnings(self) -> list[str]:
        """What the data map leaves to chance without being wrong: secret-looking columns that are exported, fingerprints."""
        found = []
        for table in self.map.tables.values():
            info = self.info.get(table.name)
            if info is None:
                continue
            strategies = table.strategies()
            structural = {side.column for side in table.sides} | {table.tenant_column} | set(self._key(table))
            if table.parent is not None:
                structural.add(table.parent.column)
            if table.name == self.map.subject_table:
                structural |= {self.map.subject_id_column, self.map.subject_tenant_column}
            for column in info.columns:
                if column in structural or strategies.get(column) == 'secret' or not looks_secret(column):
                    continue
                how = f'mapped with strategy {strategies[column]!r}' if column in strategies else 'not mapped'
                found.append(f'tables.{table.name}: column {column!r} looks like a secret (password, hash, token, key...) but is {how}, so '
                             'exports include it; give it the strategy secret (never exported, NULL or [redacted] on erasure and anonymisation)')
        try:
            columns = self._fingerprint_columns()
        except RgpdError as exc:
            found.append(str(exc))
            columns = ()
        if not columns:
            found.append(f'subject.fingerprint_columns: table {self.map.subject_table!r} has none of the default columns '
                         f'({", ".join(DEFAULT_FINGERPRINT_COLUMNS)}); name stable columns of the subject row, or replay will refuse these erasures')
        subject_strategies = self.map.subject.strategies()
        for column in columns:
            if subject_strategies.get(column, 'keep') != 'keep':
                found.append(f'subject.fingerprint_columns: {column!r} is changed by anonymise ({subject_strategies[column]}); replay will '
                             'report a subject anonymised before its erasure as a mismatch')
        return found

    # -- fingerprints of erased subjects ---------------------------------------------------------------
    def _fingerprint_columns(self) -> tuple[str, ...]:
        """Columns of the subject row whose keyed hash identifies the erased person beyond the id."""
        columns = self.info[self.map.subject_table].columns
        declared = getattr(self.map, 'subject_fingerprint_columns', None)
        if declared is not None:
            missing = [column for column in declared if column not in columns]
            if missing:
                raise RgpdError(f'subject.fingerprint_columns: table {self.map.subject_table!r} has no column '
                                + ', '.join(repr(column) for column in missing))
            return tuple(declared)
        return tuple(column for column in DEFAULT_FINGERPRINT_COLUMNS if column in columns)[:1]

    def _fingerprint(self, columns: t.Sequence[str], values: t.Sequence[t.Any]) -> str:
        data = json.dumps([[column, None if value is None else _json_value(value)] for column, value in zip(columns, values)],
                          separators=(',', ':'), ensure_ascii=False)
        return PSEUDONYM_PREFIX + hmac.new(self.key, FINGERPRINT_CONTEXT + data.encode('utf-8'), hashlib.sha256).hexdigest()

    def _subject_fingerprint(self, subject: Subject, columns: t.Sequence[str]) -> str | None:
        if not columns:
            return None
        where, params = self._match(self.map.subject, 't0', 0, None, subject)
        selected = ', '.join(f't0.{quote(column)}' for column in columns)
        rows = self.db.query(self._sql(f'SELECT {selected} FROM {self._table(self.map.subject_table)} t0 WHERE {where}'), params)
        return self._fingerprint(columns, rows[0]) if rows else None

    # -- unique columns (tombstones must not collide) ----------------------------------------------------
    def _unique_sets(self, name: str) -> list[set[str | None]]:
        """The column sets of the table's unique indexes and constraints; None stands for an expression."""
        if self.db.kind == 'sqlite':
            rows = self.db.query('SELECT il.name, ii.name FROM pragma_index_list(?) AS il, pragma_index_info(il.name) AS ii WHERE il."unique" = 1',
                                 (name,))
        else:
            rows = self.db.query(self._sql(
                'SELECT i.indexrelid::text, a.attname FROM pg_index i JOIN pg_class cl ON cl.oid = i.indrelid'
                ' JOIN pg_namespace n ON n.oid = cl.relnamespace'
                ' JOIN LATERAL unnest(i.indkey) AS k(attnum) ON true LEFT JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum = k.attnum'
                ' WHERE i.indisunique AND n.nspname = ? AND cl.relname = ?'
            ), (getattr(self.db, 'schema', 'public'), name))
        sets: dict[str, set[str | None]] = {}
        for index, column in rows:
            sets.setdefault(str(index), set()).add(column)
        return list(sets.values())

    # -- inventory ---------------------------------------------------------------------------------
    def inventory(self, tenant: t.Any, subject_id: t.Any) -> dict[str, t.Any]:
        """Rows held about the subject, per table."""
        subject = self.subject(tenant, subject_id)
        with self.db.transaction(write=False):
            found = self._exists(subject)
            tables = self._counts(subject)
        return self._result('inventory', subject, subject_found=found, tables=tables, total_rows=sum(entry['rows'] for entry in tables.values()))

    # -- export ------------------------------------------------------------------------------------
    def export(self, tenant: t.Any, subject_id: t.Any, dest: str, encryption_key: str | bytes | None = None,
               force: bool = False) -> dict[str, t.Any]:
        """Write the subject's rows to a zip archive at ``dest`` (atomically, mode 0600), optionally encrypted.

        Nothing may be at ``dest``, except a regular file with ``force`` (replaced atomically); anything else is refused.
        """
        subject = self.subject(tenant, subject_id)
        _check_destination(dest, self.check_mode, force)
        key = parse_encryption_key(encryption_key) if encryption_key is not None else None
        if self.check_mode:
            with self.db.transaction(write=False):
                found = self._exists(subject)
                tables = self._counts(subject)
            return self._result('export', subject, changed=True, subject_found=found, tables=tables,
                                archive={'path': dest, 'encrypted': key is not None})
        removed = clean_stale_temp_files(dest)
        directory, base = os.path.split(dest)
        spool: _Spool | None = None
        try:
            # A temporary file next to dest, fsynced, then put in place only if dest is still as checked.
            with atomic_write(dest, mode=0o600, force=force, temp_marker=TEMP_MARKER) as handle:
                sink: t.Any = _EncryptingWriter(handle, key) if key is not None else handle
                spool = _Spool(directory, f'.{base}{TEMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}-spool', encrypted=key is not None)
                with self.db.transaction(write=False):
                    self.db.prepare_bulk_read()
                    found = self._exists(subject)
                    tables, files = self._write_archive(sink, subject, spool)
                spool.close()
                if isinstance(sink, _EncryptingWriter):
                    sink.finish()
        except UnsafeDestination as exc:
            raise RgpdError(f'dest {exc}') from None
        finally:
            if spool is not None:
                spool.close()
        return self._result(
            'export', subject, changed=True, subject_found=found, tables=tables,
            archive={'path': dest, 'sha256': file_sha256(dest), 'size': os.path.getsize(dest), 'encrypted': key is not None, 'files': files},
            stale_temp_files_removed=len(removed),
        )

    def _write_archive(self, sink: t.Any, subject: Subject, spool: _Spool) -> tuple[dict[str, dict[str, t.Any]], dict[str, dict[str, t.Any]]]:
        tables: dict[str, dict[str, t.Any]] = {}
        files: dict[str, dict[str, t.Any]] = {}
        with zipfile.ZipFile(sink, 'w', compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as archive:
            for name, table in self.map.tables.items():
                rows = self._write_table(archive, spool, name, table, subject, files)
                tables[name] = {'rows': rows}
            manifest = {
                'format': ARCHIVE_FORMAT,
                'subject': subject.pseudonym,
                'tenant': subject.tenant_given,
                'data_map_version': self.map.version,
                'created_at': utcnow(),
                'trace_id': self.trace_id,
                'tables': tables,
                'files': files,
                'retention': self.map.retention_notes(),
            }
            archive.writestr('manifest.json', json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + '\n')
        return tables, files

    def _write_table(self, archive: zipfile.ZipFile, spool: _Spool, name: str, table: TableMap, subject: Subject,
                     files: dict[str, dict[str, t.Any]]) -> int:
        """One pass over the subject's rows of a table: ``<table>.json`` goes straight into the archive while
        ``<table>.csv`` goes to the spool, then into the archive once the JSON member is closed (a zip file is
        written one member at a time). Both are hashed as they are written."""
        # Secret columns (password hashes, tokens) never leave the database: not in the JSON, the CSV or the manifest.
        secret = self._secret_columns(table)
        info = dataclasses.replace(self.info[name], columns={column: found for column, found in self.info[name].columns.items() if column not in secret})
        columns = list(info.columns)
        where, params = self._match(table, 't0', 0, None, subject)
        order = ', '.join(f't0.{quote(column)}' for column in self._key(table))
        # The database writes the rows' JSON and CSV text itself when it can; the rows it leaves come with their values.
        texts = self.db.row_text(info, 't0')
        if texts is not None:
            selected = [texts.json, *([texts.csv] if texts.csv is not None else []), *texts.values]
            offset = 2 if texts.csv is not None else 1
        else:
            selected = [f't0.{quote(column)}' for column in columns]
        if texts is not None and texts.sort_first:
            inner = f'SELECT {", ".join(f"t0.{quote(column)}" for column in columns)} FROM {self._table(name)} t0 WHERE {where} ORDER BY {order}'
            query = self._sql(f'SELECT {", ".join(selected)} FROM ({inner}) t0 ORDER BY {order}')
        else:
            query = self._sql(f'SELECT {", ".join(selected)} FROM {self._table(name)} t0 WHERE {where} ORDER BY {order}')
        encode = json.JSONEncoder(ensure_ascii=False, separators=(',', ':'), default=_json_value).encode
        spool.reset()
        csv_digest = hashlib.sha256()
        csv_text = io.StringIO()
        out = csv.writer(csv_text)
        out.writerow(columns)
        rows = 0
        with archive.open(f'{name}.json', 'w', force_zip64=True) as member:
            writer = _HashingWriter(member)
            # Rows are small: buffer them so that hashing and compression work on large chunks.
            buffered = io.BufferedWriter(t.cast(io.RawIOBase, writer), WRITE_BUFFER)
            buffered.write(b'[')
            # Batches are bounded in bytes, not only in rows: a table of 1 MB rows is read a few rows at a time.
            budget = _ByteBudget()
            batches = self.db.stream_batches(query, params, budget)
            if self.db.concurrent_reads:
                stream = _prefetched(batches, max_bytes=2 * EXPORT_BATCH_BYTES, size=budget.measure)
            else:
                stream = _measured(batches, budget)
            for batch in stream:
                if texts is None:
                    objects = [encode(dict(zip(columns, row))) for row in batch]
                    out.writerows([[_csv_value(value) for value in row] for row in batch])
                else:
                    objects = [row[0] for row in batch]
                    lines = [row[1] for row in batch] if texts.csv is not None else None
                    values = [row[offset:] for row in batch]
                    for index in [index for index, text in enumerate(objects) if text is None]:
                        if len(values[index]) != len(columns):
                            raise RgpdError(f'the database gave neither the text nor the values of a row of {name}')
                        objects[index] = encode(dict(zip(columns, values[index])))
                        values[index] = [_csv_value(value) for value in values[index]]
                        if lines is not None:
                            lines[index] = _csv_line(values[index])
                    if lines is None:
                        out.writerows(values)
                    else:
                        csv_text.write('\r\n'.join(lines))
                        csv_text.write('\r\n')
                buffered.write(((',\n' if rows else '\n') + ',\n'.join(objects)).encode('utf-8'))
                rows += len(batch)
                chunk = csv_text.getvalue().encode('utf-8')
                csv_text.seek(0)
                csv_text.truncate()
                csv_digest.update(chunk)
                spool.write(chunk)
                # Let this batch go before the next one is fetched.
                batch = objects = lines = values = chunk = None  # type: ignore[assignment]
            buffered.write(b'\n]\n')
            buffered.flush()
            buffered.detach()
        chunk = csv_text.getvalue().encode('utf-8')  # the header line when there was no row
        csv_digest.update(chunk)
        spool.write(chunk)
        files[f'{name}.json'] = {'sha256': writer.digest.hexdigest(), 'size': writer.size, 'rows': rows}
        with archive.open(f'{name}.csv', 'w', force_zip64=True) as member:
            size = spool.copy_to(member)
        files[f'{name}.csv'] = {'sha256': csv_digest.hexdigest(), 'size': size, 'rows': rows}
        return rows

    # -- anonymise ---------------------------------------------------------------------------------
    def _rewrite(self, table: TableMap, side: str | None, strategies: dict[str, str], subject: Subject,
                 replace: tuple[str, t.Any] | None = None) -> int:
        """Apply strategies (and optionally replace the side column) to the subject's rows; return how many rows change."""
        columns = [column for column, strategy in strategies.items() if strategy != 'keep']
        if replace is not None:
            columns = [column for column in columns if column != replace[0]]
        key = self._key(table)
        assignments = [*columns, *([replace[0]] if replace is not None else [])]
        if not assignments:
            return 0
        if all(strategies[column] in CONSTANT_STRATEGIES for column in columns):
            return self._rewrite_in_sql(table, side, strategies, columns, subject, replace)
        changed = 0
        for rows in self._batches(table, side, columns, subject):
            updates = []
            for row in rows:
                old = row[len(key):]
                new = [anonymise_value(strategies[column], value, self.key) for column, value in zip(columns, old)]
                if replace is None and list(old) == new:
                    continue
                updates.append((*new, *([replace[1]] if replace is not None else []), *row[:len(key)]))
            changed += len(updates)
            if updates and not self.check_mode:
                self.db.update_rows(self.info[table.name], assignments, key, updates)
        return changed

    def _rewrite_in_sql(self, table: TableMap, side: str | None, strategies: dict[str, str], columns: list[str], subject: Subject,
                        replace: tuple[str, t.Any] | None) -> int:
        """One UPDATE for strategies that do not depend on the value (null, redact): no row goes through Python.

        The result is the same as row by row: NULL stays NULL, and only rows that change are counted.
        """
        where, params = self._match(table, 't0', 0, side, subject)
        sets: list[str] = []
        set_params: list[t.Any] = []
        differs: list[str] = []
        differs_params: list[t.Any] = []
        for column in columns:
            name = f't0.{quote(column)}'
            if strategies[column] == 'null':
                sets.append(f'{quote(column)} = NULL')
                differs.append(f'{name} IS NOT NULL')
            else:
                sets.append(f'{quote(column)} = CASE WHEN {name} IS NULL THEN NULL ELSE ? END')
                set_params.append(REDACTED)
                differs.append(f'({name} IS NOT NULL AND {name} <> ?)')
                differs_params.append(REDACTED)
        if replace is not None:
            sets.append(f'{quote(replace[0])} = ?')
            set_params.append(replace[1])
        else:
            # Anonymising again changes nothing: only rows holding a value to hide are touched.
            where = f'({where}) AND ({" OR ".join(differs)})'
            params = [*params, *differs_params]
        if self.check_mode:
            return int(self.db.query(self._sql(f'SELECT count(*) FROM {self._table(table.name)} t0 WHERE {where}'), params)[0][0])
        return self.db.execute(self._sql(f'UPDATE {self._table(table.name)} AS t0 SET {", ".join(sets)} WHERE {where}'), [*set_params, *params])

    def _side_names(self, table: TableMap) -> list[str | None]:
        return [side.column for side in table.sides] if table.sides else [None]

    def anonymise(self, tenant: t.Any, subject_id: t.Any) -> dict[str, t.Any]:
        """Pseudonymise the subject's personal columns in place (ids and references are kept)."""
        subject = self.subject(tenant, subject_id)
        self.check_secrets()
        tables: dict[str, dict[str, t.Any]] = {}
        with self.db.transaction(write=not self.check_mode):
            found = self._exists(subject)
            # Anonymise changes no key: only the join paths order it (a table before the parent it is found through).
            for name in self.map.erase_order():
                table = self.map.tables[name]
                changed = 0
                for side in self._side_names(table):
                    changed += self._rewrite(table, side, self._strategies(table, side), subject)
                tables[name] = {'rows': self._count(table, None, subject), 'anonymised': changed}
        changed_any = any(entry['anonymised'] for entry in tables.values())
        return self._result('anonymise', subject, changed=changed_any, subject_found=found, tables=tables)

    # -- erase -------------------------------------------------------------------------------------
    def _tombstone(self, subject: Subject) -> t.Any:
        """Insert a copy of the subject row with its personal columns anonymised and a new id; return the new id."""
        table = self.map.subject
        columns = list(self.info[table.name].columns)
        where, params = self._match(table, 't0', 0, None, subject)
        row = self.db.query(self._sql(f'SELECT {", ".join(f"t0.{quote(c)}" for c in columns)} FROM {self._table(table.name)} t0 WHERE {where}'), params)[0]
        strategies = self._strategies(table)
        values = {column: anonymise_value(strategies.get(column, 'keep'), value, self.key) for column, value in zip(columns, row)}
        id_column = self.map.subject_id_column
        token = uuid.uuid4().hex
        if self.info[table.name].columns[id_column].generated:
            del values[id_column]
        else:
            values[id_column] = f'erased-{token}'
        # The subject row still exists (kept rows point at it until they are repointed), and earlier tombstones too: a column
        # under a unique constraint that does not hold the id gets a value of this tombstone's own.
        for unique in self._unique_sets(table.name):
            if id_column in unique:
                continue
            candidates = [column for column in columns if (None in unique or column in unique)
                          and column not in (id_column, self.map.subject_tenant_column)]
            changed = False
            for column in candidates:
                value = self._tombstone_value(table.name, column, strategies.get(column, 'keep'), values[column], token)
                changed = changed or value is None or value != values[column]
                values[column] = value
            if not changed:
                raise RgpdError(f'tables.{table.name}: a unique constraint on {", ".join(sorted(str(c) for c in unique))} leaves the tombstone '
                                'no column it can make its own (NOT NULL and not text); use erasure delete for the subject table')
        statement = self._sql(
            f'INSERT INTO {self._table(table.name)} ({", ".join(quote(c) for c in values)}) VALUES ({", ".join("?" for dummy in values)})'
        )
        return self.db.insert_returning(statement, list(values.values()), id_column)

    def _tombstone_value(self, table: str, column: str, strategy: str, value: t.Any, token: str) -> t.Any:
        """A value for a tombstone column under a unique constraint, unlike the subject's and every other tombstone's.

        NULL stays NULL (it never collides). Text: ``hmac`` and ``fake`` derive from the tombstone's random token instead of
        the value, ``mask`` and ``redact`` get the token appended (``a***+<12 hex>@domain`` for an e-mail), a kept or unmapped
        column becomes ``erased-<token>``. Any other value becomes NULL when the column allows it.
        """
        if value is None:
            return None
        if isinstance(value, str):
            if strategy == 'hmac':
                return pseudonym(f'tombstone\x00{token}', self.key)
            if strategy == 'fake':
                digest = hmac.new(self.key, b'fake-tombstone\x00' + token.encode('ascii'), hashlib.sha256).hexdigest()[:12]
                return f'{FAKE_PREFIX}{digest}@example.invalid' if '@' in value else f'{FAKE_PREFIX}{digest}'
            if strategy in ('mask', 'redact'):
                if '@' in value:
                    local, domain = value.rsplit('@', 1)
                    return f'{local}+{token[:12]}@{domain}'
                return f'{value}~{token[:12]}'
            return f'erased-{token}'
        if not self.info[table].columns[column].notnull:
            return None
        return value

    def _erase_rows(self, subject: Subject) -> tuple[dict[str, dict[str, t.Any]], t.Any]:
        tables: dict[str, dict[str, t.Any]] = {}
        subject_table = self.map.subject
        replacement: t.Any = None
        # A tombstone is only needed when kept rows point at the subject.
        tombstone = subject_table.erasure == 'anonymise' and any(
            table.erasure == 'anonymise' and table.sides and table is not subject_table and self._count(table, None, subject)
            for table in self.map.tables.values()
        )
        if tombstone and not self.check_mode:
            replacement = self._tombstone(subject)
        for name in self.order:
            table = self.map.tables[name]
            entry: dict[str, t.Any] = {'rows': self._count(table, None, subject), 'deleted': 0, 'anonymised': 0}
            if table.erasure == 'delete' or table is subject_table:
                where, params = self._match(table, 't0', 0, None, subject)
                if self.check_mode:
                    entry['deleted'] = entry['rows']
                else:
                    entry['deleted'] = self.db.execute(self._sql(f'DELETE FROM {self._table(name)} AS t0 WHERE {where}'), params)
                if table is subject_table:
                    entry['tombstone'] = tombstone
            else:
                for side in self._side_names(table):
                    replace = (side, replacement) if side is not None else None
                    entry['anonymised'] += self._rewrite(table, side, self._strategies(table, side), subject, replace)
            tables[name] = entry
        return tables, replacement

    def erase(self, tenant: t.Any, subject_id: t.Any, ledger_file: str | None = None, replay_of: str | None = None,
              ledger_table: bool = False, expected_fingerprint: str | None = None) -> dict[str, t.Any]:
        """Delete or anonymise every row of the subject in one transaction, children first, and record it in the ledger.

        The ledger file (and, with ``ledger_table``, the table ``dihya_rgpd_erasure_ledger`` of the same database) records the
        subject's pseudonym and the fingerprint of its row (a keyed hash of its fingerprint columns). With
        ``expected_fingerprint`` (replay) nothing is erased unless the row still has that fingerprint.
        """
        subject = self.subject(tenant, subject_id)
        self.check_secrets()
        fingerprint_columns = self._fingerprint_columns()
        entry_id = uuid.uuid4().hex
        record: dict[str, t.Any] = {
            'entry_id': entry_id, 'tenant': subject.tenant_given, 'subject': subject.pseudonym, 'data_map_version': self.map.version,
            'erased_at': utcnow(), 'trace_id': self.trace_id, 'replay_of': replay_of, 'fingerprint': None,
            'fingerprint_columns': list(fingerprint_columns),
        }

        def mismatch(fingerprint: str | None) -> bool:
            return expected_fingerprint is not None and not (fingerprint is not None and hmac.compare_digest(fingerprint, expected_fingerprint))

        if self.check_mode:
            with self.db.transaction(write=False):
                found = self._exists(subject)
                if found and mismatch(self._subject_fingerprint(subject, fingerprint_columns)):
                    return self._result('erase', subject, subject_found=True, fingerprint_mismatch=True, tables={})
                tables, dummy = self._erase_rows(subject) if found else ({}, None)
            return self._result('erase', subject, changed=found, subject_found=found, tables=tables)
        pending = False
        try:
            with self.db.transaction(write=True):
                found = self._exists(subject)
                if not found:
                    return self._result('erase', subject, subject_found=False, tables={})
                record['fingerprint'] = self._subject_fingerprint(subject, fingerprint_columns)
                if mismatch(record['fingerprint']):
                    return self._result('erase', subject, subject_found=True, fingerprint_mismatch=True, tables={})
                tables, dummy = self._erase_rows(subject)
                if ledger_table:
                    self._write_ledger_row(record, tables)
                if ledger_file is not None:
                    # Written before the commit: an erasure that commits is always in the file.
                    append_ledger_file(ledger_file, {**record, 'state': 'pending'})
                    pending = True
        except BaseException:
            if pending and ledger_file is not None:
                append_ledger_file(ledger_file, {'entry_id': entry_id, 'state': 'aborted'})
            raise
        if ledger_file is not None:
            append_ledger_file(ledger_file, {'entry_id': entry_id, 'state': 'committed'})
        return self._result('erase', subject, changed=True, subject_found=True, tables=tables, ledger_entry_id=entry_id,
                            fingerprint_recorded=record['fingerprint'] is not None)

    def _write_ledger_row(self, record: t.Mapping[str, t.Any], tables: t.Mapping[str, t.Any]) -> None:
        """The in-database ledger entry (only when asked: the table lives in the application's schema and backups)."""
        table = self._table(LEDGER_TABLE)
        self.db.execute(LEDGER_DDL.format(table=table))
        existing = self.db.introspect([LEDGER_TABLE]).get(LEDGER_TABLE)
        for column in LEDGER_ADDED_COLUMNS:
            if existing is not None and column not in existing.columns:
                self.db.execute(f'ALTER TABLE {table} ADD COLUMN {quote(column)} TEXT')
        self.db.execute(
            self._sql(f'INSERT INTO {table} (entry_id, tenant, subject, data_map_version, erased_at, trace_id, counts, replay_of, fingerprint,'
                      ' fingerprint_columns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
            (record['entry_id'], record['tenant'], record['subject'], record['data_map_version'], record['erased_at'], record['trace_id'],
             json.dumps(tables, sort_keys=True), record['replay_of'], record['fingerprint'], json.dumps(record['fingerprint_columns'])),
        )

    # -- replay ------------------------------------------------------------------------------------
    def _find_subject(self, tenant: t.Any, wanted: str, columns: t.Sequence[str] = ()) -> tuple[t.Any, str | None]:
        """The id of the subject of ``tenant`` whose pseudonym is ``wanted`` (every id of the tenant is tried) and the
        fingerprint of its row over ``columns``; (None, None) when there is none."""
        resolved = self._resolve_tenant(tenant)
        id_column, tenant_column = quote(self.map.subject_id_column), quote(self.map.subject_tenant_column)
        selected = ', '.join([id_column, *(quote(column) for column in columns)])
        query = self._sql(f'SELECT {selected} FROM {self._table(self.map.subject_table)} WHERE {tenant_column} = ?')
        with self.db.transaction(write=False):
            for row in self.db.stream(query, (resolved,)):
                if hmac.compare_digest(pseudonym(row[0], self.key), wanted):
                    return row[0], (self._fingerprint(columns, row[1:]) if columns else None)
        return None, None

    def find_by_pseudonym(self, tenant: t.Any, wanted: str) -> t.Any:
        """The id of the subject of ``tenant`` whose pseudonym is ``wanted``, or None."""
        return self._find_subject(tenant, wanted)[0]

    def replay(self, ledger_file: str, tenant: t.Any = None, allow_unverified: bool = False, ledger_table: bool = False) -> dict[str, t.Any]:
        """Erase again every subject of the ledger file found in the database (after a backup restore).

        A row is erased again only when it has the erased subject's pseudonym *and* fingerprint: a person who got the
        same id later is reported as ``mismatch`` and left alone. Entries written without a fingerprint are reported as
        ``unverified`` and left alone, unless ``allow_unverified``. In check mode each entry to erase lists its rows.
        """
        entries = read_ledger_file(ledger_file)
        subject_columns = self.info[self.map.subject_table].columns
        done: set[tuple[str, str, str]] = set()
        replayed = []
        for entry in entries:
            if entry.get('state') == 'aborted' or 'subject' not in entry:
                continue
            if tenant is not None and entry.get('tenant') != str(tenant):
                continue
            recorded = entry.get('fingerprint') if isinstance(entry.get('fingerprint'), str) and entry.get('fingerprint') else None
            columns = entry.get('fingerprint_columns')
            if recorded is not None and not (isinstance(columns, list) and columns and all(isinstance(c, str) and IDENTIFIER.fullmatch(c) for c in columns)):
                recorded, columns = None, []
            key = (str(entry.get('tenant')), str(entry['subject']), str(recorded))
            if key in done:
                continue
            done.add(key)
            item: dict[str, t.Any] = {'entry_id': entry['entry_id'], 'tenant': entry['tenant'], 'subject': entry['subject'],
                                      'erased_at': entry.get('erased_at')}
            missing = [column for column in columns if column not in subject_columns] if recorded is not None else []
            subject_id, fingerprint = self._find_subject(entry['tenant'], entry['subject'], columns if recorded is not None and not missing else ())
            item['found'] = subject_id is not None
            if subject_id is None:
                item['status'] = REPLAY_ABSENT
            elif recorded is None and not allow_unverified:
                item.update(status=REPLAY_UNVERIFIED, reason='the ledger entry has no fingerprint: nothing proves this row is the erased person')
            elif recorded is not None and missing:
                item.update(status=REPLAY_MISMATCH, reason=f'the subject table no longer has the fingerprint columns {", ".join(missing)}')
            elif recorded is not None and not (fingerprint is not None and hmac.compare_digest(fingerprint, recorded)):
                item.update(status=REPLAY_MISMATCH, reason='the row with this id is not the erased person (its fingerprint differs)')
            else:
                outcome = self.erase(entry['tenant'], subject_id, ledger_file=ledger_file, replay_of=entry['entry_id'], ledger_table=ledger_table,
                                     expected_fingerprint=recorded)
                if outcome.get('fingerprint_mismatch'):
                    item.update(status=REPLAY_MISMATCH, reason='the row changed while replay looked at it (its fingerprint differs)')
                else:
                    item.update(status=REPLAY_WOULD_ERASE if self.check_mode else REPLAY_ERASED, tables=outcome['tables'],
                                ledger_entry_id=outcome.get('ledger_entry_id'))
            replayed.append(item)
        erased = sum(1 for item in replayed if item['status'] in (REPLAY_ERASED, REPLAY_WOULD_ERASE))
        return self._result('replay', None, changed=erased > 0, entries=len(entries), replayed=replayed, erased=erased,
                            mismatched=sum(1 for item in replayed if item['status'] == REPLAY_MISMATCH),
                            unverified=sum(1 for item in replayed if item['status'] == REPLAY_UNVERIFIED))

    # -- consent -----------------------------------------------------------------------------------
    def consent_status(self, consent: ConsentMap, subject: Subject) -> dict[str, dict[str, t.Any]]:
        """The latest decision per purpose (the rows are read oldest first)."""
        table = TableMap(consent.table, (Side(consent.subject_column, {}),), None, consent.tenant_column, 'delete', {}, None, None)
        where, params = self._match(table, 't0', 0, None, subject)
        order = ', '.join(f't0.{quote(column)}' for column in (consent.time_column, *self._key_of(consent.table)))
        query = self._sql(
            f'SELECT t0.{quote(consent.purpose_column)}, t0.{quote(consent.granted_column)}, t0.{quote(consent.source_column)}, '
            f't0.{quote(consent.time_column)} FROM {self._table(consent.table)} t0 WHERE {where} ORDER BY {order}'
        )
        status: dict[str, dict[str, t.Any]] = {}
        for row_purpose, granted, source, at in self.db.stream(query, params):
            status[str(row_purpose)] = {'granted': bool(granted), 'source': source, 'at': _json_value(at) if at is not None else None}
        return status

    def _key_of(self, name: str) -> tuple[str, ...]:
        table = self.map.tables.get(name)
        return (table.key if table is not None and table.key else None) or self.info[name].primary_key

    def consent(self, tenant: t.Any, subject_id: t.Any, action: str, purpose: str | None = None, source: str | None = None,
                at: str | None = None) -> dict[str, t.Any]:
        """Grant or withdraw a consent (a new row in the consent history), or report the current status."""
        consent = self.map.consent
        if consent is None:
            raise RgpdError('the data map has no consent section')
        if action not in CONSENT_ACTIONS:
            raise RgpdError(f'consent action must be one of {", ".join(CONSENT_ACTIONS)}')
        if action != 'status' and not purpose:
            raise RgpdError(f'consent {action} needs a purpose')
        if purpose is not None and consent.purposes and purpose not in consent.purposes:
            raise RgpdError(f'unknown consent purpose {purpose[:64]!r} (expected one of {", ".join(consent.purposes)})')
        subject = self.subject(tenant, subject_id)
        with self.db.transaction(write=action != 'status' and not self.check_mode):
            if not self._exists(subject):
                raise RgpdError(f'no such subject in tenant {subject.tenant_given[:64]!r}')
            status = self.consent_status(consent, subject)
            changed = False
            if action != 'status' and purpose is not None:
                want = action == 'grant'
                current = status.get(purpose)
                changed = current is None or current['granted'] != want
                if changed:
                    moment = at or utcnow()
                    entry = {'granted': want, 'source': source or 'dihya.ops.rgpd', 'at': moment}
                    if not self.check_mode:
                        granted_info = self.info[consent.table].columns[consent.granted_column]
                        values: dict[str, t.Any] = {
                            consent.subject_column: subject.id,
                            consent.purpose_column: purpose,
                            consent.granted_column: int(want) if granted_info.kind == 'integer' else want,
                            consent.source_column: entry['source'],
                            consent.time_column: moment,
                        }
                        if consent.tenant_column is not None:
                            values[consent.tenant_column] = subject.tenant
                        self.db.execute(
                            self._sql(f'INSERT INTO {self._table(consent.table)} ({", ".join(quote(c) for c in values)}) '
                                      f'VALUES ({", ".join("?" for dummy in values)})'),
                            list(values.values()),
                        )
                    status[purpose] = entry
        result = self._result('consent', subject, changed=changed, subject_found=True, consents=status)
        if purpose is not None:
            result['consent'] = {'purpose': purpose, **status.get(purpose, {'granted': False, 'source': None, 'at': None})}
        return result


def run(engine: Engine, operation: str, **params: t.Any) -> dict[str, t.Any]:
    """Dispatch one operation by name with its parameters."""
    if operation == 'inventory':
        return engine.inventory(params['tenant'], params['subject_id'])
    if operation == 'export':
        return engine.export(params['tenant'], params['subject_id'], params['dest'], params.get('encryption_key'),
                             force=bool(params.get('force')))
    if operation == 'anonymise':
        return engine.anonymise(params['tenant'], params['subject_id'])
    if operation == 'erase':
        if not params.get('ledger_file') and not params.get('ledger_table'):
            raise RgpdError('erase needs the erasure ledger file (ledger_file), or ledger_table: true for the ledger table in the database')
        return engine.erase(params['tenant'], params['subject_id'], params.get('ledger_file'), ledger_table=bool(params.get('ledger_table')))
    if operation == 'consent':
        return engine.consent(params['tenant'], params['subject_id'], params.get('consent_action') or 'status', params.get('purpose'),
                              params.get('source'), params.get('at'))
    if operation == 'replay':
        if not params.get('ledger_file'):
            raise RgpdError('replay needs the erasure ledger file (ledger_file)')
        return engine.replay(params['ledger_file'], params.get('tenant'), allow_unverified=bool(params.get('replay_unverified')),
                             ledger_table=bool(params.get('ledger_table')))
    raise RgpdError(f'unknown operation {operation!r} (expected one of {", ".join(OPERATIONS)})')


__all__ = [
    'CONSENT_ACTIONS', 'DbError', 'Engine', 'LEDGER_TABLE', 'OPERATIONS', 'RgpdError', 'anonymise_value', 'check_schema',
    'clean_stale_temp_files', 'decrypt_archive', 'looks_secret', 'new_trace_id', 'parse_encryption_key', 'pseudonym', 'read_ledger_file', 'run',
]
