# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The export archive of the RGPD engine: a zip file of one JSON and one CSV file per table and a manifest.

The archive is written under a temporary name next to its destination, fsynced and put in place (``_safe_write``),
optionally encrypted with AES-256-GCM as it is written (:func:`decrypt_archive` reads it back). Each table is read
once: its JSON goes straight into the archive while its CSV waits in a spool file without a name (encrypted with a
key of its own when the archive is encrypted), since a zip file is written one member at a time.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import stat
import typing as t
import zipfile

from ansible_collections.dihya.ops.plugins.module_utils._optional import optional_library
from ansible_collections.dihya.ops.plugins.module_utils._process import pid_alive
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_batches import ByteBudget, byte_bounded
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_db import Database, DbError, TableInfo, quote
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_errors import RgpdError
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_values import csv_value, json_value
from ansible_collections.dihya.ops.plugins.module_utils._safe_write import UnsafeDestination, atomic_write, check_destination, open_dir

ARCHIVE_FORMAT = 'dihya-rgpd-export/1'
# Encrypted archive: MAGIC, a 12-byte nonce, the AES-256-GCM ciphertext of the zip file, the 16-byte tag.
ENCRYPTION_MAGIC = b'DIHYA-RGPD-AESGCM-1\n'
NONCE_SIZE = 12
TAG_SIZE = 16
TEMP_MARKER = '.rgpd-tmp-'
WRITE_BUFFER = 256 * 1024
# Fast deflate: rows of text compress well even at level 1, and the export is CPU-bound.
COMPRESS_LEVEL = 1


def _ciphers(purpose: str) -> t.Any:
    return optional_library('cryptography.hazmat.primitives.ciphers', purpose, error=DbError)


def _csv_line(values: t.Sequence[t.Any]) -> str:
    """One CSV line as the csv module writes it, without its line end."""
    text = io.StringIO()
    csv.writer(text).writerow(values)
    return text.getvalue()[:-2]


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


class EncryptingWriter(io.RawIOBase):
    """AES-256-GCM stream: MAGIC, nonce, ciphertext, then the tag when closed. Not seekable (zipfile streams into it)."""

    def __init__(self, target: t.BinaryIO, key: bytes) -> None:
        super().__init__()
        ciphers = _ciphers('archive encryption')
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


class Spool:
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
        self.ciphers = _ciphers('archive encryption') if encrypted else None
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
    ciphers = _ciphers('archive decryption')
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
            if pid_text.isdigit() and int(pid_text) != os.getpid() and pid_alive(int(pid_text)):
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


def check_dest(dest: str, check_mode: bool = False, force: bool = False) -> None:
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


@dataclasses.dataclass(frozen=True)
class ArchiveTable:
    """One table of an export: its exported columns (``info``, secret columns left out) and the subject's rows of it
    (``where`` on the alias ``t0``, with its ``params``), written in the order of ``order`` (the table's key)."""

    name: str
    info: TableInfo
    where: str
    params: tuple[t.Any, ...]
    order: tuple[str, ...]


def write_archive(sink: t.Any, spool: Spool, db: Database, tables: t.Iterable[ArchiveTable],
                  manifest: t.Mapping[str, t.Any]) -> tuple[dict[str, dict[str, t.Any]], dict[str, dict[str, t.Any]]]:
    """Write every table and ``manifest.json`` (``manifest`` and the tables' rows and files) into a zip file streamed to ``sink``."""
    counts: dict[str, dict[str, t.Any]] = {}
    files: dict[str, dict[str, t.Any]] = {}
    with zipfile.ZipFile(sink, 'w', compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as archive:
        for table in tables:
            counts[table.name] = {'rows': _write_table(archive, spool, db, table, files)}
        document = {'format': ARCHIVE_FORMAT, **manifest, 'tables': counts, 'files': files}
        archive.writestr('manifest.json', json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + '\n')
    return counts, files


def _write_table(archive: zipfile.ZipFile, spool: Spool, db: Database, table: ArchiveTable, files: dict[str, dict[str, t.Any]]) -> int:
    """One pass over the subject's rows of a table: ``<table>.json`` goes straight into the archive while
    ``<table>.csv`` goes to the spool, then into the archive once the JSON member is closed (a zip file is
    written one member at a time). Both are hashed as they are written."""
    name, columns, where, params = table.name, list(table.info.columns), table.where, table.params
    order = ', '.join(f't0.{quote(column)}' for column in table.order)
    # The database writes the rows' JSON and CSV text itself when it can; the rows it leaves come with their values.
    texts = db.row_text(table.info, 't0')
    offset = 0
    if texts is not None:
        selected = [texts.json, *([texts.csv] if texts.csv is not None else []), *texts.values]
        offset = 2 if texts.csv is not None else 1
    else:
        selected = [f't0.{quote(column)}' for column in columns]
    if texts is not None and texts.sort_first:
        inner = f'SELECT {", ".join(f"t0.{quote(column)}" for column in columns)} FROM {db.table(name)} t0 WHERE {where} ORDER BY {order}'
        query = db.sql(f'SELECT {", ".join(selected)} FROM ({inner}) t0 ORDER BY {order}')
    else:
        query = db.sql(f'SELECT {", ".join(selected)} FROM {db.table(name)} t0 WHERE {where} ORDER BY {order}')
    encode = json.JSONEncoder(ensure_ascii=False, separators=(',', ':'), default=json_value).encode
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
        budget = ByteBudget()
        for batch in byte_bounded(db.stream_batches(query, params, budget), budget, db.concurrent_reads):
            if texts is None:
                objects = [encode(dict(zip(columns, row, strict=True))) for row in batch]
                out.writerows([[csv_value(value) for value in row] for row in batch])
            else:
                objects = [row[0] for row in batch]
                lines = [row[1] for row in batch] if texts.csv is not None else None
                values = [row[offset:] for row in batch]
                for index in [index for index, text in enumerate(objects) if text is None]:
                    if len(values[index]) != len(columns):
                        raise RgpdError(f'the database gave neither the text nor the values of a row of {name}')
                    objects[index] = encode(dict(zip(columns, values[index], strict=True)))
                    values[index] = [csv_value(value) for value in values[index]]
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
            batch = objects = lines = values = chunk = None  # type: ignore[assignment]  # noqa: PLW2901
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
