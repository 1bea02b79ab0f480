# Copyright (c) Dihya ops maintainers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Tests of the dihya.ops.purge_files module, run in-process through the module harness on real files."""

from __future__ import annotations

import os

import pytest

from ansible_collections.dihya.ops.plugins.modules import purge_files
from ansible_collections.dihya.ops.tests.unit.plugins.modules.utils import OLD, make, run_module

RESULT_KEYS = {'changed', 'files_removed', 'bytes_freed', 'dirs_removed', 'skipped_symlinks', 'error_count', 'sample', 'errors', 'paths'}


def run(args, check_mode=False):
    return run_module(purge_files.main, args, check_mode=check_mode)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / 'root'
    make(root / 'app' / 'old.tmp', b'12345')
    make(root / 'app' / 'keep.lock')
    make(root / 'app' / 'new.tmp', old=False)
    make(root / 'app' / 'sub' / 'deep.tmp', b'abc')
    os.utime(root / 'app' / 'sub', (OLD, OLD))
    return root


def test_check_mode_then_real_then_idempotent(tree):
    args = {'paths': [str(tree / 'app')], 'allowed_roots': [str(tree)], 'age': '7d', 'exclude': ['*.lock'], 'remove_empty_dirs': True}
    before = sorted(str(path) for path in tree.rglob('*'))
    checked = run(args, check_mode=True)
    assert set(checked) == RESULT_KEYS
    assert sorted(str(path) for path in tree.rglob('*')) == before
    assert checked['changed'] is True
    real = run(args)
    assert real == checked
    assert real['files_removed'] == 2 and real['bytes_freed'] == 8 and real['dirs_removed'] == 1
    assert (tree / 'app' / 'keep.lock').exists() and (tree / 'app' / 'new.tmp').exists()
    assert not (tree / 'app' / 'sub').exists()
    assert real['paths'][0]['path'] == str(tree / 'app')
    again = run(args)
    assert again['changed'] is False and again['files_removed'] == 0
    assert run(args, check_mode=True)['changed'] is False


def test_integer_age_and_options(tree):
    result = run({'paths': [str(tree / 'app')], 'allowed_roots': [str(tree)], 'age': 3600, 'include': ['*.tmp'],
                  'min_size': 4, 'max_depth': 0, 'sample_size': 5})
    assert result['files_removed'] == 1
    assert result['sample'] == [str(tree / 'app' / 'old.tmp')]
    assert (tree / 'app' / 'sub' / 'deep.tmp').exists()


def test_symlink_to_outside_is_not_followed(tmp_path):
    root = tmp_path / 'root'
    precious = make(tmp_path / 'outside' / 'precious')
    make(root / 'junk')
    (root / 'link').symlink_to(tmp_path / 'outside')
    result = run({'paths': [str(root)], 'allowed_roots': [str(root)], 'age': '1d', 'file_type': 'file'})
    assert precious.exists()
    assert result['files_removed'] == 1 and result['skipped_symlinks'] == 1


def test_hostile_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / 'root'
    names = ['; rm -rf x', '$(touch y)', 'new\nline']
    for name in names:
        make(root / name)
    make(tmp_path / 'x' / 'keep')
    result = run({'paths': [str(root)], 'allowed_roots': [str(tmp_path)], 'age': '1h'})
    assert result['files_removed'] == 3
    assert sorted(result['sample']) == sorted(str(root / name) for name in names)
    assert (tmp_path / 'x' / 'keep').exists() and not (tmp_path / 'y').exists()


def test_missing_path_is_reported(tmp_path):
    result = run({'paths': [str(tmp_path / 'missing')], 'allowed_roots': [str(tmp_path)], 'age': '1d'})
    assert 'failed' not in result
    assert result['changed'] is False
    assert result['paths'][0]['exists'] is False


@pytest.mark.parametrize('path, message', [
    ('/', 'refusing to purge /: / is a critical system directory'),
    ('/etc', 'refusing to purge /etc: /etc is a critical system directory'),
])
def test_critical_paths_refused(path, message):
    result = run({'paths': [path], 'allowed_roots': ['/'], 'age': '1d'})
    assert result['failed'] is True
    assert result['msg'] == message


def test_refusals_happen_before_anything_is_removed(tmp_path):
    root = tmp_path / 'root'
    old = make(root / 'old')
    (tmp_path / 'elsewhere').mkdir()
    result = run({'paths': [str(root), str(tmp_path / 'elsewhere')], 'allowed_roots': [str(root)], 'age': '1d'})
    assert result['failed'] is True
    assert 'not inside any of allowed_roots' in result['msg']
    assert str(tmp_path / 'elsewhere') in result['msg']
    assert old.exists()


def test_symlink_as_path_refused(tmp_path):
    (tmp_path / 'real').mkdir()
    (tmp_path / 'link').symlink_to(tmp_path / 'real')
    result = run({'paths': [str(tmp_path / 'link')], 'allowed_roots': [str(tmp_path)], 'age': '1d'})
    assert result['failed'] is True
    assert 'is a symbolic link' in result['msg']


@pytest.mark.parametrize('age', ['7 days', 'soon', '1.5h', '-3d'])
def test_bad_age(tmp_path, age):
    result = run({'paths': [str(tmp_path)], 'allowed_roots': [str(tmp_path)], 'age': age})
    assert result['failed'] is True
    assert result['msg'].startswith(f'invalid age {age!r}: use a number of seconds or a duration such as 7d')


def test_bad_numbers(tmp_path):
    result = run({'paths': [str(tmp_path)], 'allowed_roots': [str(tmp_path)], 'age': '1d', 'min_size': -1, 'sample_size': -2})
    assert result['failed'] is True
    assert result['msg'] == 'min_size must be 0 or more (got -1); sample_size must be 0 or more (got -2)'


