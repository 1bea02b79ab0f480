# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Writing files without writing through or over anything the collection did not create.

Every file the collection writes (export archives, metrics textfiles, spooled audit records, ledgers,
snapshots' files, reports) goes through this module. The rule:

* The directory of a destination is opened component by component from ``/`` with
  ``O_DIRECTORY | O_NOFOLLOW`` (:func:`open_dir`, through the directory opener of :mod:`._fs_chain`): a
  symbolic link anywhere in the path is refused, and
  every later step works on that directory descriptor, never on the path string again.
* :func:`atomic_write` writes a new file under a temporary name created with ``O_CREAT | O_EXCL |
  O_NOFOLLOW`` (mode pinned, whatever the umask), fsyncs it, and puts it in place:

  - nothing at the destination: the temporary file is hard-linked to the destination name, which fails if
    anything appeared there meanwhile (a file, a symbolic link, a FIFO...), so nothing is ever replaced;
    where the file system has no hard links, the destination is checked again and the file renamed;
  - a regular file at the destination: replaced (by ``rename``) only with ``force``, and only if it is still
    the same file (device and inode) right before the rename;
  - anything else (directory, symbolic link, FIFO, character or block device, socket): always refused,
    with or without ``force``.

  The directory is fsynced after the rename; on any error the temporary file is removed.
* :func:`move_no_replace` moves a finished file to a new name the same way (hard link, then unlink): it
  never replaces anything that is at the new name.
* :func:`append_open` opens an append-only file (a ledger, a log) that is the collection's by design:
  created if missing, an existing regular file is appended to, anything else is refused; the open never
  follows a symbolic link and never blocks on a FIFO.

Every refusal raises :class:`UnsafeDestination`, whose message names the path and what was found there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._fs_chain import MISSING, NOT_A_DIRECTORY, SYMLINK, ChainError, open_directory


DEFAULT_MODE = 0o600
TEMP_MARKER = '.tmp-'
# Longest file name most file systems accept (NAME_MAX); temporary names are kept below it.
_NAME_MAX = 255
_NOFOLLOW = getattr(os, 'O_NOFOLLOW', 0)
# link() errors meaning "this file system cannot hard-link here", not "something is at the destination".
_NO_LINK_ERRNOS = frozenset(e for e in (errno.EPERM, errno.EMLINK, errno.EXDEV, getattr(errno, 'ENOTSUP', None),
                                        getattr(errno, 'EOPNOTSUPP', None), errno.ENOSYS) if e is not None)


class UnsafeDestination(OSError):
    """A destination (or a directory on its way) the collection refuses to write through or over.

    ``str()`` of the error is the whole message (path and what is there); ``filename`` is the path.
    """

    def __init__(self, path: str, found: str, hint: str = '', code: int = errno.EEXIST) -> None:
        message = f'{path} {found}; refusing to write through or over it'
        if hint:
            message += f' ({hint})'
        super().__init__(code, message)
        self.filename = path
        self.found = found

    def __str__(self) -> str:
        return str(self.strerror)


def describe(mode: int) -> str:
    """What a file of ``mode`` (from ``lstat``) is, as the refusal messages say it."""
    if stat.S_ISREG(mode):
        return 'is an existing file'
    if stat.S_ISDIR(mode):
        return 'is a directory'
    if stat.S_ISLNK(mode):
        return 'is a symbolic link'
    if stat.S_ISFIFO(mode):
        return 'is a FIFO'
    if stat.S_ISCHR(mode):
        return 'is a character device'
    if stat.S_ISBLK(mode):
        return 'is a block device'
    if stat.S_ISSOCK(mode):
        return 'is a socket'
    return 'is not a regular file'


def _components(path: str) -> list[str]:
    if not isinstance(path, str) or not path.startswith('/'):
        raise UnsafeDestination(str(path), 'is not an absolute path', code=errno.EINVAL)
    parts = [part for part in path.split('/') if part not in ('', '.')]
    if '..' in parts:
        raise UnsafeDestination(path, 'contains a ".." component', 'give the path without ".."', code=errno.EINVAL)
    return parts


def open_dir(path: str) -> int:
    """A descriptor of the directory ``path`` (absolute), opened component by component with ``O_NOFOLLOW``.

    The directories on the way are reached with :func:`._fs_chain.open_directory`. A symbolic link or a non-directory
    at any component raises :class:`UnsafeDestination`; a missing component raises :class:`FileNotFoundError`;
    any other failure its own :class:`OSError`. Each names the component. The caller closes the descriptor.
    """
    parts = _components(path)
    try:
        return open_directory('/' + '/'.join(parts))
    except ChainError as exc:
        if exc.kind == MISSING:
            raise FileNotFoundError(errno.ENOENT, 'No such file or directory', exc.component) from None
        if exc.kind in (SYMLINK, NOT_A_DIRECTORY):
            found = describe(exc.mode) if exc.mode is not None else 'is not a directory'
            raise UnsafeDestination(exc.component, found, 'every directory on the way must be a real directory', code=exc.errno) from None
        raise exc.cause or OSError(exc.errno, os.strerror(exc.errno), exc.component) from None


def fsync_directory(directory: str | int) -> None:
    """fsync a directory given by path (opened with :func:`open_dir`) or by descriptor."""
    if isinstance(directory, int):
        os.fsync(directory)
        return
    fd = open_dir(directory)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _split(dest: str) -> tuple[str, str]:
    _components(dest)
    directory, name = os.path.split(dest)
    if name in ('', '.', '..'):
        raise UnsafeDestination(dest, 'does not name a file', code=errno.EINVAL)
    return directory or '/', name


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """``lstat`` of ``name`` in the directory ``dir_fd``, or None when nothing is there."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def check_entry(info: os.stat_result | None, path: str, force: bool) -> None:
    """Apply the rule to what ``lstat`` found at ``path``: nothing is fine, a regular file needs ``force``, the rest is refused."""
    if info is None:
        return
    if stat.S_ISREG(info.st_mode):
        if not force:
            raise UnsafeDestination(path, 'is an existing file', 'force replaces an existing regular file')
        return
    raise UnsafeDestination(path, describe(info.st_mode), 'only a regular file can be replaced, and only with force')


def check_destination(dest: str, *, force: bool = False, missing_dir_ok: bool = False) -> None:
    """Raise :class:`UnsafeDestination` unless :func:`atomic_write` with the same ``force`` would accept ``dest`` now.

    With ``missing_dir_ok`` a missing directory on the way is accepted (check mode: an earlier task would create it).
    """
    directory, name = _split(dest)
    try:
        dir_fd = open_dir(directory)
    except FileNotFoundError:
        if missing_dir_ok:
            return
        raise
    try:
        check_entry(lstat_at(dir_fd, name), dest, force)
    finally:
        os.close(dir_fd)


def temp_name(name: str, marker: str = TEMP_MARKER) -> str:
    """``.<name><marker><pid>-<random>``, shortened to fit a file name."""
    suffix = f'{marker}{os.getpid()}-{secrets.token_hex(4)}'
    room = _NAME_MAX - len(suffix) - 1
    return f'.{name[:room]}{suffix}'


def _unlink_quietly(name: str, dir_fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def _put_in_place(src_fd: int, temp: str, dir_fd: int, name: str, dest: str, before: os.stat_result | None, force: bool) -> None:
    """Move the file ``temp`` (in ``src_fd``) to ``name`` (in ``dir_fd``), refusing whatever appeared or changed since ``before``."""
    if before is None:
        try:
            os.link(temp, name, src_dir_fd=src_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            info = lstat_at(dir_fd, name)
            found = describe(info.st_mode) if info is not None else 'was created by something else'
            raise UnsafeDestination(dest, found, 'it appeared while the file was being written') from None
        except OSError as exc:
            if exc.errno not in _NO_LINK_ERRNOS:
                raise
        else:
            os.unlink(temp, dir_fd=src_fd)
            return
    now = lstat_at(dir_fd, name)
    if before is None:
        if now is not None:
            raise UnsafeDestination(dest, describe(now.st_mode), 'it appeared while the file was being written')
    else:
        check_entry(now, dest, force)
        if now is None or (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise UnsafeDestination(dest, 'was replaced by another file while the new one was being written')
    os.rename(temp, name, src_dir_fd=src_fd, dst_dir_fd=dir_fd)


@contextlib.contextmanager
def atomic_write(dest: str, *, mode: int = DEFAULT_MODE, force: bool = False, temp_marker: str = TEMP_MARKER) -> t.Iterator[t.BinaryIO]:
    """Write a new file at ``dest`` (absolute) atomically; yields a binary file object to write into.

    The file appears at ``dest`` only when the ``with`` block ends without an error, with permissions
    ``mode``. See the module docstring for what may be at ``dest`` (nothing; a regular file only with
    ``force``). Raises :class:`UnsafeDestination` on a refusal, :class:`OSError` on other failures; the
    temporary file never stays behind.
    """
    directory, name = _split(dest)
    dir_fd = open_dir(directory)
    try:
        before = lstat_at(dir_fd, name)
        check_entry(before, dest, force)
        temp = temp_name(name, temp_marker)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), mode, dir_fd=dir_fd)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, 'wb') as handle:
                fd = -1
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            _put_in_place(dir_fd, temp, dir_fd, name, dest, before, force)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            _unlink_quietly(temp, dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def move_no_replace(src: str, dest: str) -> None:
    """Move the regular file ``src`` to ``dest`` (both absolute), where nothing may be: never replaces anything.

    Both directories are opened without following symbolic links; a symbolic link, FIFO, device, directory or file
    at ``dest``, even one that appears during the move, raises :class:`UnsafeDestination` and ``src`` stays where it
    was. Both directories are fsynced.
    """
    src_dir, src_name = _split(src)
    dst_dir, dst_name = _split(dest)
    src_fd = open_dir(src_dir)
    try:
        dst_fd = open_dir(dst_dir)
        try:
            info = lstat_at(src_fd, src_name)
            if info is None:
                raise FileNotFoundError(errno.ENOENT, 'No such file or directory', src)
            if not stat.S_ISREG(info.st_mode):
                raise UnsafeDestination(src, describe(info.st_mode), 'only a regular file is moved')
            check_entry(lstat_at(dst_fd, dst_name), dest, False)
            _put_in_place(src_fd, src_name, dst_fd, dst_name, dest, None, False)
            os.fsync(dst_fd)
            if not os.path.samestat(os.fstat(src_fd), os.fstat(dst_fd)):
                os.fsync(src_fd)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def write_bytes(dest: str, data: bytes, *, mode: int = DEFAULT_MODE, force: bool = False) -> None:
    """:func:`atomic_write` of ``data``."""
    with atomic_write(dest, mode=mode, force=force) as handle:
        handle.write(data)


def append_open(path: str, mode: int = DEFAULT_MODE) -> int:
    """A descriptor open for appending to ``path`` (absolute), created with ``mode`` if missing.

    An existing regular file is appended to (append-only files are the collection's by design); a symbolic
    link, a FIFO, a device, a directory or a socket at ``path`` raises :class:`UnsafeDestination`, and so does
    a symbolic link in the directories on the way. The caller closes the descriptor.
    """
    directory, name = _split(path)
    dir_fd = open_dir(directory)
    try:
        info = lstat_at(dir_fd, name)
        if info is not None and not stat.S_ISREG(info.st_mode):
            raise UnsafeDestination(path, describe(info.st_mode), 'only a regular file can be appended to')
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0)
        try:
            fd = os.open(name, flags, mode, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENOTDIR):
                found = lstat_at(dir_fd, name)
                raise UnsafeDestination(path, describe(found.st_mode) if found is not None else 'is not a regular file',
                                        'only a regular file can be appended to') from None
            raise
    finally:
        os.close(dir_fd)
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise UnsafeDestination(path, describe(opened.st_mode), 'only a regular file can be appended to')
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


__all__ = [
    'DEFAULT_MODE', 'TEMP_MARKER', 'UnsafeDestination', 'append_open', 'atomic_write', 'check_destination', 'check_entry',
    'describe', 'fsync_directory', 'lstat_at', 'move_no_replace', 'open_dir', 'temp_name', 'write_bytes',
]
