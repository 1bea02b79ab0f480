# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The audit log writer: appends chained records to one file, safely for many processes, across rotations and crashes.

Writers
    :meth:`AuditLog.append` takes an exclusive ``flock`` on ``<path>.lock``, finds the last record
    of the file, writes the new records and fsyncs them (after each record, or once per call).
    The log is opened with ``O_NOFOLLOW`` (a symbolic link at the log path is refused) and must
    be a regular file. A writer that waited for the lock while the file was rotated reopens the
    new file.

Durability
    Records are fsynced before :meth:`AuditLog.append` returns. A new log file's directory entry
    is flushed too (``_safe_write.fsync_directory``) before any record is written to it, and again
    by every writer that finds the file still empty (created by logrotate, or by a writer that
    could not flush it). When that flush fails, the append fails with :class:`AuditError` and
    writes nothing: a record in a file whose name may vanish in a crash is not durable, and the
    caller must know. A file system that cannot flush directories at all (``EINVAL``,
    ``ENOTSUP``) gives its entries the durability it has; that is not an error.

Rotation
    When a writer finds the log missing or without any record and a rotated predecessor exists
    (``<path>.1``, ``<path>.2``... or logrotate's ``dateext`` names ``<path>-20261125``; each
    possibly compressed with gzip, ``.gz``), it first writes a *checkpoint* record
    (``event.action = audit.checkpoint``) whose ``prev`` is the hash of the predecessor's last
    record and whose ``seq`` follows it, so that verification follows one unbroken chain from
    the oldest rotated file to the live one. Rotated files must stay in the log's directory.
    Use logrotate's ``create`` mode, not ``copytruncate`` (records written between the copy
    and the truncation would be lost without a trace).

Crashes
    A writer killed in the middle of a write may leave an incomplete last line. The next writer
    starts its first record on a new line, chains it to the last *complete* record, and lists
    the incomplete line(s) it found after that record in ``dihya.audit.recovered`` (size and
    SHA-256 of each), under the record's HMAC. See ``_audit_verify`` for how they are checked.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import hmac
import os
import secrets
import stat
import time
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._audit_event import AuditError, AuditSettings, build_event, check_path, json_copy
from ansible_collections.dihya.ops.plugins.module_utils._audit_record import (
    CHECKPOINT_ACTION,
    MAX_RECORD_BYTES,
    READ_ERRORS,
    ZERO_HASH,
    Opened,
    line_hash,
    open_regular,
    read_lines,
    record_of,
    rotated_files,
)
from ansible_collections.dihya.ops.plugins.module_utils._canonical import canonical
from ansible_collections.dihya.ops.plugins.module_utils._safe_write import fsync_directory


# The tail a writer scans back for the last record.
MAX_TAIL_SCAN = 4 << 20
LOCK_TIMEOUT = 60.0
# fsync errors of a file system that cannot flush a directory at all (not a failed flush).
_NO_DIRECTORY_SYNC = frozenset(code for code in (errno.EINVAL, getattr(errno, 'ENOTSUP', None), getattr(errno, 'EOPNOTSUPP', None))
                               if code is not None)
_DIR_FLAGS = os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0) | getattr(os, 'O_CLOEXEC', 0)


@dataclasses.dataclass
class _Anchor:
    """Where the next record chains to."""

    seq: int
    hash: str
    source: str | None = None           # predecessor file when the next record must be a checkpoint
    fragments: list[dict[str, t.Any]] = dataclasses.field(default_factory=list)
    needs_newline: bool = False


