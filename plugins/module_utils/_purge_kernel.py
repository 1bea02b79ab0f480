# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""What the kernel says about an entry, and which removals it would refuse (check mode's predictions).

:class:`AttributeReader` reads the statx(2) attributes of an entry without following links (immutable,
append-only, mount root). :class:`Refusals` predicts, from those attributes, the permissions, the sticky
bit and the mount flags, the error a removal would fail with, so that check mode reports what a real run
would remove and the same errors.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import typing as t

from ansible_collections.dihya.ops.plugins.module_utils._purge_spec import describe_error


_AT_SYMLINK_NOFOLLOW = 0x100
_AT_STATX_DONT_SYNC = 0x4000
_AT_EMPTY_PATH = 0x1000
STATX_ATTR_IMMUTABLE = 0x10
STATX_ATTR_APPEND = 0x20
STATX_ATTR_MOUNT_ROOT = 0x2000
# An immutable or append-only entry cannot be removed, whoever asks.
UNREMOVABLE = STATX_ATTR_IMMUTABLE | STATX_ATTR_APPEND
_STATX_BUFFER_SIZE = 256
_STATX_ATTRIBUTES_OFFSET = 8
_STATX_ATTRIBUTES_MASK_OFFSET = 56
_CAP_FOWNER = 3


def _load_statx() -> t.Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).statx
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    function.restype = ctypes.c_int
    return function


_STATX = _load_statx()


class AttributeReader:
    """Read statx(2) attributes (immutable, append-only, mount root...) of entries, links not followed.

    Each reader owns its buffer (one per purge, which is not shared between threads): check mode
    calls it once per file it would remove, so it allocates nothing per call.
    """

    def __init__(self) -> None:
        self._buffer = ctypes.create_string_buffer(_STATX_BUFFER_SIZE)
        self._attributes = ctypes.c_uint64.from_buffer(self._buffer, _STATX_ATTRIBUTES_OFFSET)
        self._supported = ctypes.c_uint64.from_buffer(self._buffer, _STATX_ATTRIBUTES_MASK_OFFSET)

    def __call__(self, dir_fd: int, name: str) -> int:
        """The attributes of ``name`` in ``dir_fd`` (``''``: the directory itself) that the file system reports.

        ``0`` where the C library has no statx or the call fails.
        """
        if _STATX is None:
            return 0
        flags = _AT_SYMLINK_NOFOLLOW | _AT_STATX_DONT_SYNC | (0 if name else _AT_EMPTY_PATH)
        if _STATX(dir_fd, os.fsencode(name), flags, 0, self._buffer) != 0:
            return 0
        return self._attributes.value & self._supported.value


def entry_attributes(dir_fd: int, name: str) -> int:
    """The statx(2) attributes of ``name`` in ``dir_fd`` (see :class:`AttributeReader`)."""
    return AttributeReader()(dir_fd, name)


def has_fowner() -> bool:
    """Whether this process may remove other users' files from sticky directories (CAP_FOWNER)."""
    try:
        with open('/proc/self/status', 'rb') as handle:
            for line in handle:
                if line.startswith(b'CapEff:'):
                    return bool(int(line.split()[1], 16) >> _CAP_FOWNER & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def _strerror(code: int) -> str:
    return describe_error(OSError(code, os.strerror(code)))


# How the errors check mode predicts are worded (as a real run reports them).
EPERM = _strerror(errno.EPERM)
EACCES = _strerror(errno.EACCES)
EROFS = _strerror(errno.EROFS)


class Refusals:
    """The error the kernel would give for a removal, or None: check mode asks before every removal it counts.

    ``attributes`` reads statx(2) attributes; ``fowner`` and ``euid`` are this process's (CAP_FOWNER, effective uid).
    """

    def __init__(self) -> None:
        self.attributes = AttributeReader()
        self.fowner = has_fowner()
        self.euid = os.geteuid()

    @staticmethod
    def in_directory(parent_fd: int, name: str, fd: int, attributes: int) -> str | None:
        """The error any removal inside the directory ``fd`` (``name`` in ``parent_fd``) would fail with, or None.

        The kernel wants write and search permission on the directory (refused on a read-only mount, on an
        immutable directory, or by its permissions) and refuses any removal from an append-only directory.
        """
        allowed = os.access(name, os.W_OK | os.X_OK, dir_fd=parent_fd, effective_ids=True, follow_symlinks=False) if name else True
        read_only = bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY)
        if read_only:
            return EROFS
        if attributes & STATX_ATTR_IMMUTABLE:
            return EPERM
        if not allowed:
            return EACCES
        if attributes & STATX_ATTR_APPEND:
            return EPERM
        return None

    def of_entry(self, dir_fd: int, name: str, info: os.stat_result, dir_info: os.stat_result) -> str | None:
        """The error removing one entry of a directory that allows removals would fail with, or None."""
        return self.sticky(info, dir_info) or self.of_attributes(self.attributes(dir_fd, name))

    def sticky(self, info: os.stat_result, dir_info: os.stat_result) -> str | None:
        """In a sticky directory only the owner of an entry or of the directory (or CAP_FOWNER) may remove it."""
        if not dir_info.st_mode & stat.S_ISVTX or self.fowner:
            return None
        if self.euid in (info.st_uid, dir_info.st_uid):
            return None
        return EPERM

    @staticmethod
    def of_attributes(attributes: int) -> str | None:
        """An immutable or append-only entry cannot be removed, whoever asks."""
        return EPERM if attributes & UNREMOVABLE else None
