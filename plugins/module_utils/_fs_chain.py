# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Reaching a directory one component at a time, never through a symbolic link.

This is the one directory opener of the collection: the safe writer (:mod:`._safe_write`) reaches the
directory of every file it writes with it, and the purge engine its allowed roots and top-level paths.

* Every component is opened with ``O_RDONLY | O_DIRECTORY | O_NOFOLLOW`` (:data:`DIR_FLAGS`) relative
  to the descriptor of the component before it, never by a path string: a symbolic link or anything
  that is not a directory, anywhere on the way, is refused instead of followed.
* With ``expected``, the identity (``st_dev``, ``st_ino``) each component had when it was recorded
  (:func:`identities`) is checked again on the descriptor just opened, so a component swapped for
  another real directory in between is refused too.
* A refusal raises :class:`ChainError`, which names the first component that failed (the path up to
  and including it) and says what was found there; nothing stays open.

The wording of a refusal is the caller's: :class:`ChainError` carries the facts (kind, component, the
``lstat`` mode found, the original error).
"""

from __future__ import annotations

import errno
import os
import stat
import typing as t


DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0)

# What ChainError.kind can be.
MISSING = 'missing'
SYMLINK = 'symlink'
NOT_A_DIRECTORY = 'not-a-directory'
REPLACED = 'replaced'
ERROR = 'error'

# typing's spelling: managed hosts may run a Python older than 3.9, where tuple[...] cannot be evaluated.
Identity = t.Tuple[int, int]  # noqa: UP006


class ChainError(Exception):
    """A component of a path could not be opened as the directory it must be.

    ``kind`` is :data:`MISSING`, :data:`SYMLINK`, :data:`NOT_A_DIRECTORY`, :data:`REPLACED` (not the
    directory expected) or :data:`ERROR` (any other failure, ``cause`` says which); ``component`` is the
    path up to and including the component; ``mode`` is what ``lstat`` found there, when it could tell.
    """

    def __init__(self, kind: str, component: str, mode: int | None = None, cause: OSError | None = None) -> None:
        super().__init__(f'{component}: {kind}')
        self.kind = kind
        self.component = component
        self.mode = mode
        self.cause = cause

    @property
    def errno(self) -> int:
        """The errno of the failure (``ENOENT``, ``ELOOP``, ``ENOTDIR``..., ``ESTALE`` for a replaced directory)."""
        if self.cause is not None and self.cause.errno is not None:
            return self.cause.errno
        return errno.ENOENT if self.kind == MISSING else errno.ESTALE


def identity(info: os.stat_result) -> Identity:
    """``(st_dev, st_ino)``: what a directory is, whatever its name."""
    return (info.st_dev, info.st_ino)


def identities(fds: t.Iterable[int]) -> tuple[Identity, ...]:
    """The identity of each open descriptor, in order (to be given back as ``expected``)."""
    return tuple(identity(os.fstat(fd)) for fd in fds)


def join(parent: str, name: str) -> str:
    """``parent/name``, with exactly one slash between them."""
    return parent.rstrip('/') + '/' + name


def close_all(fds: t.Iterable[int]) -> None:
    """Close every descriptor of ``fds``."""
    for fd in fds:
        os.close(fd)


def _refusal(name: str, dir_fd: int, component: str, exc: OSError) -> ChainError:
    """The :class:`ChainError` for an ``open`` of ``name`` in ``dir_fd`` that failed with ``exc``."""
    if isinstance(exc, FileNotFoundError):
        return ChainError(MISSING, component, cause=exc)
    if not isinstance(exc, NotADirectoryError) and exc.errno != errno.ELOOP:
        return ChainError(ERROR, component, cause=exc)
    try:
        mode: int | None = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        mode = None
    kind = SYMLINK if mode is not None and stat.S_ISLNK(mode) else NOT_A_DIRECTORY
    return ChainError(kind, component, mode=mode, cause=exc)


def open_chain(base_fd: int, base_path: str, parts: t.Sequence[str], expected: t.Sequence[Identity] | None = None) -> list[int]:
    """Open ``parts`` one directory at a time below the directory ``base_fd`` (reached as ``base_path``).

    Return the descriptor of every component, in order; the caller closes them (``base_fd`` stays the
    caller's). With ``expected``, component ``i`` must have the identity ``expected[i]``. Raise
    :class:`ChainError` for the first component that is missing, a symbolic link, not a directory, not
    the directory expected or otherwise unusable. A part that is empty, ``.``, ``..`` or holds a slash
    is a caller's mistake (:class:`ValueError`): it would leave the chain.
    """
    if expected is not None and len(expected) != len(parts):
        raise ValueError(f'{len(parts)} components but {len(expected)} identities to check')
    fds: list[int] = []
    current = base_fd
    path = base_path
    try:
        for index, name in enumerate(parts):
            if name in ('', '.', '..') or '/' in name:
                raise ValueError(f'{name!r} is not a directory name')
            path = join(path, name)
            try:
                fd = os.open(name, DIR_FLAGS, dir_fd=current)
            except OSError as exc:
                raise _refusal(name, current, path, exc) from None
            fds.append(fd)
            current = fd
            if expected is not None and identity(os.fstat(fd)) != expected[index]:
                raise ChainError(REPLACED, path)
        return fds
    except BaseException:
        close_all(fds)
        raise


def components(path: str) -> tuple[str, ...]:
    """The names of the components of a path (empty ones dropped: ``/`` has none)."""
    return tuple(part for part in path.split('/') if part)


def open_path(path: str, expected: t.Sequence[Identity] | None = None) -> list[int]:
    """Open the absolute ``path`` from ``/``, one component at a time (see :func:`open_chain`).

    Return the descriptors of ``/`` and of every component, in order (the last is ``path`` itself); the
    caller closes them. ``expected`` gives the identities of the components below ``/``.
    """
    if not path.startswith('/'):
        raise ValueError(f'{path!r} is not an absolute path')
    slash = os.open('/', DIR_FLAGS)
    try:
        return [slash, *open_chain(slash, '/', components(path), expected)]
    except BaseException:
        os.close(slash)
        raise


def open_directory(path: str, expected: t.Sequence[Identity] | None = None) -> int:
    """A descriptor of the absolute ``path``, reached from ``/`` with :func:`open_path`; the caller closes it."""
    fds = open_path(path, expected)
    fd = fds.pop()
    close_all(fds)
    return fd


__all__ = [
    'DIR_FLAGS', 'ERROR', 'MISSING', 'NOT_A_DIRECTORY', 'REPLACED', 'SYMLINK', 'ChainError', 'Identity', 'close_all', 'components',
    'identities', 'identity', 'join', 'open_chain', 'open_directory', 'open_path',
]
