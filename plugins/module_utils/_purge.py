# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""Purge engine: remove old files below a set of directories, safely.

The engine knows nothing about Ansible. A caller validates each top-level path with
:func:`resolve_path`, builds a :class:`PurgeSpec` and hands both to :meth:`Purger.purge`.

Safety rules:

* A top-level path must be absolute, must not be one of :data:`CRITICAL_PATHS`, must not be a
  symbolic link and must lie inside one of the allowed roots once every symbolic link and ``..``
  is resolved.
* The walk goes through directory file descriptors only: every entry is examined, removed or
  opened relative to the descriptor of its parent, and directories are opened with
  ``O_NOFOLLOW``. A directory swapped for a symbolic link during the walk therefore cannot
  redirect a removal outside the tree: opening it fails and it is reported as an error.
* Symbolic links are never followed, and the walk never crosses into another file system.
* Nothing is collected in memory beyond counters, a bounded sample of removed paths and a
  bounded list of errors.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
import stat
import time
import typing as t


AGE_STAMPS = ('mtime', 'atime')
FILE_TYPES = ('file', 'any')

DEFAULT_SAMPLE_SIZE = 20
# At most this many errors are reported in detail; all of them are counted.
MAX_ERRORS = 50

# Paths that are never purged themselves, whatever the allowed roots say. ``/lib*`` is matched as a pattern.
CRITICAL_PATHS = frozenset((
    '/', '/etc', '/usr', '/bin', '/sbin', '/boot', '/dev', '/proc', '/sys', '/run', '/var', '/home', '/root', '/srv', '/opt',
))
CRITICAL_PATTERNS = ('/lib*',)

AGE_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}
_AGE_PART = re.compile(r'(\d+)([smhdw])')
_AGE_FULL = re.compile(r'(?:\d+[smhdw])+')

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0)


class PurgeError(ValueError):
    """Unusable input: a bad option or a path the engine refuses to purge."""


def parse_age(value: t.Any) -> int:
    """Turn ``7d``, ``12h``, ``30m``, ``90s``, ``1d12h``, ``3600`` or an int into seconds."""
    if isinstance(value, bool):
        raise PurgeError(f'age must be a number of seconds or a duration such as 7d, 12h, 30m or 90s (got {value!r})')
    if isinstance(value, int):
        if value < 0:
            raise PurgeError(f'age must not be negative (got {value})')
        return value
    text = str(value).strip().lower() if isinstance(value, str) else ''
    if text.isdigit():
        return int(text)
    if not _AGE_FULL.fullmatch(text):
        raise PurgeError(
            f'invalid age {value!r}: use a number of seconds or a duration such as 7d, 12h, 30m, 90s or 1d12h (units: s, m, h, d, w)'
        )
    return sum(int(number) * AGE_UNITS[unit] for number, unit in _AGE_PART.findall(text))


def is_critical(path: str) -> bool:
    """Whether ``path`` (normalised and absolute) is a system directory that is never purged."""
    if path in CRITICAL_PATHS:
        return True
    return any(fnmatch.fnmatchcase(path, pattern) and path.count('/') == 1 for pattern in CRITICAL_PATTERNS)


def _normalise(path: str) -> str:
    # normpath() keeps a leading '//' (POSIX allows it a special meaning); Linux does not use it.
    normalised = os.path.normpath(path)
    return '/' + normalised.lstrip('/') if normalised.startswith('/') else normalised


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip('/') + '/')


def resolve_path(path: str, allowed_roots: t.Sequence[str]) -> str:
    """Validate a top-level path and return it with every symbolic link resolved.

    Raise :class:`PurgeError` with a message for humans if the path must not be purged.
    A path that does not exist is returned as resolved; :meth:`Purger.purge` reports it as missing.
    """
    if not allowed_roots:
        raise PurgeError('allowed_roots must list at least one directory')
    if not isinstance(path, str) or not os.path.isabs(path):
        raise PurgeError(f'path {path!r} must be absolute')
    normalised = _normalise(path)
    resolved = os.path.realpath(normalised)
    for candidate in (normalised, resolved):
        if is_critical(candidate):
            raise PurgeError(f'refusing to purge {path}: {candidate} is a critical system directory')
    if os.path.islink(normalised):
        raise PurgeError(f'refusing to purge {path}: it is a symbolic link (links are never followed)')
    roots = []
    for root in allowed_roots:
        if not isinstance(root, str) or not os.path.isabs(root):
            raise PurgeError(f'allowed root {root!r} must be absolute')
        roots.append(os.path.realpath(_normalise(root)))
    if not any(_inside(resolved, root) for root in roots):
        raise PurgeError(f"refusing to purge {path}: it resolves to {resolved}, which is not inside any of allowed_roots ({', '.join(roots)})")
    return resolved


