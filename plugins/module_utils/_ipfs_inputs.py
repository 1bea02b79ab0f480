# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The inputs of an IPFS export: reached safely inside the allowed roots, walked in order, and recognised.

Reaching
    Each allowed root is opened from ``/`` one component at a time with ``O_NOFOLLOW`` (:mod:`._fs_chain`);
    each input path must be absolute, without ``..``, and inside one of them; its components below the root
    are opened the same way from the root's descriptor. A symbolic link anywhere (on the way, as the input,
    or inside an exported folder), a FIFO, socket or device, a name that is not UTF-8 or a missing path is a
    refusal (:class:`IpfsError`) before anything is written. The device and inode of every file and folder
    are recorded during the walk; each later read reopens the file the same way, refuses a FIFO without
    blocking (``O_NONBLOCK``) and checks that it is still the file recorded (and the folders on the way the
    folders recorded), so a swap between the walk and a read stops the export.

Recognising (what may go to IPFS, see ``docs/ipfs.md``)
    * ``audit-log``: every line is a record of the collection's audit log format (``dihya.audit`` with
      ``seq``, ``prev``, ``hmac``; see ``_audit_record``), the records are chained (each ``seq`` one more
      than the previous, each ``prev`` the SHA-256 of the previous line) and every personal field the
      audit events carry (``user.id``, ``user.email``, ``source.ip``) is a pseudonym. The HMACs need the
      chain key, which ``audit_verify`` checks; the export checks the format and the chain.
    * ``rgpd-manifest``: a ``.json`` file of at most 16 MiB whose ``format`` is the RGPD export's
      (``dihya-rgpd-export/1``) and whose ``subject``, if any, is a pseudonym.
    * ``report``: a ``.json``, ``.md``, ``.txt`` or ``.html`` file inside one of the report folders given
      (the backend model's ``dihya_backend_reports_dir``: what operations write there is theirs).
    * ``empty``: a file of no bytes (a lock file) holds nothing personal.
    Anything else is ``unknown``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._audit_record import line_hash, read_lines, record_of
from ansible_collections.dihya.ops.plugins.module_utils._fs_chain import (
    DIR_FLAGS, MISSING, SYMLINK, ChainError, Identity, close_all, components, identity, open_chain, open_path,
)
from ansible_collections.dihya.ops.plugins.module_utils._ids import is_pseudonym
from ansible_collections.dihya.ops.plugins.module_utils._ipfs_unixfs import IpfsError
from ansible_collections.dihya.ops.plugins.module_utils._safe_write import describe


AUDIT_LOG = 'audit-log'
RGPD_MANIFEST = 'rgpd-manifest'
REPORT = 'report'
EMPTY = 'empty'
UNKNOWN = 'unknown'
RGPD_FORMAT = 'dihya-rgpd-export/1'
REPORT_SUFFIXES = ('.json', '.md', '.txt', '.html')
MAX_MANIFEST_BYTES = 16 << 20
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0)
_PERSONAL_FIELDS = (('user', 'id'), ('user', 'email'), ('source', 'ip'))


@dataclasses.dataclass
class Entry:
    """A file or folder to export: where it is (its root and the names below it) and what it was when walked."""

    root: str
    names: tuple[str, ...]
    identity: Identity
    # The identities of the folders between the root and the entry (not the root, not the entry).
    chain: tuple[Identity, ...]
    size: int = 0
    children: dict[str, Entry] | None = None  # None for a file
    kind: str = UNKNOWN
    sha256: str = ''

    @property
    def is_dir(self) -> bool:
        """Whether the entry is a folder."""
        return self.children is not None

    @property
    def path(self) -> str:
        """The absolute path of the entry."""
        return os.path.join(self.root, *self.names) if self.names else self.root

    def files(self) -> t.Iterator[Entry]:
        """The entry itself (a file) or every file below it (a folder), in name order."""
        if self.children is None:
            yield self
            return
        for name in sorted(self.children, key=lambda item: item.encode('utf-8')):
            yield from self.children[name].files()


def _clean(path: t.Any, what: str) -> tuple[str, ...]:
    if not isinstance(path, str) or not path.startswith('/'):
        raise IpfsError(f'{what} {path!r} is not an absolute path')
    if '\x00' in path:
        raise IpfsError(f'{what} {path!r} holds a NUL character')
    parts = tuple(part for part in path.split('/') if part not in ('', '.'))
    if '..' in parts:
        raise IpfsError(f'{what} {path} contains a ".." component; give the path without ".."')
    return parts


