# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""What a purge is asked to do and what it reports: the options, durations, per-path summaries and error texts.

:class:`PurgeSpec` holds the options of a purge (validated by :meth:`PurgeSpec.validate`), :func:`parse_age`
turns a duration such as ``7d`` into seconds, and :class:`PathSummary` is what happened below one top-level
path. Every refusal of the purge engine is a :class:`PurgeError`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing as t


AGE_STAMPS = ('mtime', 'atime')
FILE_TYPES = ('file', 'any')

DEFAULT_SAMPLE_SIZE = 20
# At most this many errors are reported in detail; all of them are counted.
MAX_ERRORS = 50

AGE_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}
_AGE_PART = re.compile(r'(\d+)([smhdw])')
_AGE_FULL = re.compile(r'(?:\d+[smhdw])+')


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