@dataclasses.dataclass(frozen=True)
class PurgeSpec:
    """What to remove below each top-level path."""

    age: int
    age_stamp: str = 'mtime'
    include: tuple[str, ...] = ('*',)
    exclude: tuple[str, ...] = ()
    min_size: int = 0
    file_type: str = 'file'
    max_depth: int | None = None
    remove_empty_dirs: bool = False
    sample_size: int = DEFAULT_SAMPLE_SIZE
    check_mode: bool = False
    now: float | None = None

    def validate(self) -> list[str]:
        """Return one message per invalid setting (empty when all are valid)."""
        errors = []
        if isinstance(self.age, bool) or not isinstance(self.age, int) or self.age < 0:
            errors.append(f'age must be 0 or more seconds (got {self.age!r})')
        if self.age_stamp not in AGE_STAMPS:
            errors.append(f"age_stamp must be one of {', '.join(AGE_STAMPS)} (got {self.age_stamp!r})")
        if self.file_type not in FILE_TYPES:
            errors.append(f"file_type must be one of {', '.join(FILE_TYPES)} (got {self.file_type!r})")
        if not self.include:
            errors.append('include must list at least one pattern')
        if self.min_size < 0:
            errors.append(f'min_size must be 0 or more (got {self.min_size})')
        if self.max_depth is not None and self.max_depth < 0:
            errors.append(f'max_depth must be 0 or more (got {self.max_depth})')
        if self.sample_size < 0:
            errors.append(f'sample_size must be 0 or more (got {self.sample_size})')
        return errors


@dataclasses.dataclass
class PathSummary:
    """What happened below one top-level path."""

    path: str
    exists: bool = True
    files_removed: int = 0
    bytes_freed: int = 0
    dirs_removed: int = 0
    skipped_symlinks: int = 0
    other_filesystems: int = 0
    errors: int = 0

    def to_dict(self) -> dict[str, t.Any]:
        """Plain data, ready to be serialised."""
        return dataclasses.asdict(self)


def display(path: str) -> str:
    """A path as text that survives JSON: undecodable bytes become U+FFFD."""
    return os.fsencode(path).decode('utf-8', errors='replace')


def describe_error(exc: OSError) -> str:
    """A short description of a file system error, without the file name."""
    text = exc.strerror or type(exc).__name__
    return text[:1].lower() + text[1:]


def _compile(patterns: t.Sequence[str]) -> t.Callable[[str], t.Any]:
    """One matcher for a list of shell patterns (case-sensitive, like :func:`fnmatch.fnmatchcase`)."""
    return re.compile('|'.join(f'(?:{fnmatch.translate(pattern)})' for pattern in patterns)).match


