# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the disk check."""

from __future__ import annotations

import os
import pathlib
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.module_utils import _probe_disk
from ansible_collections.dihya.ops.tests.unit.plugins.module_utils.health_utils import assert_error, check

# ---------------------------------------------------------------------------
# Disk
# ---------------------------------------------------------------------------


class TestDisk:
    def test_enough_space(self, tmp_path: pathlib.Path) -> None:
        result = check('disk', path=str(tmp_path), min_free_bytes=1, min_free_percent=0.001)
        assert result.healthy, result.message
        stats = os.statvfs(tmp_path)
        assert result.details['total_bytes'] == stats.f_blocks * stats.f_frsize
        assert 0 < result.details['free_bytes'] <= result.details['total_bytes']
        assert 0 < result.details['free_percent'] <= 100
        assert result.message.endswith(f"free ({result.details['free_percent']:g} %)")

    def test_not_enough_bytes(self, tmp_path: pathlib.Path) -> None:
        result = check('disk', path=str(tmp_path), min_free_bytes=2 ** 60)
        assert result.status == 'failed'
        assert result.message.endswith(', below 1024.0 PiB') or ', below ' in result.message

    def test_not_enough_percent(self, tmp_path: pathlib.Path) -> None:
        free = check('disk', path=str(tmp_path), min_free_percent=0).details['free_percent']
        if free >= 100:  # pragma: no cover - an empty file system
            pytest.skip('the file system is completely free')
        result = check('disk', path=str(tmp_path), min_free_percent=100)
        assert result.status == 'failed'
        assert result.message.endswith(', below 100 %')

    def test_missing_path(self, tmp_path: pathlib.Path) -> None:
        result = check('disk', path=str(tmp_path / 'absent'), min_free_bytes=1)
        assert result.status == 'failed'
        assert result.message == f"path {tmp_path / 'absent'} does not exist"

    def test_empty_file_system(self) -> None:
        # /proc reports no blocks at all.
        result = check('disk', path='/proc', min_free_percent=1)
        assert result.details['free_percent'] == 0.0
        assert not result.healthy

    @pytest.mark.parametrize('options, message', [
        ({'min_free_bytes': 1}, 'path is required for a disk check'),
        ({'path': '/'}, 'needs min_free_bytes, min_free_percent or both'),
        ({'path': '/', 'min_free_bytes': -1}, 'min_free_bytes must be an integer of 0 or more'),
        ({'path': '/', 'min_free_bytes': 1.5}, 'min_free_bytes must be an integer'),
        ({'path': '/', 'min_free_percent': 101}, 'min_free_percent must be between 0 and 100'),
        ({'path': '/', 'min_free_percent': '5'}, 'min_free_percent must be between 0 and 100'),
    ])
    def test_invalid_options(self, options: dict[str, t.Any], message: str) -> None:
        assert_error(check('disk', **options), message)


@pytest.mark.parametrize('value, text', [(0, '0 B'), (1023, '1023 B'), (1536, '1.5 KiB'), (5 * 1024 ** 3, '5.0 GiB'), (3 * 1024 ** 5, '3072.0 TiB')])
def test_format_bytes(value: t.Any, text: str) -> None:
    assert _probe_disk.format_bytes(value) == text
