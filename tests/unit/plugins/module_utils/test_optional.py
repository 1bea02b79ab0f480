# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the import of optional libraries."""

from __future__ import annotations

import json
import pathlib
import sys
import typing as t

import pytest

from ansible_collections.dihya.ops.plugins.module_utils._optional import optional_library


class FeatureError(Exception):
    """The error type of a caller."""


def test_an_importable_library_is_returned() -> None:
    assert optional_library('json', 'reading') is json
    assert optional_library('email.mime.text', 'mail').__name__ == 'email.mime.text'


def test_a_missing_library_names_itself_and_what_needs_it() -> None:
    with pytest.raises(ImportError) as info:
        optional_library('dihya_no_such_library', 'PostgreSQL checks')
    message = str(info.value)
    assert message.startswith('PostgreSQL checks needs the dihya_no_such_library Python library, which cannot be imported on this host')
    assert isinstance(info.value.__cause__, ImportError)


def test_a_missing_submodule_names_the_library() -> None:
    with pytest.raises(ImportError, match='TLS checks needs the json Python library') as info:
        optional_library('json.no_such_part', 'TLS checks')
    assert 'json.no_such_part' in str(info.value)  # the import error itself says which part is missing


def test_the_error_is_of_the_callers_type() -> None:
    with pytest.raises(FeatureError, match='RGPD exports needs the dihya_no_such_library Python library'):
        optional_library('dihya_no_such_library', 'RGPD exports', error=FeatureError)


def test_a_library_that_fails_its_own_imports_is_reported_too(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / 'dihya_broken_library.py').write_text('import dihya_missing_dependency\n', encoding='utf-8')
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(FeatureError, match=r"needs the dihya_broken_library Python library.*dihya_missing_dependency"):
        optional_library('dihya_broken_library', 'the feature', error=FeatureError)
    assert 'dihya_broken_library' not in sys.modules


def test_a_library_is_imported_only_when_asked_for() -> None:
    sys.modules.pop('dihya_lazy_probe', None)
    assert 'dihya_lazy_probe' not in sys.modules
    with pytest.raises(ImportError):
        optional_library('dihya_lazy_probe', 'nothing')


@pytest.mark.parametrize('name', ['', '.relative', '..parent', 'a..b', 'trailing.', 'with space', 'os/path', '../json', None, 42, b'json'])
def test_a_name_that_is_no_absolute_module_name_is_refused(name: t.Any) -> None:
    with pytest.raises(ValueError, match='not an absolute module name'):
        optional_library(name, 'anything', error=FeatureError)
