# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Verification of an audit log: every HMAC, every link of the chain, every sequence number, across rotated files.

Crashes
    A writer killed in the middle of a write may leave an incomplete line; the next writer lists it
    in ``dihya.audit.recovered`` of its first record (see ``_audit_log``). :func:`verify` accepts a
    line that is not valid JSON only when it is

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

Limits
    A hash chain cannot show that records were removed from its *end* (or whole files from its
    beginning, which is what log retention does). :func:`verify` returns ``last_seq`` and
    ``last_hash``, and ``min_last_seq`` makes it fail when the log ends before a sequence number
    known from elsewhere (for example a previous verification).
"""

from __future__ import annotations

import dataclasses
import hmac
import os
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._audit_event import AuditError, check_key, check_path
from ansible_collections.dihya.ops.plugins.module_utils._audit_record import (
    CHECKPOINT_ACTION,
    MAX_RECORD_BYTES,
    READ_ERRORS,
    ZERO_HASH,
    Line,
    Opened,
    audit_block,
    line_mac_matches,
    parse_line,
    read_lines,
    record_mac,
    rotated_files,
)
from ansible_collections.dihya.ops.plugins.module_utils._canonical import canonical


TRUNCATED_REASON = 'truncated record (crash)'


@dataclasses.dataclass
class VerifyReport:
    """Result of :func:`verify`. ``error`` is the first bad line: ``{"file", "line", "reason"}``."""

    ok: bool
    records: int
    files: list[str]
    last_seq: int | None
    last_hash: str | None
    truncated_tail: bool
    error: dict[str, t.Any] | None
    first_seq: int | None = None
    notes: list[dict[str, t.Any]] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, t.Any]:
        return dataclasses.asdict(self)


class _Failed(Exception):
    def __init__(self, path: str, line: int, reason: str) -> None:
        super().__init__(reason)
        self.where = {'file': path, 'line': line, 'reason': reason}


def _cut_short(line: Line) -> bool:
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
        self.notes: list[dict[str, t.Any]] = []

    def file(self, path: str, handle: t.BinaryIO, newest: bool) -> int:
        """Verify one file; return its number of lines."""
        pending: list[Line] = []
        number = 0
        for line in read_lines(handle):
            number = line.number
            document = None
            if line.data is not None:
                try:
                    document = parse_line(line.data)
                except (ValueError, RecursionError):
                    document = None
                else:
                    if audit_block(document) is None:
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

    def record(self, path: str, line: Line, data: bytes, document: dict[str, t.Any], pending: list[Line]) -> None:
        audit = document['dihya']['audit']
        if not line_mac_matches(data, audit['hmac'], self.key):
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
            expected = (self.last_seq or 0) + 1
            if audit['seq'] != expected:
                raise _Failed(path, line.number, f'sequence gap: expected seq {expected}, found {audit["seq"]}')
        for item in pending:
            self.notes.append({'file': path, 'line': item.number, 'reason': f'{TRUNCATED_REASON}: recovered by the record at line {line.number}'})
        self.records += 1
        self.last_seq, self.last_hash, self.last_where = audit['seq'], line.sha256, (path, line.number)


def verify(path: str, key: bytes, include_rotated: bool = True, min_last_seq: int | None = None) -> VerifyReport:
    """Verify the chain of ``path`` (and, by default, of its rotated predecessors, oldest first).

    Reads only. Stops at the first bad line. See this module's documentation for what counts as a
    crash rather than tampering. Raises :class:`AuditError` when there is nothing to verify or
    a file cannot be opened (symbolic link, not a regular file, permissions).
    """
    check_key(key)
    path = check_path(path, 'the audit log path')
    files = rotated_files(path) if include_rotated else []
    if os.path.lexists(path) or not files:
        files.append(path)
    verifier = _Verifier(key)
    error: dict[str, t.Any] | None = None
    lines = 0
    for index, name in enumerate(files):
        try:
            opened = Opened(name)
        except FileNotFoundError:
            if name == path and not files[:-1]:
                raise AuditError(f'{path} does not exist') from None
            continue  # rotated away meanwhile
        try:
            lines = verifier.file(name, opened.handle, newest=index == len(files) - 1)
        except _Failed as exc:
            error = exc.where
            break
        except READ_ERRORS as exc:
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
