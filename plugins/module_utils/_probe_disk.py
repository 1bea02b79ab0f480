# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module utility is PRIVATE to the collection. It can change at any time.

"""The ``disk`` check: the free space of a file system against a minimum in bytes, in percent or both, computed like ``df``."""

from __future__ import annotations

import dataclasses
import os

from ansible_collections.dihya.ops.plugins.module_utils._probe_common import Budget, CheckConfigError, Options, Outcome, bounded_call, require

DISK_OPTIONS = frozenset(('path', 'min_free_bytes', 'min_free_percent'))


@dataclasses.dataclass(frozen=True)
class DiskConfig:
    path: str
    min_free_bytes: int | None
    min_free_percent: float | None


def parse_disk(options: Options) -> DiskConfig:
    """Validate the options of a ``disk`` check."""
    path = str(require(options, 'path', 'disk'))
    min_bytes = options.get('min_free_bytes')
    min_percent = options.get('min_free_percent')
    if min_bytes is None and min_percent is None:
        raise CheckConfigError('a disk check needs min_free_bytes, min_free_percent or both')
    if min_bytes is not None and (isinstance(min_bytes, bool) or not isinstance(min_bytes, int) or min_bytes < 0):
        raise CheckConfigError(f'min_free_bytes must be an integer of 0 or more (got {min_bytes!r})')
    if min_percent is not None and (isinstance(min_percent, bool) or not isinstance(min_percent, (int, float)) or not 0 <= min_percent <= 100):
        raise CheckConfigError(f'min_free_percent must be between 0 and 100 (got {min_percent!r})')
    return DiskConfig(path=path, min_free_bytes=min_bytes, min_free_percent=min_percent)


def probe_disk(config: DiskConfig, timeout: float) -> Outcome:
    """Compare the space available to unprivileged users with the thresholds (a hung file system cannot hold the check)."""
    try:
        stats = bounded_call(lambda: os.statvfs(config.path), Budget(timeout), f'while reading the file system of {config.path}')
    except FileNotFoundError:
        return Outcome(False, f'path {config.path} does not exist', {'path': config.path})
    free = stats.f_bavail * stats.f_frsize
    used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
    total = stats.f_blocks * stats.f_frsize
    # Like df: the share of the space usable by unprivileged users that is still free.
    percent = round(100.0 * free / (used + free), 2) if used + free else 0.0
    details = {'path': config.path, 'free_bytes': free, 'total_bytes': total, 'free_percent': percent}
    summary = f'{format_bytes(free)} free ({percent:g} %)'
    if config.min_free_bytes is not None and free < config.min_free_bytes:
        return Outcome(False, f'{summary}, below {format_bytes(config.min_free_bytes)}', details)
    if config.min_free_percent is not None and percent < config.min_free_percent:
        return Outcome(False, f'{summary}, below {config.min_free_percent:g} %', details)
    return Outcome(True, summary, details)


def format_bytes(value: float) -> str:
    """``value`` bytes for humans: ``1023 B``, ``1.5 KiB``, ... up to TiB."""
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(value) < 1024 or unit == 'TiB':
            return f'{value:.0f} {unit}' if unit == 'B' else f'{value:.1f} {unit}'
        value /= 1024
    return f'{value:.1f} PiB'  # pragma: no cover - unreachable, the loop returns at TiB