def _utf8(name: str, where: str) -> str:
    try:
        name.encode('utf-8')
    except UnicodeEncodeError:
        raise IpfsError(f'{where}: a name that is not UTF-8 cannot be a UnixFS name') from None
    return name


def _chain_refusal(exc: ChainError, what: str) -> IpfsError:
    if exc.kind == MISSING:
        return IpfsError(f'{what}: {exc.component} does not exist')
    if exc.kind == SYMLINK:
        return IpfsError(f'{what}: {exc.component} is a symbolic link; symbolic links are never followed')
    found = describe(exc.mode) if exc.mode is not None else f'cannot be opened ({exc.kind})'
    return IpfsError(f'{what}: {exc.component} {found}')


class Roots:
    """The allowed roots, each opened once from ``/`` without following links; close with :meth:`close`."""

    def __init__(self, roots: t.Sequence[str]) -> None:
        if not roots:
            raise IpfsError('allowed_roots is empty: name the folders inputs may be taken from')
        self.fds: dict[tuple[str, ...], int] = {}
        try:
            for root in roots:
                parts = _clean(root, 'allowed root')
                if not parts:
                    raise IpfsError('/ cannot be an allowed root')
                if parts in self.fds:
                    continue
                try:
                    fds = open_path('/' + '/'.join(parts))
                except ChainError as exc:
                    raise _chain_refusal(exc, f'allowed root {root}') from None
                self.fds[parts] = fds.pop()
                close_all(fds)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close every root descriptor."""
        close_all(self.fds.values())
        self.fds.clear()

    def locate(self, path: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(root components, components below it) of ``path``: the longest allowed root holding it."""
        parts = _clean(path, 'input')
        best: tuple[str, ...] | None = None
        for root in self.fds:
            if parts[:len(root)] == root and (best is None or len(root) > len(best)):
                best = root
        if best is None:
            raise IpfsError(f'{path} is outside the allowed roots ({", ".join("/" + "/".join(r) for r in self.fds)})')
        return best, parts[len(best):]

    def open_parent(self, root: tuple[str, ...], names: t.Sequence[str], expected: t.Sequence[Identity] | None) -> list[int]:
        """Descriptors of the folders from ``root`` (excluded) down to the parent of ``names``' last component."""
        path = '/' + '/'.join(root)
        try:
            return open_chain(self.fds[root], path, list(names[:-1]), expected)
        except ChainError as exc:
            raise _chain_refusal(exc, os.path.join(path, *names)) from None

    def walk(self, path: str, max_entries: int = 100000) -> Entry:
        """The :class:`Entry` of ``path`` (with everything below it when a folder), refusing what is not allowed."""
        root, names = self.locate(path)
        root_path = '/' + '/'.join(root)
        for name in names:
            _utf8(name, path)
        if not names:
            fd = os.dup(self.fds[root])
            try:
                return self._walk_dir(fd, root_path, (), (), path, [max_entries])
            finally:
                os.close(fd)
        fds = self.open_parent(root, names, None)
        try:
            parent = fds[-1] if fds else self.fds[root]
            chain = tuple(identity(os.fstat(fd)) for fd in fds)
            return self._entry(parent, root_path, tuple(names), chain, [max_entries])
        finally:
            close_all(fds)

    def _entry(self, parent: int, root: str, names: tuple[str, ...], chain: tuple[Identity, ...], budget: list[int]) -> Entry:
        full = os.path.join(root, *names)
        budget[0] -= 1
        if budget[0] < 0:
            raise IpfsError(f'{full}: too many files and folders for one export')
        try:
            info = os.stat(names[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            raise IpfsError(f'{full} does not exist') from None
        if stat.S_ISLNK(info.st_mode):
            raise IpfsError(f'{full} is a symbolic link; symbolic links are never followed')
        if stat.S_ISREG(info.st_mode):
            return Entry(root, names, identity(info), chain, size=info.st_size)
        if not stat.S_ISDIR(info.st_mode):
            raise IpfsError(f'{full} {describe(info.st_mode)}; only regular files and folders are exported')
        try:
            fd = os.open(names[-1], DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise IpfsError(f'{full} cannot be opened: {exc.strerror}') from None
        try:
            if identity(os.fstat(fd)) != identity(info):
                raise IpfsError(f'{full} changed while it was being walked')
            return self._walk_dir(fd, root, names, chain, full, budget)
        finally:
            os.close(fd)

    def _walk_dir(self, fd: int, root: str, names: tuple[str, ...], chain: tuple[Identity, ...], full: str, budget: list[int]) -> Entry:
        own = identity(os.fstat(fd))
        children: dict[str, Entry] = {}
        below = (*chain, own) if names else chain
        for name in sorted(os.listdir(fd), key=lambda item: item.encode('utf-8', 'surrogateescape')):
            _utf8(name, os.path.join(full, name))
            children[name] = self._entry(fd, root, (*names, name), below, budget)
        return Entry(root, names, own, chain, size=sum(child.size for child in children.values()), children=children)

    def open_file(self, entry: Entry, buffered: bool = False) -> t.BinaryIO:
        """The file of ``entry``, reopened without following links; :class:`IpfsError` if it is not the file walked.

        Unbuffered (reads of a chunk go straight to the kernel) unless ``buffered`` (reading lines).
        """
        root = tuple(components(entry.root))
        fds = self.open_parent(root, entry.names, entry.chain)
        try:
            parent = fds[-1] if fds else self.fds[root]
            try:
                fd = os.open(entry.names[-1], READ_FLAGS, dir_fd=parent)
            except OSError as exc:
                raise IpfsError(f'{entry.path} cannot be opened again: {exc.strerror}') from None
        finally:
            close_all(fds)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or identity(info) != entry.identity:
                raise IpfsError(f'{entry.path} was replaced during the export')
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, 'rb', buffering=1 << 20 if buffered else 0)


def _inside(names: tuple[str, ...], root: str, folders: t.Sequence[tuple[str, ...]]) -> bool:
    full = (*components(root), *names)
    return any(full[:len(folder)] == folder for folder in folders)


class _HashingReader:
    """Reads lines from ``handle`` while hashing everything read."""

    def __init__(self, handle: t.BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def readline(self, size: int = -1) -> bytes:
        data = self.handle.readline(size)
        self.digest.update(data)
        return data

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data


def _is_audit_log(reader: _HashingReader) -> bool:
    previous: tuple[int, str] | None = None
    records = 0
    for line in read_lines(t.cast(t.BinaryIO, reader)):
        if line.data is None or not line.newline:
            return False
        parsed = record_of(line.data)
        if parsed is None:
            return False
        record, audit = parsed
        if previous is not None and (audit['seq'] != previous[0] + 1 or audit['prev'] != previous[1]):
            return False
        for group, field in _PERSONAL_FIELDS:
            value = record.get(group, {}).get(field) if isinstance(record.get(group), dict) else None
            if value is not None and not is_pseudonym(value):
                return False
        previous = (audit['seq'], line_hash(line.data))
        records += 1
    return records > 0


def _is_rgpd_manifest(entry: Entry, data: bytes) -> bool:
    if not entry.names[-1].endswith('.json') or len(data) > MAX_MANIFEST_BYTES:
        return False
    try:
        document = json.loads(data.decode('utf-8'))
    except (ValueError, RecursionError):
        return False
    if not isinstance(document, dict) or document.get('format') != RGPD_FORMAT:
        return False
    subject = document.get('subject')
    return subject is None or is_pseudonym(subject)


def examine(roots: Roots, entry: Entry, report_dirs: t.Sequence[tuple[str, ...]]) -> None:
    """Set ``entry.kind`` and ``entry.sha256`` (of the whole file, read once)."""
    handle = roots.open_file(entry, buffered=True)
    with handle:
        reader = _HashingReader(handle)
        if entry.size == 0 and not reader.read(1):
            entry.kind = EMPTY
        elif _inside(entry.names, entry.root, report_dirs) and entry.names[-1].lower().endswith(REPORT_SUFFIXES):
            entry.kind = REPORT
        elif entry.names[-1].endswith('.json') and entry.size <= MAX_MANIFEST_BYTES:
            entry.kind = RGPD_MANIFEST if _is_rgpd_manifest(entry, reader.read(MAX_MANIFEST_BYTES + 1)) else UNKNOWN
        else:
            entry.kind = AUDIT_LOG if _is_audit_log(reader) else UNKNOWN
        while reader.read(1 << 20):
            pass
        entry.sha256 = reader.digest.hexdigest()


def report_folders(paths: t.Sequence[str]) -> list[tuple[str, ...]]:
    """The report folders as components (absolute, no ``..``)."""
    return [_clean(path, 'report folder') for path in paths]


__all__ = [
    'AUDIT_LOG', 'EMPTY', 'REPORT', 'RGPD_MANIFEST', 'UNKNOWN', 'Entry', 'Roots', 'examine', 'report_folders',
]