def _tail_of_fd(fd: int, size: int) -> tuple[tuple[int, str] | None, list[dict[str, t.Any]]]:
    """Scan a file backwards: ``((seq, hash) of its last record or None, fragments after it, oldest first)``.

    Fragments are the lines after the last record (the last one possibly without a newline).
    """
    fragments: list[dict[str, t.Any]] = []
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
            fd = open_regular(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return _tail_of_fd(fd, os.fstat(fd).st_size)[0]
        finally:
            os.close(fd)
    last = None
    try:
        opened = Opened(path)
    except FileNotFoundError:
        return None
    try:
        for line in read_lines(opened.handle):
            if line.data is not None:
                found = record_of(line.data)
                if found is not None:
                    last = (found[1]['seq'], line.sha256)
    except READ_ERRORS as exc:
        raise AuditError(f'cannot read the rotated file {path}: {exc}') from None
    finally:
        opened.close()
    return last


_TOKEN = secrets.token_hex(16)
_MARKER = canonical({'prev': _TOKEN, 'seq': 0}).encode('ascii')


@dataclasses.dataclass
class _Prepared:
    """An event and its canonical text before and after its ``dihya.audit`` block."""

    event: dict[str, t.Any]
    head: bytes
    tail: bytes

    @classmethod
    def of(cls, event: dict[str, t.Any]) -> _Prepared:
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

    def append(self, events: t.Sequence[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
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

    def check(self) -> bool:
        """What :meth:`append` would refuse, found without writing (check mode); False when the log's directory is missing.

        Raises AuditError when the log or its lock file is a symbolic link or not a regular file.
        """
        if not os.path.isdir(os.path.dirname(self.path)):
            return False
        for name in (self.path, self.path + '.lock'):
            try:
                info = os.lstat(name)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise AuditError(f'cannot open {name}: {exc.strerror}') from None
            if stat.S_ISLNK(info.st_mode):
                raise AuditError(f'refusing to open {name}: it is a symbolic link')
            if not stat.S_ISREG(info.st_mode):
                raise AuditError(f'refusing to use {name}: it is not a regular file')
        return True

    # -- internals ----------------------------------------------------------------------------

    def _prepare(self, event: t.Any) -> _Prepared:
        if not isinstance(event, dict):
            raise AuditError(f'an audit event must be a mapping, not {type(event).__name__}')
        copy = json_copy('audit events', event)
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
            fd = open_regular(lock_path, os.O_RDWR | os.O_CREAT, self.mode)
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
            return open_regular(self.path, os.O_RDWR | os.O_APPEND), False
        except FileNotFoundError:
            pass
        try:
            return open_regular(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, self.mode), True
        except FileNotFoundError:
            raise AuditError(f'cannot create {self.path}: its directory does not exist') from None
        except FileExistsError:
            return open_regular(self.path, os.O_RDWR | os.O_APPEND), False

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

    def _checkpoint(self, anchor: _Anchor, before: list[_Prepared]) -> dict[str, t.Any]:
        # The host of the events it comes before (their writer names it, as every event of the run does), else this machine.
        host = next((event.event['host'].get('name') for event in before if isinstance(event.event.get('host'), dict)), None)
        event = build_event(action=CHECKPOINT_ACTION, category='audit', outcome='success', settings=self.settings,
                            host=host if isinstance(host, str) else None)
        event['dihya'] = {'checkpoint': {'file': anchor.source, 'seq': anchor.seq, 'hash': anchor.hash}}
        return event

    def _seal(self, event: dict[str, t.Any] | _Prepared, seq: int, prev: str, recovered: list[dict[str, t.Any]]) -> tuple[dict[str, t.Any], bytes]:
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

    def _write(self, prepared: list[_Prepared], checkpoint_only: bool) -> list[dict[str, t.Any]]:
        if os.path.islink(self.path):
            raise AuditError(f'refusing to open {self.path}: it is a symbolic link')
        lock_fd = self._lock()
        try:
            fd, created = self._open_current()
            try:
                if created or os.fstat(fd).st_size == 0:
                    self._sync_directory()
                anchor = self._anchor(fd)
                events = list(prepared)
                if anchor.source is not None:
                    events.insert(0, _Prepared.of(self._checkpoint(anchor, events)))
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

    def _sync_directory(self) -> None:
        """Flush the directory entry of a new (or still empty) log file; AuditError when it cannot be made durable."""
        directory = os.path.dirname(self.path)
        try:
            # Like the log path, the directory may be reached through symbolic links: only the file itself may not be one.
            fd = os.open(directory, _DIR_FLAGS)
            try:
                fsync_directory(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno in _NO_DIRECTORY_SYNC:
                return
            raise AuditError(f'cannot flush the directory {directory} of {self.path} to disk: {exc.strerror}; nothing was written, '
                             'as records in a file that a crash may take away are not durable') from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        count = os.write(fd, view)
        view = view[count:]