class Purger:
    """Walk top-level paths and remove (or, in check mode, count) what :class:`PurgeSpec` selects.

    ``before_descend`` is called with the parent directory descriptor, the entry name and its
    display path right before a subdirectory is opened; it exists so the swap race can be tested.
    """

    def __init__(self, spec: PurgeSpec, before_descend: t.Callable[[int, str, str], None] | None = None) -> None:
        errors = spec.validate()
        if errors:
            raise PurgeError('; '.join(errors))
        self.spec = spec
        self.before_descend = before_descend
        self.now = spec.now if spec.now is not None else time.time()
        # A file is old enough when its stamp is at or before this instant.
        self._oldest = self.now - spec.age
        # Each pattern list becomes one compiled regular expression; ``*`` alone matches every name.
        self._include_match = None if '*' in spec.include else _compile(spec.include)
        self._exclude_match = _compile(spec.exclude) if spec.exclude else None
        self.files_removed = 0
        self.bytes_freed = 0
        self.dirs_removed = 0
        self.skipped_symlinks = 0
        self.error_count = 0
        self.sample: list[str] = []
        self.errors: list[dict[str, str]] = []
        self.summaries: list[PathSummary] = []

    @property
    def changed(self) -> bool:
        """Whether something was removed (or would be, in check mode)."""
        return bool(self.files_removed or self.dirs_removed)

    def result(self) -> dict[str, t.Any]:
        """Totals over every path purged so far."""
        return dict(
            changed=self.changed,
            files_removed=self.files_removed,
            bytes_freed=self.bytes_freed,
            dirs_removed=self.dirs_removed,
            skipped_symlinks=self.skipped_symlinks,
            error_count=self.error_count,
            sample=list(self.sample),
            errors=list(self.errors),
            paths=[summary.to_dict() for summary in self.summaries],
        )

    # -- top level -----------------------------------------------------------

    def purge(self, path: str) -> PathSummary:
        """Purge below ``path``, which :func:`resolve_path` has validated. The path itself is never removed."""
        summary = PathSummary(path=display(path))
        self.summaries.append(summary)
        try:
            before = os.lstat(path)
        except FileNotFoundError:
            summary.exists = False
            return summary
        if not stat.S_ISDIR(before.st_mode):
            raise PurgeError(f'{path} is not a directory')
        try:
            top_fd = os.open(path, _DIR_FLAGS)
        except OSError as exc:
            raise PurgeError(f'cannot open {path}: {describe_error(exc)}') from exc
        try:
            opened = os.fstat(top_fd)
            if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
                raise PurgeError(f'{path} changed while it was being opened')
            self._walk(top_fd, path, 0, opened.st_dev, summary)
        finally:
            os.close(top_fd)
        return summary

    # -- walk ----------------------------------------------------------------

    def _walk(self, dir_fd: int, dir_path: str, depth: int, device: int, summary: PathSummary) -> bool:
        """Purge one directory, open as ``dir_fd``; return whether it is (or would be) empty afterwards.

        Regular files, the bulk of any tree, are handled inline with local names: this loop is the
        engine's hot path. Anything else goes through :meth:`_handle`.
        """
        empty = True
        selected_name = self._name_selected
        oldest = self._oldest
        use_atime = self.spec.age_stamp == 'atime'
        min_size = self.spec.min_size
        check_mode = self.spec.check_mode
        is_regular = stat.S_ISREG
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                name = entry.name
                try:
                    # fstatat(2) relative to dir_fd, as scandir was given a descriptor.
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    self._error(os.path.join(dir_path, name), describe_error(exc), summary)
                    empty = False
                    continue
                if not is_regular(info.st_mode):
                    if not self._handle(dir_fd, name, os.path.join(dir_path, name), info, depth, device, summary):
                        empty = False
                    continue
                if (info.st_atime if use_atime else info.st_mtime) > oldest or info.st_size < min_size or not selected_name(name):
                    empty = False
                    continue
                if not check_mode:
                    try:
                        os.unlink(name, dir_fd=dir_fd)
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        self._error(os.path.join(dir_path, name), describe_error(exc), summary)
                        empty = False
                        continue
                self._count_file(os.path.join(dir_path, name) if len(self.sample) < self.spec.sample_size else '', info.st_size, summary)
        return empty

    def _handle(self, dir_fd: int, name: str, path: str, info: os.stat_result, depth: int, device: int, summary: PathSummary) -> bool:
        """Deal with an entry that is not a regular file; return whether it is gone (or would be, in check mode)."""
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            return self._handle_directory(dir_fd, name, path, info, depth, device, summary)
        if self.spec.file_type != 'any':
            if stat.S_ISLNK(mode):
                self.skipped_symlinks += 1
                summary.skipped_symlinks += 1
            return False
        if not (self._name_selected(name) and self._old(info)):
            if stat.S_ISLNK(mode):
                self.skipped_symlinks += 1
                summary.skipped_symlinks += 1
            return False
        if not self.spec.check_mode:
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                return True
            except OSError as exc:
                self._error(path, describe_error(exc), summary)
                return False
        self._count_file(path, 0, summary)
        return True

    def _count_file(self, path: str, size: int, summary: PathSummary) -> None:
        self.files_removed += 1
        self.bytes_freed += size
        summary.files_removed += 1
        summary.bytes_freed += size
        if path:
            self._record(path)

    def _handle_directory(self, dir_fd: int, name: str, path: str, info: os.stat_result, depth: int, device: int, summary: PathSummary) -> bool:
        if info.st_dev != device:
            summary.other_filesystems += 1
            return False
        if self._excluded(name):
            return False
        if self.spec.max_depth is not None and depth >= self.spec.max_depth:
            return False
        if self.before_descend is not None:
            self.before_descend(dir_fd, name, path)
        try:
            child_fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return True
        except OSError as exc:
            self._error(path, f'not descended: {describe_error(exc)}', summary)
            return False
        try:
            opened = os.fstat(child_fd)
            if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
                self._error(path, 'not descended: the directory was replaced during the walk', summary)
                return False
            empty = self._walk(child_fd, path, depth + 1, device, summary)
        except OSError as exc:
            self._error(path, describe_error(exc), summary)
            return False
        finally:
            os.close(child_fd)
        if not (empty and self.spec.remove_empty_dirs and self._old(info)):
            return False
        if not self.spec.check_mode:
            try:
                os.rmdir(name, dir_fd=dir_fd)
            except FileNotFoundError:
                return True
            except OSError as exc:
                self._error(path, describe_error(exc), summary)
                return False
        self.dirs_removed += 1
        summary.dirs_removed += 1
        self._record(path + '/')
        return True

    # -- helpers -------------------------------------------------------------

    def _excluded(self, name: str) -> bool:
        return self._exclude_match is not None and self._exclude_match(name) is not None

    def _name_selected(self, name: str) -> bool:
        """Whether a name matches an include pattern and no exclude pattern."""
        if self._include_match is not None and self._include_match(name) is None:
            return False
        return not self._excluded(name)

    def _old(self, info: os.stat_result) -> bool:
        return (info.st_atime if self.spec.age_stamp == 'atime' else info.st_mtime) <= self._oldest

    def _record(self, path: str) -> None:
        if len(self.sample) < self.spec.sample_size:
            self.sample.append(display(path))

    def _error(self, path: str, message: str, summary: PathSummary) -> None:
        self.error_count += 1
        summary.errors += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({'path': display(path), 'error': message})
