# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The erasure ledger of the RGPD engine: what was erased, by pseudonym and fingerprint only, for replay after a restore.

The ledger file (JSON lines, outside the database and its backups) gets an entry ``pending`` before the erasure
commits and ``committed`` (or ``aborted``) after; with ``ledger_table`` the entry also goes into the table
:data:`LEDGER_TABLE` of the same database, in the erasure's transaction. A fingerprint is a keyed hash of stable columns
of the subject row: replay erases a row again only when it has both the recorded pseudonym and fingerprint.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import hmac
import json
import os
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._ids import PSEUDONYM_PREFIX
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_db import Database, TableInfo, quote
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_errors import RgpdError
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_map import IDENTIFIER, DataMap
from ansible_collections.dihya.ops.plugins.module_utils._rgpd_values import json_value
from ansible_collections.dihya.ops.plugins.module_utils._safe_write import UnsafeDestination, append_open

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


def fingerprint(key: bytes, columns: t.Sequence[str], values: t.Sequence[t.Any]) -> str:
    """The keyed hash of a subject row's ``columns`` holding ``values``."""
    data = json.dumps([[column, None if value is None else json_value(value)] for column, value in zip(columns, values, strict=True)],
                      separators=(',', ':'), ensure_ascii=False)
    return PSEUDONYM_PREFIX + hmac.new(key, FINGERPRINT_CONTEXT + data.encode('utf-8'), hashlib.sha256).hexdigest()


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


def write_ledger_row(db: Database, record: t.Mapping[str, t.Any], tables: t.Mapping[str, t.Any]) -> None:
    """The in-database ledger entry (only when asked: the table lives in the application's schema and backups)."""
    table = db.table(LEDGER_TABLE)
    db.execute(LEDGER_DDL.format(table=table))
    existing = db.introspect([LEDGER_TABLE]).get(LEDGER_TABLE)
    for column in LEDGER_ADDED_COLUMNS:
        if existing is not None and column not in existing.columns:
            db.execute(f'ALTER TABLE {table} ADD COLUMN {quote(column)} TEXT')
    db.execute(
        db.sql(f'INSERT INTO {table} (entry_id, tenant, subject, data_map_version, erased_at, trace_id, counts, replay_of, fingerprint,'
               ' fingerprint_columns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
        (record['entry_id'], record['tenant'], record['subject'], record['data_map_version'], record['erased_at'], record['trace_id'],
         json.dumps(tables, sort_keys=True), record['replay_of'], record['fingerprint'], json.dumps(record['fingerprint_columns'])),
    )


@dataclasses.dataclass(frozen=True)
class ReplayEntry:
    """One erasure of a ledger file to replay: its entry, and the fingerprint it recorded over ``columns`` (None when it has none)."""

    entry: t.Mapping[str, t.Any]
    recorded: str | None
    columns: tuple[str, ...]

    def item(self) -> dict[str, t.Any]:
        """The start of what replay reports about the entry."""
        entry = self.entry
        return {'entry_id': entry['entry_id'], 'tenant': entry['tenant'], 'subject': entry['subject'], 'erased_at': entry.get('erased_at')}


def replay_entries(entries: t.Iterable[t.Mapping[str, t.Any]], tenant: t.Any = None) -> list[ReplayEntry]:
    """The erasures of ``entries`` to replay (of ``tenant`` only, when given), each once: aborted erasures are left out.

    A fingerprint whose column list is not a list of identifiers counts as no fingerprint at all.
    """
    done: set[tuple[str, str, str]] = set()
    found = []
    for entry in entries:
        if entry.get('state') == 'aborted' or 'subject' not in entry:
            continue
        if tenant is not None and entry.get('tenant') != str(tenant):
            continue
        recorded = entry.get('fingerprint') if isinstance(entry.get('fingerprint'), str) and entry.get('fingerprint') else None
        columns = entry.get('fingerprint_columns')
        if not (isinstance(columns, list) and columns and all(isinstance(c, str) and IDENTIFIER.fullmatch(c) for c in columns)):
            recorded, columns = None, []
        key = (str(entry.get('tenant')), str(entry['subject']), str(recorded))
        if key in done:
            continue
        done.add(key)
        found.append(ReplayEntry(entry, recorded, tuple(t.cast(list[str], columns)) if recorded is not None else ()))
    return found


def fingerprint_columns(data_map: DataMap, info: t.Mapping[str, TableInfo]) -> tuple[str, ...]:
    """Columns of the subject row whose keyed hash identifies the erased person beyond the id."""
    columns = info[data_map.subject_table].columns
    declared = getattr(data_map, 'subject_fingerprint_columns', None)
    if declared is not None:
        missing = [column for column in declared if column not in columns]
        if missing:
            raise RgpdError(f'subject.fingerprint_columns: table {data_map.subject_table!r} has no column '
                            + ', '.join(repr(column) for column in missing))
        return tuple(declared)
    return tuple(column for column in DEFAULT_FINGERPRINT_COLUMNS if column in columns)[:1]
