# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The durable local spool of audit records waiting for their network sinks.

One directory per sink, one file per record: ``<spool>/<sink name>/<stamp>.json``, mode 0600, the record's
canonical JSON. A record is written under a temporary name, fsynced and linked to its final name, which fails
if anything is there (see ``_safe_write``); a directory the spool creates is fsynced into its parent. A file is
removed only once its sink acknowledged the record (:meth:`Spool.ack`); a record the sink refused for good moves
to ``<sink>/rejected/`` (never over anything), with the reason next to it. A symbolic link, FIFO or device
found where a spool directory, a spool file or a reason file goes is refused, never written through.

Spool files hold only the record, never keys or tokens. Only one process delivers from a spool at a time:
:meth:`Spool.lock` (an ``fcntl`` lock on ``<spool>/.lock``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import secrets
import stat
import time
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._canonical import canonical
from ansible_collections.dihya.ops.plugins.module_utils._safe_write import atomic_write, fsync_directory, move_no_replace

SPOOL_SUFFIX = '.json'
REJECTED_DIR = 'rejected'
LOCK_NAME = '.lock'
FILE_MODE = 0o600
DIR_MODE = 0o700
NAME_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')
SPOOL_FILE_PATTERN = re.compile(r'^[0-9]{20}-[0-9]+-[0-9a-f]{8}\.json$')


class SpoolError(Exception):
    """The spool cannot be written or read."""


def is_sink_name(name: object) -> t.TypeGuard[str]:
    """Whether ``name`` can name a sink's spool directory: 1 to 64 letters, digits, ``.``, ``_`` or ``-``, not ``rejected``."""
    return isinstance(name, str) and NAME_PATTERN.match(name) is not None and name != REJECTED_DIR


def _refuse_constant(name: str) -> t.NoReturn:
    raise ValueError(f'{name} is not JSON')


@dataclasses.dataclass(frozen=True)
class SpoolItem:
    sink: str
    path: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


class Spool:
    """One directory per sink, one file per record; see the module docstring."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)

    def _check_dir(self, path: str) -> bool:
        """Whether the directory ``path`` exists; raise :class:`SpoolError` when something else is there."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise SpoolError(f'cannot examine the spool directory {path}: {exc.strerror}') from exc
        if not stat.S_ISDIR(info.st_mode):
            raise SpoolError(f'the spool path {path} exists and is not a directory (symbolic links are refused)')
        return True

    def _ensure_dir(self, path: str) -> None:
        if self._check_dir(path):
            return
        created = []
        missing = path
        while not os.path.lexists(missing) and missing != os.path.dirname(missing):
            created.append(missing)
            missing = os.path.dirname(missing)
        try:
            os.makedirs(path, mode=DIR_MODE, exist_ok=True)
            self._check_dir(path)
            # A new directory is durable once its entry is: fsync the directory holding each one created, outermost first.
            for directory in reversed(created):
                fsync_directory(os.path.dirname(directory))
        except OSError as exc:
            raise SpoolError(f'cannot create the spool directory {path}: {exc.strerror}') from exc

    def check(self) -> None:
        """Raise :class:`SpoolError` when the spool path exists and is not a directory (or is a symbolic link)."""
        self._check_dir(self.directory)

    def sink_dir(self, sink: str) -> str:
        if not is_sink_name(sink):
            raise SpoolError(f'bad sink name for the spool: {sink!r}')
        return os.path.join(self.directory, sink)

    def put(self, sink: str, record: t.Mapping[str, t.Any]) -> SpoolItem:
        """Write ``record`` for ``sink``: temporary file, fsync, link to a new name (never over anything), fsync of the directory."""
        try:
            data = canonical(record).encode('utf-8') + b'\n'
        except (ValueError, TypeError) as exc:
            raise SpoolError(f'cannot spool the record, it has no canonical JSON form: {exc}') from exc
        self._ensure_dir(self.directory)
        directory = self.sink_dir(sink)
        self._ensure_dir(directory)
        name = f'{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}{SPOOL_SUFFIX}'
        final = os.path.join(directory, name)
        try:
            with atomic_write(final, mode=FILE_MODE) as handle:
                handle.write(data)
        except OSError as exc:
            raise SpoolError(f'cannot write to the spool {directory}: {exc.strerror}') from exc
        return SpoolItem(sink, final)

    def items(self, sink: str, limit: int | None = None) -> list[SpoolItem]:
        """Spooled records of ``sink``, oldest first."""
        directory = self.sink_dir(sink)
        self._check_dir(directory)
        try:
            names = sorted(name for name in os.listdir(directory) if SPOOL_FILE_PATTERN.match(name))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SpoolError(f'cannot read the spool {directory}: {exc.strerror}') from exc
        return [SpoolItem(sink, os.path.join(directory, name)) for name in names[:limit]]

    def count(self, sink: str) -> int:
        return len(self.items(sink))

    def rejected(self, sink: str) -> int:
        directory = os.path.join(self.sink_dir(sink), REJECTED_DIR)
        try:
            return sum(1 for name in os.listdir(directory) if SPOOL_FILE_PATTERN.match(name))
        except OSError:
            return 0

    def sinks(self) -> list[str]:
        """Names of the sinks that have a spool directory."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        return sorted(name for name in names if NAME_PATTERN.match(name) and os.path.isdir(os.path.join(self.directory, name)))

    def read(self, item: SpoolItem) -> dict[str, t.Any]:
        """The spooled record; raise :class:`SpoolError` when it is not a JSON object (NaN and infinities are not JSON)."""
        try:
            with open(item.path, encoding='utf-8') as handle:
                record = json.load(handle, parse_constant=_refuse_constant)
        except (OSError, ValueError) as exc:
            raise SpoolError(f'cannot read the spooled record {item.path}: {exc}') from exc
        if not isinstance(record, dict):
            raise SpoolError(f'the spooled record {item.path} is not a JSON object')
        return record

    def ack(self, item: SpoolItem) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(item.path)

    def reject(self, item: SpoolItem, reason: str) -> None:
        """Move a record the sink refused for good to ``<sink>/rejected/``, with the reason next to it."""
        directory = os.path.join(self.sink_dir(item.sink), REJECTED_DIR)
        self._ensure_dir(directory)
        target = os.path.join(directory, item.name)
        try:
            # The reason file is ours (a regular one from an interrupted earlier move is replaced); the record itself
            # never replaces anything in rejected/.
            with atomic_write(target + '.reason', mode=FILE_MODE, force=True) as handle:
                handle.write((reason + '\n').encode('utf-8'))
            move_no_replace(item.path, target)
        except OSError as exc:
            raise SpoolError(f'cannot move a rejected record to {directory}: {exc.strerror}') from exc

    @contextlib.contextmanager
    def lock(self, timeout: float) -> t.Iterator[bool]:
        """Hold the delivery lock; yields False when another process keeps it longer than ``timeout``."""
        self._ensure_dir(self.directory)
        path = os.path.join(self.directory, LOCK_NAME)
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        except OSError as exc:
            raise SpoolError(f'cannot open the spool lock {path}: {exc.strerror}') from exc
        try:
            expires = time.monotonic() + max(0.0, timeout)
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= expires:
                        yield False
                        return
                    time.sleep(0.05)
            yield True
        finally:
            os.close(descriptor)