def test_not_a_directory(tmp_path):
    make(tmp_path / 'file')
    result = run({'paths': [str(tmp_path / 'file')], 'allowed_roots': [str(tmp_path)], 'age': '1d'})
    assert result['failed'] is True
    assert result['msg'] == f"refusing to purge {tmp_path / 'file'}: it is not a directory"
    assert result['files_removed'] == 0


@pytest.mark.parametrize('order', ['dir-file', 'file-dir', 'dir-file-dir'])
def test_a_file_among_the_paths_fails_before_anything_is_removed(tmp_path, order):
    root = tmp_path / 'root'
    old = [make(root / 'one' / 'old'), make(root / 'two' / 'old')]
    make(root / 'file')
    paths = {'dir-file': ['one', 'file'], 'file-dir': ['file', 'one'], 'dir-file-dir': ['one', 'file', 'two']}[order]
    for check_mode in (True, False):
        result = run({'paths': [str(root / path) for path in paths], 'allowed_roots': [str(root)], 'age': '1d'}, check_mode=check_mode)
        assert result['failed'] is True
        assert result['msg'] == f"refusing to purge {root / 'file'}: it is not a directory"
        assert result['files_removed'] == 0 and result['paths'] == []
    assert all(path.exists() for path in old)


@pytest.mark.parametrize('path', ['{root}', '{root}/', '{root}/app', '{root}/venv/', '{root}/data', '{root}/tmp/..', '{root}/link/data'])
def test_backend_folders_are_protected_unless_forced(tmp_path, path):
    root = tmp_path / 'backend'
    pack = make(root / 'app' / '.git' / 'objects' / 'pack' / 'pack-1.pack')
    database = make(root / 'data' / 'dihya.db')
    make(root / 'venv' / 'bin' / 'python')
    junk = make(root / 'tmp' / 'old')
    (root / 'link').symlink_to(root)
    protected = [str(root), str(root / 'app'), str(root / 'venv'), str(root / 'data')]
    args = {'paths': [str(root / 'tmp'), path.format(root=root)], 'allowed_roots': [str(root)], 'protected_paths': protected, 'age': '1d'}
    checked = run(args, check_mode=True)
    assert checked['failed'] is True and 'protected path' in checked['msg'] and 'force' in checked['msg']
    assert str(pack) not in checked.get('sample', [])
    assert run(args)['failed'] is True
    assert pack.exists() and database.exists() and junk.exists()
    forced = run(dict(args, force=True), check_mode=True)
    assert 'failed' not in forced and forced['files_removed'] >= 2


def test_inside_the_backend_root_is_allowed(tmp_path):
    root = tmp_path / 'backend'
    junk = make(root / 'tmp' / 'old')
    database = make(root / 'data' / 'dihya.db')
    result = run({'paths': [str(root / 'tmp')], 'allowed_roots': [str(root)], 'protected_paths': [str(root), str(root / 'data')], 'age': '1d'})
    assert 'failed' not in result and result['files_removed'] == 1
    assert not junk.exists() and database.exists()


@pytest.mark.parametrize('path', ['/usr/bin', '/usr/sbin', '/usr/lib', '/bin', '/sbin', '/lib', '/usr/local/bin', '/var/lib', '/usr/share'])
def test_system_directories_refused_in_check_mode_too(path):
    result = run({'paths': [path], 'allowed_roots': ['/'], 'age': '1d'}, check_mode=True)
    assert result['failed'] is True
    assert result['msg'] == f'refusing to purge {path}: {path} is a critical system directory'


@pytest.mark.parametrize('swapped', ['a', 'a/b'])
def test_a_component_swapped_during_the_run_fails_the_module(tmp_path, monkeypatch, swapped):
    root = tmp_path / 'root'
    first = make(root / 'big' / 'old')
    make(root / 'a' / 'b' / 'junk')
    precious = make(tmp_path / 'victim' / 'b' / 'precious')
    (tmp_path / 'victim' / 'precious').write_bytes(b'x')

    class Swapping(purge_files.Purger):
        """The real engine, with a hook that swaps a component once the first path is done."""

        def __init__(self, spec):
            super().__init__(spec, before_path=self.swap)

        @staticmethod
        def swap(target):
            if target.parts[0] == 'a':
                os.rename(root / swapped, tmp_path / 'moved')
                (root / swapped).symlink_to(tmp_path / 'victim')

    monkeypatch.setattr(purge_files, 'Purger', Swapping)
    result = run({'paths': [str(root / 'big'), str(root / 'a' / 'b')], 'allowed_roots': [str(root)], 'age': '1d'})
    assert result['failed'] is True
    assert result['msg'].startswith('refusing to purge what changed after the paths were checked')
    assert f'{root / swapped} is a symbolic link' in result['msg']
    assert result['errors'][0]['path'] == str(root / swapped)
    assert not first.exists() and precious.exists() and (tmp_path / 'victim' / 'precious').exists()


@pytest.mark.parametrize('paths', [['app', 'app'], ['app', 'app/sub'], ['app/sub', 'app'], ['app/', 'app']])
def test_overlapping_paths_counted_once(tree, paths):
    args = {'paths': [str(tree / path) for path in paths], 'allowed_roots': [str(tree)], 'age': '7d', 'exclude': ['*.lock'],
            'remove_empty_dirs': True}
    checked = run(args, check_mode=True)
    real = run(args)
    assert checked == real
    assert real['files_removed'] == 2 and real['bytes_freed'] == 8
